"""Files written by ``torch.save``: their pickled names read without unpickling, and their
contents unpickled safely (``weights_only=True``), with one-line errors that name the model."""

from __future__ import annotations

import pickle
import pickletools
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from georefseg.errors import ModelError

TORCH_SUFFIXES = (".pth", ".pt")


def pickled_strings(path: Path) -> set[str] | None:
    """The strings in a torch.save file's pickle (dict keys, state-dict names), read with
    pickletools, which decodes opcodes and never runs them; None when it is no torch zip."""
    try:
        with zipfile.ZipFile(path) as zf:
            name = next((n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"), None)
            if name is None:
                return None
            return {arg for _, arg, _ in pickletools.genops(zf.read(name)) if isinstance(arg, str)}
    except (zipfile.BadZipFile, OSError, ValueError):
        return None


def unpickle(path: Path, family: str, keep: str, allowed: list | tuple = ()) -> Any:
    """The contents of a torch.save file, tensors memory-mapped where the file allows it.

    Only tensors, plain containers and the ``allowed`` classes are unpickled: any other object
    is refused (a ModelError that names its type, the ``family`` whose checkpoints never hold
    one, and says to re-save ``keep``), never executed.
    """
    # mmap keeps what the model does not need (optimizer state, twice its size) out of memory.
    mmap = zipfile.is_zipfile(path)
    try:
        with torch.serialization.safe_globals(list(allowed)):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if found is None:  # not a class reference: a damaged or foreign file
            raise ModelError(f"cannot read {path}: it is damaged or not a file written by torch.save") from exc
        raise ModelError(f"{path} holds an object of type {found.group(1)}, which a {family} checkpoint "
                         f"needs not contain; refusing to unpickle it. If you trust the file, load it yourself "
                         f"and re-save {keep}") from exc
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise ModelError(f"cannot read {path}: it is damaged or not a file written by "
                         f"torch.save ({str(exc).splitlines()[0].split('. ')[0]})") from exc
