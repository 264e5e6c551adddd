"""Synthetic overhead scenes with referring expressions.

Scenes have textured land, fields, rivers, lakes and roads, and objects (storage tanks,
buildings, ships, planes, vehicles) at any rotation and a range of sizes, drawn with
shadows. The geometry of everything is kept (shapely, pixel coordinates: x right, y down), so
expressions are built from predicates that are checked against every object: an expression
is kept only when its referent is the one object that satisfies it, or, for "absent"
samples, when no object does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rasterio.features import rasterize
from shapely import affinity
from shapely.geometry import LineString, Point, Polygon, box
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from georefseg.data.expressions import Expression, describe_absent, describe_target

COLOURS: dict[str, tuple[int, int, int]] = {
    "white": (236, 236, 230), "grey": (140, 142, 146), "red": (178, 48, 38),
    "blue": (46, 84, 170), "green": (58, 128, 64), "yellow": (222, 190, 58),
    "black": (32, 32, 34),
}
# Which colours each category comes in (the expressions only use these).
CATEGORY_COLOURS: dict[str, tuple[str, ...]] = {
    "storage tank": ("white", "grey", "green"),
    "building": ("red", "white", "grey", "blue", "yellow"),
    "ship": ("white", "grey", "red", "black"),
    "plane": ("white", "grey"),
    "vehicle": ("red", "white", "blue", "black", "yellow"),
}
CATEGORIES = tuple(CATEGORY_COLOURS)


@dataclass
class SceneObject:
    """One referable object; geometry in pixel coordinates."""

    category: str
    colour: str | None  # None for land cover (river, road, …)
    geometry: BaseGeometry

    @property
    def area(self) -> float:
        return self.geometry.area

    @property
    def centroid(self) -> tuple[float, float]:
        c = self.geometry.centroid
        return c.x, c.y


@dataclass
class SynthScene:
    """A rendered scene and the geometry of what it shows."""

    image: np.ndarray  # H×W×3 uint8
    objects: list[SceneObject]
    rivers: BaseGeometry
    lakes: BaseGeometry
    roads: BaseGeometry
    width: int
    height: int
    _masks: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def water(self) -> BaseGeometry:
        return unary_union([self.rivers, self.lakes])

    def mask(self, objects: list[SceneObject]) -> np.ndarray:
        """Binary H×W mask of the given objects (empty for none)."""
        out = np.zeros((self.height, self.width), dtype=np.uint8)
        shapes = [(o.geometry, 1) for o in objects]
        if shapes:
            rasterize(shapes, out=out)
        return out


# --------------------------------------------------------------------------- rendering helpers

def _value_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Smooth noise in [0, 1] with features about ``cell`` pixels across."""
    grid = torch.from_numpy(rng.random((1, 1, h // cell + 2, w // cell + 2), dtype=np.float32))
    up = F.interpolate(grid, scale_factor=cell, mode="bicubic", align_corners=False)
    return up[0, 0, :h, :w].clamp(0, 1).numpy()


def _fractal_noise(rng: np.random.Generator, h: int, w: int, base_cell: int) -> np.ndarray:
    total = np.zeros((h, w), np.float32)
    amp, norm, cell = 1.0, 0.0, base_cell
    while cell >= 2:
        total += amp * _value_noise(rng, h, w, cell)
        norm += amp
        amp, cell = amp * 0.5, cell // 2
    return total / norm


def _burn(image: np.ndarray, geom: BaseGeometry, colour: np.ndarray | tuple, alpha: float = 1.0,
          texture: np.ndarray | None = None) -> np.ndarray:
    """Paint ``geom`` onto ``image`` in place; returns the boolean footprint."""
    h, w = image.shape[:2]
    if geom.is_empty:
        return np.zeros((h, w), bool)
    mask = rasterize([(geom, 1)], out_shape=(h, w), dtype=np.uint8).astype(bool)
    if not mask.any():
        return mask
    col = np.asarray(colour, np.float32)
    if texture is not None:
        col = col[None, :] * texture[mask][:, None]
    image[mask] = (1 - alpha) * image[mask] + alpha * col
    return mask


def _shade(image: np.ndarray, geom: BaseGeometry, factor: float) -> None:
    """Darken (factor < 1) the pixels under ``geom``: shadows."""
    h, w = image.shape[:2]
    if geom.is_empty:
        return
    mask = rasterize([(geom, 1)], out_shape=(h, w), dtype=np.uint8).astype(bool)
    image[mask] *= factor


def _jitter(rng: np.random.Generator, colour: str, amount: float = 1.0) -> np.ndarray:
    """The named colour with some brightness and a little hue variation (amount 0: exact)."""
    base = np.asarray(COLOURS[colour], np.float32)
    if amount == 0:
        return base
    return np.clip(base * rng.uniform(0.88, 1.08) + rng.normal(0, 4.0, 3), 0, 255)


# --------------------------------------------------------------------------- scene layout

def _wiggly_line(rng: np.random.Generator, w: int, h: int, wiggle: float, steps: int = 24) -> LineString:
    """A line from one side of the frame to another, bending smoothly."""
    side = rng.integers(2)
    t = np.linspace(-0.15, 1.15, steps)
    phase, freq = rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 1.6)
    start, end = rng.uniform(0.1, 0.9, 2)
    along = start + (end - start) * t
    offset = wiggle * np.sin(2 * np.pi * freq * t + phase)
    if side == 0:  # runs top to bottom
        xs, ys = (along * w + offset * w), t * h
    else:  # runs left to right
        xs, ys = t * w, (along * h + offset * h)
    return LineString(np.stack([xs, ys], 1))


def _blob(rng: np.random.Generator, cx: float, cy: float, radius: float) -> Polygon:
    phi = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    r = np.ones_like(phi)
    for k in range(2, 5):
        r += rng.uniform(0, 0.18) * np.cos(k * phi + rng.uniform(0, 2 * np.pi))
    r *= radius
    return Polygon(np.stack([cx + r * np.cos(phi), cy + r * np.sin(phi)], 1)).buffer(0)


def _rect(cx: float, cy: float, length: float, width: float, angle: float) -> Polygon:
    poly = box(-length / 2, -width / 2, length / 2, width / 2)
    return affinity.translate(affinity.rotate(poly, angle, origin=(0, 0)), cx, cy)


def _ship(cx: float, cy: float, length: float, angle: float) -> Polygon:
    w = length * 0.26
    pts = [(-length / 2, -w / 2), (length / 2 - w, -w / 2), (length / 2, 0),
           (length / 2 - w, w / 2), (-length / 2, w / 2)]
    return affinity.translate(affinity.rotate(Polygon(pts), angle, origin=(0, 0)), cx, cy)


def _plane(cx: float, cy: float, span: float, angle: float) -> Polygon:
    fuselage = box(-span * 0.5, -span * 0.065, span * 0.5, span * 0.065)
    wings = box(-span * 0.02, -span * 0.5, span * 0.16, span * 0.5)
    tail = box(-span * 0.5, -span * 0.19, -span * 0.4, span * 0.19)
    shape = unary_union([fuselage, wings, tail])
    return affinity.translate(affinity.rotate(shape, angle, origin=(0, 0)), cx, cy)


@dataclass
class _Layout:
    rng: np.random.Generator
    w: int
    h: int
    occupied: list[BaseGeometry] = field(default_factory=list)

    def free(self, geom: BaseGeometry, pad: float = 2.0) -> bool:
        inside = geom.bounds[0] >= 2 and geom.bounds[1] >= 2 and \
            geom.bounds[2] <= self.w - 2 and geom.bounds[3] <= self.h - 2
        return inside and not any(geom.buffer(pad).intersects(o) for o in self.occupied)


def generate_scene(rng: np.random.Generator, width: int = 256, height: int | None = None,
                   density: float = 1.0) -> SynthScene:
    """Lay out and render one scene. ``density`` scales how many objects appear."""
    h, w = height or width, width
    scale = density * (w * h) / 256**2
    lay = _Layout(rng, w, h)

    # Land: two colours mixed by fractal noise, plus grain.
    land_a = np.array(rng.choice([(96, 128, 70), (110, 122, 80), (134, 128, 94)]), np.float32)
    land_b = np.array(rng.choice([(148, 138, 104), (86, 108, 64), (160, 150, 120)]), np.float32)
    mix = _fractal_noise(rng, h, w, 64)[..., None]
    image = land_a * (1 - mix) + land_b * mix
    image += rng.normal(0, 5, (h, w, 1)).astype(np.float32)

    # Fields: rotated rectangles with crop rows.
    for _ in range(rng.poisson(1.5 * math.sqrt(scale) + 0.5)):
        f = _rect(rng.uniform(0, w), rng.uniform(0, h), rng.uniform(40, 120), rng.uniform(30, 90),
                  rng.uniform(0, 180))
        phi = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[0:h, 0:w]
        rows = 0.88 + 0.12 * np.sin((xx * np.cos(phi) + yy * np.sin(phi)) * 2 * np.pi / rng.uniform(3, 7))
        colour = rng.choice([(120, 150, 70), (176, 160, 96), (130, 104, 70), (90, 130, 60)])
        _burn(image, f, colour, alpha=0.85, texture=rows.astype(np.float32))

    # Water: a river crossing the scene, sometimes lakes.
    rivers, lakes = [], []
    if rng.random() < 0.6:
        river = _wiggly_line(rng, w, h, rng.uniform(0.02, 0.12)).buffer(rng.uniform(7, 22) * (1 + 0.3 * (scale > 4)))
        rivers.append(river)
    for _ in range(rng.poisson(0.45 * math.sqrt(scale))):
        lakes.append(_blob(rng, rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h, rng.uniform(18, 48)))
    river_geom, lake_geom = unary_union(rivers), unary_union(lakes).difference(unary_union(rivers))
    water = unary_union([river_geom, lake_geom])
    water_col = np.array(rng.choice([(38, 66, 92), (44, 80, 104), (30, 58, 70)]), np.float32)
    ripples = 0.9 + 0.2 * _value_noise(rng, h, w, 8)
    if not water.is_empty:
        _burn(image, water, water_col, texture=ripples)
        _shade(image, water.boundary.buffer(1.2), 0.85)  # darker banks

    # Roads: straight-ish lines, grey, on top of everything but objects.
    roads = []
    for _ in range(rng.poisson(0.9 * math.sqrt(scale))):
        line = _wiggly_line(rng, w, h, rng.uniform(0.0, 0.04), steps=6)
        roads.append((line, line.buffer(rng.uniform(3.0, 5.5), cap_style="flat")))
    road_geom = unary_union([r for _, r in roads])
    _burn(image, road_geom, rng.choice([(120, 120, 118), (96, 96, 98), (140, 138, 132)]))
    for line, _ in roads:
        _burn(image, line.buffer(0.6), (200, 200, 190), alpha=0.5)
    lay.occupied.append(water.buffer(1))
    lay.occupied.append(road_geom)

    sun = np.radians(rng.uniform(0, 360))
    shadow_dir = np.array([np.cos(sun), np.sin(sun)])
    objects: list[SceneObject] = []

    def place(category: str, make, colour: str | None = None, shadow: float = 0.35,
              where: BaseGeometry | None = None, tries: int = 30) -> SceneObject | None:
        for _ in range(tries):
            geom = make()
            if where is not None:
                if not where.contains(geom):
                    continue
                inside = all(0 <= b <= s for b, s in zip(geom.bounds, (w, h, w, h), strict=True))
                if not inside or any(geom.buffer(1.5).intersects(o.geometry) for o in objects):
                    continue
            elif not lay.free(geom):
                continue
            colour = colour or str(rng.choice(CATEGORY_COLOURS[category]))
            obj = SceneObject(category, colour, geom)
            if shadow > 0:
                size = math.sqrt(geom.area)
                dx, dy = shadow_dir * size * shadow
                _shade(image, affinity.translate(geom, dx, dy).difference(geom), 0.5)
            objects.append(obj)
            lay.occupied.append(geom)
            return obj
        return None

    def counts(mean: float) -> int:
        return int(rng.poisson(mean * scale)) if rng.random() < 0.7 else 0

    # Storage tanks, often in groups of similar ones.
    for _ in range(counts(1.1)):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        for _ in range(rng.integers(1, 4)):
            r = rng.uniform(5, 22)
            obj = place("storage tank", lambda r=r, cx=cx, cy=cy: Point(
                cx + rng.normal(0, 30), cy + rng.normal(0, 30)).buffer(r, quad_segs=12), shadow=0.3)
            if obj:
                _burn(image, obj.geometry, _jitter(rng, obj.colour))
                ring = obj.geometry.difference(obj.geometry.buffer(-max(1.0, 0.12 * r)))
                _burn(image, ring, (0.75 * _jitter(rng, obj.colour, 0)))
                c = obj.geometry.centroid
                _burn(image, c.buffer(max(1.0, 0.2 * r)), 0.85 * _jitter(rng, obj.colour, 0))
    for _ in range(counts(2.2)):
        shape: dict[str, float] = {}

        def building(shape: dict[str, float] = shape) -> Polygon:
            shape.update(cx=rng.uniform(0, w), cy=rng.uniform(0, h), length=rng.uniform(10, 40),
                         width=rng.uniform(8, 28), angle=rng.uniform(0, 180))
            return _rect(**shape)

        obj = place("building", building, shadow=0.45)
        if obj:
            _burn(image, obj.geometry, _jitter(rng, obj.colour))
            # A gable roof: one half of the roof catches less light.
            a = math.radians(shape["angle"])
            half = _rect(shape["cx"] - math.sin(a) * shape["width"] / 4,
                         shape["cy"] + math.cos(a) * shape["width"] / 4,
                         shape["length"], shape["width"] / 2, shape["angle"])
            _burn(image, half, 0.82 * _jitter(rng, obj.colour, 0))
    if not water.is_empty:
        for _ in range(counts(1.3)):
            # Ships sit on water: their size follows what the water body can hold.
            obj = place("ship", lambda: _ship(*_point_in(rng, water), rng.uniform(12, 42), rng.uniform(0, 360)),
                        shadow=0.15, where=water.buffer(-1.5))
            if obj:
                _burn(image, obj.geometry, _jitter(rng, obj.colour))
                cab = affinity.scale(obj.geometry, 0.35, 0.35, origin="centroid")
                _burn(image, cab, 0.7 * _jitter(rng, obj.colour, 0) + 40)
    for _ in range(counts(0.5)):
        obj = place("plane", lambda: _plane(rng.uniform(0, w), rng.uniform(0, h), rng.uniform(18, 50),
                                           rng.uniform(0, 360)), shadow=0.3)
        if obj:
            _burn(image, obj.geometry, _jitter(rng, obj.colour))
    if roads:
        for _ in range(counts(1.5)):
            line, _ = roads[rng.integers(len(roads))]

            def vehicle(line: LineString = line) -> Polygon:
                d = rng.uniform(0, line.length)
                p, q = line.interpolate(d), line.interpolate(min(line.length, d + 1.0))
                ang = math.degrees(math.atan2(q.y - p.y, q.x - p.x)) + rng.normal(0, 4)
                off = rng.uniform(-2.0, 2.0)
                nx, ny = -math.sin(math.radians(ang)), math.cos(math.radians(ang))
                return _rect(p.x + off * nx, p.y + off * ny, rng.uniform(6, 12), rng.uniform(3, 5), ang)

            obj = place("vehicle", vehicle, shadow=0.2, where=road_geom.buffer(1.0))
            if obj:
                _burn(image, obj.geometry, _jitter(rng, obj.colour))

    image += rng.normal(0, 3, image.shape).astype(np.float32)
    img = np.clip(image, 0, 255).astype(np.uint8)
    return SynthScene(img, objects, river_geom, lake_geom, road_geom, w, h)


def _point_in(rng: np.random.Generator, geom: BaseGeometry) -> tuple[float, float]:
    minx, miny, maxx, maxy = geom.bounds
    for _ in range(50):
        x, y = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
        if geom.contains(Point(x, y)):
            return x, y
    c = geom.representative_point()
    return c.x, c.y


# --------------------------------------------------------------------------- samples

@dataclass
class Sample:
    """One image–expression–mask triplet."""

    expression: str
    target: list[SceneObject]  # empty when the referent is absent
    kinds: list[str]  # which kinds of words pick it out: category, colour, size, position, relation


# Land cover a relation can point at ("near the river"); the model must find it too, so that
# relations can be resolved at scene level. Stuff samples refer to all of it in the scene.
STUFF_WORDS: dict[str, tuple[str, ...]] = {
    "river": ("the river", "river"), "lake": ("the lake", "the pond"),
    "road": ("the road", "the roads"), "water": ("the water", "water"),
}


def object_vocabulary() -> set[str]:
    """Every object word the synthetic scenes' expressions use: what a model trained on them knows."""
    from georefseg.data.expressions import SYNONYMS
    from georefseg.data.samples import object_words

    return object_words([*(n for names in SYNONYMS.values() for n in names),
                         *(w for words in STUFF_WORDS.values() for w in words)])


def _stuff_sample(scene: SynthScene, rng: np.random.Generator) -> Sample:
    """"the river" (all river in view), or an absent one when the scene has none."""
    name = str(rng.choice(list(STUFF_WORDS)))
    geom = {"river": scene.rivers, "lake": scene.lakes, "road": scene.roads, "water": scene.water}[name]
    geom = geom.intersection(box(0, 0, scene.width, scene.height))
    words = str(rng.choice(STUFF_WORDS[name]))
    if geom.area < 20:
        return Sample(words, [], ["absent", "stuff"])
    return Sample(words, [SceneObject(name, None, geom)], ["stuff"])


def make_samples(scene: SynthScene, rng: np.random.Generator, n_present: int = 3,
                 p_absent: float = 0.2, p_stuff: float = 0.15) -> list[Sample]:
    """Up to ``n_present`` expressions with one referent each, plus maybe one with none,
    plus (with probability ``p_stuff``) one about land cover: river, lake, road or water."""
    samples: list[Sample] = []
    order = rng.permutation(len(scene.objects))
    for idx in order:
        if len(samples) >= n_present:
            break
        expr: Expression | None = describe_target(scene, scene.objects[idx], rng)
        if expr is not None and expr.text not in {s.expression for s in samples}:
            samples.append(Sample(expr.text, [scene.objects[idx]], expr.kinds))
    if rng.random() < p_absent or not samples:
        expr = describe_absent(scene, rng, CATEGORIES, CATEGORY_COLOURS)
        if expr is not None:
            samples.append(Sample(expr.text, [], expr.kinds))
    # Drawn last, so that the samples above stay the same for a seed whatever p_stuff is.
    if p_stuff and rng.random() < p_stuff:
        samples.append(_stuff_sample(scene, rng))
    return samples


# --------------------------------------------------------------------------- dataset folders

def _write_scene(args: tuple) -> list[dict]:
    from georefseg.data.imageio import write_png

    root, index, seed, size, split = args
    rng = np.random.default_rng([seed, index])
    scene = generate_scene(rng, size)
    stem = f"{index:06d}"
    write_png(root / "images" / f"{stem}.png", scene.image)
    records = []
    for j, sample in enumerate(make_samples(scene, rng)):
        mask_name = None
        if sample.target:
            mask_name = f"masks/{stem}_{j}.png"
            write_png(root / mask_name, scene.mask(sample.target) * 255)
        records.append({"id": f"{stem}_{j}", "image": f"images/{stem}.png", "mask": mask_name,
                        "expression": sample.expression, "split": split, "kinds": sample.kinds,
                        "category": sample.target[0].category if sample.target else None})
    return records


def write_synthetic_dataset(root: str | Path, n: int, seed: int = 0, size: int = 256,
                            workers: int = 1, progress=None) -> dict:
    """Generate ``n`` scenes (each with a few expressions) into a georefseg dataset folder.

    Deterministic for a given ``seed``: scene i always comes out the same, whatever ``workers``.
    Returns the sample counts per split.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from georefseg.data.native import NativeWriter

    root = Path(root)
    writer = NativeWriter(root, {"source": "synthetic", "seed": seed, "scenes": n, "size": size})
    order = np.random.default_rng([seed, 7]).permutation(n)
    rank = np.empty(n, int)
    rank[order] = np.arange(n)
    splits = ["train" if r < 0.8 * n else "val" if r < 0.9 * n else "test" for r in rank]
    jobs = [(root, i, seed, size, splits[i]) for i in range(n)]
    if workers > 1:
        # "spawn": forked children of a process whose torch thread pool is running can hang.
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = pool.map(_write_scene, jobs, chunksize=16)
            for recs in results:
                for r in recs:
                    writer.add(r)
                if progress:
                    progress()
    else:
        for job in jobs:
            for r in _write_scene(job):
                writer.add(r)
            if progress:
                progress()
    writer.close()
    return writer.meta | {"samples": {s: sum(r["split"] == s for r in writer.records)
                                      for s in ("train", "val", "test")}}


class SyntheticStream(torch.utils.data.IterableDataset):
    """Endless fresh training samples: scene i comes from ``default_rng([seed, i])``.

    Scenes are split among DataLoader workers; a small shuffle buffer mixes the expressions
    of different scenes within a batch. Use a seed that no evaluation dataset uses.
    """

    def __init__(self, seed: int, size: int = 256, start: int = 0, buffer: int = 64):
        self.seed, self.size, self.start, self.buffer = seed, size, start, buffer

    def __iter__(self):
        from georefseg.data.samples import to_item

        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        shuffle = np.random.default_rng([self.seed, self.start, worker, 99])
        pool: list[dict] = []
        i = self.start + worker
        while True:
            rng = np.random.default_rng([self.seed, i])
            scene = generate_scene(rng, self.size)
            for j, sample in enumerate(make_samples(scene, rng)):
                pool.append(to_item(scene.image, scene.mask(sample.target).astype(bool),
                                    sample.expression, f"{i}_{j}", self.size, int(rng.integers(8))))
            while len(pool) > self.buffer:
                yield pool.pop(int(shuffle.integers(len(pool))))
            i += workers


def write_scene_geotiff(path: str | Path, scene: SynthScene, crs: str, origin: tuple[float, float],
                        pixel_size: float) -> None:
    """Save a synthetic scene as an RGB GeoTIFF whose upper-left corner is ``origin`` (map units)."""
    import rasterio
    from affine import Affine

    transform = Affine(pixel_size, 0, origin[0], 0, -pixel_size, origin[1])
    with rasterio.open(path, "w", driver="GTiff", width=scene.width, height=scene.height, count=3,
                       dtype="uint8", crs=crs, transform=transform, tiled=True, blockxsize=256,
                       blockysize=256, compress="deflate", photometric="RGB") as dst:
        dst.write(scene.image.transpose(2, 0, 1))
