"""Datasets from a user's own GIS layers: a raster plus labelled polygons.

Around each labelled object a chip is cut (at a random offset, so targets are not always in
the middle); every labelled polygon in the chip becomes a referable object; expressions are
generated with the same predicate machinery as the synthetic data (category, size rank,
position, relation to another labelled object, closeness to water or roads when those
classes are named) and kept only when they pick out their target alone.

Chips are split by place, not at random: the raster is cut into square blocks of
``block_chips`` × ``block_chips`` chips, each block drawn into train, val or test, and a chip
kept only when every block it touches has the same split — so no pixel of a validation or
test chip is ever inside a training chip, and neighbouring chips (which share context) do not
leak across. The blocks, their splits and their bounds in the raster's CRS are recorded in
``dataset.json`` (``split``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import shapely
from rasterio.features import rasterize
from rasterio.windows import Window
from shapely import affinity
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from georefseg.data.expressions import describe_absent, describe_target
from georefseg.data.imageio import write_png
from georefseg.data.native import NativeWriter
from georefseg.errors import DatasetError, InputError
from georefseg.raster import Scene

_YES = {"yes", "true", "1", "y"}


@dataclass
class ChipObject:
    category: str
    colour: str | None
    geometry: BaseGeometry  # chip pixel coordinates
    whole: bool  # entirely inside the chip (only these become targets)


@dataclass
class Chip:
    objects: list[ChipObject]
    rivers: BaseGeometry
    lakes: BaseGeometry
    roads: BaseGeometry
    width: int
    height: int


def read_labels(path: str | Path, class_field: str, crs, layer: str | None = None) -> gpd.GeoDataFrame:
    """Polygon labels with a ``category`` column, in the raster's CRS."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"label file {path} does not exist")
    try:
        gdf = gpd.read_file(path, layer=layer, engine="pyogrio")
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, ValueError) as exc:
        raise DatasetError(f"cannot read labels from {path} ({str(exc).splitlines()[0]})") from exc
    if gdf.empty:
        raise DatasetError(f"{path}{f' layer {layer}' if layer else ''} has no features: nothing to make "
                           "a dataset from")
    if class_field not in gdf.columns:
        fields = ", ".join(c for c in gdf.columns if c != "geometry")
        raise DatasetError(f"{path} has no field {class_field!r}: choose {{param}} from {fields}", param="class_field")
    if gdf.crs is None:
        raise DatasetError(f"{path} has no CRS: set one (e.g. ogr2ogr -a_srs EPSG:…) so labels can be placed")
    gdf = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty]
    polys = gdf.geometry.geom_type.isin(["Polygon", "MultiPolygon"])
    if not polys.any():
        raise DatasetError(f"{path} holds {gdf.geometry.geom_type.iloc[0]} features: labels must be "
                           "polygons outlining the objects")
    gdf = gdf[polys].to_crs(crs)  # labels in another CRS are reprojected, not refused
    values = gdf[class_field].astype(str).str.strip()
    # OSM-style tags (building=yes): the field name is the category.
    gdf["category"] = np.where(values.str.lower().isin(_YES), class_field, values.str.lower())
    return gdf[gdf["category"].str.len() > 0]


def _to_pixels(geom: BaseGeometry, inverse) -> BaseGeometry:
    return affinity.affine_transform(geom, [inverse.a, inverse.b, inverse.d, inverse.e, inverse.xoff, inverse.yoff])


def build_from_labels(raster: str | Path, labels: str | Path, class_field: str, out: str | Path, *,
                      layer: str | None = None, chip: int = 256, seed: int = 0,
                      water_classes: tuple[str, ...] = (), road_classes: tuple[str, ...] = (),
                      fractions: tuple[float, float] = (0.8, 0.1), max_chips: int | None = None,
                      block_chips: int = 4, progress: Callable[[int, int], None] | None = None) -> dict:
    """Write a georefseg dataset of chips around labelled objects; returns counts per split.

    ``fractions`` are the shares of blocks (not chips) drawn into train and val (the rest:
    test); ``block_chips`` is the side of a split block in chips (see the module docstring)."""
    rng = np.random.default_rng(seed)
    with Scene(raster) as scene:
        scene_transform, scene_crs = scene.transform, scene.crs
        gdf = read_labels(labels, class_field, scene.crs, layer)
        inverse = ~scene.transform
        pix = [_to_pixels(g, inverse) for g in gdf.geometry]
        cats = gdf["category"].tolist()
        context = {c for c in cats if c in water_classes or c in road_classes}
        tree = shapely.STRtree(pix)
        if chip > min(scene.width, scene.height):
            raise InputError(f"{{param}} {chip} is larger than the raster ({scene.width}×{scene.height} px)",
                             param="chip")
        writer = NativeWriter(Path(out), {"source": "labels", "raster": str(raster), "labels": str(labels),
                                          "class_field": class_field, "chip": chip, "seed": seed})
        targets = [i for i, c in enumerate(cats) if c not in context]
        rng.shuffle(targets)
        targets = targets[:max_chips] if max_chips else targets
        used_windows: set[tuple[int, int]] = set()
        skipped_big = skipped_edge = 0
        block_px = block_chips * chip
        blocks: dict[tuple[int, int], str] = {}
        for n, i in enumerate(targets):
            if progress:
                progress(n + 1, len(targets))
            minx, miny, maxx, maxy = pix[i].bounds
            if maxx - minx > chip - 4 or maxy - miny > chip - 4:
                skipped_big += 1
                continue
            x0 = _offset(rng, minx, maxx, chip, block_px, scene.width)
            y0 = _offset(rng, miny, maxy, chip, block_px, scene.height)
            if (x0, y0) in used_windows:
                continue
            touched = {(bx, by) for bx in {x0 // block_px, (x0 + chip - 1) // block_px}
                       for by in {y0 // block_px, (y0 + chip - 1) // block_px}}
            splits = {_block_split(b, seed, fractions) for b in touched}
            if len(splits) > 1:
                skipped_edge += 1  # it would put pixels of one split's block into another's
                continue
            used_windows.add((x0, y0))
            frame = shapely.box(x0, y0, x0 + chip, y0 + chip)
            near = tree.query(frame, predicate="intersects")
            objects, rivers, lakes, roads, by_index = [], [], [], [], {}
            for j in near:
                g = affinity.translate(pix[j].intersection(frame), -x0, -y0)
                if cats[j] in water_classes:
                    (rivers if "river" in cats[j] else lakes).append(g)
                elif cats[j] in road_classes:
                    roads.append(g)
                else:
                    by_index[j] = ChipObject(cats[j], None, g, pix[j].within(frame))
                    objects.append(by_index[j])
            scene_chip = Chip(objects, unary_union(rivers), unary_union(lakes), unary_union(roads), chip, chip)
            target = by_index[i]
            expr = describe_target(scene_chip, target, rng) if target.whole else None
            if expr is None:
                continue
            image, valid = scene.read(Window(x0, y0, chip, chip))
            if valid.mean() < 0.9:
                continue  # mostly nodata: not a fair training image
            stem = f"{x0}_{y0}"
            split = splits.pop()
            blocks.update(dict.fromkeys(touched, split))
            write_png(writer.root / "images" / f"{stem}.png", (image.transpose(1, 2, 0) * 255).round().astype(np.uint8))
            mask = rasterize([(target.geometry, 1)], out_shape=(chip, chip), dtype=np.uint8)
            write_png(writer.root / "masks" / f"{stem}_0.png", mask * 255)
            writer.add({"id": f"{stem}_0", "image": f"images/{stem}.png", "mask": f"masks/{stem}_0.png",
                        "expression": expr.text, "split": split, "kinds": expr.kinds, "category": target.category})
            absent = describe_absent(scene_chip, rng, tuple(sorted(set(cats) - context)))
            if absent is not None and rng.random() < 0.25:
                writer.add({"id": f"{stem}_1", "image": f"images/{stem}.png", "mask": None,
                            "expression": absent.text, "split": split, "kinds": absent.kinds, "category": None})
    if not writer.records:
        raise DatasetError(f"no chip could be made from {labels}: objects may be larger than {{param}} {chip} "
                           f"({skipped_big} were) or too alike to describe uniquely", param="chip")
    writer.meta["skipped_too_large"] = skipped_big
    writer.meta["split"] = _split_record(blocks, block_px, scene_transform, scene_crs, seed, fractions, skipped_edge)
    writer.close()
    return json.loads((writer.root / "dataset.json").read_text())["samples"]


def _offset(rng: np.random.Generator, lo: float, hi: float, chip: int, block_px: int, size: int) -> int:
    """A chip's first pixel along one axis: the object (``lo``–``hi``) inside with 2 px to
    spare, at a random place — within the split block of the object's centre where the chip
    fits there, so that chips rarely straddle two blocks."""
    first, last = hi - chip + 2, lo - 2
    block = int((lo + hi) / 2) // block_px * block_px
    inside = max(first, block, 0), min(last, block + block_px - chip, size - chip)
    if inside[0] <= inside[1]:
        first, last = inside
    return int(np.clip(rng.uniform(first, last), 0, size - chip))


def _block_split(block: tuple[int, int], seed: int, fractions: tuple[float, float]) -> str:
    """The split of one block of the raster (column, row), drawn from the seed alone."""
    t = np.random.default_rng([seed, 17, *block]).random()
    return "train" if t < fractions[0] else "val" if t < fractions[1] + fractions[0] else "test"


def _split_record(blocks: dict[tuple[int, int], str], block_px: int, transform, crs, seed: int,
                  fractions: tuple[float, float], skipped_edge: int) -> dict:
    """How the dataset was split, for dataset.json: the blocks that hold chips, each with its
    split and its bounds in the raster's CRS (map units)."""
    rows = []
    for (bx, by), split in sorted(blocks.items()):
        x0, y0 = transform * (bx * block_px, by * block_px)
        x1, y1 = transform * ((bx + 1) * block_px, (by + 1) * block_px)
        rows.append({"column": bx, "row": by, "split": split,
                     "bounds": [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]})
    return {"method": "spatial blocks", "block_px": block_px, "crs": crs.to_string(), "seed": seed,
            "fractions": {"train": fractions[0], "val": fractions[1], "test": round(1 - sum(fractions), 6)},
            "chips_skipped_on_block_edges": skipped_edge, "blocks": rows}
