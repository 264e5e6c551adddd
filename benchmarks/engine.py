"""Engine benchmark: `segment` on synthetic scenes of growing size.

    python benchmarks/engine.py [--sizes 4096,16384,32768] [--model tiny] [--workdir DIR]

Each scene is written window by window (never held in memory) as a tiled, compressed RGB
GeoTIFF, then segmented in a fresh process. Prints, per scene: throughput (megapixels/s),
peak resident memory of the run, and the engine's efficiency = time inside the model ÷
end-to-end time (reading, blending, writing and vectorising are what the rest costs).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window

RUN = r"""
import json, resource, sys, time
from georefseg.api import segment
from georefseg.models.registry import load_model
scene, model, out = sys.argv[1], sys.argv[2], sys.argv[3]
net = load_model(model) if model == "tiny" else load_model(model)
res = segment(scene, "the large storage tank near the river", out + "/o.gpkg", prob=out + "/p.tif",
              model=net, batch_size=4, overwrite=True)
print(json.dumps({"timings": res.timings, "tiles": res.tiles, "features": len(res.features),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write_scene(path: Path, size: int, block: int = 1024) -> None:
    """A size×size RGB scene assembled from synthetic 1024² patches, written block by block
    (ZSTD level 1: quick to write, and decoding it still costs the reader something)."""
    from georefseg.data.synth import generate_scene

    patches = [generate_scene(np.random.default_rng([9, i]), block).image.transpose(2, 0, 1) for i in range(4)]
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=Affine(1, 0, 400000, 0, -1, 5000000), tiled=True,
                       blockxsize=512, blockysize=512, compress="zstd", zstd_level=1, BIGTIFF="IF_SAFER") as dst:
        for i, y in enumerate(range(0, size, block)):
            for j, x in enumerate(range(0, size, block)):
                dst.write(patches[(i + 2 * j) % 4], window=Window(x, y, block, block))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="4096,16384,32768")
    ap.add_argument("--model", default="tiny", help="model name or weights file")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="georefseg-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        scene = work / f"scene_{size}.tif"
        if not scene.exists():
            t0 = time.time()
            write_scene(scene, size)
            print(f"wrote {scene} in {time.time() - t0:.0f} s", file=sys.stderr)
        out = work / f"out_{size}"
        out.mkdir(exist_ok=True)
        proc = subprocess.run([sys.executable, "-c", RUN, str(scene), args.model, str(out)],
                              capture_output=True, text=True, check=True)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        t = r["timings"]
        mp = size * size / 1e6
        rows.append((size, r["tiles"], mp / t["total_s"], r["peak_rss_mb"], t["model_s"] / t["total_s"], t))
        print(json.dumps({"size": size, **r}), file=sys.stderr)
    print("| scene | tiles | throughput (MP/s) | peak RSS (MB) | efficiency (model ÷ total) | total (s) |")
    print("|---|---|---|---|---|---|")
    for size, tiles, mps, rss, eff, t in rows:
        print(f"| {size}² | {tiles} | {mps:.2f} | {rss:.0f} | {eff:.2f} | {t['total_s']:.0f} |")
    if len(rows) > 1:
        print(f"\npeak RSS ratio largest/smallest: {rows[-1][3] / rows[0][3]:.2f}")


if __name__ == "__main__":
    main()
