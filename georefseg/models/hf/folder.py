"""Local Hugging Face model folders: recognising one, and saying what a broken one lacks.

A folder as ``save_pretrained`` (or ``huggingface-cli download --local-dir``) writes it holds
``config.json`` and the weights beside the tokenizer and processor files; a hub cache holds the
same inside ``models--ORG--NAME/snapshots/HASH/``. Both are accepted; nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

from georefseg.errors import ModelError

# What every model folder needs, as alternatives: one file of each group must be there.
WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def model_folder(path: Path) -> Path | None:
    """The folder holding ``config.json`` at ``path``: the folder itself, or the newest
    snapshot of a hub cache folder (``models--ORG--NAME`` or its ``snapshots``); else None."""
    if not path.is_dir():
        return None
    if (path / "config.json").is_file():
        return path
    snapshots = path / "snapshots" if (path / "snapshots").is_dir() else path
    found = sorted((p for p in snapshots.iterdir() if (p / "config.json").is_file()),
                   key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def model_type(folder: Path) -> str | None:
    """``config.json``'s ``model_type`` (None when it has none or is not JSON)."""
    try:
        return json.loads((folder / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None


def find_folder(path: Path, kind: str, needs: dict[str, tuple[str, ...]]) -> Path | None:
    """The model folder at ``path`` if its config says ``kind``; None if it is another model's.

    Raises ModelError when it is ``kind``'s but a needed file is missing: ``needs`` maps what
    each group is ("the tokenizer") to the file names any of which will do.
    """
    folder = model_folder(path)
    if folder is None or model_type(folder) != kind:
        return None
    missing = [f"{what} ({' or '.join(names)})" for what, names in {"the weights": WEIGHTS, **needs}.items()
               if not any((folder / n).is_file() for n in names)]
    if missing:
        files = ", ".join(sorted(p.name for p in folder.iterdir()))
        raise ModelError(f"{folder} is a {kind} folder but lacks {'; '.join(missing)}; it holds {files}. "
                         "Download the whole model folder once on a connected machine (see the README, "
                         "\"Real imagery\")")
    return folder


PROCESSOR_CONFIGS = ("preprocessor_config.json", "processor_config.json")


def processor_config(folder: Path | None) -> dict:
    """The image processor's settings in a model folder: ``preprocessor_config.json`` or
    ``processor_config.json`` (whose ``image_processor`` part is taken where it nests one);
    {} when the folder has neither."""
    for name in PROCESSOR_CONFIGS:
        path = None if folder is None else folder / name
        if path is not None and path.is_file():
            try:
                data = json.loads(path.read_text())
            except ValueError as exc:
                raise ModelError(f"{path} is not valid JSON ({exc}): download the model folder again") from exc
            return data.get("image_processor", data)
    return {}


def input_size(settings: dict, default: int) -> int:
    """The square side in pixels an image processor resizes to (its ``size``: a number, or a dict
    with ``height``, ``shortest_edge`` or ``longest_edge``)."""
    size = settings.get("size", default)
    if isinstance(size, dict):
        return int(size.get("height", size.get("shortest_edge", size.get("longest_edge", default))))
    return int(size)


def vision_patch_size(folder: Path | None, default: int) -> int:
    """``vision_config.patch_size`` of the folder's ``config.json`` (``default`` when absent)."""
    try:
        return int(json.loads((folder / "config.json").read_text())["vision_config"]["patch_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return default
