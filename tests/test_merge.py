"""Merging scenes in ground coordinates: an object seen by two overlapping scenes is one feature."""

from __future__ import annotations

import geopandas as gpd
import pytest
from pyproj import Geod
from shapely.geometry import box

from georefseg.merge import merge_scenes


def layer(scene: str, geoms, scores, crs="EPSG:32633", expression="the tanks") -> gpd.GeoDataFrame:
    n = len(geoms)
    return gpd.GeoDataFrame({"expression": [expression] * n, "rank": list(range(1, n + 1)), "selected": [True] * n,
                             "score": scores, "evidence": scores, "area_m2": [g.area for g in geoms],
                             "scene": [scene] * n, "model": ["tiny"] * n, "datetime": [f"{scene}-time"] * n},
                            geometry=geoms, crs=crs)


def test_an_object_cut_by_a_scene_edge_is_one_feature_with_both_scenes():
    x0, y0 = 455000, 4989000
    tank = box(x0, y0, x0 + 40, y0 + 40)
    left = layer("a", [box(x0, y0, x0 + 25, y0 + 40), box(x0 - 200, y0, x0 - 180, y0 + 20)], [0.7, 0.6])
    right = layer("b", [box(x0 + 10, y0, x0 + 40, y0 + 40)], [0.8])  # the scenes overlap from x0+10 to x0+25
    merged = merge_scenes([left, right], "EPSG:4326")
    assert merged.crs.to_epsg() == 4326 and len(merged) == 2
    tank_row = merged.iloc[0]
    assert tank_row["scenes"] == "a,b" and tank_row["scene"] == "b" and tank_row["score"] == 0.8
    assert tank_row["datetime"] == "b-time"
    assert tank_row.geometry.area > 0
    geodesic = abs(Geod(ellps="WGS84").geometry_area_perimeter(tank_row.geometry)[0])
    assert tank_row["area_m2"] == pytest.approx(geodesic, abs=0.01)
    assert tank_row["area_m2"] == pytest.approx(tank.area, rel=2e-3)  # the whole tank, not a half (UTM scale)
    back = gpd.GeoSeries([tank_row.geometry], crs=4326).to_crs(32633).iloc[0]
    assert back.symmetric_difference(tank).area < 0.5  # where it is on the ground, to the metre
    assert merged.iloc[1]["scenes"] == "a"


def test_objects_of_one_scene_and_of_different_expressions_stay_apart():
    x0, y0 = 300000, 5000000
    touching = [box(x0, y0, x0 + 10, y0 + 10), box(x0 + 5, y0, x0 + 15, y0 + 10)]
    same_scene = layer("a", touching, [0.9, 0.8])
    other_words = layer("b", [box(x0, y0, x0 + 10, y0 + 10)], [0.7], expression="the ships")
    merged = merge_scenes([same_scene, other_words], "EPSG:32633")
    assert len(merged) == 3 and list(merged["expression"]) == ["the ships", "the tanks", "the tanks"]


def test_scenes_in_different_projections_merge_on_the_ground():
    utm = box(455000, 4989000, 455040, 4989040)
    mercator = gpd.GeoSeries([utm], crs=32633).to_crs(3857).iloc[0]
    merged = merge_scenes([layer("a", [utm], [0.5]), layer("b", [mercator], [0.6], crs="EPSG:3857")], "EPSG:32633")
    assert len(merged) == 1 and merged.iloc[0]["scenes"] == "a,b"


def test_nothing_to_merge_is_an_empty_layer_with_the_fields():
    merged = merge_scenes([layer("a", [], [])], "EPSG:4326")
    assert len(merged) == 0 and {"scene", "scenes", "datetime", "expression", "score", "area_m2"} <= set(merged)
