"""Fitting a model's score calibration on a dataset's validation split (the shipped tiny weights,
real forward passes), in the library and through `georefseg calibrate`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from georefseg.calibrate import calibrate
from georefseg.data import open_dataset
from georefseg.data.synth import write_synthetic_dataset
from georefseg.models import load_model
from georefseg.models.tiny import DEFAULT_WEIGHTS


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cal") / "synth"
    write_synthetic_dataset(root, 40, seed=31, size=256)
    return root


def test_fitted_on_val_samples(data):
    model = load_model("tiny", device="cpu")
    val = [s for s in open_dataset(data) if s.split == "val"]
    cal = calibrate(model, val, source="synthetic seed 31")
    assert "validation samples" in cal.source and cal.calibrated_scores
    assert 0.05 <= cal.select_one <= 0.95
    raw = np.linspace(0, 1, 11)
    assert np.all(np.diff(cal(raw)) >= 0)  # monotone
    fit = cal.reliability["fit"]
    assert fit["samples"] == len(val) and 0 <= fit["singular_right"] <= 1
    # Where candidates were scored high, more of them were right than where they were scored low.
    bands = fit["candidates"]
    assert bands[0]["right"] <= bands[-1]["right"]


def test_cli_writes_it_beside_the_weights(data, tmp_path):
    weights = tmp_path / "mine.safetensors"
    shutil.copy(DEFAULT_WEIGHTS, weights)
    shutil.copy(DEFAULT_WEIGHTS.with_name(DEFAULT_WEIGHTS.stem + ".vocabulary.json"),
                tmp_path / "mine.vocabulary.json")
    run = subprocess.run([sys.executable, "-m", "georefseg.cli", "calibrate", "--model", "tiny", "--checkpoint",
                          str(weights), "--data", str(data), "--limit", "24", "--quiet"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    written = json.loads((tmp_path / "mine.calibration.json").read_text())
    assert str(data) in written["source"] and "val split" in written["source"]
    assert load_model(str(weights), device="cpu").calibration.source == written["source"]
    # Never on a test split, never over the shipped weights' own calibration.
    for extra in (["--checkpoint", str(weights), "--split", "test"], []):
        bad = subprocess.run([sys.executable, "-m", "georefseg.cli", "calibrate", "--model", "tiny", "--data",
                              str(data), *extra], capture_output=True, text=True)
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
