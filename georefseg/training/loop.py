"""The one training loop, for every backend that has a recipe.

AdamW over the recipe's parameter groups, stepped per batch with the recipe's schedule;
validation with the field's metrics every epoch (or every ``val_every`` steps); the best
weights (by the recipe's metric) and the last ones exported in the backend's own format;
a resumable ``last.pt`` (written atomically, every ``checkpoint_every`` steps and on Ctrl-C)
holding the model, optimiser, schedule, random state and data position, so that a resumed run
takes the steps an uninterrupted one would; bf16 autocast on CUDA; DDP when started by
``torchrun`` (gloo on the CPU, NCCL on GPUs; rank 0 validates and writes); the score
calibration fitted on the validation split at the end.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from georefseg.atomic import atomic_path, remove_stale, write_text
from georefseg.data.samples import ReferringDataset, collate, object_words
from georefseg.data.synth import SyntheticStream, object_vocabulary
from georefseg.errors import DatasetError, TrainingInterrupted
from georefseg.evaluate import evaluate
from georefseg.models.device import resolve_device
from georefseg.training import distributed
from georefseg.training.config import TrainConfig
from georefseg.training.recipe import Recipe, recipe_for, switch_off_stochastic_layers

log = logging.getLogger(__name__)
LAST = "last.pt"


@dataclass
class TrainState:
    step: int = 0
    epoch: int = 0
    best: float = -1.0
    history: list[dict] = field(default_factory=list)


class _EpochSampler(Sampler[int]):
    """This process's share of each epoch's order: a seeded permutation (or the dataset's own
    order), cut into global batches of ``batch × world`` whose ``rank``-th slices this process
    takes, so that N processes see exactly the batches one process would, split N ways. It
    can start part-way through an epoch (for resuming)."""

    def __init__(self, n: int, seed: int, shuffle: bool, batch: int, rank: int, world: int):
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.batch, self.rank, self.world = batch, rank, world
        self.epoch, self.start_step = 0, 0

    def steps(self) -> int:
        return self.n // (self.batch * self.world)

    def _order(self) -> np.ndarray:
        if self.shuffle:
            return np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        return np.arange(self.n)

    def __iter__(self) -> Iterator[int]:
        order, b, w = self._order(), self.batch, self.world
        for step in range(self.start_step, self.steps()):
            first = (step * w + self.rank) * b
            yield from order[first:first + b].tolist()

    def __len__(self) -> int:
        return (self.steps() - self.start_step) * self.batch


def _stream_seed(data: str) -> int | None:
    """``synth:SEED`` trains on endless fresh synthetic scenes instead of a folder."""
    if not data.startswith("synth:"):
        return None
    try:
        return int(data.split(":", 1)[1])
    except ValueError as exc:
        raise DatasetError(f"{{param}} {data!r}: write synth:SEED with an integer seed", param="data") from exc


def _splits(cfg: TrainConfig) -> tuple[list, list]:
    from georefseg.data import open_dataset

    if _stream_seed(cfg.data) is not None:
        if not cfg.max_steps:
            raise DatasetError("training on a synthetic stream needs {param}", param="max_steps")
        val = [s for s in open_dataset(cfg.val_data) if s.split == "val"] if cfg.val_data else []
        return [], val[: cfg.val_limit]
    samples = open_dataset(cfg.data)
    train_set = [s for s in samples if s.split == "train"]
    if not train_set:
        raise DatasetError(f"{cfg.data} has no samples in its train split")
    return train_set, [s for s in samples if s.split == "val"][: cfg.val_limit]


def _random_state() -> dict:
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_random_state(saved: dict) -> None:
    torch.set_rng_state(saved["torch"])
    if saved["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved["cuda"])


def _save_atomic(obj: dict, path: Path) -> None:
    with atomic_path(path) as part:
        torch.save(obj, part)


def train(cfg: TrainConfig, resume: bool = False,
          on_step: Callable[[dict], None] | None = None,
          on_validate: Callable[[int, dict], None] | None = None) -> TrainState:
    """Train ``cfg.model`` with its recipe; returns the final state. See the module docstring.

    ``on_step`` gets one dict per step: step, total, epoch, loss, lr (of the first group),
    samples_per_s and eta_s (seconds, from the mean pace since this process started).
    """
    recipe = recipe_for(cfg.model)
    cfg = cfg.resolved(recipe.defaults)
    out = Path(cfg.out)
    with distributed.group(cfg.device) as dist:
        main = dist.rank == 0
        if main:
            out.mkdir(parents=True, exist_ok=True)
            remove_stale(out)  # part files of a run that was killed while writing a checkpoint
        device = dist.device or resolve_device(cfg.device)
        torch.manual_seed(cfg.seed)
        stream_seed = _stream_seed(cfg.data)
        train_set, val_set = _splits(cfg)

        model = recipe.build(cfg)
        if cfg.size is None:  # the side the model's card tiles scenes at (CLIPSeg: its processor's)
            cfg.size = model.tile_size
        if not cfg.dropout:
            switch_off_stochastic_layers(model)
        model = model.to(device)
        groups = recipe.parameter_groups(model, cfg)
        params = [p for g in groups for p in g["params"]]
        optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        if stream_seed is None:
            dataset = ReferringDataset(train_set, cfg.size, augment=recipe.augment if cfg.augment else None,
                                       seed=cfg.seed)
            sampler = _EpochSampler(len(dataset), cfg.seed, cfg.shuffle, cfg.batch_size, dist.rank, dist.world)
            steps_per_epoch = sampler.steps()
            if steps_per_epoch == 0:
                raise DatasetError(f"the train split has {len(dataset)} samples, fewer than one batch of "
                                   f"{cfg.batch_size} × {dist.world} processes: lower {{param}}",
                                   param="batch_size")
        else:
            steps_per_epoch = cfg.max_steps
        # The schedule's length is the planned run (epochs × steps per epoch), as the authors'
        # schedules are: --max-steps cuts a run short without changing its learning rates.
        planned = cfg.max_steps if stream_seed is not None else cfg.epochs * steps_per_epoch
        total = cfg.max_steps or planned
        planned = max(planned, total)
        factor = recipe.schedule(cfg)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: factor(s, planned))

        state = TrainState()
        last = out / LAST
        # What last.pt holds: the parameters the optimiser trains and every buffer (batch-norm
        # statistics); the rest never changes, so a resumed run rebuilds it as this one did.
        trained = {id(p) for p in params}
        kept = {n for n, p in model.named_parameters() if id(p) in trained} | {n for n, _ in model.named_buffers()}
        if resume and last.is_file():
            ckpt = torch.load(last, map_location=device, weights_only=True)
            if set(ckpt["model"]) != kept & set(model.state_dict()):
                raise DatasetError(f"{last} was written by another run (its tensors are not what this model "
                                   "trains): give a new {param} or leave out --resume", param="out")
            model.load_state_dict(ckpt["model"], strict=False)
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            _set_random_state(ckpt["random"][dist.rank])
            state = TrainState(**ckpt["state"])
        objective = dist.wrap(recipe.objective(model))
        use_amp = cfg.amp and device.type == "cuda"
        # What the trained weights can know (ModelCard.vocabulary), for recipes that store it.
        words = object_vocabulary() if stream_seed is not None else object_words(s.expression for s in train_set)
        info = {"model": recipe.backend, "recipe": asdict(cfg), "world": dist.world, "object_words": sorted(words),
                "groups": [{"name": g["name"], "tensors": len(g["params"]),
                            "parameters": sum(p.numel() for p in g["params"])} for g in groups]}

        def checkpoint() -> None:
            randoms = dist.gather(_random_state())
            if main:
                _save_atomic({"model": {k: v for k, v in model.state_dict().items() if k in kept},
                              "optimizer": optimizer.state_dict(),
                              "scheduler": scheduler.state_dict(), "random": randoms,
                              "state": asdict(state), "config": asdict(cfg)}, last)
                log.info("step %d: checkpoint %s", state.step, last)

        def validate() -> None:
            if main and val_set:
                metrics = evaluate(model, val_set, batch_size=cfg.batch_size)
                state.history.append({"step": state.step, "epoch": state.epoch, "val": metrics})
                if on_validate:
                    on_validate(state.step, metrics)
                if metrics[recipe.best_metric] > state.best:
                    state.best = metrics[recipe.best_metric]
                    recipe.export(model, out, "best",
                                  {**info, "step": state.step, "epoch": state.epoch, "val_metrics": metrics})
            model.train()
            dist.barrier()

        model.train()
        t0, first_step, losses = time.monotonic(), state.step, []
        try:
            while state.step < total:
                if stream_seed is None:
                    sampler.epoch = dataset.epoch = state.epoch
                    sampler.start_step = state.step - state.epoch * steps_per_epoch
                    # A generator of its own: a loader draws its workers' seed when it starts,
                    # which from the global one would shift dropout's draws in a resumed run.
                    loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler,
                                        num_workers=cfg.workers, collate_fn=collate, drop_last=True,
                                        generator=torch.Generator().manual_seed(cfg.seed + state.epoch))
                else:
                    # A resumed stream starts on scenes it has not drawn before.
                    loader = DataLoader(SyntheticStream(stream_seed, cfg.size, start=state.step * 1_000_003),
                                        batch_size=cfg.batch_size, num_workers=cfg.workers, collate_fn=collate,
                                        generator=torch.Generator().manual_seed(cfg.seed + state.step))
                for batch in loader:
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                        loss = objective(_to(batch, device))
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if recipe.clip_grad:
                        torch.nn.utils.clip_grad_norm_(params, recipe.clip_grad)
                    optimizer.step()
                    scheduler.step()
                    state.step += 1
                    losses.append(float(loss.detach()))
                    if on_step and main:
                        on_step(_pace(state, total, losses[-1], optimizer, t0, first_step,
                                      cfg.batch_size * dist.world))
                    if state.step % 50 == 0 or state.step == total:
                        state.history.append({"step": state.step, "loss": float(np.mean(losses)),
                                              "lr": optimizer.param_groups[0]["lr"],
                                              "elapsed_s": round(time.monotonic() - t0, 1)})
                        losses = []
                    if cfg.val_every and state.step % cfg.val_every == 0:
                        validate()
                    if state.step % cfg.checkpoint_every == 0:
                        checkpoint()
                    if state.step >= total:
                        break
                else:
                    state.epoch += 1
                    if not cfg.val_every:
                        validate()
        except KeyboardInterrupt as exc:
            checkpoint()
            raise TrainingInterrupted(f"interrupted at step {state.step}/{total}; {last} holds the "
                                      "state: run the same command with {param} to go on", param="resume") from exc
        if not any("val" in h and h["step"] == state.step for h in state.history):
            validate()
        checkpoint()
        if main:
            final = {**info, "step": state.step, "epoch": state.epoch, "val_metrics": None}
            if state.best < 0:  # nothing to validate on: the last weights are the best known
                recipe.export(model, out, "best", final)
            weights = recipe.export(model, out, "last", final)
            write_text(out / "history.json", json.dumps(state.history, indent=1))
            if cfg.calibrate and val_set:
                _calibrate_best(recipe, out, val_set, cfg, device)
            log.info("trained %s to step %d: %s", recipe.backend, state.step, weights)
        dist.barrier()
    return state


def _to(batch: dict, device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _pace(state: TrainState, total: int, loss: float, optimizer, t0: float, first: int, per_step: int) -> dict:
    elapsed = time.monotonic() - t0
    done = state.step - first
    return {"step": state.step, "total": total, "epoch": state.epoch, "loss": loss,
            "lr": optimizer.param_groups[0]["lr"], "samples_per_s": done * per_step / max(elapsed, 1e-9),
            "eta_s": (total - state.step) * elapsed / max(done, 1)}


def _calibrate_best(recipe: Recipe, out: Path, val_set: list, cfg: TrainConfig, device: torch.device) -> None:
    """Fit the score calibration of the best weights on the validation split, beside them."""
    from georefseg.calibrate import calibrate, write_beside
    from georefseg.models.registry import load_model

    weights = recipe.export_path(out, "best")
    model = load_model(recipe.backend, weights, device=str(device))
    try:
        fitted = calibrate(model, val_set, batch_size=cfg.batch_size, source=f"{cfg.data}, val split")
    except DatasetError as exc:  # e.g. a model too young to find anything: it stays uncalibrated
        log.warning("%s: not calibrated (%s)", weights, exc)
        return
    write_beside(fitted, weights)
