"""Memory as scenes grow: the engine's own peak (peak RSS minus the RSS with the model loaded)
from 8192² to 32768² px, against the naive whole-scene arrays.

    python benchmarks/memory.py [--sizes 8192,16384,32768] [--model tiny] [--workdir DIR]

Each scene is an RGB GeoTIFF (512 px tiles, ZSTD) whose first 4096 rows hold synthetic imagery
and whose other blocks are never written (GDAL leaves them out of the file: nodata, read as 0),
so a 32768² scene costs 4096 rows of disk and of tiles, while the engine still opens, tiles,
blends, writes and vectorises the whole grid (the probability COG is 32768² px). Runs
`segment` in a fresh process per scene and prints peak RSS, RSS after loading the model, their
difference, and the naive arrays (H×W×3 bytes of image plus an H×W float32 probability raster).
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

DATA_ROWS = 4096

RUN = r"""
import json, resource, sys, time
from georefseg.api import Segmenter
seg = Segmenter(sys.argv[2], device="cpu")
loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t0 = time.perf_counter()
res = seg.run(sys.argv[1], "the storage tank", sys.argv[3] + "/o.gpkg", prob=sys.argv[3] + "/p.tif", overwrite=True)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"loaded_mb": loaded, "peak_mb": peak, "tiles": res.tiles, "skipped": res.tiles_skipped,
                  "wall_s": time.perf_counter() - t0}))
"""


def write_scene(path: Path, size: int) -> None:
    from georefseg.data.synth import generate_scene

    patch = generate_scene(np.random.default_rng(5), 1024).image.transpose(2, 0, 1)
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=3, dtype="uint8", nodata=0,
                       crs="EPSG:32633", transform=Affine(1, 0, 400000, 0, -1, 5000000), tiled=True,
                       blockxsize=512, blockysize=512, compress="zstd", zstd_level=1, BIGTIFF="YES",
                       SPARSE_OK="TRUE") as dst:
        for y in range(0, min(DATA_ROWS, size), 1024):
            for x in range(0, size, 1024):
                dst.write(np.maximum(patch, 1), window=Window(x, y, 1024, 1024))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="8192,16384,32768")
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="georefseg-mem-"))
    work.mkdir(parents=True, exist_ok=True)
    print("| scene | tiles run (of) | peak RSS (MB) | model loaded (MB) | engine's own (MB) | naive arrays (MB) "
          "| wall (s) |")
    print("|---|---|---|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        scene = work / f"sparse_{size}.tif"
        if not scene.exists():
            t0 = time.time()
            write_scene(scene, size)
            print(f"wrote {scene} ({scene.stat().st_size / 2**20:.0f} MB) in {time.time() - t0:.0f} s", file=sys.stderr)
        out = work / f"out_{size}"
        out.mkdir(exist_ok=True)
        proc = subprocess.run([sys.executable, "-c", RUN, str(scene), args.model, str(out)], capture_output=True,
                              text=True, check=True)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        naive = size * size * (3 + 4) / 2**20
        print(f"| {size}² | {r['tiles'] - r['skipped']} ({r['tiles']}) | {r['peak_mb']:.0f} | {r['loaded_mb']:.0f} | "
              f"{r['peak_mb'] - r['loaded_mb']:.0f} | {naive:.0f} | {r['wall_s']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
