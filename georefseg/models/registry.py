"""Models by name or checkpoint path; weights from local files only.

``load_model("tiny")`` gives the default model with the weights shipped in the package;
``load_model("rmsin", checkpoint="model_best_rrsisd.pth")`` a model built from the RMSIN
authors' checkpoint; ``load_model("my_tiny.safetensors")`` weights that ``georefseg train``
wrote. Nothing is ever downloaded: a missing file is an error that says which file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from georefseg.errors import ModelError
from georefseg.models.base import ReferringSegmenter, load_state_strict

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
DEFAULT_TINY = WEIGHTS_DIR / "tiny.safetensors"
META_MODEL, META_CONFIG = "georefseg.model", "georefseg.config"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    summary: str
    needs: str


MODELS = {
    "tiny": ModelInfo("tiny", "compact CNN with pixel-word attention and rotated convolutions; "
                      "runs on a laptop CPU", "nothing: its weights ship with georefseg"),
    "rmsin": ModelInfo("rmsin", "RMSIN (CVPR 2024): multi-modal Swin-B + BERT-base, 480×480 input",
                       "--checkpoint: a .pth written by the authors' train.py, or its .safetensors "
                       "conversion"),
}


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device not in ("cpu", "cuda", "mps") and not device.startswith("cuda:"):
        raise ModelError(f"unknown device {device!r}: use auto, cpu, cuda, cuda:N or mps")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError("--device cuda was asked for but no CUDA GPU is visible: use --device cpu")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ModelError("--device mps was asked for but Apple MPS is not available: use --device cpu")
    return torch.device(device)


def save_tiny(model: ReferringSegmenter, path: str | Path, extra: dict | None = None) -> None:
    """Write a tiny model's own weights (not the shared text encoder) as safetensors, with its
    config in the metadata so that the file alone rebuilds the model."""
    from safetensors.torch import save_file

    from georefseg.models.tiny import TEXT_PREFIX

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()
             if not k.startswith(TEXT_PREFIX)}
    meta = {META_MODEL: "tiny", META_CONFIG: json.dumps(model.config.to_dict())}
    if extra:
        meta["georefseg.extra"] = json.dumps(extra)
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    save_file(state, str(tmp), metadata=meta)
    tmp.replace(path)


def _load_tiny(path: Path) -> ReferringSegmenter:
    from safetensors import safe_open
    from safetensors.torch import load_file

    from georefseg.models.tiny import TEXT_PREFIX, TinyConfig, TinyRefSeg

    with safe_open(str(path), "pt") as fh:
        meta = fh.metadata() or {}
    config = TinyConfig(**json.loads(meta.get(META_CONFIG, "{}")))
    model = TinyRefSeg(config)
    load_state_strict(model, load_file(str(path)), str(path), skip_prefixes=(TEXT_PREFIX,))
    return model


def _model_kind(path: Path) -> str:
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), "pt") as fh:
                meta = fh.metadata() or {}
        except Exception as exc:  # safetensors raises its own error types for broken files
            raise ModelError(f"{path} is not a readable safetensors file ({exc})") from exc
        return meta.get(META_MODEL, "rmsin")
    return "rmsin"  # .pth / .pt: the RMSIN authors' format


def load_model(name_or_path: str | Path = "tiny", checkpoint: str | Path | None = None,
               device: str = "auto") -> ReferringSegmenter:
    """A model ready for inference (eval mode, on ``device``).

    ``name_or_path`` is a registered name (``tiny``, ``rmsin``) or a weights file; ``checkpoint``
    gives the weights for a named model.
    """
    dev = resolve_device(device)
    name = str(name_or_path)
    if checkpoint is not None:
        path = Path(checkpoint)
        if name not in MODELS:
            raise ModelError(f"unknown model {name!r}: choose one of {', '.join(MODELS)}")
    elif name in MODELS:
        if name == "rmsin":
            raise ModelError("the rmsin model needs weights: pass --checkpoint PATH (a .pth written "
                             "by the RMSIN authors' train.py, or a .safetensors conversion)")
        path = DEFAULT_TINY
        if not path.is_file():
            raise ModelError(f"the default tiny weights are not installed ({path} is missing): "
                             "reinstall georefseg, or pass --checkpoint with weights from "
                             "`georefseg train`")
    else:
        path = Path(name)
        if not path.exists():
            raise ModelError(f"unknown model {name!r}: choose one of {', '.join(MODELS)}, "
                             "or give the path of a weights file")
        name = _model_kind(path)
    if not path.is_file():
        raise ModelError(f"checkpoint {path} does not exist")
    if name != "rmsin" and path.suffix != ".safetensors":
        raise ModelError(f"{path}: tiny weights are .safetensors files written by `georefseg train`")
    if name == "rmsin":
        from georefseg.models.rmsin import load_rmsin

        model = load_rmsin(path)
    elif name == "tiny":
        model = _load_tiny(path)
    else:
        raise ModelError(f"{path} holds a {name!r} model, which this version does not know")
    return place(model, dev)


def place(model: ReferringSegmenter, device: torch.device) -> ReferringSegmenter:
    """Move a model to ``device`` for inference; on CUDA its convolutions use channels_last,
    the layout tensor cores read fastest (the inputs are converted to match)."""
    model = model.to(device).eval()
    if device.type == "cuda":  # per layer: Module.to(memory_format=) refuses the 5-D rotated-kernel banks
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.to(memory_format=torch.channels_last)
    return model


def tiling_defaults(name: str) -> tuple[int, int]:
    """(tile size, overlap) a model uses, without loading its weights."""
    if name == "rmsin":
        from georefseg.models.rmsin import RMSIN

        return RMSIN.tile_size, RMSIN.min_overlap
    from georefseg.models.tiny import TinyConfig

    cfg = TinyConfig()
    return cfg.tile_size, cfg.min_overlap
