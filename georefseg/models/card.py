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

from dataclasses import dataclass, field, replace
from pathlib import Path

from georefseg.calibration import Calibration

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
    """

    family: str
    weights: Path | None
    tile_size: int
    min_overlap: int
    output_stride: int
    threshold: float = DENSE_THRESHOLD
    instances: bool = False
    calibration: Calibration = field(default_factory=Calibration)

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
                "calibration": self.calibration.source}
