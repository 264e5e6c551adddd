"""GPU benchmark, one prepared script for a CUDA machine: model throughput, the engine's ceiling,
and end-to-end tiles/s on a 16384² scene.

    python benchmarks/gpu.py [--models tiny,rmsin] [--size 16384] [--workdir DIR] [--seconds 10]

Prints JSON lines, then a markdown table to paste into benchmarks/README.md:

1. per model (random weights of its published configuration, ``benchmarks/models.py``): tiles/s
   in bf16 autocast with inference mode and channels_last at the largest batch that fits
   (searched by doubling from 8), and at batch 8;
2. the zero-cost ceiling: ``benchmarks/engine.py``'s run with ``zero_model.ZeroCost`` on the
   scene, the engine alone with every core of the host (tiles/s);
3. end to end: ``segment`` on the 16384² scene (1 phrase, the probability COG and a GeoPackage
   written) with each model on the GPU at the batch found in 1, tiles/s and the GPU's share.

Nothing here runs without CUDA: the script says so and exits 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from engine import write_scene  # noqa: E402
from models import BUILDERS, largest_batch, tiles_per_second  # noqa: E402
from zero_model import ZeroCost  # noqa: E402

from georefseg.api import Segmenter  # noqa: E402
from georefseg.models.device import place  # noqa: E402
from georefseg.options import SegmentOptions  # noqa: E402


def end_to_end(model, scene: Path, out: Path, batch: int) -> dict:
    seg = Segmenter(model, device="cuda" if not isinstance(model, ZeroCost) else "cpu",
                    options=SegmentOptions(batch_size=batch))
    t0 = time.perf_counter()
    res = seg.run(scene, "the storage tank", out / "o.gpkg", prob=out / "p.tif", overwrite=True)
    wall = time.perf_counter() - t0
    return {"tiles": res.tiles, "wall_s": round(wall, 2), "tiles_per_s": round(res.tiles / wall, 1),
            "model_share": round(res.timings["model_s"] / res.timings["total_s"], 3), "timings": res.timings}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="tiny,rmsin")
    ap.add_argument("--size", type=int, default=16384)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("benchmarks/gpu.py needs CUDA; this machine has none", file=sys.stderr)
        sys.exit(2)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="georefseg-gpu-"))
    scene = work / f"scene_{args.size}.tif"
    if not scene.exists():
        write_scene(scene, args.size, "tiled")
    device = torch.device("cuda")
    rows = [{"gpu": torch.cuda.get_device_name(), "cores": os.cpu_count(), "torch": torch.__version__}]
    print(json.dumps(rows[0]), flush=True)
    for name in args.models.split(","):
        model = place(BUILDERS[name](), device)
        best = largest_batch(model, device)
        row = {"model": name, "largest_batch": best,
               "tiles_per_s_batch8": round(tiles_per_second(model, 8, device, args.seconds), 1),
               "tiles_per_s_largest": round(tiles_per_second(model, best, device, args.seconds), 1),
               "peak_gpu_MB": round(torch.cuda.max_memory_allocated() / 2**20)}
        out = work / f"out_{name}"
        out.mkdir(exist_ok=True)
        row["end_to_end"] = end_to_end(model, scene, out, min(best, 64))
        rows.append(row)
        print(json.dumps(row), flush=True)
        del model
        torch.cuda.empty_cache()
    out = work / "out_zero"
    out.mkdir(exist_ok=True)
    zero = {"model": "zero (engine alone)", "end_to_end": end_to_end(ZeroCost(), scene, out, 8)}
    rows.append(zero)
    print(json.dumps(zero), flush=True)
    print(f"\n{rows[0]['gpu']}, {rows[0]['cores']} cores, torch {rows[0]['torch']}, scene {args.size}²\n")
    print("| model | largest batch | tiles/s (batch 8) | tiles/s (largest) | peak GPU MB | end-to-end tiles/s "
          "| model share |")
    print("|---|---|---|---|---|---|---|")
    for r in rows[1:]:
        e = r["end_to_end"]
        print(f"| {r['model']} | {r.get('largest_batch', '–')} | {r.get('tiles_per_s_batch8', '–')} | "
              f"{r.get('tiles_per_s_largest', '–')} | {r.get('peak_gpu_MB', '–')} | {e['tiles_per_s']} | "
              f"{e['model_share']} |")


if __name__ == "__main__":
    main()
