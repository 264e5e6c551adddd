"""RRSIS-D and RefSegRS readers on small fixtures written in exactly the published layouts."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
import rasterio

from georefseg.data import open_dataset
from georefseg.data.rrsisd import decode_rle
from georefseg.errors import DatasetError


def coco_rle_string(mask: np.ndarray) -> str:
    """COCO's compressed RLE of a mask (column-major runs, 5-bit groups, deltas after the 2nd)."""
    flat = mask.T.reshape(-1)
    runs, value, count = [], False, 0
    for v in flat:
        if bool(v) != value:
            runs.append(count)
            value, count = bool(v), 0
        count += 1
    runs.append(count)
    out = []
    for i, x in enumerate(runs):
        if i > 2:
            x -= runs[i - 2]
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def test_rle_known_answer_and_round_trip():
    centre = decode_rle("414", 3, 3)
    assert centre.sum() == 1 and centre[1, 1]
    rng = np.random.default_rng(0)
    mask = np.zeros((37, 53), bool)
    mask[5:30, 10:40] = True
    mask[rng.random(mask.shape) < 0.05] = True
    assert np.array_equal(decode_rle(coco_rle_string(mask), 37, 53), mask)
    assert np.array_equal(decode_rle([4, 1, 4], 3, 3), centre)


def _jpeg(path, img):
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="JPEG", width=img.shape[1], height=img.shape[0], count=3,
                       dtype="uint8", QUALITY=95) as dst:
        dst.write(img.transpose(2, 0, 1))


@pytest.fixture
def rrsisd(tmp_path):
    root = tmp_path / "refer" / "data"
    (root / "rrsisd").mkdir(parents=True)
    img = np.full((64, 80, 3), 90, np.uint8)
    _jpeg(root / "images" / "rrsisd" / "JPEGImages" / "00001.jpg", img)
    _jpeg(root / "images" / "rrsisd" / "JPEGImages" / "00002.jpg", img)
    rle_mask = np.zeros((64, 80), bool)
    rle_mask[40:50, 60:75] = True
    instances = {
        "images": [{"id": 1, "file_name": "00001.jpg", "height": 64, "width": 80},
                   {"id": 2, "file_name": "00002.jpg", "height": 64, "width": 80}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 3, "bbox": [10, 10, 20, 10],
             "segmentation": [[10, 10, 30, 10, 30, 20, 10, 20]]},
            {"id": 11, "image_id": 2, "category_id": 4, "bbox": [60, 40, 15, 10],
             "segmentation": {"size": [64, 80], "counts": coco_rle_string(rle_mask)}}],
        "categories": [{"id": 3, "name": "storagetank"}, {"id": 4, "name": "ship"}]}
    (root / "rrsisd" / "instances.json").write_text(json.dumps(instances))
    refs = [
        {"ref_id": 0, "image_id": 1, "ann_id": 10, "split": "train", "category_id": 3, "sent_ids": [0, 1],
         "sentences": [{"raw": "The storage tank on the left", "sent": "the storage tank on the left",
                        "sent_id": 0, "tokens": []},
                       {"raw": "a grey tank", "sent": "a grey tank", "sent_id": 1, "tokens": []}]},
        {"ref_id": 1, "image_id": 2, "ann_id": 11, "split": "test", "category_id": 4, "sent_ids": [2],
         "sentences": [{"raw": "the ship", "sent": "the ship", "sent_id": 2, "tokens": []}]}]
    with open(root / "rrsisd" / "refs(unc).p", "wb") as fh:
        pickle.dump(refs, fh)
    return root, rle_mask


def test_rrsisd_layout(rrsisd):
    root, rle_mask = rrsisd
    for path in (root, root / "rrsisd"):
        samples = open_dataset(path)
        assert [(s.split, s.expression) for s in samples] == [
            ("train", "The storage tank on the left"), ("train", "a grey tank"), ("test", "the ship")]
    image, mask = samples[0].load()
    assert image.shape == (64, 80, 3)
    assert mask[12:19, 12:29].all() and mask.sum() == pytest.approx(20 * 10, rel=0.15)
    _, mask = samples[2].load()
    assert np.array_equal(mask, rle_mask)
    assert samples[2].kinds == ["ship"]


def test_rrsisd_refuses_foreign_pickles_and_missing_images(rrsisd):
    root, _ = rrsisd
    os.remove(root / "images" / "rrsisd" / "JPEGImages" / "00002.jpg")
    with pytest.raises(DatasetError, match="00002.jpg .*missing"):
        open_dataset(root)
    with open(root / "rrsisd" / "refs(unc).p", "wb") as fh:
        pickle.dump([DatasetError("not plain data")], fh)
    with pytest.raises(DatasetError, match="refusing to unpickle"):
        open_dataset(root)


def _tif(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1], count=arr.shape[0],
                       dtype="uint8") as dst:
        dst.write(arr)


def test_refsegrs_layout(tmp_path):
    root = tmp_path / "RefSegRS"
    mask = np.zeros((32, 32), np.uint8)
    mask[4:9, 4:20] = 255
    for stem in ("101", "102"):
        _tif(root / "images" / f"{stem}.tif", np.full((32, 32, 3), 120, np.uint8))
        _tif(root / "masks" / f"{stem}.tif", mask)
    (root / "output_phrase_train.txt").write_text("101 road along the vehicle\n")
    (root / "output_phrase_test.txt").write_text("102 the long road\n\n")
    samples = open_dataset(root)
    assert [(s.split, s.expression) for s in samples] == [("train", "road along the vehicle"),
                                                          ("test", "the long road")]
    _, m = samples[1].load()
    assert m.sum() == 5 * 16
    (root / "output_phrase_val.txt").write_text("103 a missing image\n")
    with pytest.raises(DatasetError, match="line 1: .*103.tif is missing"):
        open_dataset(root)


def test_unknown_layout_and_bad_masks(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="not a dataset folder georefseg knows"):
        open_dataset(tmp_path / "empty")
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset(tmp_path / "nope")
    root = tmp_path / "RefSegRS"
    _tif(root / "images" / "1.tif", np.zeros((32, 32, 3), np.uint8))
    _tif(root / "masks" / "1.tif", np.zeros((16, 16), np.uint8))
    (root / "output_phrase_train.txt").write_text("1 a thing\n")
    (sample,) = open_dataset(root)
    with pytest.raises(DatasetError, match=r"mask of sample train_1 is 16×16 px but its image .* is 32×32"):
        sample.load()
