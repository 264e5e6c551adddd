"""Scene-level grounding: ranking candidates over a whole scene and selecting what an expression names."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine
from shapely.geometry import box

from georefseg.api import segment
from georefseg.calibration import Calibration
from georefseg.expression import parse_expression
from georefseg.grounding import evidence, ground
from georefseg.vectorize import Candidate
from tests.fixtures import InstanceColourModel, WordColourModel, write_scene

UTM = Affine(0.5, 0, 500000, 0, -0.5, 4000000)
# A 640 × 400 px scene at 0.5 m in 128 px tiles (7 × 4), so objects, the river and the image's
# corners lie in different tiles. Red roofs (rows r0:r1, cols c0:c1):
ROOFS = {
    "A": (20, 40, 40, 60),  # 400 px, north-west, the northernmost, west of the river
    "B": (200, 226, 330, 356),  # 676 px, 10 px east of the river, in the middle of the image
    "C": (300, 340, 580, 620),  # 1600 px, south-east, the largest and the furthest from the river
    "D": (330, 360, 100, 130),  # 900 px, south-west, the second largest, second from the left
    "E": (60, 72, 470, 482),  # 144 px, north-east, the smallest
    "F": (185, 205, 440, 460),  # 400 px, between the river and the yellow tank
}
RIVER_COLS = (300, 320)  # blue, every row
TANK = (180, 200, 540, 560)  # yellow
SPECK = (2, 3, 200, 201)  # one red pixel further north than any roof: noise, not the northernmost
VOLCANO_SPECK = (390, 391, 10, 12)  # two white pixels: all the model sees of "the white volcano"


def _map_box(rows_cols: tuple[int, int, int, int]):
    r0, r1, c0, c1 = rows_cols
    return box(500000 + 0.5 * c0, 4000000 - 0.5 * r1, 500000 + 0.5 * c1, 4000000 - 0.5 * r0)


@pytest.fixture(scope="module")
def roofs_scene(tmp_path_factory) -> Path:
    img = np.empty((3, 400, 640), np.uint8)
    img[:] = np.array([90, 120, 80], np.uint8)[:, None, None]
    img[:, :, RIVER_COLS[0]:RIVER_COLS[1]] = np.array([25, 50, 230], np.uint8)[:, None, None]
    paint = [(r, (230, 25, 25)) for r in (*ROOFS.values(), SPECK)] + [(TANK, (230, 230, 25)),
                                                                     (VOLCANO_SPECK, (242, 242, 242))]
    for (r0, r1, c0, c1), colour in paint:
        img[:, r0:r1, c0:c1] = np.array(colour, np.uint8)[:, None, None]
    return write_scene(tmp_path_factory.mktemp("grounding") / "roofs.tif", img, "EPSG:32633", UTM)


def _names(features: gpd.GeoDataFrame) -> list[str]:
    """Which roofs the written polygons are, in rank order (each must be one roof exactly)."""
    names = []
    for geom in features.geometry:
        name = next((n for n, r in ROOFS.items() if geom.symmetric_difference(_map_box(r)).area < 1e-6), None)
        assert name is not None, f"a written polygon is no roof: {geom.wkt[:80]}"
        names.append(name)
    return names


def test_a_container_is_what_holds_its_anchor():
    """"the compound containing the tank": of two squares, the one the anchor lies inside."""
    holder, empty = box(0, 0, 40, 40), box(60, 0, 100, 40)
    cands = [Candidate(g, score=0.9, peak=0.95, pixels=1600, area_m2=1600.0) for g in (empty, holder)]
    tank = [Candidate(box(10, 10, 20, 20), score=0.9, peak=0.95, pixels=100, area_m2=100.0)]
    chosen = ground(cands, parse_expression("the compound containing the tank"), {"the tank": tank},
                    size=(100, 40), min_object_px=4)
    assert chosen.ranked[0].candidate.geometry.equals(holder) and chosen.selected == [True, False]


# One end-to-end case per kind of wording, on the multi-tile scene: what must be written.
KINDS = [
    ("singular: the referent alone", "the red roof", ["C"]),
    ("plural: all of them", "the red roofs", ["C", "D", "B", "A", "F", "E"]),
    ("quantifier", "every red roof west of the blue river", ["D", "A"]),
    ("count with an order", "the two largest red roofs", ["C", "D"]),
    ("ordinal", "the second largest red roof", ["D"]),
    ("synonym of a superlative", "the biggest red roof", ["C"]),
    ("comparative", "the smaller red roof", ["E"]),
    ("ordinal from a side", "the second red roof from the left", ["D"]),
    ("extreme, a speck further out does not count", "the northernmost red roof", ["A"]),
    ("closest to", "the red roof closest to the blue river", ["B"]),
    ("second closest, split superlative", "the second closest red roof to the blue river", ["F"]),
    ("furthest from", "the red roof furthest from the blue river", ["C"]),
    ("top of the image, plural", "the red roofs at the top of the image", ["A", "E"]),
    ("corner of the image", "the red roof in the bottom left corner", ["D"]),
    ("middle of the image", "the red roof in the middle of the image", ["B"]),
    ("between A and B", "the red roof between the blue river and the yellow tank", ["F"]),
    ("relation to an object", "the red roof left of the yellow tank", ["F"]),
    # B's near edge is 5 m from the river (10 px at 0.5 m), F's 60 m, A's 120 m: distances on the ground
    ("within a distance in metres", "the red roofs within 20 m of the blue river", ["B"]),
    ("beyond a distance in metres", "the red roofs more than 100 m from the blue river", ["A", "C"]),
]


@pytest.mark.parametrize("kind, expression, expected", KINDS, ids=[k[0] for k in KINDS])
def test_each_kind_of_wording_writes_what_it_names(roofs_scene, tmp_path, kind, expression, expected):
    result = segment(roofs_scene, expression, tmp_path / "out.gpkg", model=WordColourModel())
    written = gpd.read_file(tmp_path / "out.gpkg")
    assert written.crs.to_epsg() == 32633
    if len(expected) > 1 and parse_expression(expression).order is None:
        assert sorted(_names(written)) == sorted(expected)  # "all": the order among them is the scores'
    else:
        assert _names(written) == expected
    assert written["selected"].all() and list(written["rank"]) == sorted(written["rank"])
    for name, area in zip(_names(written), written["area_m2"], strict=True):
        r0, r1, c0, c1 = ROOFS[name]
        assert area == pytest.approx((r1 - r0) * (c1 - c0) * 0.25)  # m² at 0.5 m pixels
    assert result.grounding["selected"] == len(expected)


def test_instances_stay_instances_across_tiles(tmp_path):
    """A model that separates objects: two touching roofs stay two polygons, and a roof in the
    overlap of two tiles (both see it whole) is written once — where a per-pixel map merges the
    touching pair."""
    img = np.full((3, 200, 300), 90, np.uint8)
    roofs = {"A": ((120, 150, 20, 50), 230), "B": ((120, 150, 50, 80), 200), "C": ((20, 44, 100, 124), 230)}
    for (r0, r1, c0, c1), red in roofs.values():
        img[:, r0:r1, c0:c1] = np.array([red, 25, 25], np.uint8)[:, None, None]
    path = write_scene(tmp_path / "touching.tif", img, "EPSG:32633", UTM)
    objects = segment(path, "the red roofs", tmp_path / "o.gpkg", model=InstanceColourModel())
    assert objects.tiles == 6  # 3 × 2 tiles of 128 px with 32 px overlap: C lies in two of them
    written = gpd.read_file(tmp_path / "o.gpkg")
    expected = [_map_box(r) for r, _ in roofs.values()]
    assert len(written) == 3
    for box_ in expected:
        assert sum(g.symmetric_difference(box_).area < 1e-6 for g in written.geometry) == 1
    merged = segment(path, "the red roofs", model=WordColourModel()).features  # the per-pixel path
    assert len(merged) == 2 and merged.area.max() == pytest.approx(30 * 60 * 0.25)
    # --threshold means the same for an instance model: the probability from which an object counts.
    assert len(segment(path, "the red roofs", model=InstanceColourModel(), threshold=0.95).features) == 0
    kept = segment(path, "the red roofs", model=InstanceColourModel(), threshold=0.85)
    assert len(kept.features) == 3 and kept.grounding["threshold"] == 0.85


def test_candidates_writes_every_one_with_what_was_selected(roofs_scene, tmp_path):
    result = segment(roofs_scene, "the second largest red roof", tmp_path / "all.gpkg", model=WordColourModel(),
                     candidates=True)
    written = gpd.read_file(tmp_path / "all.gpkg")
    assert list(written["rank"]) == [1, 2, 3, 4, 5, 6]  # the 0.25 m² speck is below the model's smallest object
    assert written["selected"].tolist() == [True] + [False] * 5 and _names(written)[0] == "D"
    assert result.grounding["min_area_m2"] == pytest.approx(4 * 0.25)  # (2 × stride 1)² px at 0.25 m²
    capped = segment(roofs_scene, "the red roofs", model=WordColourModel(), max_features=2).features
    assert len(capped) == 2 and list(capped["rank"]) == [1, 2]


def test_nothing_there_writes_an_empty_layer_and_says_why(roofs_scene, tmp_path):
    result = segment(roofs_scene, "the green roof", tmp_path / "none.gpkg", model=WordColourModel())
    assert len(gpd.read_file(tmp_path / "none.gpkg")) == 0
    assert "found nothing that looks like 'the green roof'" in result.message


def test_an_anchor_seen_only_as_specks_is_not_found(roofs_scene, tmp_path):
    result = segment(roofs_scene, "the red roof near the white volcano", model=WordColourModel())
    assert result.grounding["found"]["the white volcano"] == 1  # the model saw two white pixels …
    assert result.grounding["anchors_found"] == {"the white volcano": 0}  # … which are not a volcano
    assert "not found, so left out: near 'the white volcano'" in result.message
    assert _names(result.features) == ["C"]  # the words about it are left out; the rest still decide


def test_anchor_found_in_its_own_pass_and_probability_is_the_subjects(roofs_scene, tmp_path):
    result = segment(roofs_scene, "the red roof near the blue river", tmp_path / "o.gpkg", prob=tmp_path / "p.tif",
                     model=WordColourModel())
    assert result.grounding["passes"] == ["the red roof", "the blue river"]
    assert result.grounding["found"] == {"the red roof": 7, "the blue river": 1}  # six roofs and the speck
    with rasterio.open(tmp_path / "p.tif") as p:
        prob = p.read(1)
    assert prob[210, 340] > 0.99 and prob[200, 310] < 0.01  # a roof, not the river
    assert _names(result.features) == ["B"]


def test_a_two_anchor_expression_reads_each_tile_once(roofs_scene, tmp_path):
    text = "the red roof near the blue river and left of the yellow tank"
    result = segment(roofs_scene, text, tmp_path / "o.gpkg", model=WordColourModel())
    assert result.grounding["passes"] == ["the red roof", "the blue river", "the yellow tank"]
    assert result.windows_read == result.tiles == 28  # 7 × 4 tiles of 128 px, each read once for 3 phrases
    assert result.grounding["anchors_found"] == {"the blue river": 1, "the yellow tank": 1}
    assert _names(result.features) == ["B"]


def _cand(x0, y0, x1, y1, score=0.9, peak=None) -> Candidate:
    g = box(x0, y0, x1, y1)
    return Candidate(g, score, score if peak is None else peak, int(g.area), g.area)


def test_a_speck_cannot_outrank_an_object():
    speck, obj = _cand(0, 0, 2, 2, score=0.99), _cand(40, 40, 60, 60, score=0.8, peak=0.95)
    assert evidence(speck, 16) < 0.25 < 0.8 < evidence(obj, 16)
    result = ground([speck, obj], parse_expression("the tank"), min_object_px=16)
    assert result.ranked[0].candidate is obj and result.selected == [True, False]


def test_orders_use_the_scene_frame_and_skip_fragments():
    cands = [_cand(0, 0, 20, 20), _cand(50, 50, 60, 60), _cand(90, 90, 91, 92)]  # 400, 100, 2 px
    top = ground(cands, parse_expression("the smallest tank"), size=(100, 100), min_object_px=4).ranked[0]
    assert top.candidate is cands[1]
    # pixel frame from a north-up UTM transform: the northernmost has the largest y on the map
    to_px = ~Affine(1, 0, 1000, 0, -1, 2000)
    on_map = [_cand(1010, 1900, 1020, 1910), _cand(1060, 1980, 1070, 1990), _cand(1050, 1950, 1060, 1960)]
    ranked = ground(on_map, parse_expression("the northernmost tank"), to_pixels=to_px, size=(100, 100)).ranked
    assert [g.candidate for g in ranked] == [on_map[1], on_map[2], on_map[0]]


def test_an_object_is_not_its_own_anchor():
    tanks = [_cand(0, 0, 10, 10), _cand(14, 0, 24, 10), _cand(80, 80, 90, 90)]
    anchor = [_cand(0, 0, 10, 10)]  # "the white tank" is the first one
    ranked = ground(tanks, parse_expression("the tank next to the white tank"), {"the white tank": anchor},
                    size=(100, 100)).ranked
    assert ranked[0].candidate is tanks[1]
    assert ranked[-1].raw == 0.0 and ranked[-1].candidate is tanks[0]


def test_a_relation_holds_to_the_anchor_the_model_may_mean():
    """Two objects may be "the red building" (evidence 0.90 and 0.86): a tank west of the second
    one is "the tank left of the red building" even though the first is the likelier anchor."""
    anchors = {"the red building": [_cand(10, 10, 30, 30, 0.9), _cand(60, 60, 80, 80, 0.86)]}
    tanks = [_cand(40, 62, 50, 72), _cand(85, 15, 95, 25)]  # west of the second; east of the first
    result = ground(tanks, parse_expression("the tank left of the red building"), anchors, size=(100, 100))
    assert result.ranked[0].candidate is tanks[0] and result.ranked[0].parts["west:0"] > 0.5
    assert result.ranked[1].parts["west:0"] < 0.01
    assert result.anchors == {"the red building": 2}


def test_calibration_maps_scores_and_its_cutoffs_select():
    cands = [_cand(0, 0, 20, 20, 0.9), _cand(40, 40, 60, 60, 0.6), _cand(70, 70, 90, 90, 0.3)]
    cal = Calibration((0.0, 0.5, 1.0), (0.0, 0.2, 0.9), select_one=0.5, select_all=0.15, source="test")
    result = ground(cands, parse_expression("the tanks"), calibration=cal)
    raw = [evidence(c, 1.0) for c in cands]
    assert [g.score for g in result.ranked] == pytest.approx(list(np.interp(raw, cal.raw, cal.calibrated)))
    assert result.selected == [True, True, False]  # calibrated 0.74, 0.28 pass 0.15; 0.12 does not
    single = ground(cands, parse_expression("the tank"), calibration=Calibration(select_one=0.95))
    assert not any(single.selected) and "below the cut-off 0.95" in single.message


def test_readme_demo_finds_the_tank_it_names(readme_run):
    """The README's first command, with the shipped default model: the one polygon written is
    the tank that sample_data/truth.geojson outlines (written by the generator that drew the scene)."""
    sample = Path(__file__).resolve().parents[1] / "sample_data"
    truth = gpd.read_file(sample / "truth.geojson")
    assert truth.crs.to_epsg() == 32633
    target = truth.geometry.iloc[0]
    written = gpd.read_file(readme_run.output)
    assert len(written) == 1
    best = written.iloc[0]
    iou = best.geometry.intersection(target).area / best.geometry.union(target).area
    assert iou >= 0.5, f"the polygon's IoU with the named tank is {iou:.2f}"
    assert best["area_m2"] == pytest.approx(target.area, rel=0.5)
    assert readme_run.grounding["passes"] == ["the storage tank", "the river"]


def test_simplify_and_min_area_never_change_the_order(roofs_scene, tmp_path):
    # A red disc (r = 12 px, 452 px²) and a red square (20 × 20 px = 400 px²) at 0.5 m: the disc is
    # the largest; simplified by 2.5 m (5 px) first, it would shrink below the square.
    img = np.full((3, 200, 300), 90, np.uint8)
    yy, xx = np.mgrid[0:200, 0:300]
    disc = (yy - 100) ** 2 + (xx - 60) ** 2 < 12**2
    img[:, disc] = np.array([230, 25, 25], np.uint8)[:, None]
    img[:, 90:110, 200:220] = np.array([230, 25, 25], np.uint8)[:, None, None]
    path = write_scene(tmp_path / "disc.tif", img, "EPSG:32633", UTM)
    exact = segment(path, "the largest red roof", model=WordColourModel(), candidates=True).features
    shaped = segment(path, "the largest red roof", model=WordColourModel(), simplify_m=2.5, candidates=True).features
    assert exact.geometry.iloc[0].centroid.x < 500050 and shaped.geometry.iloc[0].centroid.x < 500050  # the disc
    assert list(shaped["score"]) == list(exact["score"])
    assert shaped["area_m2"].iloc[0] < exact["area_m2"].iloc[1]  # simplified, the disc is smaller than the square
    assert len(shaped.geometry.iloc[0].exterior.coords) < len(exact.geometry.iloc[0].exterior.coords)
    # min_area drops the roofs under 150 m²; the others keep their ranks and order
    text = "the red roof near the blue river"
    every = segment(roofs_scene, text, model=WordColourModel(), candidates=True).features
    kept = segment(roofs_scene, text, model=WordColourModel(), min_area_m2=150.0, candidates=True).features
    assert list(kept["area_m2"]) == [a for a in every["area_m2"] if a >= 150.0]
    assert list(kept["rank"]) == [r for r, a in zip(every["rank"], every["area_m2"], strict=True) if a >= 150.0]
    assert len(kept) == 3 and len(every) == 6
