"""The fields of the polygon layers georefseg writes, declared once.

:data:`SCENE_FIELDS` are those of every ``segment`` output (and of each batch job's); the
merged layer of a batch (:data:`MERGED_FIELDS`) is derived from them. ``scene`` means one
thing everywhere: the scene's id — the STAC item's id for a scene from a STAC catalogue, else
the file's stem.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import geopandas as gpd

    from georefseg.grounding import Grounded

# name → (pandas dtype, meaning)
SCENE_FIELDS: dict[str, tuple[str, str]] = {
    "expression": ("str", "the expression, white space folded"),
    "rank": ("int64", "1 = the best candidate"),
    "selected": ("bool", "whether the expression refers to it"),
    "score": ("float64", "0–1; calibrated where the model's weights carry a calibration"),
    "evidence": ("float64", "0–1: how surely the model sees the subject in the polygon"),
    "area_m2": ("float64", "ground area in m² (geodesic for geographic CRSs)"),
    "scene": ("str", "the scene's id: the STAC item's id, else the file's stem"),
    "model": ("str", "the model family that found it"),
}
# The merged layer: one feature per object over all scenes, so no per-scene rank; which scenes saw it, and when.
_MERGED_EXTRA: dict[str, tuple[str, str]] = {
    "scenes": ("str", "the ids of every scene that saw the object, comma-separated, sorted"),
    "datetime": ("str", "ISO 8601 time of the scene that gave the best piece (from STAC; else empty)"),
}
MERGED_FIELDS: dict[str, tuple[str, str]] = {
    **{k: v for k, v in SCENE_FIELDS.items() if k != "rank"}, **_MERGED_EXTRA}


def dtypes(fields: dict[str, tuple[str, str]]) -> dict[str, str]:
    """name → pandas dtype."""
    return {name: dtype for name, (dtype, _) in fields.items()}


def typed_layer(columns: dict[str, list], geometries: list, crs, fields: dict[str, tuple[str, str]]
                ) -> gpd.GeoDataFrame:
    """A GeoDataFrame with exactly ``fields``, typed, in their order: an empty layer then has the
    same schema as a full one."""
    import geopandas as gpd
    import pandas as pd

    return gpd.GeoDataFrame({name: pd.Series(columns.get(name, []), dtype=dtype)
                             for name, dtype in dtypes(fields).items()},
                            geometry=gpd.GeoSeries(geometries, crs=crs))


def scene_layer(rows: list[tuple[int, Grounded, bool]], expression: str, scene_id: str, model: str,
                crs) -> gpd.GeoDataFrame:
    """A ``segment`` output from (rank, candidate, selected) rows, with :data:`SCENE_FIELDS`."""
    n = len(rows)
    columns = {"expression": [expression] * n, "rank": [r for r, _, _ in rows],
               "selected": [s for _, _, s in rows], "score": [round(g.score, 4) for _, g, _ in rows],
               "evidence": [round(g.parts["evidence"], 4) for _, g, _ in rows],
               "area_m2": [round(g.candidate.area_m2, 2) for _, g, _ in rows],
               "scene": [scene_id] * n, "model": [model] * n}
    return typed_layer(columns, [g.candidate.geometry for _, g, _ in rows], crs, SCENE_FIELDS)
