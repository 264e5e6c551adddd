"""RRSIS-D in the layout its authors publish (the REFER convention):

    ROOT/rrsisd/refs(unc).p          pickled list of refs: ref_id, image_id, ann_id, split,
                                     sentences [{raw, sent, ...}], category_id
    ROOT/rrsisd/instances.json       COCO images / annotations (polygons or RLE) / categories
    ROOT/images/rrsisd/JPEGImages/   the images

Every sentence of a ref is one sample, as the authors' test script evaluates them. Splits
whose name contains "test" count as test.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
from rasterio.features import rasterize
from shapely.geometry import Polygon

from georefseg.data.samples import RefSample
from georefseg.errors import DatasetError


def find_root(path: Path) -> Path | None:
    """The REFER data root for ``path`` (the root itself, or its rrsisd/ folder), if it is one."""
    for root in (path, path.parent):
        if (root / "rrsisd" / "refs(unc).p").is_file():
            return root
    return None


class _PlainUnpickler(pickle.Unpickler):
    """refs(unc).p holds only lists, dicts, strings and numbers: refuse anything else."""

    def find_class(self, module: str, name: str):
        raise DatasetError(f"refs(unc).p asks to load {module}.{name}: it is not a plain RRSIS-D "
                           "refs file, refusing to unpickle it")


def decode_rle(counts: str | list[int], height: int, width: int) -> np.ndarray:
    """COCO run-length encoding (compressed string or list of counts) → H×W bool mask."""
    if isinstance(counts, str):
        runs, p, data = [], 0, counts.encode("ascii")
        while p < len(data):
            x, k, more = 0, 0, True
            while more:
                c = data[p] - 48
                x |= (c & 0x1F) << (5 * k)
                more = bool(c & 0x20)
                p += 1
                k += 1
                if not more and (c & 0x10):
                    x |= -1 << (5 * k)
            if len(runs) > 2:
                x += runs[-2]
            runs.append(x)
    else:
        runs = list(counts)
    flat = np.zeros(height * width, bool)
    pos, value = 0, False
    for run in runs:
        flat[pos:pos + run] = value
        pos += run
        value = not value
    return flat.reshape(width, height).T  # COCO runs go down the columns


def annotation_mask(segmentation, height: int, width: int) -> np.ndarray:
    """A COCO segmentation (polygons, RLE dict, or list of RLE dicts) as an H×W bool mask."""
    if isinstance(segmentation, dict):
        return decode_rle(segmentation["counts"], height, width)
    if segmentation and isinstance(segmentation[0], dict):
        return np.logical_or.reduce([annotation_mask(s, height, width) for s in segmentation])
    polys = [Polygon(np.asarray(p, float).reshape(-1, 2)) for p in segmentation if len(p) >= 6]
    if not polys:
        return np.zeros((height, width), bool)
    return rasterize([(p.buffer(0), 1) for p in polys], out_shape=(height, width), dtype=np.uint8).astype(bool)


def read_rrsisd(root: Path) -> list[RefSample]:
    refs_file, inst_file = root / "rrsisd" / "refs(unc).p", root / "rrsisd" / "instances.json"
    image_dir = root / "images" / "rrsisd" / "JPEGImages"
    if not inst_file.is_file():
        raise DatasetError(f"{inst_file} is missing: an RRSIS-D folder needs refs(unc).p and instances.json")
    if not image_dir.is_dir():
        raise DatasetError(f"{image_dir} is missing: RRSIS-D images go in images/rrsisd/JPEGImages/")
    with open(refs_file, "rb") as fh:
        try:
            refs = _PlainUnpickler(fh).load()
        except (pickle.UnpicklingError, EOFError) as exc:
            raise DatasetError(f"{refs_file} is not a readable refs file ({exc})") from exc
    try:
        instances = json.loads(inst_file.read_text(encoding="utf-8"))
        images = {im["id"]: im for im in instances["images"]}
        anns = {a["id"]: a for a in instances["annotations"]}
        cats = {c["id"]: c["name"] for c in instances.get("categories", [])}
    except (ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"{inst_file} is not COCO-style instances JSON ({exc})") from exc

    samples = []
    for ref in refs:
        try:
            image, ann = images[ref["image_id"]], anns[ref["ann_id"]]
        except KeyError as exc:
            raise DatasetError(f"{refs_file}: ref {ref.get('ref_id')} names image/annotation {exc} "
                               f"that {inst_file.name} does not have") from exc
        split = "test" if "test" in ref["split"] else ref["split"]
        h, w = image["height"], image["width"]

        def mask(seg=ann["segmentation"], h=h, w=w) -> np.ndarray:
            return annotation_mask(seg, h, w)

        path = image_dir / image["file_name"]
        if not path.is_file():
            raise DatasetError(f"image {path} of ref {ref['ref_id']} is missing")
        category = cats.get(ref.get("category_id"))
        for sent in ref["sentences"]:
            samples.append(RefSample(f"{ref['ref_id']}_{sent.get('sent_id', len(samples))}", path,
                                     sent.get("raw") or sent["sent"], split, mask,
                                     [category] if category else []))
    return samples
