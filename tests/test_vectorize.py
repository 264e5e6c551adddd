"""Probability raster → polygons: holes, seams between strips, areas in m², simplification."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from pyproj import CRS, Transformer
from shapely.geometry import Point, Polygon

from georefseg.vectorize import extract_candidates, ground_area_m2, refine
from tests.fixtures import write_scene

UTM = Affine(0.5, 0, 500000, 0, -0.5, 4000000)


def _prob(tmp_path, prob):
    return str(write_scene(tmp_path / "p.tif", prob[None].astype(np.float32), "EPSG:32633", UTM))


def test_ring_keeps_its_hole_and_score(tmp_path):
    prob = np.zeros((100, 100), np.float32)
    prob[20:60, 20:60] = 0.9
    prob[30:50, 30:50] = 0.1
    (c,) = extract_candidates(_prob(tmp_path, prob))
    assert len(c.geometry.interiors) == 1
    assert c.area_m2 == pytest.approx((40 * 40 - 20 * 20) * 0.25)
    assert c.score == pytest.approx(0.9) and c.peak == pytest.approx(0.9)
    assert c.geometry.bounds == pytest.approx((500010, 3999970, 500030, 3999990))


def test_objects_across_strip_seams_are_one_polygon(tmp_path):
    prob = np.zeros((100, 60), np.float32)
    prob[5:95, 10:20] = 0.8  # crosses every 16-row strip seam
    prob[40:42, 30:50] = 0.7  # touches only one seam
    path = _prob(tmp_path, prob)
    cands = extract_candidates(path, strip_rows=16)
    assert sorted(round(c.area_m2, 2) for c in cands) == [10.0, 225.0]
    assert all(c.geometry.geom_type == "Polygon" for c in cands)
    whole = extract_candidates(path, strip_rows=1000)
    assert sorted(c.area_m2 for c in whole) == sorted(c.area_m2 for c in cands)


def test_min_area_and_simplify_in_ground_units(tmp_path):
    yy, xx = np.mgrid[0:200, 0:200]
    prob = ((xx - 100) ** 2 + (yy - 100) ** 2 < 60**2).astype(np.float32)
    prob[10:12, 10:12] = 1  # 4 px = 1 m²
    path = _prob(tmp_path, prob)
    found = extract_candidates(path)
    assert len(found) == 2
    with rasterio.open(path) as src:
        crs, transform = CRS.from_user_input(src.crs), src.transform
    ((i, big),) = refine(found, crs, transform, min_area_m2=5)
    ((j, simple),) = refine(found, crs, transform, min_area_m2=5, simplify_m=1.0, pixel_size_m=(0.5, 0.5))
    assert i == j and found[i].area_m2 > 5
    assert len(simple.geometry.exterior.coords) < len(big.geometry.exterior.coords) / 3
    assert simple.area_m2 == pytest.approx(big.area_m2, rel=0.02)


def test_geodesic_area_in_a_geographic_crs():
    # a 0.001° square at 60°N, checked against its area in a local equal-area projection
    square = Polygon([(10, 60), (10.001, 60), (10.001, 60.001), (10, 60.001)])
    laea = CRS.from_proj4("+proj=laea +lat_0=60 +lon_0=10 +datum=WGS84")
    to_laea = Transformer.from_crs("EPSG:4326", laea, always_xy=True)
    projected = shapely.transform(square, lambda xy: np.column_stack(to_laea.transform(xy[:, 0], xy[:, 1])))
    assert ground_area_m2(square, CRS.from_epsg(4326)) == pytest.approx(projected.area, rel=1e-4)
    # projected CRS in feet: areas still in m²
    ft = CRS.from_epsg(2263)  # NAD83 / New York Long Island (ftUS)
    assert ground_area_m2(Point(0, 0).buffer(100, quad_segs=64), ft) == pytest.approx(
        np.pi * (100 * 1200 / 3937) ** 2, rel=1e-3)
