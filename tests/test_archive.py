"""Listing a batch's scenes: folders, list files, STAC (read with pystac), expression CSVs."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pystac
import pytest
from affine import Affine

from georefseg.archive import expressions_from_csv, find_scenes
from georefseg.errors import InputError, InputNotFoundError
from tests.fixtures import write_scene


def small(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_scene(path, np.zeros((3, 8, 8), "uint8"), "EPSG:32633", Affine(1, 0, 300000, 0, -1, 5000000))


def test_a_folder_is_searched_recursively_and_ids_stay_unique(tmp_path):
    for name in ("x/one.tif", "x/deeper/two.TIF", "y/one.tif", "notes.txt", "z/three_rgb.tif"):
        small(tmp_path / name) if name.lower().endswith(".tif") else (tmp_path / name).write_text("n")
    refs = find_scenes(tmp_path)
    assert [Path(r.path).name for r in refs] == ["two.TIF", "one.tif", "one.tif", "three_rgb.tif"]
    ids = [r.id for r in refs]
    assert len(set(ids)) == 4 and ids[0] == "two" and ids[3] == "three_rgb"
    assert ids[1].startswith("one-") and ids[2].startswith("one-")  # same stem: a hash of the path tells them apart
    assert [Path(r.path).name for r in find_scenes(tmp_path, glob="*_rgb.tif")] == ["three_rgb.tif"]
    with pytest.raises(InputError, match="holds no scene matching '\\*.jp2'"):
        find_scenes(tmp_path, glob="*.jp2")


def test_a_list_file_resolves_relative_paths_and_passes_gdal_paths(tmp_path):
    small(tmp_path / "data" / "a.tif")
    listing = tmp_path / "lists" / "scenes.txt"
    listing.parent.mkdir()
    listing.write_text("# my scenes\n../data/a.tif\n\n/vsicurl/https://example.org/b.tif\n../data/a.tif\n")
    refs = find_scenes(listing)
    assert [r.path for r in refs] == [str((tmp_path / "data" / "a.tif").resolve()),
                                      "/vsicurl/https://example.org/b.tif"]
    with pytest.raises(InputNotFoundError, match="does not exist"):
        find_scenes(tmp_path / "absent")


def test_a_stac_item_collection_with_relative_hrefs(tmp_path):
    small(tmp_path / "assets" / "s1.tif")
    collection = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "stac_version": "1.0.0", "id": "scene-1", "geometry": None, "bbox": None,
         "properties": {"datetime": "2024-05-01T10:30:00Z"}, "links": [],
         "assets": {"visual": {"href": "assets/s1.tif", "type": "image/tiff; application=geotiff; "
                                                                   "profile=cloud-optimized"},
                    "thumbnail": {"href": "assets/s1.png", "type": "image/png", "roles": ["thumbnail"]}}},
        {"type": "Feature", "stac_version": "1.0.0", "id": "scene-2", "geometry": None, "bbox": None,
         "properties": {"datetime": None, "start_datetime": "2024-06-01T00:00:00Z",
                        "end_datetime": "2024-06-02T00:00:00Z"}, "links": [],
         "assets": {"visual": {"href": "https://example.org/s2.tif", "type": "image/tiff; application=geotiff"}}},
    ]}
    path = tmp_path / "items.json"
    path.write_text(json.dumps(collection))
    refs = find_scenes(path)
    assert [r.id for r in refs] == ["scene-1", "scene-2"]
    assert refs[0].path == str((tmp_path / "assets" / "s1.tif").resolve())
    assert refs[1].path == "/vsicurl/https://example.org/s2.tif"
    assert refs[0].datetime.startswith("2024-05-01T10:30:00") and refs[1].datetime.startswith("2024-06-01")
    with pytest.raises(InputError, match="scene-1 has no asset 'B04' \\(it has visual, thumbnail\\)"):
        find_scenes(path, asset="B04")


def test_a_stac_catalog_written_by_pystac_is_walked(tmp_path):
    catalog = pystac.Catalog("archive", "test archive")
    for i in range(3):
        tif = small(tmp_path / "cat" / f"item{i}" / "image.tif")
        item = pystac.Item(f"item{i}", None, None, datetime(2024, 1, i + 1, tzinfo=timezone.utc), {})
        item.add_asset("image", pystac.Asset(str(tif), media_type=pystac.MediaType.COG))
        catalog.add_item(item)
    catalog.normalize_hrefs(str(tmp_path / "cat"))
    catalog.make_all_asset_hrefs_relative()
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    refs = find_scenes(tmp_path / "cat" / "catalog.json", asset="image")
    assert [r.id for r in refs] == ["item0", "item1", "item2"]
    assert all(Path(r.path).is_file() for r in refs) and refs[2].datetime.startswith("2024-01-03")


def test_expressions_per_scene_from_a_csv(tmp_path):
    refs = find_scenes(small(tmp_path / "s" / "a.tif").parent)
    csv = tmp_path / "expressions.csv"
    csv.write_text("scene,expression\na.tif,the tanks\na,the river\na,  the   river \n")
    assert expressions_from_csv(csv, refs) == {"a": ["the tanks", "the river"]}
    csv.write_text("scene,expression\nb.tif,the tanks\n")
    with pytest.raises(InputError, match="line 2: scene 'b.tif' is not among the batch's scenes"):
        expressions_from_csv(csv, refs)
    csv.write_text("image,what\na,the tanks\n")
    with pytest.raises(InputError, match="needs the columns scene,expression"):
        expressions_from_csv(csv, refs)
