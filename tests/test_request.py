"""A run's request is checked once: what it holds, and that nothing downstream derives it again."""

from __future__ import annotations

import geopandas as gpd
import pytest
from affine import Affine
from shapely.geometry import box

import georefseg.request
import georefseg.segmenter
from georefseg import cli
from georefseg.errors import InputError, OutputError
from georefseg.models.base import Backend
from georefseg.models.card import ModelCard
from georefseg.models.registry import BACKENDS
from georefseg.raster import Scene
from georefseg.request import Request, check_request
from georefseg.segmenter import Segmenter
from tests.fixtures import ColourModel, scene_with_square, write_scene

UTM = Affine(0.5, 0, 500000, 0, -0.5, 4000000)


@pytest.fixture
def utm_scene(tmp_path):
    # a 40×80 px red roof at rows 100–140, cols 50–130: x 500025–500065, y 3999930–3999950
    return write_scene(tmp_path / "utm.tif", scene_with_square(300, 400, (100, 140, 50, 130)), "EPSG:32633", UTM)


def test_a_request_holds_the_reading_the_window_and_the_targets(utm_scene, tmp_path):
    aoi = tmp_path / "aoi.geojson"
    gpd.GeoDataFrame(geometry=[box(500010, 3999900, 500100, 3999960)], crs=32633).to_crs(4326).to_file(aoi)
    req = check_request(utm_scene, "  the   largest red roof ", tmp_path / "out" / "o.gpkg", prob=tmp_path / "p.tif",
                        aoi=aoi, layer="roofs")
    assert isinstance(req, Request) and req.expression == "the largest red roof" and req.scene_id == "utm"
    assert "red roof" in req.query.subject and req.query.order is not None  # parsed here, once
    col, row, width, height = req.window  # the AOI's extent in the scene's pixels (0.5 m), densified from 4326
    assert abs(col - 20) <= 1 and abs(row - 80) <= 1 and abs(width - 180) <= 2 and abs(height - 120) <= 2
    assert req.written_layer == "roofs"
    assert req.outputs == [tmp_path / "out" / "o.gpkg", tmp_path / "p.tif"] and not (tmp_path / "out").exists()
    assert utm_scene.resolve() in req.inputs
    # Named as the caller named it, with both extents in the scene's CRS (and the AOI's own, as given).
    words = r"^aoi does not overlap the scene: in EPSG:32633 it spans .* \(0, 0, 1, 1 in EPSG:4326\), the scene "
    with pytest.raises(InputError, match=words + r"500000.0, 3999850.0, 500200.0, 4000000.0 \(west, south"):
        far = tmp_path / "far.geojson"
        gpd.GeoDataFrame(geometry=[box(0, 0, 1, 1)], crs=4326).to_file(far)
        check_request(utm_scene, "x", aoi=far)


def test_a_cli_run_opens_the_header_and_reads_the_expression_once(utm_scene, tmp_path, monkeypatch, capsys):
    """check_request opens the header and parses the expression; the run then opens the scene
    once to read its pixels, and derives nothing of the request again."""
    opened, parsed = [], []

    class CountedScene(Scene):
        def __init__(self, *args, **kwargs):
            opened.append(args[0])
            super().__init__(*args, **kwargs)

    def counted_parse(text, *args, **kwargs):
        parsed.append(text)
        return parse(text, *args, **kwargs)

    parse = georefseg.request.parse_expression
    monkeypatch.setattr(georefseg.request, "Scene", CountedScene)
    monkeypatch.setattr(georefseg.segmenter, "Scene", CountedScene)
    monkeypatch.setattr(georefseg.request, "parse_expression", counted_parse)
    monkeypatch.setattr(georefseg.segmenter, "Segmenter", lambda *a, **k: Segmenter(ColourModel()))
    aoi = tmp_path / "aoi.gpkg"
    gpd.GeoDataFrame(geometry=[box(500000, 3999900, 500100, 4000000)], crs=32633).to_file(aoi)
    code = cli.run(["segment", str(utm_scene), "the red roof", "-o", str(tmp_path / "o.gpkg"), "--aoi", str(aoi),
                    "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert opened == [str(utm_scene)] * 2 and parsed == ["the red roof"]
    assert len(gpd.read_file(tmp_path / "o.gpkg")) == 1


def test_a_request_fits_only_the_segmenter_it_was_checked_for(utm_scene, tmp_path, monkeypatch):
    with pytest.raises(InputError, match=r"^the request was checked with bands \(3, 2, 1\), but this Segmenter"):
        Segmenter(ColourModel()).execute(check_request(utm_scene, "red", bands=(3, 2, 1)))
    weights = tmp_path / "weights.tif"  # a backend whose weights could pass for an output's name
    weights.write_bytes(b"weights")
    monkeypatch.setitem(BACKENDS, "any-file", Backend("any-file", "ColourModel", "a file", find=lambda path: path,
                                                      card=lambda w: ModelCard("any-file", w, 128, 32, 1),
                                                      build=lambda card: ColourModel()))
    request = check_request(utm_scene, "red", prob=weights, overwrite=True)  # checked before the model is known
    with Segmenter("any-file", weights) as seg, \
            pytest.raises(OutputError, match="^prob .*weights.tif would write over .*, which this run reads"):
        seg.execute(request)
    assert weights.read_bytes() == b"weights"
