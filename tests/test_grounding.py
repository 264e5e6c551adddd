"""Scene-level grounding: parsing expressions, and choosing among candidates over a whole scene."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine
from fixtures import WordColourModel, write_scene
from shapely.geometry import box

from georefseg.api import segment
from georefseg.grounding import parse_expression, rank_candidates
from georefseg.vectorize import Candidate

UTM = Affine(0.5, 0, 500000, 0, -0.5, 4000000)
# Red roofs (rows, cols) and a blue river (cols 300–320, all rows) in a 640 × 400 px scene:
# 128 px tiles, so the roofs, the river and the scene's corners lie in different tiles.
ROOF_NW = (20, 40, 20, 40)  # 10 × 10 m, the only roof west of the river
ROOF_RIVER = (200, 226, 330, 356)  # 13 × 13 m, 5 m east of the river
ROOF_SE = (300, 340, 560, 600)  # 20 × 20 m, the largest, far from the river


def _map_box(rows_cols: tuple[int, int, int, int]):
    r0, r1, c0, c1 = rows_cols
    return box(500000 + 0.5 * c0, 4000000 - 0.5 * r1, 500000 + 0.5 * c1, 4000000 - 0.5 * r0)


@pytest.fixture(scope="module")
def river_scene(tmp_path_factory):
    img = np.empty((3, 400, 640), np.uint8)
    img[:] = np.array([90, 120, 80], np.uint8)[:, None, None]
    img[:, :, 300:320] = np.array([25, 50, 230], np.uint8)[:, None, None]
    for r0, r1, c0, c1 in (ROOF_NW, ROOF_RIVER, ROOF_SE):
        img[:, r0:r1, c0:c1] = np.array([230, 25, 25], np.uint8)[:, None, None]
    return write_scene(tmp_path_factory.mktemp("grounding") / "river.tif", img, "EPSG:32633", UTM)


@pytest.mark.parametrize("text, subject, size, region, extreme, relations", [
    ("the large storage tank near the river", "the storage tank", "largest", (), None, [("near", "the river")]),
    ("the white tank in the upper left", "the white tank", None, ((1, 0), (0, 0)), None, []),
    ("the ship to the left of the red building", "the ship", None, (), None, [("west", "the red building")]),
    ("the plane that is next to the road and above the hangar", "the plane", None, (), None,
     [("near", "the road"), ("north", "the hangar")]),
    ("the northernmost vehicle", "the vehicle", None, (), (1, 0), []),
    ("the smallest boat in the lake", "the boat", "smallest", (), None, [("within", "the lake")]),
    ("the building in the north-east corner of the image", "the building", None, ((1, 0), (0, 1)), None, []),
    ("the yellow house on the right that is beside the water", "the yellow house", None, ((0, 1),), None,
     [("near", "the water")]),
    ("the house in the centre", "the house", None, ((-1, -1),), None, []),
    ("a red car", "a red car", None, (), None, []),
])
def test_parse_expression(text, subject, size, region, extreme, relations):
    q = parse_expression(text)
    assert q.subject == subject and q.size == size and q.region == region and q.extreme == extreme
    assert [(r.kind, r.anchor.subject) for r in q.relations] == relations
    assert q.scene_level == bool(size or region or extreme or relations)


def test_anchor_words_are_parsed_too():
    q = parse_expression("the ship left of the largest building")
    (rel,) = q.relations
    assert rel.anchor.subject == "the building" and rel.anchor.size == "largest"
    assert q.phrases() == ["the ship", "the building"]
    assert parse_expression("the tank near the river").relations[0].anchor.is_stuff
    assert not parse_expression("the tank near the red building").relations[0].anchor.is_stuff


def _cand(x0, y0, x1, y1, score=0.9) -> Candidate:
    g = box(x0, y0, x1, y1)
    return Candidate(g, score, score, int(g.area), g.area)


def test_smallest_skips_fragments_and_extremes_use_the_scene_frame():
    cands = [_cand(0, 0, 20, 20), _cand(50, 50, 60, 60), _cand(90, 90, 91, 92)]  # 400, 100, 2 px
    (top,) = rank_candidates(cands, parse_expression("the smallest tank"), size=(100, 100), top=1)
    assert top.candidate is cands[1]
    # pixel frame from a north-up UTM transform: the northernmost has the largest y on the map
    to_px = ~Affine(1, 0, 1000, 0, -1, 2000)
    on_map = [_cand(1010, 1900, 1020, 1910), _cand(1060, 1980, 1070, 1990), _cand(1050, 1950, 1060, 1960)]
    ranked = rank_candidates(on_map, parse_expression("the northernmost tank"), to_pixels=to_px, size=(100, 100))
    assert ranked[0].candidate is on_map[1] and ranked[-1].candidate is on_map[0]


def test_an_object_is_not_its_own_anchor():
    tanks = [_cand(0, 0, 10, 10), _cand(14, 0, 24, 10), _cand(80, 80, 90, 90)]
    anchor = [_cand(0, 0, 10, 10)]  # "the white tank" is the first one
    q = parse_expression("the tank next to the white tank")
    ranked = rank_candidates(tanks, q, {"the white tank": anchor}, size=(100, 100))
    assert ranked[0].candidate is tanks[1]
    assert ranked[-1].score == 0.0 and ranked[-1].candidate is tanks[0]


def _top(path, expression, tmp_path, **kw):
    result = segment(path, expression, tmp_path / "out.gpkg", model=WordColourModel(), overwrite=True, **kw)
    written = gpd.read_file(tmp_path / "out.gpkg")
    assert written.crs.to_epsg() == 32633 and list(written["rank"]) == list(range(1, len(written) + 1))
    top = written.sort_values("rank").iloc[0]
    return result, top


@pytest.mark.parametrize("expression, target", [
    ("the largest red roof", ROOF_SE),
    ("the red roof near the blue river", ROOF_RIVER),
    ("the red roof in the upper left", ROOF_NW),
    ("the red roof to the left of the blue river", ROOF_NW),
])
def test_scene_words_pick_the_right_roof_across_tiles(river_scene, tmp_path, expression, target):
    result, top = _top(river_scene, expression, tmp_path)
    assert len(result.features) == 3  # every red roof is a candidate; the words rank them
    assert top.geometry.symmetric_difference(_map_box(target)).area < 1e-6
    r0, r1, c0, c1 = target
    assert top["area_m2"] == pytest.approx((r1 - r0) * (c1 - c0) * 0.25)
    assert result.grounding["passes"][0] == "the red roof"


def test_anchor_found_in_its_own_pass_and_probability_is_the_subjects(river_scene, tmp_path):
    result = segment(river_scene, "the red roof near the blue river", tmp_path / "o.gpkg", prob=tmp_path / "p.tif",
                     model=WordColourModel())
    assert result.grounding["passes"] == ["the red roof", "the blue river"]
    assert result.grounding["found"] == {"the red roof": 3, "the blue river": 1}
    with rasterio.open(tmp_path / "p.tif") as p:
        prob = p.read(1)
    assert prob[210, 340] > 0.99 and prob[200, 310] < 0.01  # a roof, not the river


def test_an_anchor_that_is_not_there_leaves_its_relation_out(river_scene, tmp_path):
    result, top = _top(river_scene, "the red roof near the yellow lake", tmp_path)
    assert result.grounding["found"]["the yellow lake"] == 0
    # all roofs fit "the red roof" equally well: the larger comes first, nothing is dropped
    assert len(result.features) == 3
    assert top.geometry.symmetric_difference(_map_box(ROOF_SE)).area < 1e-6


def test_readme_demo_finds_the_tank_it_names(readme_run):
    """The README's first command, with the shipped default model: the rank-1 polygon is the
    tank that sample_data/truth.geojson outlines (written by the generator that drew the scene)."""
    sample = Path(__file__).resolve().parents[1] / "sample_data"
    truth = gpd.read_file(sample / "truth.geojson")
    assert truth.crs.to_epsg() == 32633
    target = truth.geometry.iloc[0]
    written = gpd.read_file(readme_run.output)
    best = written.sort_values("rank").iloc[0]
    iou = best.geometry.intersection(target).area / best.geometry.union(target).area
    assert iou >= 0.5, f"rank-1 polygon IoU with the named tank is {iou:.2f}"
    assert best["area_m2"] == pytest.approx(target.area, rel=0.5)
    assert readme_run.grounding["passes"] == ["the storage tank", "the river"]


def test_a_two_anchor_expression_reads_each_tile_once(river_scene, tmp_path):
    text = "the red roof near the blue river and left of the yellow tank"
    result = segment(river_scene, text, tmp_path / "o.gpkg", model=WordColourModel())
    assert result.grounding["passes"] == ["the red roof", "the blue river", "the yellow tank"]
    assert result.windows_read == result.tiles == 28  # 7 × 4 tiles of 128 px, each read once for 3 phrases
    assert result.grounding["found"] == {"the red roof": 3, "the blue river": 1, "the yellow tank": 0}


def test_simplify_and_min_area_never_change_the_order(river_scene, tmp_path):
    # A red disc (r = 12 px, 452 px²) and a red square (20 × 20 px = 400 px²) at 0.5 m: the disc is
    # the largest; simplified by 2.5 m (5 px) first, it would shrink below the square.
    img = np.full((3, 200, 300), 90, np.uint8)
    yy, xx = np.mgrid[0:200, 0:300]
    disc = (yy - 100) ** 2 + (xx - 60) ** 2 < 12**2
    img[:, disc] = np.array([230, 25, 25], np.uint8)[:, None]
    img[:, 90:110, 200:220] = np.array([230, 25, 25], np.uint8)[:, None, None]
    path = write_scene(tmp_path / "disc.tif", img, "EPSG:32633", UTM)
    exact = segment(path, "the largest red roof", model=WordColourModel()).features
    shaped = segment(path, "the largest red roof", model=WordColourModel(), simplify_m=2.5).features
    assert exact.geometry.iloc[0].centroid.x < 500050 and shaped.geometry.iloc[0].centroid.x < 500050  # the disc
    assert list(shaped["score"]) == list(exact["score"])
    assert shaped["area_m2"].iloc[0] < exact["area_m2"].iloc[1]  # simplified, the disc is smaller than the square
    assert len(shaped.geometry.iloc[0].exterior.coords) < len(exact.geometry.iloc[0].exterior.coords)
    # min_area drops the 100 m² roof (the one least near the river); the others keep their order
    text = "the red roof near the blue river"
    every = segment(river_scene, text, model=WordColourModel()).features
    kept = segment(river_scene, text, model=WordColourModel(), min_area_m2=120.0).features
    assert list(kept["area_m2"]) == [a for a in every["area_m2"] if a >= 120.0]
    assert list(kept["rank"]) == [1, 2] and len(every) == 3
