"""segment(): polygons at known ground coordinates, every output format, safe writing."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio
from affine import Affine
from pyproj import CRS, Transformer
from shapely.geometry import box

from georefseg.api import Segmenter, SegmentOptions, segment
from georefseg.errors import InputError, OutputError
from georefseg.formats import VECTOR_FORMATS
from georefseg.models.base import Backend
from georefseg.models.card import ModelCard
from georefseg.models.registry import BACKENDS
from tests.fixtures import ColourModel, scene_with_square, write_scene

UTM = Affine(0.5, 0, 500000, 0, -0.5, 4000000)


@pytest.fixture
def utm_scene(tmp_path):
    # a 40×80 px red roof at rows 100–140, cols 50–130: x 500025–500065, y 3999930–3999950
    img = scene_with_square(300, 400, (100, 140, 50, 130))
    return write_scene(tmp_path / "utm.tif", img, "EPSG:32633", UTM)


def test_polygon_at_known_utm_coordinates(utm_scene, tmp_path):
    res = segment(utm_scene, "the red roof", tmp_path / "out.gpkg", prob=tmp_path / "prob.tif",
                  model=ColourModel())
    gdf = gpd.read_file(tmp_path / "out.gpkg")
    assert len(gdf) == 1
    assert CRS.from_user_input(gdf.crs).to_epsg() == 32633
    geom = gdf.geometry.iloc[0]
    assert geom.equals_exact(box(500025, 3999930, 500065, 3999950), tolerance=1e-6) or \
        geom.symmetric_difference(box(500025, 3999930, 500065, 3999950)).area < 1e-6
    row = gdf.iloc[0]
    assert row["area_m2"] == pytest.approx(800.0)
    assert row["expression"] == "the red roof" and row["rank"] == 1
    assert row["scene"] == "utm" and row["model"] == "colour-fixture"
    assert 0.9 < row["score"] <= 1.0
    assert list(gdf.columns) == ["expression", "rank", "selected", "score", "evidence", "area_m2", "scene", "model",
                                 "geometry"]
    # the probability raster lines up pixel for pixel with the scene
    with rasterio.open(tmp_path / "prob.tif") as p, rasterio.open(utm_scene) as s:
        assert p.transform == s.transform and p.crs == s.crs and p.shape == s.shape
        assert p.dtypes[0] == "float32" and p.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        prob = p.read(1)
    assert prob[120, 90] > 0.99 and prob[10, 10] < 0.01
    assert res.tiles == 12 and res.tiles_skipped == 0  # 4 × 3 tiles of 128 px


def test_polygon_at_known_coordinates_in_epsg4326(tmp_path):
    t = Affine(1e-5, 0, 10.0, 0, -1e-5, 50.0)
    img = scene_with_square(200, 300, (50, 90, 100, 160))
    path = write_scene(tmp_path / "geo.tif", img, "EPSG:4326", t)
    segment(path, "red", tmp_path / "out.geojson", model=ColourModel())
    gdf = gpd.read_file(tmp_path / "out.geojson")
    (geom,) = gdf.geometry
    assert geom.bounds == pytest.approx((10.001, 49.9991, 10.0016, 49.9995), abs=1e-9)
    # area in m² checked independently: the same square in UTM 32N
    to_utm = Transformer.from_crs("EPSG:4326", "EPSG:32632", always_xy=True)
    xs, ys = to_utm.transform([10.001, 10.0016, 10.0016, 10.001], [49.9995, 49.9995, 49.9991, 49.9991])
    from shapely.geometry import Polygon

    assert gdf["area_m2"].iloc[0] == pytest.approx(Polygon(zip(xs, ys, strict=True)).area, rel=2e-3)


@pytest.mark.parametrize("fmt", VECTOR_FORMATS, ids=lambda f: f.name)
def test_output_formats(utm_scene, tmp_path, fmt):
    ext = fmt.extension
    out = tmp_path / f"tanks{ext}"
    segment(utm_scene, "red", out, model=ColourModel())
    gdf = fmt.read(out, None)
    epsg = CRS.from_user_input(gdf.crs).to_epsg()
    if fmt.crs is not None:
        assert epsg == 4326
        lon, lat = Transformer.from_crs(32633, 4326, always_xy=True).transform(500045, 3999940)
        c = gdf.geometry.iloc[0].centroid
        assert (c.x, c.y) == pytest.approx((lon, lat), abs=1e-7)
    else:
        assert epsg == 32633
        assert gdf.geometry.iloc[0].centroid.coords[0] == pytest.approx((500045, 3999940))
    assert {"expression", "score", "rank", "area_m2", "scene", "model"} <= set(gdf.columns)
    assert not any(p.name.startswith(".georefseg") for p in tmp_path.iterdir())
    if fmt.name == "geojson":
        assert pyogrio.read_info(out)["crs"] in ("EPSG:4326", "OGC:CRS84")


def test_rotated_geotransform_is_handled(tmp_path):
    rot = UTM @ Affine.rotation(30)
    img = scene_with_square(200, 200, (50, 90, 60, 140))
    path = write_scene(tmp_path / "rot.tif", img, "EPSG:32633", rot)
    segment(path, "red", tmp_path / "o.gpkg", prob=tmp_path / "p.tif", model=ColourModel())
    (geom,) = gpd.read_file(tmp_path / "o.gpkg").geometry
    corners = [rot @ (c, r) for c, r in ((60, 50), (140, 50), (140, 90), (60, 90))]
    from shapely.geometry import Polygon

    expected = Polygon(corners)
    assert geom.symmetric_difference(expected).area < 1e-6
    assert geom.area == pytest.approx(80 * 40 * 0.25)
    with rasterio.open(tmp_path / "p.tif") as p:
        assert p.transform.almost_equals(rot)


def test_nodata_tiles_are_skipped(tmp_path):
    img = scene_with_square(256, 512, (100, 140, 300, 360))
    img[:, :, :256] = 0
    path = write_scene(tmp_path / "half.tif", img, "EPSG:32633", UTM, nodata=0)
    res = segment(path, "red", prob=tmp_path / "p.tif", model=ColourModel(tile_size=128, min_overlap=32))
    assert res.tiles_skipped >= 2
    with rasterio.open(tmp_path / "p.tif") as p:
        prob = p.read(1)
    assert np.isnan(prob[:, :200]).all() and not np.isnan(prob[:, 300:]).any()
    assert len(res.features) == 1


def test_no_match_is_not_an_error(utm_scene, tmp_path):
    res = segment(utm_scene, "blue", tmp_path / "none.gpkg", model=ColourModel(colour=(0.1, 0.1, 0.9)))
    assert len(res.features) == 0
    assert len(gpd.read_file(tmp_path / "none.gpkg")) == 0


def test_existing_output_is_kept_unless_overwrite(utm_scene, tmp_path):
    out = tmp_path / "o.gpkg"
    out.write_bytes(b"precious")
    with pytest.raises(OutputError, match="already exists"):
        segment(utm_scene, "red", out, model=ColourModel())
    assert out.read_bytes() == b"precious"
    segment(utm_scene, "red", out, model=ColourModel(), overwrite=True)
    assert len(gpd.read_file(out)) == 1


def test_failure_midway_leaves_no_files(tmp_path, real_scenes):
    out_dir = tmp_path / "out"
    with pytest.raises(InputError):
        segment(real_scenes / "rasterio_edge_cases" / "corrupt.tif", "x", out_dir / "o.gpkg",
                prob=out_dir / "p.tif", model=ColourModel())
    assert not out_dir.exists() or list(out_dir.iterdir()) == []


def test_bad_arguments(utm_scene, tmp_path):
    with pytest.raises(InputError, match="empty"):
        segment(utm_scene, "   ", tmp_path / "o.gpkg", model=ColourModel())
    with pytest.raises(InputError, match="characters long"):
        segment(utm_scene, "tank " * 100, tmp_path / "o.gpkg", model=ColourModel())
    with pytest.raises(OutputError, match="unknown output format"):
        segment(utm_scene, "red", tmp_path / "o.kml", model=ColourModel())
    with pytest.raises(OutputError, match="name it"):
        segment(utm_scene, "red", tmp_path / "o.gpkg", prob=tmp_path / "p.png", model=ColourModel())
    with pytest.raises(InputError, match="threshold"):
        segment(utm_scene, "red", tmp_path / "o.gpkg", threshold=1.5, model=ColourModel())


def _counting_backend(loads: list) -> Backend:
    """A real backend entry (found by name in the table) whose loads are counted."""
    def build(card: ModelCard):
        loads.append(card.weights)
        return ColourModel()

    return Backend("counting", "ColourModel, counted", "nothing", find=lambda path: None,
                   card=lambda weights: ModelCard("counting", weights, 128, 32, 1), build=build)


def test_one_segmenter_maps_two_scenes_and_expressions_loading_the_model_once(utm_scene, tmp_path, monkeypatch):
    loads: list = []
    monkeypatch.setitem(BACKENDS, "counting", _counting_backend(loads))
    other = write_scene(tmp_path / "other.tif", scene_with_square(200, 260, (20, 60, 200, 240)), "EPSG:32633",
                        Affine(1, 0, 300000, 0, -1, 5000000))
    with Segmenter("counting", device="cpu") as seg:
        first = seg.run(utm_scene, "the red roof", tmp_path / "a.gpkg")
        second = seg.run(other, "the largest red roof", tmp_path / "b.gpkg")
    assert len(loads) == 1
    assert first.features.geometry.iloc[0].symmetric_difference(box(500025, 3999930, 500065, 3999950)).area < 1e-6
    # 40 × 40 px at 1 m: cols 200–240, rows 20–60
    assert gpd.read_file(tmp_path / "b.gpkg").geometry.iloc[0].equals(box(300200, 4999940, 300240, 4999980))
    assert second.model == first.model == "colour-fixture"


def test_options_are_frozen_hashable_and_json(tmp_path):
    opts = SegmentOptions(bands=[3, 2, 1], tile_px=256, overlap_px=32, threshold=0.4, min_area_m2=5.0)
    assert opts.bands == (3, 2, 1) and hash(opts) == hash(SegmentOptions.from_dict(opts.to_dict()))
    assert SegmentOptions.from_dict(json.loads(json.dumps(opts.to_dict()))) == opts
    with pytest.raises(AttributeError):
        opts.threshold = 0.9
    with pytest.raises(InputError, match="unknown option.*min_area.*known are bands"):
        SegmentOptions.from_dict({"min_area": 5})


@pytest.mark.parametrize("kwargs, param, words", [
    ({"threshold": 1.5}, "threshold", "threshold 1.5 must lie between 0.01 and 0.99"),
    ({"batch_size": 0}, "batch_size", "batch_size 0 must be at least 1"),
    ({"min_area_m2": -1}, "min_area_m2", "min_area_m2 -1 must be 0 or more"),
    ({"tile_px": 0}, "tile_px", "tile_px 0 is out of range"),
    ({"tile_px": 100_000}, "tile_px", "tile_px 100000 is out of range"),
    ({"tile_px": 128, "overlap_px": 64}, "overlap_px", "overlap_px 64 must be"),
])
def test_option_errors_name_the_parameter(kwargs, param, words):
    with pytest.raises(InputError) as err:
        SegmentOptions(**kwargs)
    assert isinstance(err.value, ValueError) and err.value.param == param
    assert str(err.value).startswith(words) and "--" not in str(err.value)


def test_error_classes_are_also_builtins(utm_scene, tmp_path):
    with pytest.raises(FileNotFoundError):
        segment(tmp_path / "missing.tif", "red", model=ColourModel())
    (tmp_path / "o.gpkg").write_bytes(b"x")
    with pytest.raises(FileExistsError):
        segment(utm_scene, "red", tmp_path / "o.gpkg", model=ColourModel())
    with pytest.raises(ConnectionError):
        segment(utm_scene, "red", model=ColourModel(), scheduler="not an address")
    with pytest.raises(ValueError):
        segment(utm_scene, "", model=ColourModel())
    with pytest.raises(InputError, match="checkpoint goes with a model name"):
        Segmenter(ColourModel(), checkpoint=utm_scene)


def test_the_inputs_are_never_outputs(utm_scene, tmp_path, tiny_weights):
    sidecar = utm_scene.with_name(utm_scene.name + ".aux.xml")
    sidecar.write_text("<PAMDataset/>")
    before = {p: p.read_bytes() for p in (utm_scene, sidecar, tiny_weights)}
    with pytest.raises(OutputError, match="prob .* would write over .*utm.tif, which this run reads"):
        segment(utm_scene, "red", prob=utm_scene, overwrite=True, model=ColourModel())
    with pytest.raises(OutputError, match="prob .* would write over .*utm.tif.aux.xml"):
        segment(utm_scene, "red", prob=sidecar, overwrite=True, model=ColourModel())
    with pytest.raises(OutputError, match="would write over .*tiny_test.safetensors"):
        Segmenter(tiny_weights, device="cpu").run(utm_scene, "red", tiny_weights, overwrite=True)
    assert all(p.read_bytes() == b for p, b in before.items())


def test_result_as_json_matches_the_written_layer(utm_scene, tmp_path):
    res = segment(utm_scene, "the red roof", tmp_path / "o.gpkg", model=ColourModel())
    doc = json.loads(json.dumps(res.to_dict()))
    written = gpd.read_file(tmp_path / "o.gpkg")
    assert doc["feature_count"] == len(written) == 1 and doc["crs"] == "EPSG:32633"
    (feat,) = doc["features"]
    assert feat["area_m2"] == pytest.approx(written["area_m2"].iloc[0]) == pytest.approx(800.0)
    assert feat["bounds"] == pytest.approx(list(written.geometry.iloc[0].bounds))
    assert doc["windows_read"] == doc["tiles"] == 12 and doc["options"]["threshold"] is None  # the model's own:
    assert doc["grounding"]["threshold"] == 0.5 and doc["layer"] == "o"  # a dense map's cut-off; the layer written


def test_compiled_model_gives_the_eager_result(utm_scene, tmp_path):
    eager = segment(utm_scene, "red", prob=tmp_path / "eager.tif", model=ColourModel())
    with Segmenter(ColourModel(), compile_model=True) as seg:
        compiled = seg.run(utm_scene, "red", prob=tmp_path / "compiled.tif")
    with rasterio.open(tmp_path / "eager.tif") as a, rasterio.open(tmp_path / "compiled.tif") as b:
        assert np.abs(a.read(1) - b.read(1)).max() < 1e-5
    assert compiled.features.geometry.iloc[0].equals(eager.features.geometry.iloc[0])


def test_bbox_maps_only_that_part_in_ground_coordinates(tmp_path):
    # two red roofs: rows 20–60 / cols 30–70 (west) and rows 200–240 / cols 300–340 (east)
    img = scene_with_square(300, 400, (20, 60, 30, 70))
    img[:, 200:240, 300:340] = np.array([230, 25, 25], np.uint8)[:, None, None]
    path = write_scene(tmp_path / "two.tif", img, "EPSG:32633", UTM)
    east = box(500000 + 0.5 * 300, 4000000 - 0.5 * 240, 500000 + 0.5 * 340, 4000000 - 0.5 * 200)
    # the bbox in lon/lat: the east roof's bounds grown by 5 m, reprojected
    to_geo = Transformer.from_crs(32633, 4326, always_xy=True)
    west, south, east_x, north = to_geo.transform_bounds(*east.buffer(5).bounds)
    res = segment(path, "red", tmp_path / "o.gpkg", prob=tmp_path / "p.tif", model=ColourModel(),
                  bbox=(west, south, east_x, north), bbox_crs="EPSG:4326")
    (geom,) = gpd.read_file(tmp_path / "o.gpkg").geometry
    assert geom.symmetric_difference(east).area < 1e-6 and res.features["area_m2"].iloc[0] == pytest.approx(400.0)
    with rasterio.open(tmp_path / "p.tif") as p:
        assert p.crs.to_epsg() == 32633 and p.width < 400 and p.height < 300
        col, row = ~p.transform @ (east.centroid.x, east.centroid.y)
        assert p.read(1)[int(row), int(col)] > 0.99
    assert res.scene["width"] == p.width and res.windows_read == res.tiles
    # an AOI file in its own CRS does the same
    gpd.GeoDataFrame(geometry=[east.buffer(5)], crs=32633).to_crs(4326).to_file(tmp_path / "aoi.geojson")
    again = segment(path, "red", model=ColourModel(), aoi=tmp_path / "aoi.geojson")
    assert len(again.features) == 1 and again.features.geometry.iloc[0].symmetric_difference(east).area < 1e-6
    with pytest.raises(InputError, match="^bbox does not overlap the scene: in EPSG:32633 it spans"):
        segment(path, "red", model=ColourModel(), bbox=(0, 0, 1, 1), bbox_crs="EPSG:4326")
    with pytest.raises(InputError, match="west < east"):
        segment(path, "red", model=ColourModel(), bbox=(500100, 3999900, 500000, 4000000))
