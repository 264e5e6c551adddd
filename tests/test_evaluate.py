"""Evaluation end to end on a dataset whose right answers are known."""

from __future__ import annotations

import json

import numpy as np
import pytest

from georefseg.data import open_dataset
from georefseg.data.imageio import write_png
from georefseg.data.native import NativeWriter
from georefseg.evaluate import evaluate
from tests.fixtures import ColourModel, WordColourModel


@pytest.fixture
def red_squares(tmp_path):
    w = NativeWriter(tmp_path / "ds", {"source": "test"})
    rng = np.random.default_rng(0)
    for i in range(6):
        img = np.full((48, 48, 3), (90, 120, 80), np.uint8)
        y, x = rng.integers(0, 30, 2)
        img[y:y + 12, x:x + 15] = (230, 25, 25)
        mask = np.zeros((48, 48), np.uint8)
        mask[y:y + 12, x:x + 15] = 255
        write_png(w.root / "images" / f"{i}.png", img)
        write_png(w.root / "masks" / f"{i}.png", mask if i < 5 else mask * 0)
        w.add({"id": str(i), "image": f"images/{i}.png", "mask": f"masks/{i}.png" if i < 5 else None,
               "expression": "the red roof", "split": "test", "kinds": ["colour"]})
    w.close()
    return tmp_path / "ds"


def test_perfect_model_scores_one(red_squares):
    metrics = evaluate(ColourModel(), open_dataset(red_squares), batch_size=4)
    assert metrics["mIoU"] == pytest.approx(1.0) and metrics["oIoU"] == pytest.approx(1.0)
    assert metrics["prec@0.9"] == 1.0 and metrics["n_target"] == 5
    # the sixth image shows a red roof but its expression is marked as referring to nothing
    assert metrics["presence_acc_no_target"] == 0.0


def test_wrong_model_scores_zero(red_squares):
    metrics = evaluate(ColourModel(colour=(0.1, 0.1, 0.9)), open_dataset(red_squares))
    assert metrics["mIoU"] == 0.0 and metrics["presence_acc_no_target"] == 1.0
    json.dumps(metrics)  # serialisable as the CLI writes it


@pytest.fixture
def two_roofs(tmp_path):
    """Chips with a large and a small red roof and a blue pond; expressions name one roof."""
    w = NativeWriter(tmp_path / "ds", {"source": "test"})
    img = np.full((64, 64, 3), (90, 120, 80), np.uint8)
    img[4:24, 4:24] = (230, 25, 25)  # large roof, upper left
    img[44:52, 44:52] = (230, 25, 25)  # small roof, lower right, next to the pond
    img[40:60, 54:62] = (25, 50, 230)
    write_png(w.root / "images" / "0.png", img)
    for name, rows, cols in (("large", slice(4, 24), slice(4, 24)), ("small", slice(44, 52), slice(44, 52))):
        mask = np.zeros((64, 64), np.uint8)
        mask[rows, cols] = 255
        write_png(w.root / "masks" / f"{name}.png", mask)
    cases = [("the largest red roof", "large"), ("the small red roof", "small"),
             ("the red roof in the upper left", "large"), ("the red roof next to the blue pond", "small"),
             ("the red roof left of the yellow car", None)]  # no yellow car: an anchor not there
    for i, (text, target) in enumerate(cases):
        w.add({"id": str(i), "image": "images/0.png", "mask": f"masks/{target}.png" if target else None,
               "expression": text, "split": "test", "kinds": ["colour"]})
    w.close()
    return tmp_path / "ds"


def test_grounding_scores_what_segment_would_choose(two_roofs):
    samples = open_dataset(two_roofs)
    alone = evaluate(WordColourModel(), samples)
    grounded = evaluate(WordColourModel(), samples, grounding=True)
    # alone, the model marks both roofs every time: IoU 400/464 or 64/464
    assert alone["mIoU"] == pytest.approx((2 * 400 / 464 + 2 * 64 / 464) / 4)
    assert grounded["mIoU"] == pytest.approx(1.0) and grounded["prec@0.9"] == 1.0
    # with its anchor missing the relation is left out and a roof is still chosen: not "absent"
    assert grounded["presence_acc_no_target"] == 0.0
