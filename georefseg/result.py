"""What a run produced: :class:`SegmentResult`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from georefseg.errors import InputError, render
from georefseg.options import SegmentOptions

if TYPE_CHECKING:
    import geopandas as gpd
    import xarray


@dataclass
class SegmentResult:
    """What a run produced, with the numbers a user or a benchmark wants to see."""

    features: gpd.GeoDataFrame
    output: Path | None
    probability: Path | None
    scene: dict
    model: str
    tiles: int
    tiles_skipped: int
    windows_read: int  # tile windows read from the scene: once per tile, whatever the phrases
    options: SegmentOptions
    layer: str | None = None  # the layer written in a multi-layer output (GeoPackage); None for other formats
    notes: list[str] = field(default_factory=list)  # what a person should know, as templates ({min_area_m2})
    message_template: str | None = None  # the message, naming parameters as {name} (errors.render)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage; model_s inside the model
    grounding: dict = field(default_factory=dict)  # how the expression was split; anchors found

    @property
    def efficiency(self) -> float:
        """Model time ÷ end-to-end time: how well reading, blending and writing hide."""
        total = self.timings.get("total_s", 0.0)
        return self.timings.get("model_s", 0.0) / total if total else 0.0

    @property
    def message(self) -> str | None:
        """Why nothing (or fewer than asked) was written, or which words could not be judged."""
        return self.grounding.get("message")

    def probability_array(self) -> xarray.DataArray:
        """The probability raster as a lazy, georeferenced xarray (y × x, float32, NaN where the
        scene had no data): rioxarray's ``.rio`` gives its CRS and transform, and no pixel is
        read until values are asked for, so it serves scenes of any size.

        Raises
        ------
        InputError
            The run wrote no probability raster (pass ``prob``).
        """
        if self.probability is None:
            raise InputError("this run wrote no probability raster: run it with {param}=PATH.tif", param="prob")
        import rioxarray

        return rioxarray.open_rasterio(self.probability, masked=True).squeeze("band", drop=True)

    def to_dict(self, listed: int = 100) -> dict:
        """The result as plain JSON types: what ``segment --json`` prints.

        ``features`` lists the best ``listed`` with rank, selected, scores, area (m²), centroid
        and bounds in the scene's CRS; ``feature_count`` counts them all.
        """
        feats = []
        for _, row in self.features.head(listed).iterrows():
            c = row.geometry.centroid
            feats.append({"rank": int(row["rank"]), "selected": bool(row["selected"]), "score": float(row["score"]),
                          "evidence": float(row["evidence"]), "area_m2": float(row["area_m2"]),
                          "centroid": [c.x, c.y], "bounds": list(row.geometry.bounds)})
        return {"output": None if self.output is None else str(self.output),
                "probability": None if self.probability is None else str(self.probability), "layer": self.layer,
                "notes": [render(n) for n in self.notes],
                "crs": self.scene.get("crs"), "feature_count": len(self.features), "features": feats,
                "grounding": self.grounding, "model": self.model, "tiles": self.tiles,
                "tiles_skipped": self.tiles_skipped, "windows_read": self.windows_read,
                "options": self.options.to_dict(), "scene": self.scene, "timings": self.timings,
                "efficiency": round(self.efficiency, 3)}
