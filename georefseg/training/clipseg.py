"""CLIPSeg's fine-tuning recipe: from a local Hugging Face folder, to a folder of the same kind.

By default only the decoder (1.1 M parameters in the published rd64 model) trains: CLIP's two
towers stay as published — they run without gradients — so a laptop CPU can fine-tune it;
``train_all`` trains the whole model. Loss: binary cross-entropy on the decoder's logits, as
CLIPSeg was trained. AdamW with warm-up and cosine decay; norms and biases without weight
decay; dihedral augmentation that keeps direction words true. Images go through the folder's
own image processor, expressions through its tokenizer; the output folder (``best/``,
``last/``) holds ``save_pretrained`` files of the model and the processor, so that
``segment --model OUT/best`` loads it like the published one.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from georefseg.atomic import Transaction, write_text
from georefseg.errors import ModelError
from georefseg.models.base import TextBatch
from georefseg.models.hf.clipseg import CLIPSegSegmenter, read_card
from georefseg.models.hf.clipseg import build as build_clipseg
from georefseg.training.recipe import Recipe, decay_split

DECODER = "decoder."


class CLIPSegObjective(nn.Module):
    def __init__(self, model: CLIPSegSegmenter, towers_train: bool):
        super().__init__()
        self.model, self.towers_train = model, towers_train

    def forward(self, batch: dict) -> torch.Tensor:
        seg, images = self.model, batch["image"]
        enc = seg.processor.tokenizer(list(batch["expression"]), padding=True, return_tensors="pt")
        ids, mask = enc["input_ids"].to(images.device), enc["attention_mask"].to(images.device)
        with torch.set_grad_enabled(self.towers_train):
            cond = seg.net.clip.get_text_features(ids, attention_mask=mask).pooler_output
            activations = seg.activations(seg.pixel_values(images))
        logits = seg.decode(activations, TextBatch(ids, mask, cond[:, None, :]), tuple(images.shape[-2:]))
        return F.binary_cross_entropy_with_logits(logits.float(), batch["mask"])


class CLIPSegRecipe(Recipe):
    backend = "clipseg"
    defaults = {"epochs": 10, "batch_size": 8, "lr": 1e-4, "weight_decay": 1e-4, "warmup_steps": 50}
    augment = "dihedral"
    best_metric = "mIoU"
    clip_grad = 1.0

    def build(self, cfg) -> CLIPSegSegmenter:
        if not cfg.checkpoint:
            raise ModelError("fine-tuning clipseg needs {param} DIR: a local Hugging Face folder of "
                             "CIDAS/clipseg-rd64-refined (or of an earlier fine-tuning)", param="checkpoint")
        model = build_clipseg(read_card(Path(cfg.checkpoint)))
        for name, p in model.net.named_parameters():
            p.requires_grad_(cfg.train_all or name.startswith(DECODER))
        return model.train()

    def parameter_groups(self, model: CLIPSegSegmenter, cfg) -> list[dict]:
        return decay_split(list(model.net.named_parameters()), lambda n, p: p.ndim <= 1 or "norm" in n,
                           cfg.weight_decay)

    def objective(self, model: CLIPSegSegmenter) -> nn.Module:
        towers = any(p.requires_grad for n, p in model.net.named_parameters() if not n.startswith(DECODER))
        return CLIPSegObjective(model, towers)

    def export_path(self, out: Path, tag: str) -> Path:
        return out / tag

    def export(self, model: CLIPSegSegmenter, out: Path, tag: str, info: dict) -> Path:
        """The model and processor as ``save_pretrained`` writes them, replacing the folder's
        files all at once (a kill mid-write leaves the old folder whole)."""
        folder = self.export_path(out, tag)
        folder.mkdir(parents=True, exist_ok=True)
        with Transaction([folder / "config.json"]) as tx:
            stage = tx.path_for(folder / "config.json").parent
            model.net.save_pretrained(stage)
            model.processor.save_pretrained(stage)
            write_text(stage / "training.json", json.dumps({k: v for k, v in info.items() if k != "object_words"},
                                                           indent=2))
            written = sorted(p.name for p in stage.iterdir())
            for name in written:
                tx.replace(folder / name)
            for old in folder.iterdir():
                if old.is_file() and old.name not in written:  # a calibration of older weights too
                    tx.delete(old)
            tx.commit()
        return folder


RECIPE = CLIPSegRecipe()
