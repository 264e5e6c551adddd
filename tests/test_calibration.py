"""Score calibration: the isotonic fit, its file beside the weights, and the shipped table."""

from __future__ import annotations

import numpy as np
import pytest

from georefseg.calibration import Calibration, calibration_path, reliability
from georefseg.errors import ModelError
from georefseg.models import load_model
from georefseg.models.tiny import DEFAULT_WEIGHTS


def test_isotonic_fit_recovers_a_known_relation():
    rng = np.random.default_rng(0)
    raw = rng.uniform(0, 1, 20000)
    right = rng.uniform(0, 1, raw.size) < raw**2  # a score of s is right with chance s²
    cal = Calibration.fit(raw, right, "test")
    grid = np.linspace(0.05, 0.95, 19)
    assert np.abs(cal(grid) - grid**2).max() < 0.06
    assert np.all(np.diff(cal(np.linspace(0, 1, 101))) >= 0)  # monotone: the order never changes
    assert len(cal.raw) <= 26
    rows = reliability(cal(raw), right)
    assert all(abs(r["mean_score"] - r["right"]) < 0.05 for r in rows if r["candidates"] > 500)


def test_a_calibration_round_trips_beside_its_weights(tmp_path):
    weights = tmp_path / "mine.safetensors"
    weights.write_bytes(b"")
    assert Calibration.beside(weights) == Calibration()  # none stored: uncalibrated, cut-offs 0.5
    cal = Calibration((0.0, 0.4, 1.0), (0.0, 0.3, 0.95), 0.35, 0.25, "unit test")
    calibration_path(weights).write_text(cal.to_json())
    assert calibration_path(weights).name == "mine.calibration.json"
    assert Calibration.beside(weights) == cal
    calibration_path(weights).write_text("{not json")
    with pytest.raises(ModelError, match="not a calibration file"):
        Calibration.beside(weights)
    with pytest.raises(ModelError, match="increasing"):
        Calibration((0.5, 0.2), (0.1, 0.2))


def test_the_shipped_model_is_calibrated_on_validation_scenes():
    """The table shipped with tiny: fitted on one validation family and checked on another;
    on the check family, bands with enough candidates are right about as often as they say."""
    cal = load_model("tiny", device="cpu").calibration
    assert cal.calibrated_scores and cal == Calibration.read(calibration_path(DEFAULT_WEIGHTS))
    assert "synthetic validation" in cal.source and "test" not in cal.source
    (check,) = [v for k, v in cal.reliability.items() if k.startswith("check")]
    bands = check["candidates"]
    assert sum(r["candidates"] for r in bands) >= 500 and len(bands) >= 8
    # expected calibration error: the candidate-weighted gap between score and share right
    ece = sum(r["candidates"] * abs(r["mean_score"] - r["right"]) for r in bands) / sum(r["candidates"] for r in bands)
    assert ece < 0.06, bands
    high = [r for r in bands if r["mean_score"] >= 0.7]
    assert sum(r["candidates"] * r["right"] for r in high) / sum(r["candidates"] for r in high) > 0.7
    assert 0 < cal.select_one < 1 and 0 < cal.select_all < 1
