"""RMSIN's recipe, as its authors' ``train.py`` and ``args.py`` (Lsan2401/RMSIN) define it.

* Start: the multi-modal Swin initialised as their ``init_weights`` does (Linear layers
  truncated-normal σ 0.02, biases 0, LayerNorms 1/0) and then loaded, leniently as their
  ``load_checkpoint`` does, from the Swin ImageNet-22k file
  (``swin_base_patch4_window12_384_22k.pth``: window 12 because the name says so);
  BERT from a local BERT-base folder (pooler dropped). Or any RMSIN checkpoint in their layout
  (``init``).
* AdamW, lr 3e-5, weight decay 0.01, four groups: the backbone's norms and position-bias tables
  without decay; the rest of the backbone; the decoder; BERT's encoder layers 0–9. BERT's
  embeddings and layers 10–11 are in no group: they receive gradients but never change.
* The learning rate decays per step as (1 − step / (steps per epoch × epochs))^0.9, no warm-up.
* Loss: 0.9 · cross-entropy (class weights 0.9 / 1.1) + 0.1 · summed Dice (:func:`rmsin_loss`).
* 480 × 480 images (resized), ImageNet normalisation, 20 tokens; batch 2 per GPU, 40 epochs;
  a fifth of the training images get 20–60 black 32-px boxes; drop path 0.3 and BERT's
  dropout 0.1 on; the best epoch by overall IoU on the validation split.

Weights go out in their layout (``model_best_RMSIN.pth``: ``model``, ``epoch``, ``args``), which
their ``test.py`` and ``georefseg segment --model rmsin --checkpoint`` both read.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import nn

from georefseg.atomic import atomic_path, write_text
from georefseg.errors import ModelError
from georefseg.models.base import load_state_strict
from georefseg.models.rmsin.model import (
    BERT_BASE,
    IMAGE_SIZE,
    RMSIN,
    RMSINConfig,
    bert_weights,
    load_rmsin,
    read_card,
    tokenize_rmsin,
)
from georefseg.models.torchfile import unpickle
from georefseg.training.losses import rmsin_loss
from georefseg.training.recipe import Recipe, poly

MODEL_ID = "RMSIN"
BERT_TRAINED_LAYERS = 10  # the authors optimise BERT's encoder layers 0–9 only
NO_DECAY_WORDS = ("norm", "absolute_pos_embed", "relative_position_bias_table")
# The authors' args.py defaults: what their test.py expects to find in a checkpoint's args.
AUTHORS_ARGS = dict(
    amsgrad=False, batch_size=2, bert_tokenizer="bert-base-uncased", ck_bert="bert-base-uncased", dataset="rrsisd",
    ddp_trained_weights=False, device="cuda:0", epochs=40, fusion_drop=0.0, img_size=IMAGE_SIZE, local_rank=0,
    lr=3e-5, mha="", model="lavt_one", model_id=MODEL_ID, output_dir="./checkpoints/", pin_mem=False,
    pretrained_swin_weights="./pretrained_weights/swin_base_patch4_window12_384_22k.pth", print_freq=10,
    refer_data_root="./refer/data/", resume="", split="test", splitBy="unc", swin_type="base",
    weight_decay=1e-2, window12=False, workers=8)


def authors_init(backbone: nn.Module) -> None:
    """The authors' ``init_weights`` before the Swin file is read: Linear weights truncated
    normal (σ 0.02, cut at ±2), biases 0; LayerNorm weights 1, biases 0."""
    for module in backbone.modules():
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def load_swin(backbone: nn.Module, path: str | Path) -> dict[str, int]:
    """Read a Swin classification checkpoint into RMSIN's backbone as the authors'
    ``mmcv_custom.load_checkpoint`` does: ``model``/``state_dict`` unwrapped, ``module.``,
    ``backbone.`` and ``encoder.`` prefixes stripped, relative-position tables of another window
    resized bicubically, then every tensor whose name and shape fit copied and the rest left
    (the classifier head, the final norm). Returns counts; a ModelError when nothing fits."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{{param}} {path} does not exist: give the Swin file the RMSIN README names "
                         "(swin_base_patch4_window12_384_22k.pth)", param="swin")
    ckpt = unpickle(path, "Swin", "its 'model' state dict", [])
    state = ckpt.get("state_dict", ckpt.get("model", ckpt)) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not state:
        raise ModelError(f"{{param}} {path} holds no state dict", param="swin")
    for prefix in ("module.", "backbone.", "encoder."):
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    own = backbone.state_dict()
    for key in [k for k in state if "relative_position_bias_table" in k and k in own]:
        table, target = state[key], own[key]
        if table.shape[1] == target.shape[1] and table.shape[0] != target.shape[0]:
            s1, s2 = int(table.shape[0] ** 0.5), int(target.shape[0] ** 0.5)
            grid = table.permute(1, 0).reshape(1, table.shape[1], s1, s1)
            state[key] = torch.nn.functional.interpolate(grid, size=(s2, s2), mode="bicubic") \
                .reshape(table.shape[1], -1).permute(1, 0)
    fits = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    if not fits:
        raise ModelError(f"{{param}} {path}: none of its {len(state)} tensors fits the Swin-{backbone.num_features[0]} "
                         "backbone: is it a Swin classification checkpoint of this variant?", param="swin")
    backbone.load_state_dict(fits, strict=False)
    return {"loaded": len(fits), "in_file": len(state), "backbone": len(own),
            "of_another_shape": sum(k in own and k not in fits for k in state)}


def bert_config(folder: str | Path) -> dict:
    """The values of a BERT folder's config.json that RMSIN's text encoder needs."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise ModelError(f"{{param}} {folder} has no config.json: give a local BERT-base folder "
                         "(huggingface-cli download bert-base-uncased --local-dir DIR)", param="bert")
    data = json.loads(path.read_text())
    return {k: data[k] for k in BERT_BASE if k in data and data[k] != BERT_BASE[k]}


class RMSINObjective(nn.Module):
    def __init__(self, model: RMSIN):
        super().__init__()
        self.model = model

    def forward(self, batch: dict) -> torch.Tensor:
        images = batch["image"]
        text = tokenize_rmsin(batch["expression"]).to(images.device)
        logits = self.model((images - self.model.mean) / self.model.std, text.input_ids, text.attention_mask)
        return rmsin_loss(logits.float(), batch["mask"][:, 0].long())


class RMSINRecipe(Recipe):
    backend = "rmsin"
    defaults = {"epochs": AUTHORS_ARGS["epochs"], "batch_size": AUTHORS_ARGS["batch_size"],
                "lr": AUTHORS_ARGS["lr"], "weight_decay": AUTHORS_ARGS["weight_decay"], "warmup_steps": 0,
                "size": IMAGE_SIZE}
    augment = "boxes"
    best_metric = "oIoU"

    def build(self, cfg) -> RMSIN:
        if cfg.size != IMAGE_SIZE:
            raise ModelError(f"RMSIN trains at {IMAGE_SIZE} px (its cross-scale attention fixes it): "
                             "leave {param} unset", param="size")
        if cfg.checkpoint:
            return load_rmsin(cfg.checkpoint, bert_dir=cfg.bert).train()
        if not cfg.swin or not cfg.bert:
            raise ModelError("training rmsin from its authors' starting point needs {param} (the Swin file "
                             "swin_base_patch4_window12_384_22k.pth) and --bert (a local BERT-base folder); "
                             "or give --init, an RMSIN checkpoint in the authors' layout", param="swin")
        config = RMSINConfig.from_args({"pretrained_swin_weights": cfg.swin, **cfg.arch,
                                        "bert_config": bert_config(cfg.bert)})
        model = RMSIN(config, read_card(None))
        authors_init(model.backbone)
        load_swin(model.backbone, cfg.swin)
        # bert_weights loads without the pooler and refuses a folder that lacks weights.
        load_state_strict(model.text_encoder, bert_weights(cfg.bert), str(cfg.bert))
        return model.train()

    def parameter_groups(self, model: RMSIN, cfg) -> list[dict]:
        """The authors' four groups, in their order (``train.py``, "parameters to optimize")."""
        backbone = list(model.backbone.named_parameters())
        layers = model.text_encoder.encoder.layer
        if len(layers) < BERT_TRAINED_LAYERS:
            raise ModelError(f"RMSIN's recipe trains BERT layers 0–{BERT_TRAINED_LAYERS - 1}; this BERT has "
                             f"{len(layers)}")
        return [
            {"name": "backbone_no_decay", "weight_decay": 0.0,
             "params": [p for n, p in backbone if any(w in n for w in NO_DECAY_WORDS)]},
            {"name": "backbone_decay", "params": [p for n, p in backbone if not any(w in n for w in NO_DECAY_WORDS)]},
            {"name": "classifier", "params": [p for p in model.classifier.parameters() if p.requires_grad]},
            {"name": "bert_layers_0_9", "params": [p for i in range(BERT_TRAINED_LAYERS)
                                                   for p in layers[i].parameters() if p.requires_grad]},
        ]

    def schedule(self, cfg):
        return poly(0.9)

    def objective(self, model: RMSIN) -> nn.Module:
        return RMSINObjective(model)

    def export_path(self, out: Path, tag: str) -> Path:
        return out / f"model_{tag}_{MODEL_ID}.pth"

    def export(self, model: RMSIN, out: Path, tag: str, info: dict) -> Path:
        """The authors' checkpoint layout: ``model`` (BERT inside as ``text_encoder.*``, as
        ``--model lavt_one`` saves it), ``epoch`` and ``args`` (their defaults, with this run's
        values)."""
        recipe, config = info["recipe"], model.config
        args = argparse.Namespace(**{
            **AUTHORS_ARGS, "batch_size": recipe["batch_size"], "epochs": recipe["epochs"], "lr": recipe["lr"],
            "weight_decay": recipe["weight_decay"], "swin_type": config.swin_type, "fusion_drop": config.fusion_drop,
            "mha": "-".join(map(str, config.mha)) if config.mha != (1, 1, 1, 1) else "",
            "window12": config.window_size == 12, "ck_bert": recipe["bert"] or AUTHORS_ARGS["ck_bert"],
            "pretrained_swin_weights": recipe["swin"] or "", "bert_config": dict(config.bert)})
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        path = self.export_path(out, tag)
        with atomic_path(path) as part:
            torch.save({"model": state, "epoch": info["epoch"], "args": args}, part)
        write_text(path.with_suffix(".json"), json.dumps({k: v for k, v in info.items() if k != "object_words"},
                                                          indent=2))
        return path


RECIPE = RMSINRecipe()
