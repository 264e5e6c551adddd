"""The layers' fields are declared once: the merged layer's derive from a scene's."""

from __future__ import annotations

import geopandas as gpd
import pandas as pd

from georefseg.merge import empty_merged, merge_scenes
from georefseg.schema import MERGED_FIELDS, SCENE_FIELDS, dtypes, typed_layer
from tests.test_formats import layer


def test_the_merged_fields_are_a_scenes_without_rank_plus_where_and_when():
    assert set(MERGED_FIELDS) == set(SCENE_FIELDS) - {"rank"} | {"scenes", "datetime"}
    assert all(MERGED_FIELDS[k] == SCENE_FIELDS[k] for k in SCENE_FIELDS if k != "rank")  # same types, same words
    empty = empty_merged("EPSG:4326")
    assert list(empty.columns) == [*MERGED_FIELDS, "geometry"]
    assert all(empty[k].dtype == pd.Series([], dtype=t).dtype for k, t in dtypes(MERGED_FIELDS).items())


def test_scene_means_the_id_in_both_layers():
    a, b = layer(1), layer(1)
    a["scene"], b["scene"] = "tile-a", "tile-b"  # what each job wrote: its scene's id
    merged = merge_scenes([a.assign(datetime=""), b.assign(datetime="")], "EPSG:32633")
    assert len(merged) == 1 and merged["scene"].iloc[0] in {"tile-a", "tile-b"}
    assert merged["scenes"].iloc[0] == "tile-a,tile-b" and list(merged.columns) == [*MERGED_FIELDS, "geometry"]
    typed = typed_layer({}, [], "EPSG:32633", SCENE_FIELDS)
    assert isinstance(typed, gpd.GeoDataFrame) and list(typed.columns) == [*SCENE_FIELDS, "geometry"]
