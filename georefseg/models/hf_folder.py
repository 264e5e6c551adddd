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
