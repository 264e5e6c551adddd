"""RSRefSeg 2 installations as a user fills them, with the fixture's small random configuration.

The three parts — SAM 2.1 Hiera-T, a narrow SigLIP and the authors' checkpoint — are written with
the weights :mod:`tests.models.rsrefseg2.weights` draws from their names (the names
``fixture/layout.json`` lists, recorded from the authors' model by ``make_fixture.py``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from tests.models.rsrefseg2 import weights

FIXTURE = Path(__file__).resolve().parent / "fixture"
SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"


def layout() -> dict:
    return json.loads((FIXTURE / "layout.json").read_text())


def expected() -> dict[str, torch.Tensor]:
    return torch.load(FIXTURE / "expected.pt", weights_only=True)


def write_sam(folder: Path, hub: bool = True) -> Path:
    """SAM 2.1 Hiera-T's ``{"model": state_dict}`` in a hub cache (or a --local-dir folder)."""
    target = (folder / "models--facebook--sam2.1-hiera-tiny" / "snapshots" / SNAPSHOT if hub
              else folder / "sam2.1-hiera-tiny")
    target.mkdir(parents=True)
    torch.save({"model": {k: weights.tensor(f"sam:{k}", s) for k, s in layout()["sam"].items()}},
               target / "sam2.1_hiera_tiny.pt")
    return target / "sam2.1_hiera_tiny.pt"


def write_siglip(folder: Path, hub: bool = False) -> Path:
    """The narrow SigLIP as a --local-dir download (or a hub-cache snapshot)."""
    target = (folder / "models--google--siglip2-so400m-patch16-512" / "snapshots" / SNAPSHOT if hub
              else folder / "siglip2-so400m-patch16-512")
    shutil.copytree(FIXTURE / "siglip", target)
    save_file({k: weights.tensor(f"siglip:{k}", s) for k, s in layout()["siglip"].items()},
              str(target / "model.safetensors"), metadata={"format": "pt"})
    return target


def checkpoint_state(trained_only: bool = False, prefix: str = "") -> dict[str, torch.Tensor]:
    """The authors' model's state dict (peft names): what training changed drawn under its own
    names, the rest equal to the base models' tensors it came from."""
    spec = layout()
    state = {k: weights.tensor(f"rsrefseg2:{k}", spec["model"][k]) for k in spec["trained"]}
    if not trained_only:
        state.update({k: weights.tensor(origin, spec["model"][k]) for k, origin in spec["frozen"].items()})
    return {prefix + k: v for k, v in state.items()}


def write_checkpoint(path: Path, trained_only: bool = False, wrapped: bool = True, prefix: str = "") -> Path:
    state = checkpoint_state(trained_only, prefix)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"meta": {"epoch": 300, "iter": 0}, "state_dict": state} if wrapped else state, path)
    return path


def write_installation(folder: Path, **checkpoint) -> Path:
    """A complete folder: the checkpoint beside a hub-cache SAM and a --local-dir SigLIP."""
    write_sam(folder)
    write_siglip(folder)
    write_checkpoint(folder / "rrsisd.pth", **checkpoint)
    return folder
