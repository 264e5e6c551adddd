"""Engine benchmark: `segment` with the CLI's defaults on synthetic scenes of growing size.

    python benchmarks/engine.py [--sizes 2048,4096,8192] [--layouts tiled,striped]
                                [--expressions 1,2] [--model tiny|zero|WEIGHTS] [--workdir DIR] [--no-cli]

Each scene is written window by window (never held in memory) as a compressed RGB GeoTIFF,
tiled (512 px blocks) or striped (one block per row strip), then segmented in a fresh process
with the options the CLI uses when none are given, writing the probability COG and a
GeoPackage. Prints, per case: throughput (megapixels/s), peak resident memory of the run and of
the scene's work alone (peak RSS minus the RSS with the model loaded), each stage's share
(open: header and scene statistics; infer: tiles read, run and blended; vectorize; ground;
write), and two efficiencies:

* the engine's own: time inside the model calls ÷ the engine's total. It counts as model time
  whatever slows the model down inside the engine (reader, writer and COG threads competing
  for the cores), so it flatters;
* the independent one: tiles × the model's time per tile *alone* ÷ the run's wall time. The
  model alone is timed in the same process, on the same threads and batch size, before and
  after the run (median of 5 batches each), so a busy machine slows both sides alike.

``in-engine / alone`` is the model's time per tile inside the engine over its time alone: 1.00
when the engine's other work takes nothing from it. With ``--model zero`` (a model that costs
nothing, ``zero_model.py``) the run is the engine alone: its tiles/s is the ceiling a GPU
would meet. Unless ``--no-cli``, the same case is also run as a CLI call, timed from process
start to exit, beside the engine's own total.
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

HERE = Path(__file__).resolve().parent
EXPRESSIONS = {1: "the storage tank", 2: "the large storage tank near the river"}
STAGES = ("open_s", "infer_s", "vectorize_s", "ground_s", "write_s")

RUN = r"""
import json, resource, statistics, sys, time
sys.path.insert(0, sys.argv[5])
import numpy as np
from georefseg.api import Segmenter
from georefseg.expression import parse_expression
from georefseg.runner import predict_batch

scene, model, out, text = sys.argv[1:5]
if model == "zero":
    from zero_model import ZeroCost
    model = ZeroCost()
seg = Segmenter(model, device="cpu")
loaded_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
phrases = parse_expression(text).phrases()
batch = np.random.default_rng(0).random((seg.batch_size, 3, seg.tile_px, seg.tile_px), dtype=np.float32)
words = seg.model.encode_text(phrases)

def alone(n=5):
    times = []
    for _ in range(n + 1):
        t = time.perf_counter()
        predict_batch(seg.model, batch, words)
        times.append(time.perf_counter() - t)
    return statistics.median(times[1:]) / seg.batch_size

before = alone()
t0 = time.perf_counter()
res = seg.run(scene, text, out + "/o.gpkg", prob=out + "/p.tif", overwrite=True)
wall = time.perf_counter() - t0
after = alone()
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"timings": res.timings, "tiles": res.tiles, "features": len(res.features), "wall_s": wall,
                  "alone_s_per_tile": (before + after) / 2, "alone_before_after": [before, after],
                  "peak_rss_mb": peak_mb, "scene_rss_mb": peak_mb - loaded_mb}))
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


def cli_wall(scene: Path, model: str, out: Path, text: str) -> float:
    """Seconds from process start to exit of the equivalent `georefseg segment` call."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "georefseg.cli", "segment", str(scene), text, "-o", str(out / "cli.gpkg"),
                    "--prob", str(out / "cli.tif"), "--model", model, "--device", "cpu", "--overwrite",
                    "--quiet"], check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="2048,4096,8192")
    ap.add_argument("--layouts", default="tiled,striped")
    ap.add_argument("--expressions", default="1,2", help="phrases per run: 1 (subject), 2 (subject + anchor)")
    ap.add_argument("--model", default="tiny", help="model name or weights file; zero: a model that costs nothing")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--no-cli", action="store_true", help="do not time the CLI call")
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
                                       EXPRESSIONS[phrases], str(HERE)], capture_output=True, text=True, check=True)
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                if not args.no_cli and args.model != "zero":
                    r["cli_wall_s"] = cli_wall(scene, args.model, out, EXPRESSIONS[phrases])
                rows.append((size, layout, phrases, r))
                print(json.dumps({"size": size, "layout": layout, "phrases": phrases, **r}), file=sys.stderr)
    print("| scene | layout | phrases | tiles | tiles/s | MP/s | peak RSS (MB) | scene RSS (MB) | efficiency "
          "(engine's) | efficiency (independent) | in-engine / alone | open | infer | vectorize | ground | write "
          "| total (s) | CLI wall (s) | CLI ÷ total |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for size, layout, phrases, r in rows:
        t = r["timings"]
        shares = " | ".join(f"{t[s] / t['total_s']:.2f}" for s in STAGES)
        alone = r["alone_s_per_tile"]
        inside = t["model_s"] / max(r["tiles"], 1)
        cli = r.get("cli_wall_s")
        cli_cells = "– | –" if cli is None else f"{cli:.1f} | {cli / t['total_s']:.2f}"
        ratio = f"{inside / alone:.2f}" if alone > 1e-6 else "–"
        print(f"| {size}² | {layout} | {phrases} | {r['tiles']} | {r['tiles'] / r['wall_s']:.1f} | "
              f"{size * size / 1e6 / r['wall_s']:.2f} | {r['peak_rss_mb']:.0f} | {r['scene_rss_mb']:.0f} | "
              f"{t['model_s'] / t['total_s']:.2f} | {r['tiles'] * alone / r['wall_s']:.2f} | {ratio} | {shares} | "
              f"{t['total_s']:.1f} | {cli_cells} |")


if __name__ == "__main__":
    main()
