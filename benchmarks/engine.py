"""Engine benchmark: `segment` with the CLI's defaults on synthetic scenes of growing size.

    python benchmarks/engine.py [--sizes 2048,4096,8192] [--layouts tiled,striped]
                                [--expressions 1,2] [--model tiny] [--workdir DIR]

Each scene is written window by window (never held in memory) as a compressed RGB GeoTIFF,
tiled (512 px blocks) or striped (one block per row strip), then segmented in a fresh process
with the options the CLI uses when none are given, writing the probability COG and a
GeoPackage. Prints, per case: throughput (megapixels/s), peak resident memory of the run, and
the engine's efficiency = time inside the model ÷ end-to-end time, with every stage's share
(open: header and scene statistics; infer: tiles read, run and blended; vectorize; ground;
write).
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

EXPRESSIONS = {1: "the storage tank", 2: "the large storage tank near the river"}
STAGES = ("open_s", "infer_s", "vectorize_s", "ground_s", "write_s")

RUN = r"""
import json, resource, sys
from georefseg.api import segment
scene, model, out, text = sys.argv[1:5]
res = segment(scene, text, out + "/o.gpkg", prob=out + "/p.tif", model=model, overwrite=True)
print(json.dumps({"timings": res.timings, "tiles": res.tiles, "features": len(res.features),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write_scene(path: Path, size: int, layout: str, block: int = 1024) -> None:
    """A size×size RGB scene assembled from synthetic 1024² patches, written block by block
    (ZSTD level 1: quick to write, and decoding it still costs the reader something)."""
    from georefseg.data.synth import generate_scene

    patches = [generate_scene(np.random.default_rng([9, i]), block).image.transpose(2, 0, 1) for i in range(4)]
    layout_opts = ({"tiled": True, "blockxsize": 512, "blockysize": 512} if layout == "tiled"
                   else {"tiled": False, "blockysize": 16})
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=Affine(1, 0, 400000, 0, -1, 5000000), compress="zstd",
                       zstd_level=1, BIGTIFF="IF_SAFER", **layout_opts) as dst:
        for i, y in enumerate(range(0, size, block)):
            for j, x in enumerate(range(0, size, block)):
                dst.write(patches[(i + 2 * j) % 4], window=Window(x, y, block, block))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="2048,4096,8192")
    ap.add_argument("--layouts", default="tiled,striped")
    ap.add_argument("--expressions", default="1,2", help="phrases per run: 1 (subject), 2 (subject + anchor)")
    ap.add_argument("--model", default="tiny", help="model name or weights file")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="georefseg-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        for layout in args.layouts.split(","):
            scene = work / f"scene_{size}_{layout}.tif"
            if not scene.exists():
                t0 = time.time()
                write_scene(scene, size, layout)
                print(f"wrote {scene} in {time.time() - t0:.0f} s", file=sys.stderr)
            for phrases in (int(k) for k in args.expressions.split(",")):
                out = work / f"out_{size}_{layout}_{phrases}"
                out.mkdir(exist_ok=True)
                proc = subprocess.run([sys.executable, "-c", RUN, str(scene), args.model, str(out),
                                       EXPRESSIONS[phrases]], capture_output=True, text=True, check=True)
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                rows.append((size, layout, phrases, r))
                print(json.dumps({"size": size, "layout": layout, "phrases": phrases, **r}), file=sys.stderr)
    print("| scene | layout | phrases | tiles | MP/s | peak RSS (MB) | efficiency | open | infer | vectorize "
          "| ground | write | total (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for size, layout, phrases, r in rows:
        t = r["timings"]
        shares = " | ".join(f"{t[s] / t['total_s']:.2f}" for s in STAGES)
        print(f"| {size}² | {layout} | {phrases} | {r['tiles']} | {size * size / 1e6 / t['total_s']:.2f} | "
              f"{r['peak_rss_mb']:.0f} | {t['model_s'] / t['total_s']:.2f} | {shares} | {t['total_s']:.0f} |")
    if len({r[0] for r in rows}) > 1:
        print(f"\npeak RSS ratio largest/smallest scene: {rows[-1][3]['peak_rss_mb'] / rows[0][3]['peak_rss_mb']:.2f}")


if __name__ == "__main__":
    main()
