"""Score calibration: raw grounding scores → the chance a candidate is what the expression names.

A model's raw score (its evidence times the scene-level factors, see
:mod:`georefseg.grounding`) orders candidates but is not a probability. A :class:`Calibration`
maps it through a monotone table fitted on validation data (isotonic regression: the
pool-adjacent-violators algorithm), so that of the candidates scored 0.8, about 80 % are right;
it also holds the selection cut-offs chosen on that data. Weights carry their calibration in a
JSON file beside them (``tiny.safetensors`` → ``tiny.calibration.json``); weights without one
are *uncalibrated*: scores are the raw ones and the cut-offs a plain 0.5.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from georefseg.errors import ModelError


@dataclass(frozen=True)
class Calibration:
    """A monotone map from raw scores to calibrated ones, and the cut-offs chosen with it.

    Parameters
    ----------
    raw, calibrated
        Knots of the map (raw increasing); between them it is linear, outside flat.
    select_one
        Calibrated score from which the best candidate of a singular expression ("the tank")
        is written; below it, nothing is.
    select_all
        Calibrated score from which candidates of a plural expression ("the tanks", "the two
        largest tanks") are written, and from which an anchor counts as found.
    source
        Where the table comes from (the data it was fitted on), or "uncalibrated".
    reliability
        Optional record of how the calibrated scores did on held-out validation data.
    unknown
        The calibrated score of a candidate for an object word the model cannot know (one its
        vocabulary lacks): the share of such candidates that were right where it was fitted,
        smoothed (Laplace); None where it was not fitted (such candidates are never selected
        either way).
    """

    raw: tuple[float, ...] = (0.0, 1.0)
    calibrated: tuple[float, ...] = (0.0, 1.0)
    select_one: float = 0.5
    select_all: float = 0.5
    source: str = "uncalibrated"
    reliability: dict = field(default_factory=dict, compare=False, hash=False)
    unknown: float | None = None

    def __post_init__(self) -> None:
        raw, cal = np.asarray(self.raw, float), np.asarray(self.calibrated, float)
        if raw.ndim != 1 or len(raw) < 2 or raw.shape != cal.shape or np.any(np.diff(raw) < 0) \
                or np.any(np.diff(cal) < 0) or cal.min() < 0 or cal.max() > 1:
            raise ModelError("a calibration table needs two or more increasing raw knots and "
                             "non-decreasing calibrated values in [0, 1]")

    @property
    def calibrated_scores(self) -> bool:
        return self.source != "uncalibrated"

    def __call__(self, raw) -> np.ndarray:
        """Calibrated scores (0–1) of raw scores (0–1), element-wise."""
        return np.interp(np.asarray(raw, float), self.raw, self.calibrated)

    @classmethod
    def fit(cls, raw, correct, source: str, select_one: float = 0.5, select_all: float = 0.5,
            knots: int = 24) -> Calibration:
        """Isotonic regression of ``correct`` (0/1) on ``raw``, reduced to at most ``knots``
        knots (block centres, so the map is piecewise linear between them)."""
        raw, correct = np.asarray(raw, float), np.asarray(correct, float)
        order = np.argsort(raw, kind="stable")
        x, y = raw[order], correct[order]
        # Pool adjacent violators: merge neighbouring blocks while their means decrease.
        means, weights, xs = [], [], []
        for xi, yi in zip(x, y, strict=True):
            means.append(yi)
            weights.append(1.0)
            xs.append(xi)
            while len(means) > 1 and means[-2] >= means[-1]:
                w = weights[-2] + weights[-1]
                means[-2] = (means[-2] * weights[-2] + means[-1] * weights[-1]) / w
                xs[-2] = (xs[-2] * weights[-2] + xs[-1] * weights[-1]) / w
                weights[-2] = w
                del means[-1], weights[-1], xs[-1]
        kx, ky = np.array(xs), np.array(means)
        if len(kx) > knots:  # keep the table short: pick knots evenly by the data they hold
            cum = np.cumsum(weights)
            idx = np.unique(np.searchsorted(cum, np.linspace(0, cum[-1], knots), side="left").clip(0, len(kx) - 1))
            kx, ky = kx[idx], ky[idx]
        kx = np.concatenate([[0.0], kx, [1.0]])
        ky = np.concatenate([[ky[0]], ky, [ky[-1]]])
        kx, keep = np.unique(kx, return_index=True)
        ky = np.maximum.accumulate(ky[keep])
        return cls(tuple(round(float(v), 5) for v in kx), tuple(round(float(v), 5) for v in ky),
                   select_one, select_all, source)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def read(cls, path: str | Path) -> Calibration:
        try:
            data = json.loads(Path(path).read_text())
            return cls(**{**data, "raw": tuple(data["raw"]), "calibrated": tuple(data["calibrated"])})
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise ModelError(f"{path} is not a calibration file georefseg wrote ({exc})") from exc

    @classmethod
    def beside(cls, weights: Path | None) -> Calibration:
        """The calibration stored beside a weights file, or an uncalibrated one."""
        if weights is None or not weights.exists():
            return cls()
        path = calibration_path(weights)
        return cls.read(path) if path.is_file() else cls()


def calibration_path(weights: Path) -> Path:
    """Where the calibration of weights lives: ``NAME.calibration.json`` beside a file,
    ``calibration.json`` inside a model folder (Hugging Face layout)."""
    if weights.is_dir():
        return weights / "calibration.json"
    return weights.with_name(weights.stem + ".calibration.json")


def reliability(scores, correct, edges=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)) -> list[dict]:
    """How often candidates of each score band were right: the calibration table to record."""
    scores, correct = np.asarray(scores, float), np.asarray(correct, float)
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = (scores >= lo) & ((scores < hi) if hi < edges[-1] else (scores <= hi))
        if inside.any():
            rows.append({"band": f"{lo:.1f}-{hi:.1f}", "candidates": int(inside.sum()),
                         "mean_score": round(float(scores[inside].mean()), 3),
                         "right": round(float(correct[inside].mean()), 3)})
    return rows
