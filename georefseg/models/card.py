"""Model cards: what the engine knows of a set of weights.

A :class:`ModelCard` is read from the weights' headers (a safetensors file's metadata, a
Hugging Face folder's configs, the file beside them that holds the calibration) without
building the model. It is the one source of a model's tiling, output stride, cut-off and
calibration: :meth:`Backend.load <georefseg.models.base.Backend.load>` builds the model from it, the model carries it
(:attr:`ReferringSegmenter.card <georefseg.models.base.ReferringSegmenter.card>`) and the
Segmenter reads it, so no number is declared twice.

Imports no deep-learning library.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from georefseg.atomic import write_text
from georefseg.calibration import Calibration
from georefseg.errors import ModelError

DENSE_THRESHOLD = 0.5  # the probability from which a pixel of a dense map belongs to an object


def min_object_px(output_stride: int) -> int:
    """The smallest object a model of this output stride can draw, in pixels: two output cells
    across, (2 × stride)²; smaller regions are fragments of its upsampling, not objects."""
    return (2 * output_stride) ** 2


@dataclass(frozen=True)
class ModelCard:
    """What the engine needs to know of one set of weights.

    Attributes
    ----------
    family : str
        The backend (``tiny``, ``rmsin``, ``clipseg``, ``sam3``).
    weights : Path or None
        The weights file or folder (``None``: a model built in memory).
    tile_size : int
        Input side in pixels the weights were made for.
    min_overlap : int
        Pixels of context each side needs for seam-free tiles.
    output_stride : int
        Input pixels per cell of the finest map the model predicts before upsampling.
    threshold : float
        The default ``threshold``: the probability from which a pixel (dense models) or an
        object (models that separate instances) counts.
    instances : bool
        Whether the model separates objects itself (two touching buildings as two): the engine
        then takes its objects from the model's instances, not from the blended map.
    calibration : Calibration
        How raw scores map to chances (uncalibrated when none is stored beside the weights).
    vocabulary : tuple of str or None
        The object words the weights were trained on ("storage tank", "ship", …), stored beside
        them (``NAME.vocabulary.json``); ``None``: an open vocabulary (any noun phrase; the
        model's own scores decide), or weights that do not say.
    metrics : str
        How the family's authors count their published metrics (a key of
        :data:`georefseg.metrics.DEFINITIONS`), so that ``evaluate`` reproduces their table.
    """

    family: str
    weights: Path | None
    tile_size: int
    min_overlap: int
    output_stride: int
    threshold: float = DENSE_THRESHOLD
    instances: bool = False
    calibration: Calibration = field(default_factory=Calibration)
    vocabulary: tuple[str, ...] | None = None
    metrics: str = "rrsis"

    def unknown_word(self, subject: str) -> str | None:
        """The object word of ``subject`` (its last word: "the white storage tank" → "tank") when
        the weights cannot know it, i.e. no word of their vocabulary ends so; None when they can,
        or when the vocabulary is open."""
        if self.vocabulary is None:
            return None
        words = [w for w in re.findall(r"[a-z]+", subject.lower()) if w not in ("the", "a", "an")]
        if not words:
            return subject.strip() or "(nothing)"
        return None if words[-1] in {v.split()[-1] for v in self.vocabulary} else words[-1]

    @property
    def min_object_px(self) -> int:
        """The smallest object the model can draw, in pixels (:func:`min_object_px`)."""
        return min_object_px(self.output_stride)

    @property
    def tiling(self) -> tuple[int, int]:
        """(tile size, minimum overlap) in pixels."""
        return self.tile_size, self.min_overlap

    def with_calibration(self, calibration: Calibration) -> ModelCard:
        return replace(self, calibration=calibration)

    def to_dict(self) -> dict:
        return {"family": self.family, "weights": None if self.weights is None else str(self.weights),
                "tile_size": self.tile_size, "min_overlap": self.min_overlap, "output_stride": self.output_stride,
                "min_object_px": self.min_object_px, "threshold": self.threshold, "instances": self.instances,
                "calibration": self.calibration.source,
                "vocabulary": None if self.vocabulary is None else list(self.vocabulary), "metrics": self.metrics}


def vocabulary_path(weights: Path) -> Path:
    """Where the vocabulary of a weights file lives: ``NAME.vocabulary.json`` beside it."""
    return weights.with_name(weights.stem + ".vocabulary.json")


def read_vocabulary(weights: Path | None) -> tuple[str, ...] | None:
    """The object words stored beside ``weights`` (None when there is no such file: an open
    vocabulary, or weights that do not say)."""
    path = None if weights is None or not weights.is_file() else vocabulary_path(weights)
    if path is None or not path.is_file():
        return None
    try:
        return tuple(str(w) for w in json.loads(path.read_text(encoding="utf-8"))["nouns"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{path} is not a vocabulary file georefseg wrote ({exc})") from exc


def write_vocabulary(weights: Path, nouns, source: str) -> Path:
    """Store the object words ``weights`` were trained on beside them (sorted, once each)."""
    path = vocabulary_path(weights)
    write_text(path, json.dumps({"nouns": sorted(set(nouns)), "source": source}, indent=1) + "\n")
    return path
