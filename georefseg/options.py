"""How scenes are tiled, thresholded and vectorised: :class:`SegmentOptions`, one value for many runs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from georefseg.errors import InputError

# The probabilities ``threshold`` may take; the QGIS plugin's panel and Processing offer the same.
THRESHOLD_RANGE = (0.01, 0.99)


@dataclass(frozen=True)
class SegmentOptions:
    """How scenes are tiled, thresholded and vectorised: one value serves many runs.

    Frozen, hashable and JSON-serialisable (:meth:`to_dict` / :meth:`from_dict`), so that
    batch mapping can key finished jobs on it.

    Parameters
    ----------
    bands
        1-based band numbers the model sees (1 or 3); ``None`` chooses from the colour
        interpretation.
    tile_px
        Tile side in pixels; ``None`` uses the model's.
    overlap_px
        Pixels neighbouring tiles share; ``None`` uses the model's.
    batch_size
        Tiles per model call; ``None`` is 1 on a CPU (larger batches are slower there) and 8
        on a GPU.
    threshold
        Probability (:data:`THRESHOLD_RANGE`) from which a pixel belongs to an object; for a
        model that separates objects itself (SAM 3), from which one of its objects is kept.
        ``None``: the model's (its card's; 0.5 for dense maps, 0.3 for SAM 3).
    min_area_m2
        Objects smaller than this ground area in m² are not written; ``None``: the model's
        smallest object (two output cells across, see
        :func:`~georefseg.models.card.min_object_px`) at the scene's pixel size.
    simplify_m
        Outlines are simplified to this tolerance in metres on the ground (0: exact pixel edges).
    candidates
        Write every candidate, best first, with a ``selected`` field saying which the
        expression refers to; by default only those are written.
    max_features
        Write at most this many features (``None``: no cap).
    """

    bands: tuple[int, ...] | None = None
    tile_px: int | None = None
    overlap_px: int | None = None
    batch_size: int | None = None
    threshold: float | None = None
    min_area_m2: float | None = None
    simplify_m: float = 0.0
    candidates: bool = False
    max_features: int | None = None

    def __post_init__(self) -> None:
        if self.bands is not None:
            object.__setattr__(self, "bands", tuple(int(b) for b in self.bands) or None)
        from georefseg.tiling import check_tiling  # here: the CLI reads this module without GDAL

        if self.tile_px is not None:  # with the overlap given, or the model's: checked with the model's too
            check_tiling(self.tile_px, 0 if self.overlap_px is None else self.overlap_px)
        elif self.overlap_px is not None and self.overlap_px < 0:  # the tile is the model's: checked there
            raise InputError(f"{{param}} {self.overlap_px} must be at least 0", param="overlap_px")
        low, high = THRESHOLD_RANGE
        if self.threshold is not None and not low <= self.threshold <= high:
            raise InputError(f"{{param}} {self.threshold} must lie between {low} and {high} (a probability)",
                             param="threshold")
        for name in ("batch_size", "max_features"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise InputError(f"{{param}} {getattr(self, name)} must be at least 1", param=name)
        for name in ("min_area_m2", "simplify_m"):
            if (getattr(self, name) or 0) < 0:
                raise InputError(f"{{param}} {getattr(self, name)} must be 0 or more (a ground size)", param=name)

    def to_dict(self) -> dict:
        """Plain JSON types (bands as a list)."""
        d = asdict(self)
        d["bands"] = None if self.bands is None else list(self.bands)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> SegmentOptions:
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise InputError(f"unknown option(s) {', '.join(sorted(unknown))}: known are "
                             f"{', '.join(f.name for f in fields(cls))}")
        return cls(**data)
