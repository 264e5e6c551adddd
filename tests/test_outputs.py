"""Writing outputs without harming the user's data: GeoPackage layers, Shapefile sidecars,
empty results with their schema, working folders of dead runs, folders a failed run made."""

from __future__ import annotations

import os
import subprocess
import sys

import geopandas as gpd
import pyogrio
import pytest
from affine import Affine
from shapely.geometry import box

from georefseg import cli
from georefseg.api import segment
from georefseg.atomic import remove_stale, working_folder
from georefseg.errors import InputError, OutputError, OutputExistsError
from tests.fixtures import ColourModel, scene_with_square, write_scene

UTM = Affine(0.5, 0, 500000, 0, -0.5, 4000000)


@pytest.fixture
def scene(tmp_path):
    img = scene_with_square(300, 400, (100, 140, 50, 130))  # one red roof, 800 m²
    return write_scene(tmp_path / "utm.tif", img, "EPSG:32633", UTM)


@pytest.fixture
def project(tmp_path):
    """A user's GeoPackage with two layers of their own."""
    path = tmp_path / "project.gpkg"
    gpd.GeoDataFrame({"name": ["A1"]}, geometry=[box(0, 0, 10, 10)], crs=32633).to_file(path, layer="roads")
    gpd.GeoDataFrame({"lot": [7, 8]}, geometry=[box(0, 0, 5, 5), box(5, 5, 9, 9)], crs=32633).to_file(
        path, layer="parcels")
    return path


def _layers(path) -> dict[str, int]:
    return {str(name): len(gpd.read_file(path, layer=str(name))) for name, _ in pyogrio.list_layers(path)}


def test_a_geopackage_keeps_every_other_layer(scene, project):
    segment(scene, "red", project, model=ColourModel())  # a new layer, named for the file
    assert _layers(project) == {"roads": 1, "parcels": 2, "project": 1}
    with pytest.raises(OutputExistsError, match="already has a layer 'project'") as err:
        segment(scene, "red", project, model=ColourModel())
    assert "with overwrite, add to it with append," in str(err.value)  # Python names in Python …
    assert "with --overwrite, add to it with --append," in err.value.render("--overwrite", cli.flag)  # … flags
    segment(scene, "red", project, model=ColourModel(), overwrite=True)  # that layer only
    assert _layers(project) == {"roads": 1, "parcels": 2, "project": 1}
    segment(scene, "red", project, model=ColourModel(), append=True)
    assert _layers(project) == {"roads": 1, "parcels": 2, "project": 2}
    segment(scene, "red", project, model=ColourModel(), layer="tanks")
    assert _layers(project)["tanks"] == 1 and _layers(project)["roads"] == 1
    assert gpd.read_file(project, layer="parcels")["lot"].tolist() == [7, 8]


def test_append_and_overwrite_are_checked(scene, tmp_path):
    with pytest.raises(OutputError, match="append works with .gpkg and .shp outputs"):
        segment(scene, "red", tmp_path / "o.geojson", model=ColourModel(), append=True)
    with pytest.raises(OutputError, match="append and overwrite exclude each other"):
        segment(scene, "red", tmp_path / "o.gpkg", model=ColourModel(), append=True, overwrite=True)


def test_a_shapefile_is_its_sidecars_too(scene, tmp_path):
    stray = tmp_path / "roofs.dbf"
    stray.write_bytes(b"someone's table")
    with pytest.raises(OutputExistsError, match="roofs.dbf already exists"):
        segment(scene, "red", tmp_path / "roofs.shp", model=ColourModel())
    assert stray.read_bytes() == b"someone's table"
    (tmp_path / "roofs.qix").write_bytes(b"old index")
    segment(scene, "red", tmp_path / "roofs.shp", model=ColourModel(), overwrite=True)
    assert len(gpd.read_file(tmp_path / "roofs.shp")) == 1
    assert not (tmp_path / "roofs.qix").exists()  # an index of the old file would not match the new one
    segment(scene, "red", tmp_path / "roofs.shp", model=ColourModel(), append=True)
    assert len(gpd.read_file(tmp_path / "roofs.shp")) == 2


@pytest.mark.parametrize("ext", [".gpkg", ".geojson", ".shp", ".parquet"])
def test_empty_results_keep_the_schema(scene, tmp_path, ext):
    out = tmp_path / f"none{ext}"
    res = segment(scene, "blue", out, model=ColourModel(colour=(0.1, 0.1, 0.9)))
    assert len(res.features) == 0
    full = segment(scene, "red", tmp_path / f"full{ext}", model=ColourModel())
    assert len(full.features) == 1
    if ext == ".parquet":
        empty, one = gpd.read_parquet(out), gpd.read_parquet(tmp_path / f"full{ext}")
        assert dict(empty.dtypes.astype(str)) == dict(one.dtypes.astype(str))
        return
    info, ref = pyogrio.read_info(out), pyogrio.read_info(tmp_path / f"full{ext}")
    if ext == ".geojson":  # GeoJSON declares no schema: an empty FeatureCollection is all it can say
        assert info["features"] == 0 and ref["geometry_type"] == "Polygon"
        return
    assert info["geometry_type"] == ref["geometry_type"] == "Polygon"
    assert list(info["fields"]) == list(ref["fields"])
    assert list(info["dtypes"]) == list(ref["dtypes"])
    assert dict(zip(info["fields"], info["dtypes"], strict=True))["rank"] in ("int64", "int32")


def test_working_folders_of_dead_runs_are_removed(scene, tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that has exited: its leftovers are stale
    stale_dir = tmp_path / f".georefseg-{pid}-abc123"
    stale_dir.mkdir()
    (stale_dir / "probability_0.tif").write_bytes(b"half")
    stale_part = tmp_path / f".o.tif.georefseg-{pid}.part"
    stale_part.write_bytes(b"half")
    live = working_folder(tmp_path)  # this process's own: never touched
    mine = tmp_path / "not-ours"
    mine.mkdir()
    segment(scene, "red", tmp_path / "o.gpkg", model=ColourModel())
    assert not stale_dir.exists() and not stale_part.exists()
    assert live.is_dir() and mine.is_dir() and live.name.startswith(f".georefseg-{os.getpid()}-")
    assert remove_stale(tmp_path) == []


def test_a_failed_run_leaves_no_folder_it_made(tmp_path, real_scenes):
    out = tmp_path / "a" / "b" / "c" / "o.gpkg"
    with pytest.raises(InputError):
        segment(real_scenes / "rasterio_edge_cases" / "corrupt.tif", "x", out, prob=tmp_path / "a" / "p.tif",
                model=ColourModel())
    assert list(tmp_path.iterdir()) == []
