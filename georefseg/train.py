"""Training of the tiny model on any dataset georefseg reads.

AdamW with linear warm-up then cosine or polynomial decay, dihedral augmentation that keeps
direction words true, bf16 autocast on CUDA, periodic validation with the field's metrics,
the best checkpoint exported as safetensors plus a JSON recipe, and a resumable
``last.pt`` (written atomically, also when interrupted with Ctrl-C).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Sampler

from georefseg.atomic import atomic_path, remove_stale, write_text
from georefseg.data.samples import ReferringDataset, collate, object_words
from georefseg.data.synth import SyntheticStream, object_vocabulary
from georefseg.errors import DatasetError, TrainingInterrupted
from georefseg.evaluate import evaluate
from georefseg.models.base import TextBatch, load_state_strict
from georefseg.models.card import write_vocabulary
from georefseg.models.device import resolve_device
from georefseg.models.tiny import TEXT_PREFIX, TinyConfig, TinyRefSeg, save_tiny

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    data: str
    out: str
    epochs: int = 8
    max_steps: int | None = None
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 0.02
    warmup_steps: int = 300
    schedule: str = "cosine"  # or "poly"
    size: int = 256
    val_every: int = 1000
    val_limit: int = 600
    checkpoint_every: int = 200
    workers: int = 2
    seed: int = 0
    device: str = "auto"
    init: str | None = None  # start from these tiny weights instead of from scratch
    val_data: str | None = None  # validation folder when training on a synthetic stream
    model: dict = field(default_factory=lambda: TinyConfig().to_dict())


@dataclass
class TrainState:
    step: int = 0
    epoch: int = 0
    best_miou: float = -1.0
    history: list[dict] = field(default_factory=list)


class _EpochSampler(Sampler[int]):
    """A seeded permutation per epoch that can start part-way (for resuming)."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch, self.start = n, seed, 0, 0

    def __iter__(self) -> Iterator[int]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        return iter(order[self.start:].tolist())

    def __len__(self) -> int:
        return self.n - self.start


def _stream_seed(data: str) -> int | None:
    """``synth:SEED`` trains on endless fresh synthetic scenes instead of a folder."""
    if not data.startswith("synth:"):
        return None
    try:
        return int(data.split(":", 1)[1])
    except ValueError as exc:
        raise DatasetError(f"{{param}} {data!r}: write synth:SEED with an integer seed", param="data") from exc


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Multiplier of the base learning rate at ``step``."""
    if step < warmup:
        return (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "poly":
        return (1 - t) ** 0.9
    return 0.5 * (1 + math.cos(math.pi * t))


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    return (1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)).mean()


def referring_loss(logits: torch.Tensor, presence: torch.Tensor, masks: torch.Tensor,
                   present: torch.Tensor) -> torch.Tensor:
    """Mask loss (BCE + Dice) on samples with a referent, presence BCE on all."""
    loss = 0.5 * F.binary_cross_entropy_with_logits(presence, present)
    has = present > 0.5
    if has.any():
        lg, mk = logits[has], masks[has]
        loss = loss + F.binary_cross_entropy_with_logits(lg, mk) + dice_loss(lg, mk)
    return loss


class TextCache:
    """Word features per expression, computed once by the frozen text encoder."""

    def __init__(self, model: TinyRefSeg, limit: int = 200_000):
        self.model, self.limit, self.cache = model, limit, {}

    def __call__(self, texts: list[str], device: torch.device) -> TextBatch:
        todo = sorted({t for t in texts if t not in self.cache})
        fresh = {}
        if todo:
            enc = self.model.encode_text(todo)
            fresh = {t: (enc.input_ids[i].cpu(), enc.attention_mask[i].cpu(), enc.features[i].cpu())
                     for i, t in enumerate(todo)}
            if len(self.cache) + len(fresh) <= self.limit:
                self.cache.update(fresh)
        rows = [self.cache.get(t) or fresh[t] for t in texts]
        return TextBatch(*(torch.stack([r[k] for r in rows]).to(device) for k in range(3)))


def _save_atomic(obj: dict, path: Path) -> None:
    with atomic_path(path) as part:
        torch.save(obj, part)


def _trainable_state(model: TinyRefSeg) -> dict:
    return {k: v for k, v in model.state_dict().items() if not k.startswith(TEXT_PREFIX)}


def train(cfg: TrainConfig, resume: bool = False,
          on_step: Callable[[int, int, float, float], None] | None = None,
          on_validate: Callable[[int, dict], None] | None = None) -> TrainState:
    """Train, validate and export; returns the final state. See the module docstring."""
    from georefseg.data import open_dataset

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale(out)  # part files of a run that was killed while writing a checkpoint
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    stream_seed = _stream_seed(cfg.data)
    if stream_seed is None:
        samples = open_dataset(cfg.data)
        train_set = [s for s in samples if s.split == "train"]
        val_set = [s for s in samples if s.split == "val"][: cfg.val_limit]
        if not train_set:
            raise DatasetError(f"{cfg.data} has no samples in its train split")
    else:
        if not cfg.max_steps:
            raise DatasetError("training on a synthetic stream needs {param}", param="max_steps")
        val_set = [s for s in open_dataset(cfg.val_data) if s.split == "val"][: cfg.val_limit] \
            if cfg.val_data else []

    # What the trained weights can know, stored beside them (ModelCard.vocabulary).
    vocabulary = object_vocabulary() if stream_seed is not None else object_words(s.expression for s in train_set)
    model = TinyRefSeg(TinyConfig(**cfg.model)).to(device)
    if cfg.init:
        from safetensors.torch import load_file

        load_state_strict(model, load_file(cfg.init), cfg.init, skip_prefixes=(TEXT_PREFIX,))
    params = [p for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    if stream_seed is None:
        dataset = ReferringDataset(train_set, cfg.size, augment=True, seed=cfg.seed)
        sampler = _EpochSampler(len(dataset), cfg.seed)
        steps_per_epoch = len(dataset) // cfg.batch_size
        if steps_per_epoch == 0:
            raise DatasetError(f"the train split has {len(dataset)} samples, fewer than one batch "
                               f"of {cfg.batch_size}: lower {{param}}", param="batch_size")
    else:
        steps_per_epoch = cfg.max_steps
    total = cfg.max_steps or cfg.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total, cfg.warmup_steps, cfg.schedule))

    state = TrainState()
    last = out / "last.pt"
    if resume and last.is_file():
        ckpt = torch.load(last, map_location=device, weights_only=True)
        model.load_state_dict(ckpt["model"], strict=False)
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        state = TrainState(**ckpt["state"])

    texts = TextCache(model)
    use_amp = device.type == "cuda"

    def checkpoint() -> None:
        _save_atomic({"model": _trainable_state(model), "optimizer": optimizer.state_dict(),
                      "scheduler": scheduler.state_dict(), "state": asdict(state),
                      "config": asdict(cfg)}, last)
        log.info("step %d: checkpoint %s", state.step, last)

    def validate() -> None:
        if not val_set:
            return
        metrics = evaluate(model, val_set, batch_size=cfg.batch_size)
        model.train()
        state.history.append({"step": state.step, "val": metrics})
        if on_validate:
            on_validate(state.step, metrics)
        if metrics["mIoU"] > state.best_miou:
            state.best_miou = metrics["mIoU"]
            export(model, out / "best.safetensors", cfg, state, metrics, vocabulary)

    model.train()
    t0, seen_loss = time.time(), []
    try:
        while state.step < total:
            if stream_seed is None:
                sampler.epoch = dataset.epoch = state.epoch
                sampler.start = (state.step - state.epoch * steps_per_epoch) * cfg.batch_size
                loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler,
                                    num_workers=cfg.workers, collate_fn=collate, drop_last=True)
            else:
                # A resumed stream starts on scenes it has not drawn before.
                stream = SyntheticStream(stream_seed, cfg.size, start=state.step * 1_000_003)
                loader = DataLoader(stream, batch_size=cfg.batch_size, num_workers=cfg.workers,
                                    collate_fn=collate)
            for batch in loader:
                text = texts(batch["expression"], device)
                images, masks = batch["image"].to(device), batch["mask"].to(device)
                present = batch["present"].to(device)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                    pred = model(images, text)
                loss = referring_loss(pred.logits.float(), pred.presence.float(), masks, present)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                scheduler.step()
                state.step += 1
                seen_loss.append(loss.item())
                if on_step:
                    on_step(state.step, total, seen_loss[-1], scheduler.get_last_lr()[0])
                if state.step % 50 == 0:
                    state.history.append({"step": state.step, "loss": float(np.mean(seen_loss)),
                                          "lr": scheduler.get_last_lr()[0],
                                          "elapsed_s": round(time.time() - t0, 1)})
                    seen_loss = []
                if state.step % cfg.val_every == 0:
                    validate()
                if state.step % cfg.checkpoint_every == 0:
                    checkpoint()
                if state.step >= total:
                    break
            else:
                state.epoch += 1
    except KeyboardInterrupt as exc:
        checkpoint()
        raise TrainingInterrupted(f"interrupted at step {state.step}/{total}; {last} holds the "
                                  "state: run the same command with {param} to go on", param="resume") from exc
    if not state.history or "val" not in state.history[-1]:
        validate()
    if not (out / "best.safetensors").exists():
        export(model, out / "best.safetensors", cfg, state, None, vocabulary)
    checkpoint()
    export(model, out / "last.safetensors", cfg, state, None, vocabulary)
    write_text(out / "history.json", json.dumps(state.history, indent=1))
    return state


def export(model: TinyRefSeg, path: Path, cfg: TrainConfig, state: TrainState, metrics: dict | None,
           vocabulary: set[str]) -> None:
    """Weights as safetensors, a JSON with the model config and the training recipe, and the
    object words of the training data (``NAME.vocabulary.json``)."""
    recipe = {"model": "tiny", "config": model.config.to_dict(), "recipe": asdict(cfg),
              "step": state.step, "epoch": state.epoch, "val_metrics": metrics}
    save_tiny(model, path, extra={"step": state.step})
    write_text(path.with_suffix(".json"), json.dumps(recipe, indent=2))
    write_vocabulary(path, vocabulary, f"the object words of the training data ({cfg.data}, train split)")
