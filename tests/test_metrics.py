"""The field's metrics on predictions whose scores are known."""

from __future__ import annotations

import numpy as np
import pytest

from georefseg.metrics import MetricAccumulator, markdown_table


def _mask(h, w, box):
    m = np.zeros((h, w), bool)
    m[box[0]:box[1], box[2]:box[3]] = True
    return m


def test_miou_oiou_and_precision():
    acc = MetricAccumulator()
    gt = _mask(10, 10, (0, 10, 0, 10))  # 100 px
    assert acc.add(gt, gt) == 1.0  # IoU 1
    assert acc.add(_mask(10, 10, (0, 10, 0, 5)), gt) == 0.5  # 50 / 100
    small = _mask(10, 10, (0, 2, 0, 2))  # 4 px target
    assert acc.add(np.zeros((10, 10), bool), small) == 0.0  # missed
    acc.add(np.zeros((10, 10), bool), np.zeros((10, 10), bool))  # no target, empty: right
    acc.add(small, np.zeros((10, 10), bool))  # no target, something predicted: wrong
    r = acc.result()
    assert r["mIoU"] == pytest.approx(0.5)
    assert r["oIoU"] == pytest.approx((100 + 50) / (100 + 100 + 4))  # large objects weigh more
    assert r["prec@0.5"] == pytest.approx(2 / 3) and r["prec@0.6"] == pytest.approx(1 / 3)
    assert r["prec@0.9"] == pytest.approx(1 / 3)
    assert r["presence_acc_no_target"] == 0.5 and r["n_target"] == 3 and r["n_no_target"] == 2
    assert r["presence_acc"] == pytest.approx(3 / 5)
    table = markdown_table(r, "test")
    assert "| 50.00 |" in table and "3 expressions with a referent, 2 without" in table


def test_kinds_are_broken_down():
    acc = MetricAccumulator()
    gt = _mask(4, 4, (0, 2, 0, 2))
    acc.add(gt, gt, ["category", "colour"])
    acc.add(np.zeros((4, 4), bool), gt, ["category", "relation"])
    assert acc.result()["mIoU_by_kind"] == {"category": 0.5, "colour": 1.0, "relation": 0.0}


def test_each_family_is_counted_as_its_authors_count():
    """Prec@X: RMSIN's test.py counts IoU ≥ X, RSRefSeg 2's RefSegIoUMetric IoU > X; its class
    mIoU is the mean over categories of their mean IoU."""
    gt = _mask(10, 10, (0, 10, 0, 10))
    half = _mask(10, 10, (0, 10, 0, 5))  # IoU exactly 0.5
    ours, theirs = MetricAccumulator(), MetricAccumulator(definition="rsrefseg2")
    for acc in (ours, theirs):
        acc.add(half, gt, ["ship"])
        acc.add(gt, gt, ["ship"])
        acc.add(gt, gt, ["tank"])
    assert ours.result()["prec@0.5"] == 1.0 and theirs.result()["prec@0.5"] == pytest.approx(2 / 3)
    assert theirs.result()["mIoU"] == pytest.approx(2.5 / 3)
    assert theirs.result()["class_mIoU"] == pytest.approx((0.75 + 1.0) / 2)
    assert "IoU > X" in markdown_table(theirs.result())
