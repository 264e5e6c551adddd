"""One layer from many scenes: per-scene polygons in one CRS, an object seen twice made one.

Where scenes overlap, an object in the overlap is found in both (whole, or cut by one scene's
edge). Two polygons of the same expression from different scenes that share ground (more than
:data:`SHARED` of the smaller one's area) are the same object: they become one feature, the
union of the pieces, with the best piece's score, scene and time, and ``scenes`` listing every
scene that saw it. Polygons of one scene are never merged with each other: the engine already
separated them. Merging happens in ground coordinates (the output CRS), so scenes in different
projections merge as well.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS

from georefseg.groups import connected_groups
from georefseg.schema import MERGED_FIELDS, dtypes, typed_layer
from georefseg.vectorize import ground_area_m2

SHARED = 0.05  # share of the smaller polygon's area two pieces must have in common to be one object
FIELDS = dtypes(MERGED_FIELDS)
WGS84 = CRS.from_epsg(4326)


def _groups(frame: gpd.GeoDataFrame) -> list[list[int]]:
    """Positions of ``frame`` that are one object: connected through shared ground across scenes."""
    geoms, scenes = frame.geometry.values, frame["scene"].to_numpy()

    def one_object(i: int, j: int) -> bool:
        if scenes[i] == scenes[j]:
            return False  # the engine already separated the objects of one scene
        return shapely.intersection(geoms[i], geoms[j]).area > SHARED * min(geoms[i].area, geoms[j].area)

    return connected_groups(geoms, one_object)


def empty_merged(crs) -> gpd.GeoDataFrame:
    """The merged layer's schema, with no rows."""
    return typed_layer({}, [], crs, MERGED_FIELDS)


def merge_scenes(layers: list[gpd.GeoDataFrame], crs) -> gpd.GeoDataFrame:
    """Merge per-scene layers (:data:`~georefseg.schema.SCENE_FIELDS`, plus ``datetime``) into
    one layer in ``crs``, with :data:`~georefseg.schema.MERGED_FIELDS`.

    Parameters
    ----------
    layers
        One GeoDataFrame per finished job, each in its scene's CRS.
    crs
        The merged layer's CRS (any pyproj input, e.g. ``"EPSG:4326"``).

    Returns
    -------
    GeoDataFrame
        :data:`~georefseg.schema.MERGED_FIELDS` (area_m2 geodesic for merged objects); sorted by
        expression, then score (best first), then scene, so that the same inputs give the same
        rows in the same order.
    """
    crs = CRS.from_user_input(crs)
    frames = [layer.to_crs(crs) for layer in layers if len(layer)]
    if not frames:
        return empty_merged(crs)
    both = pd.concat(frames, ignore_index=True)
    both = gpd.GeoDataFrame(both, geometry="geometry", crs=crs)
    both["geometry"] = shapely.make_valid(both.geometry.values)
    rows = []
    for _, frame in both.groupby("expression", sort=True):
        frame = frame.reset_index(drop=True)
        for group in _groups(frame):
            part = frame.iloc[group]
            best = part.sort_values(["score", "scene"], ascending=[False, True]).iloc[0]
            row = {k: best.get(k) for k in FIELDS}
            row["scenes"] = ",".join(sorted(set(part["scene"])))
            if len(group) == 1:
                row["geometry"] = best.geometry
            else:
                union = shapely.union_all(part.geometry.values)
                row["geometry"] = union
                row["area_m2"] = round(ground_area_m2(gpd.GeoSeries([union], crs=crs).to_crs(WGS84).iloc[0], WGS84), 2)
                row["selected"] = bool(np.any(part["selected"].to_numpy()))
            rows.append(row)
    merged = gpd.GeoDataFrame(rows, geometry="geometry", crs=crs)
    merged = merged.sort_values(["expression", "score", "scene"], ascending=[True, False, True], ignore_index=True)
    for name, dtype in FIELDS.items():
        merged[name] = merged[name].astype(dtype) if dtype != "str" else merged[name].fillna("").astype(str)
    return merged[[*FIELDS, "geometry"]]
