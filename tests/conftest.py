"""Shared pytest set-up: real scenes, small thread counts, models the tests share. The helpers
(scenes written with rasterio, fixture models) are in :mod:`tests.fixtures`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
REAL = HERE / "assets" / "real_scenes"

# Under pytest-xdist (the README's command runs two workers) each worker gets one of the two
# cores: two workers with two threads each would oversubscribe them and spin.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)


@pytest.fixture
def real_scenes() -> Path:
    """The real georeferenced rasters (see assets/real_scenes/README.md for sources)."""
    return REAL


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """A small, randomly initialised tiny model saved the way `georefseg train` saves one."""
    from georefseg.models.tiny import TinyConfig, TinyRefSeg, save_tiny

    torch.manual_seed(0)
    model = TinyRefSeg(TinyConfig(widths=[8, 16, 32, 48], blocks=[1, 1, 1, 1], tile_size=256, min_overlap=32))
    path = tmp_path_factory.mktemp("weights") / "tiny_test.safetensors"
    save_tiny(model, path)
    return path


SAMPLE = HERE.parent / "sample_data"


@pytest.fixture(scope="session")
def shipped_segmenter():
    """One Segmenter with the shipped default model, shared by every test that maps the sample scene."""
    from georefseg.api import Segmenter

    with Segmenter("tiny", device="cpu") as seg:
        yield seg


@pytest.fixture(scope="session")
def readme_run(shipped_segmenter, tmp_path_factory):
    """The README's first command, run once: the sample scene, its expression, both outputs."""
    out = tmp_path_factory.mktemp("readme")
    return shipped_segmenter.run(SAMPLE / "scene.tif", "the large storage tank near the river",
                                 out / "tanks.gpkg", prob=out / "tanks_prob.tif")


@pytest.fixture
def offline(monkeypatch):
    """No model hub: what a user's air-gapped machine (and this one) gives transformers."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
