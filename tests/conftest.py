"""Shared pytest set-up: the test helpers in fixtures.py, real scenes, small thread counts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
REAL = HERE / "assets" / "real_scenes"

torch.set_num_threads(2)


@pytest.fixture
def real_scenes() -> Path:
    """The real georeferenced rasters (see assets/real_scenes/README.md for sources)."""
    return REAL


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """A small, randomly initialised tiny model saved the way `georefseg train` saves one."""
    from georefseg.models.registry import save_tiny
    from georefseg.models.tiny import TinyConfig, TinyRefSeg

    torch.manual_seed(0)
    model = TinyRefSeg(TinyConfig(widths=[8, 16, 32, 48], blocks=[1, 1, 1, 1], tile_size=256, min_overlap=32))
    path = tmp_path_factory.mktemp("weights") / "tiny_test.safetensors"
    save_tiny(model, path)
    return path
