"""Regenerate sample_data/ (the README's demo scene) from georefseg's synthetic generator.

    python sample_data/make_sample.py

Takes the first generator seed whose 1024×1024 scene has a river, at least four kinds of
objects, and exactly one tank that "the large storage tank near the river" refers to
(checked with the same predicates the training data uses). Writes the scene as a
georeferenced GeoTIFF (UTM 33N, 1 m pixels) and the target's outline in map coordinates to
truth.geojson, which the tests compare the demo's result with.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from shapely import affinity
from shapely.geometry import mapping

from georefseg.data import expressions as ex
from georefseg.data.synth import generate_scene, write_scene_geotiff

HERE = Path(__file__).resolve().parent
SIZE, CRS, ORIGIN, PIXEL = 1024, "EPSG:32633", (455000.0, 4990000.0), 1.0
EXPRESSION = "the large storage tank near the river"


def find_scene(start: int = 0):
    for seed in range(start, start + 5000):
        rng = np.random.default_rng([2026, seed])
        scene = generate_scene(rng, SIZE, density=0.8)
        if scene.rivers.is_empty or len({o.category for o in scene.objects}) < 4:
            continue
        preds = [ex.Predicate("category", "noun", "storage tank",
                              lambda o: 1 if o.category == "storage tank" else -1),
                 ex._near(scene.rivers, "near the river")]
        largest = ex.Superlative("size", "large", lambda o: o.geometry.area, lambda t, o: t >= 1.4 * o)
        tanks = [o for o in scene.objects if o.category == "storage tank"]
        for t in tanks:
            if len(tanks) >= 3 and ex._refers_to(scene, t, preds, largest):
                return seed, scene, t
    raise RuntimeError("no suitable scene found")


def main() -> None:
    seed, scene, target = find_scene()
    write_scene_geotiff(HERE / "scene.tif", scene, CRS, ORIGIN, PIXEL)
    to_map = [PIXEL, 0, 0, -PIXEL, ORIGIN[0], ORIGIN[1]]
    truth = {"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": CRS}},
             "features": [{"type": "Feature",
                           "properties": {"expression": EXPRESSION, "category": target.category},
                           "geometry": mapping(affinity.affine_transform(target.geometry, to_map))}]}
    (HERE / "truth.geojson").write_text(json.dumps(truth, indent=1))
    counts = {}
    for o in scene.objects:
        counts[o.category] = counts.get(o.category, 0) + 1
    print(f"seed {seed}: {counts}; target area {target.area:.0f} m²")


if __name__ == "__main__":
    main()
