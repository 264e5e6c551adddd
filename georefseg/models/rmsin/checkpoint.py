"""Reading and writing RMSIN weight files, without building the model.

Two formats are read:

* the ``.pth`` the authors' ``train.py`` writes: ``{'model', 'optimizer', 'lr_scheduler',
  'epoch', 'args'}`` plus ``'bert_model'`` when trained with ``--model lavt`` (BERT outside the
  model). With the default ``--model lavt_one`` BERT lives inside ``model`` as
  ``text_encoder.*``. It is unpickled with ``weights_only=True``; the one class allowed beyond
  tensors and plain containers is ``argparse.Namespace`` (``args``), the only other object
  those files hold. Anything else is refused, never executed.
* ``.safetensors`` in georefseg's layout: one flat dict whose keys are the RMSIN model's
  state-dict names (``backbone.*``, ``classifier.*``, ``text_encoder.*`` — the same names as a
  ``lavt_one`` checkpoint's ``model`` entry); the architecture goes in the metadata as
  ``georefseg.model = "rmsin"`` and ``georefseg.config`` = JSON of :class:`RMSINConfig`
  fields.

BERT's pooler (``pooler.*``) is dropped wherever a file carries it: the authors' test script
loads ``bert_model`` strictly with it, but RMSIN never uses the pooled output, so it cannot
change the logits.

:func:`find_weights` recognises these files (and the authors' output folder) from their
headers, without unpickling anything.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from georefseg.atomic import atomic_path
from georefseg.errors import ModelError
from georefseg.models.base import META_CONFIG, META_MODEL, safetensors_metadata
from georefseg.models.torchfile import TORCH_SUFFIXES, pickled_strings, unpickle

TEXT_PREFIX = "text_encoder."
BERT_PREFIXES = ("module.",)  # DDP wraps BERT when train.py runs with --model lavt
POOLER = "pooler."  # BERT's pooled-output head: present in some files, unused by RMSIN
# Keys every RMSIN state dict has, whatever the Swin variant: how a file is recognised.
SIGNATURE = ("backbone.patch_embed.proj.weight", "classifier.")
ALLOWED_GLOBALS = [argparse.Namespace]


@dataclass
class RMSINFile:
    """What a weights file says: the run arguments or saved config, and the model state."""

    state: dict[str, torch.Tensor]  # RMSIN state-dict names; text_encoder.* only if present
    args: dict[str, Any] | None = None  # train.py's argparse values (.pth)
    config: dict[str, Any] | None = None  # saved RMSINConfig fields (.safetensors)

    @property
    def has_bert(self) -> bool:
        return any(k.startswith(TEXT_PREFIX) for k in self.state)


def _unpickle(path: Path) -> Any:
    return unpickle(path, "RMSIN", "its 'model' state dict and 'args'", ALLOWED_GLOBALS)


def _strip(state: dict[str, torch.Tensor], prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        for prefix in prefixes:
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def read_pth(path: Path) -> RMSINFile:
    """The model (and BERT) weights and run arguments of an authors' ``train.py`` checkpoint."""
    ckpt = _unpickle(path)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise ModelError(f"{path} is not an RMSIN checkpoint: expected a dict with a 'model' "
                         "state dict, as the authors' train.py writes")
    state = dict(ckpt["model"])
    not_tensors = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise ModelError(f"{path}: 'model' holds {len(not_tensors)} entries that are not tensors "
                         f"({', '.join(map(str, not_tensors[:4]))}); not an RMSIN checkpoint")
    bert = ckpt.get("bert_model")
    if isinstance(bert, dict):
        state.update({TEXT_PREFIX + k: v for k, v in _strip(bert, BERT_PREFIXES).items()})
    args = ckpt.get("args")
    return RMSINFile(_without_pooler(state), args=vars(args) if isinstance(args, argparse.Namespace) else None)


def _without_pooler(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not k.startswith(TEXT_PREFIX + POOLER)}


def read_safetensors(path: Path) -> RMSINFile:
    """Weights and config of a file written by :func:`write_safetensors`."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), "pt") as fh:
            meta = fh.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise ModelError(f"{path} is not a readable safetensors file ({exc})") from exc
    if meta.get(META_MODEL, "rmsin") != "rmsin":
        raise ModelError(f"{path} holds a {meta[META_MODEL]!r} model, not RMSIN weights")
    try:
        config = json.loads(meta[META_CONFIG]) if META_CONFIG in meta else None
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: its {META_CONFIG} metadata is not valid JSON ({exc})") from exc
    return RMSINFile(_without_pooler(state), config=config)


def read_rmsin_file(path: str | Path) -> RMSINFile:
    """Dispatch on the suffix: ``.safetensors`` is georefseg's layout, anything else a ``.pth``."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint {path} does not exist")
    return read_safetensors(path) if path.suffix == ".safetensors" else read_pth(path)


def write_safetensors(state: dict[str, torch.Tensor], config: dict[str, Any],
                      path: str | Path) -> None:
    """Write ``state`` and ``config`` in the layout :func:`read_safetensors` reads."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    with atomic_path(path) as part:
        save_file(tensors, str(part), metadata={META_MODEL: "rmsin", META_CONFIG: json.dumps(config)})


def _looks_like_rmsin(keys) -> bool:
    keys = list(keys)
    return SIGNATURE[0] in keys and any(k.startswith(SIGNATURE[1]) for k in keys)


def is_rmsin_file(path: Path) -> bool:
    """Whether ``path`` holds RMSIN weights, from its header alone."""
    if path.suffix == ".safetensors":
        meta = safetensors_metadata(path)
        if meta is None:
            return False
        if META_MODEL in meta:
            return meta[META_MODEL] == "rmsin"
        from safetensors import safe_open

        with safe_open(str(path), "pt") as fh:
            return _looks_like_rmsin(fh.keys())
    if path.suffix in TORCH_SUFFIXES:
        strings = pickled_strings(path)
        return strings is not None and "model" in strings and _looks_like_rmsin(strings)
    return False


def find_weights(path: Path) -> Path | None:
    """An RMSIN weights file, or a folder holding one (the authors' ``train.py`` writes
    ``model_best_<model_id>.pth`` into its output folder; else the folder's only RMSIN file)."""
    if path.is_file():
        return path if is_rmsin_file(path) else None
    best = [p for p in sorted(path.glob("model_best_*.pth")) if is_rmsin_file(p)]
    found = best or [p for p in sorted(path.iterdir()) if p.is_file() and is_rmsin_file(p)]
    return found[0] if len(found) == 1 else None
