"""Datasets from a user's GIS layers, on the real SpaceNet image with its OSM building footprints."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from shapely.geometry import Point

from georefseg.data import open_dataset
from georefseg.data.imageio import read_mask
from georefseg.data.labels import build_from_labels
from georefseg.errors import DatasetError


@pytest.fixture
def atlanta(real_scenes):
    d = real_scenes / "spacenet_atlanta"
    return d / "sample_geotiff.tif", d / "geotiff_labels.geojson"


def _check_masks_land_on_footprints(ds, raster, labels) -> int:
    """Every mask is one whole footprint, at that footprint's place on the ground."""
    footprints = gpd.read_file(labels).to_crs(32616)
    with rasterio.open(raster) as src:
        transform = src.transform
    checked = 0
    for rec in (json.loads(x) for x in (ds / "samples.jsonl").read_text().splitlines()):
        if rec["mask"] is None:
            continue
        mask = read_mask(ds / rec["mask"])
        x0, y0 = (int(v) for v in rec["image"].split("/")[1][:-4].split("_"))
        rows, cols = np.nonzero(mask)
        cx, cy = transform @ (x0 + cols.mean() + 0.5, y0 + rows.mean() + 0.5)
        d = footprints.centroid.distance(Point(cx, cy))
        nearest = int(d.argmin())
        assert d.iloc[nearest] < 1.0, rec  # metres
        assert abs(mask.sum() * 0.25 - footprints.area.iloc[nearest]) < 0.1 * footprints.area.iloc[nearest]
        checked += 1
    return checked


def test_chips_masks_and_expressions(atlanta, tmp_path):
    raster, labels = atlanta
    counts = build_from_labels(raster, labels, "building", tmp_path / "ds", chip=128, seed=1)
    samples = open_dataset(tmp_path / "ds")
    assert sum(counts.values()) == len(samples) > 20
    assert all("building" in s.expression or "house" in s.expression for s in samples if s.mask)
    assert _check_masks_land_on_footprints(tmp_path / "ds", raster, labels) > 20


def test_labels_in_another_crs_are_reprojected(atlanta, tmp_path):
    raster, labels = atlanta
    wgs = tmp_path / "labels_wgs84.gpkg"
    gpd.read_file(labels).to_crs(4326).to_file(wgs)
    counts = build_from_labels(raster, wgs, "building", tmp_path / "b", chip=128, seed=2)
    assert sum(counts.values()) > 20
    assert _check_masks_land_on_footprints(tmp_path / "b", raster, labels) > 20


def test_clear_errors(atlanta, tmp_path):
    raster, labels = atlanta
    with pytest.raises(DatasetError, match="no field 'kind': choose class_field from .*building"):
        build_from_labels(raster, labels, "kind", tmp_path / "x")
    empty = tmp_path / "empty.gpkg"
    gpd.GeoDataFrame({"cls": []}, geometry=[], crs=32616).to_file(empty)
    with pytest.raises(DatasetError, match="has no features"):
        build_from_labels(raster, empty, "cls", tmp_path / "x")
    points = tmp_path / "points.gpkg"
    gpd.GeoDataFrame({"cls": ["tank"]}, geometry=[Point(733700, 3724900)], crs=32616).to_file(points)
    with pytest.raises(DatasetError, match="must be\\s+polygons"):
        build_from_labels(raster, points, "cls", tmp_path / "x")
    with pytest.raises(DatasetError, match="does not exist"):
        build_from_labels(raster, tmp_path / "none.gpkg", "cls", tmp_path / "x")


def test_split_by_place_and_recorded(atlanta, tmp_path):
    """Chips are split by blocks of ground: no val or test chip shares a pixel with a train chip,
    each chip lies in blocks of its own split, and the blocks are in dataset.json in map units."""
    raster, labels = atlanta
    build_from_labels(raster, labels, "building", tmp_path / "ds", chip=128, seed=1, block_chips=2,
                      fractions=(0.5, 0.25))
    meta = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    record = meta["split"]
    assert record["method"] == "spatial blocks" and record["block_px"] == 256 and record["crs"] == "EPSG:32616"
    blocks = {(b["column"], b["row"]): b for b in record["blocks"]}
    with rasterio.open(raster) as src:
        transform = src.transform
    windows = {}
    for rec in (json.loads(x) for x in (tmp_path / "ds" / "samples.jsonl").read_text().splitlines()):
        x0, y0 = (int(v) for v in rec["image"].split("/")[1][:-4].split("_"))
        windows[(x0, y0)] = rec["split"]
        for bx in {x0 // 256, (x0 + 127) // 256}:
            for by in {y0 // 256, (y0 + 127) // 256}:
                assert blocks[(bx, by)]["split"] == rec["split"]
        left, top = transform * (x0, y0)
        block = blocks[(x0 // 256, y0 // 256)]["bounds"]
        assert block[0] <= left + 1e-6 and top <= block[3] + 1e-6  # map units, metres
    assert len(set(windows.values())) >= 2
    train_windows = [w for w, s in windows.items() if s == "train"]
    for (x0, y0), split in windows.items():
        if split != "train":
            assert all(abs(x0 - tx) >= 128 or abs(y0 - ty) >= 128 for tx, ty in train_windows)
    assert record["chips_skipped_on_block_edges"] >= 0
