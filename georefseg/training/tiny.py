"""tiny's recipe: AdamW with warm-up and cosine decay, dihedral augmentation that keeps
direction words true, mask BCE + Dice and presence BCE, the frozen MiniLM's word features
computed once per expression. Weights: ``best.safetensors`` (+ ``.json`` recipe and the object
words of the training data, ``best.vocabulary.json``)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from georefseg.atomic import write_text
from georefseg.models.base import TextBatch, load_state_strict
from georefseg.models.card import write_vocabulary
from georefseg.models.tiny import TEXT_PREFIX, TinyConfig, TinyRefSeg, save_tiny
from georefseg.training.losses import referring_loss
from georefseg.training.recipe import Recipe, decay_split


class TextCache:
    """Word features per expression, computed once by the frozen text encoder, one expression
    at a time: a text's features then do not depend on which texts shared its first batch, so
    a resumed run computes what an uninterrupted one did."""

    def __init__(self, model: TinyRefSeg, limit: int = 200_000):
        self.model, self.limit, self.cache = model, limit, {}

    def _encode(self, text: str) -> tuple[torch.Tensor, ...]:
        enc = self.model.encode_text([text])
        return enc.input_ids[0].cpu(), enc.attention_mask[0].cpu(), enc.features[0].cpu()

    def __call__(self, texts: list[str], device: torch.device) -> TextBatch:
        rows = []
        for text in texts:
            row = self.cache.get(text) or self._encode(text)
            if len(self.cache) < self.limit:
                self.cache[text] = row
            rows.append(row)
        return TextBatch(*(torch.stack([r[k] for r in rows]).to(device) for k in range(3)))


class TinyObjective(nn.Module):
    def __init__(self, model: TinyRefSeg):
        super().__init__()
        self.model, self.texts = model, TextCache(model)

    def forward(self, batch: dict) -> torch.Tensor:
        images = batch["image"]
        pred = self.model(images, self.texts(batch["expression"], images.device))
        return referring_loss(pred.logits.float(), pred.presence.float(), batch["mask"], batch["present"].float())


class TinyRecipe(Recipe):
    backend = "tiny"
    defaults = {"epochs": 8, "batch_size": 16, "lr": 2e-3, "weight_decay": 0.02, "warmup_steps": 300, "size": 256}
    augment = "dihedral"
    best_metric = "mIoU"
    clip_grad = 1.0

    def build(self, cfg) -> TinyRefSeg:
        model = TinyRefSeg(TinyConfig(**cfg.arch))
        if cfg.checkpoint:
            from safetensors.torch import load_file

            load_state_strict(model, load_file(cfg.checkpoint), cfg.checkpoint, skip_prefixes=(TEXT_PREFIX,))
        return model

    def parameter_groups(self, model: TinyRefSeg, cfg) -> list[dict]:
        # The shared MiniLM is frozen (its parameters do not require gradients).
        return decay_split(list(model.named_parameters()), lambda n, p: p.ndim <= 1, cfg.weight_decay)

    def objective(self, model: TinyRefSeg) -> nn.Module:
        return TinyObjective(model)

    def export_path(self, out: Path, tag: str) -> Path:
        return out / f"{tag}.safetensors"

    def export(self, model: TinyRefSeg, out: Path, tag: str, info: dict) -> Path:
        path = self.export_path(out, tag)
        save_tiny(model, path, extra={"step": info["step"]})
        write_text(path.with_suffix(".json"), json.dumps({**info, "config": model.config.to_dict()}, indent=2))
        write_vocabulary(path, set(info["object_words"]),
                         f"the object words of the training data ({info['recipe']['data']}, train split)")
        return path


RECIPE = TinyRecipe()
