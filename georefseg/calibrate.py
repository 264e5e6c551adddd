"""Fit a model's score calibration on a dataset's validation samples, and store it beside its weights.

Each sample's chip is grounded as ``segment`` grounds a scene (:func:`georefseg.evaluate.groundings`,
uncalibrated); a candidate is right when its IoU with the sample's mask is at least 0.5. The
raw scores are mapped to the share right by isotonic regression
(:meth:`~georefseg.calibration.Calibration.fit`), and ``select_one`` — the calibrated score from
which the best candidate of a singular expression is written — is the cut that answers most
samples right: the referent written, or nothing for an expression whose referent is absent.
``select_all`` is fitted the same way on plural expressions where the data has them (F1 of the
written candidates), else left at 0.5. Fit on validation data, never on a test split.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from rasterio.features import rasterize

from georefseg.atomic import write_text
from georefseg.calibration import Calibration, calibration_path, reliability
from georefseg.data.samples import RefSample
from georefseg.errors import DatasetError
from georefseg.evaluate import batches, groundings
from georefseg.expression import parse_expression
from georefseg.models.base import ReferringSegmenter

RIGHT_IOU = 0.5
BARS = np.round(np.arange(0.05, 0.96, 0.05), 2)


def _iou(geometry, target: np.ndarray) -> float:
    drawn = rasterize([(geometry, 1)], out_shape=target.shape).astype(bool)
    union = np.logical_or(drawn, target).sum()
    return float(np.logical_and(drawn, target).sum() / union) if union else 0.0


def _answer(scores: np.ndarray, right: list[bool], targets: bool, singular: bool, bar: float) -> float:
    """1 for a singular expression answered right at ``bar`` (its referent written, or nothing
    when it has none); the F1 of the written candidates for a plural one."""
    if singular:
        if not targets:
            return float(not len(scores) or scores[0] < bar)
        return float(len(scores) > 0 and scores[0] >= bar and right[0])
    written = [r for s, r in zip(scores, right, strict=True) if s >= bar]
    if not targets:
        return float(not written)
    return 2 * sum(written) / (len(written) + max(sum(right), 1))


def _best_bar(records: list[tuple], table: Calibration, singular: bool) -> tuple[float, float]:
    chosen = [r for r in records if r[3] == singular]
    share = [np.mean([_answer(table(raw), right, has, singular, bar) for raw, right, has, _ in chosen])
             for bar in BARS]
    best = int(np.argmax(share))
    return float(BARS[best]), float(share[best])


def calibrate(model: ReferringSegmenter, samples: Sequence[RefSample], batch_size: int = 8, source: str = "",
              progress: Callable[[int], None] | None = None) -> Calibration:
    """The calibration of ``model`` fitted on ``samples`` (see the module docstring); ``source``
    names the data in the result."""
    if not samples:
        raise DatasetError("calibrating needs validation samples: the dataset's val split is empty")
    model.eval()
    records = []  # (raw scores best first, right per candidate, has a referent, singular)
    for images, targets, chunk in batches(samples, batch_size):
        for result, target, sample in zip(groundings(model, images, [s.expression for s in chunk], Calibration()),
                                          targets, chunk, strict=True):
            raw = np.array([g.raw for g in result.ranked])
            right = [_iou(g.candidate.geometry, target) >= RIGHT_IOU for g in result.ranked]
            records.append((raw, right, bool(target.any()), parse_expression(sample.expression).number == 1))
        if progress:
            progress(len(chunk))
    raw = np.concatenate([r[0] for r in records]) if records else np.array([])
    right = [c for r in records for c in r[1]]
    if not len(raw):
        raise DatasetError("the model found no candidate on any validation sample: nothing to calibrate")
    what = (f"{model.name} on {len(records)} validation samples ({source or 'given samples'}), "
            f"{len(raw)} candidates, right at IoU ≥ {RIGHT_IOU}")
    table = Calibration.fit(raw, right, what)
    one, one_share = _best_bar(records, table, True) if any(r[3] for r in records) else (0.5, float("nan"))
    every, every_f1 = _best_bar(records, table, False) if any(not r[3] for r in records) else (0.5, float("nan"))
    fit = {"candidates": reliability(table(raw), right), "samples": len(records),
           "singular_right": round(one_share, 3), "plural_f1": round(every_f1, 3)}
    return Calibration(table.raw, table.calibrated, one, every, what, {"fit": fit})


def write_beside(calibration: Calibration, weights: Path) -> Path:
    """Store ``calibration`` where the backend reads it for ``weights``; returns that path."""
    path = calibration_path(Path(weights))
    write_text(path, calibration.to_json() + "\n")
    return path
