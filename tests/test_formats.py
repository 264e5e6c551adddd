"""The table of vector formats: every row writes and reads back, and the CLI derives from it."""

from __future__ import annotations

import json

import geopandas as gpd
import pytest
from pyproj import CRS
from shapely.geometry import box

from georefseg import cli
from georefseg.errors import OutputError
from georefseg.formats import VECTOR_FORMATS, format_named, format_of, listed
from georefseg.outputs import write_vector
from georefseg.schema import SCENE_FIELDS, typed_layer


def layer(n: int) -> gpd.GeoDataFrame:
    """n squares of 10 m × 10 m in UTM 33N, with the fields every output has."""
    rows = {"expression": ["the tank"] * n, "rank": list(range(1, n + 1)), "selected": [True] * n,
            "score": [0.9] * n, "evidence": [0.8] * n, "area_m2": [100.0] * n, "scene": ["a"] * n,
            "model": ["tiny"] * n}
    return typed_layer(rows, [box(500000 + 20 * i, 4000000, 500010 + 20 * i, 4000010) for i in range(n)],
                       "EPSG:32633", SCENE_FIELDS)


@pytest.mark.parametrize("fmt", VECTOR_FORMATS, ids=lambda f: f.name)
def test_every_format_writes_and_reads_back_in_place(fmt, tmp_path):
    path = tmp_path / f"out{fmt.extension}"
    write_vector(layer(2), path)
    back = fmt.read(path, None)
    assert len(back) == 2 and set(SCENE_FIELDS) <= set(back.columns)
    assert CRS.from_user_input(back.crs) == CRS.from_user_input(fmt.crs or "EPSG:32633")
    area = back.to_crs("EPSG:32633").geometry.area
    # 10 m × 10 m on the ground in any CRS (GeoJSON keeps 7 decimals of a degree: about 1 cm)
    assert area.tolist() == pytest.approx([100.0, 100.0], rel=1e-6 if fmt.crs is None else 2e-3)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in fmt.parts(path) if p.exists())
    empty = tmp_path / f"empty{fmt.extension}"
    write_vector(layer(0), empty)
    assert len(fmt.read(empty, None)) == 0


def test_the_table_is_what_the_engine_says_and_its_flags_offer(capsys):
    assert cli.run(["formats", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [f.to_dict() for f in VECTOR_FORMATS]
    assert VECTOR_FORMATS[0].name == "gpkg"  # the default first: the plugin's temporary outputs
    cli.run(["segment", "--help"])
    segment_help = " ".join(capsys.readouterr().out.split())
    cli.run(["batch", "--help"])
    batch_help = " ".join(capsys.readouterr().out.split())
    for fmt in VECTOR_FORMATS:
        assert fmt.extension in segment_help and fmt.name in batch_help


def test_lookups_name_the_parameter_and_every_choice():
    assert format_of("a/b.GeoJSON").name == "geojson" and format_of("x.json").name == "geojson"
    with pytest.raises(OutputError, match=r"^output x.kml: unknown output format '.kml'; use .gpkg, .geojson, "
                                          r"\.shp or \.parquet$"):
        format_of("x.kml")
    with pytest.raises(OutputError, match=r"^format 'kml': use gpkg, geojson, shp or parquet$"):
        format_named("kml")
    assert listed("label") == "GeoPackage, GeoJSON, Shapefile or GeoParquet"
