"""The table of model backends, and models by name or by weights; local files only.

``load_model("tiny")`` gives the default model with the weights shipped in the package;
``load_model("rmsin", checkpoint="model_best_rrsisd.pth")`` a named model with the caller's
weights; ``load_model("runs/mine")`` whatever backend recognises that file or folder. Each
backend (a :class:`~georefseg.models.base.Backend`, defined beside its model) owns its name,
what it needs, how it recognises its weights, reads their card and builds them; this module
only looks them up. Nothing is ever downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

from georefseg.errors import ModelError, WeightsNotFoundError
from georefseg.models import tiny
from georefseg.models.base import META_MODEL, Backend, ReferringSegmenter, safetensors_metadata
from georefseg.models.card import ModelCard
from georefseg.models.device import place, resolve_device
from georefseg.models.hf import clipseg, sam3
from georefseg.models.rmsin import model as rmsin
from georefseg.models.rsrefseg2 import model as rsrefseg2

BACKENDS: dict[str, Backend] = {b.name: b for b in (tiny.BACKEND, rmsin.BACKEND, clipseg.BACKEND, sam3.BACKEND,
                                                    rsrefseg2.BACKEND)}


def list_models() -> list[dict[str, str]]:
    """Every backend: name, summary and what it needs (what ``georefseg models`` prints)."""
    return [{"name": b.name, "summary": b.summary, "needs": b.needs} for b in BACKENDS.values()]


def _known() -> str:
    return "; ".join(f"{b.name} ({b.needs})" for b in BACKENDS.values())


def _contents(path: Path) -> str:
    """What a file or folder that no backend recognises holds, in a few words."""
    if path.is_dir():
        files = sorted(p.name for p in path.iterdir())
        if not files:
            return "it is an empty folder"
        config = path / "config.json"
        kind = ""
        if config.is_file():
            try:
                kind = f" (config.json says model_type {json.loads(config.read_text()).get('model_type')!r})"
            except (OSError, ValueError, AttributeError):
                kind = " (config.json is not valid JSON)"
        shown = ", ".join(files[:6]) + (f" and {len(files) - 6} more" if len(files) > 6 else "")
        return f"the folder holds {shown}{kind}"
    if path.suffix == ".safetensors":
        meta = safetensors_metadata(path)
        if meta is None:
            return "it is not a readable safetensors file"
        if META_MODEL in meta:
            return f"it is a safetensors file of model {meta[META_MODEL]!r}"
        return "it is a safetensors file without georefseg metadata or RMSIN keys"
    return f"it is a {path.suffix or 'extensionless'} file of {path.stat().st_size} bytes"


def resolve(name_or_path: str | Path, checkpoint: str | Path | None = None) -> tuple[Backend, Path | None]:
    """The backend and the weights (None: its default) that ``name_or_path`` and ``checkpoint``
    name, from file headers alone. Raises ModelError naming ``model`` or ``checkpoint``."""
    name = str(name_or_path)
    if name in BACKENDS:
        backend = BACKENDS[name]
        if checkpoint is None:
            return backend, None
        path = Path(checkpoint)
        if not path.exists():
            raise WeightsNotFoundError(f"{{param}} {path} does not exist", param="checkpoint")
        found = backend.find(path)
        if found is None:
            raise ModelError(f"{{param}} {path} holds no {name} weights: {_contents(path)}. "
                             f"{name} needs {backend.needs}", param="checkpoint")
        return backend, found
    if checkpoint is not None:
        raise ModelError(f"unknown {{param}} {name!r} for the checkpoint: known models are {_known()}", param="model")
    path = Path(name)
    if not path.exists():
        looks_like_path = "/" in name or "\\" in name or path.suffix != ""
        if looks_like_path:
            raise WeightsNotFoundError(f"{{param}} {name} does not exist: give a model name or an existing "
                                       "weights file or folder", param="model")
        raise ModelError(f"unknown {{param}} {name!r}: known models are {_known()}; or give a weights file "
                         "or folder", param="model")
    matches = [(b, found) for b in BACKENDS.values() if (found := b.find(path)) is not None]
    if not matches:
        raise ModelError(f"{{param}} {path} is not weights any known model reads: {_contents(path)}. "
                         f"Known models: {_known()}", param="model")
    if len(matches) > 1:
        raise ModelError(f"{{param}} {path} holds weights of several models "
                         f"({', '.join(str(f) for _, f in matches)}): name one file", param="model")
    return matches[0]


def load_model(name_or_path: str | Path = "tiny", checkpoint: str | Path | None = None,
               device: str = "auto") -> ReferringSegmenter:
    """A model ready for inference (eval mode, on ``device``).

    Parameters
    ----------
    name_or_path
        A registered name (see :func:`list_models`), or a weights file or folder that one of
        the backends recognises from its contents.
    checkpoint
        Weights (file or folder) for a named model; ``None`` uses the model's default weights,
        where it has any.
    device
        ``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
    """
    dev = resolve_device(device)
    backend, weights = resolve(name_or_path, checkpoint)
    return place(backend.load(weights), dev)


def read_card(name_or_path: str | Path = "tiny", checkpoint: str | Path | None = None) -> ModelCard:
    """The card of a model's weights (tiling, output stride, cut-off, calibration), read from
    their headers without building the model."""
    backend, weights = resolve(name_or_path, checkpoint)
    return backend.card(weights)
