"""Batch throughput: scenes per minute with 1 and 2 Dask workers, and peak memory per worker.

    python benchmarks/batch.py [--scenes 8] [--workers 1,2]

Maps N copies of the sample scene (1024² px at 1 m, 9 tiles of the shipped `tiny` each) for one
expression with ``georefseg.batch.map_archive`` on a fresh LocalCluster per worker count
(one job at a time per worker, its model on cores ÷ workers threads: the default), into a fresh
folder each time; and, as the baseline, the same scenes as N sequential `georefseg segment`
calls. Prints, per worker count: the run's wall time (cluster start and one model load per
worker included), scenes per minute, its speed-up over the sequential CLI calls, the mean
seconds per job on a worker, and each worker's peak resident memory (MB) as its jobs reported
it.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from georefseg.batch import map_archive
from georefseg.manifest import Manifest

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "scene.tif"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=8)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--expression", default="the storage tanks")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="georefseg-batch-bench-"))
    scenes = work / "scenes"
    scenes.mkdir()
    for i in range(args.scenes):
        shutil.copy(SAMPLE, scenes / f"scene{i:03d}.tif")
    print(f"{args.scenes} scenes of 1024² px (9 tiles each), '{args.expression}', model tiny, CPU")
    t0 = time.perf_counter()
    for scene in sorted(scenes.iterdir()):
        subprocess.run([sys.executable, "-m", "georefseg.cli", "segment", str(scene), args.expression, "-o",
                        str(work / f"{scene.stem}.gpkg"), "--device", "cpu", "--quiet"], check=True,
                       capture_output=True)
    sequential = time.perf_counter() - t0
    print("| workers | wall (s) | scenes/min | × sequential CLI | s per job (mean, on a worker) "
          "| peak RSS per worker (MB) |")
    print("|---|---|---|---|---|---|")
    print(f"| sequential CLI calls | {sequential:.1f} | {60 * args.scenes / sequential:.1f} | 1.00 | "
          f"{sequential / args.scenes:.2f} | – |", flush=True)
    for n in (int(w) for w in args.workers.split(",")):
        out = work / f"out{n}"
        report = map_archive(scenes, out, [args.expression], workers=n)
        with Manifest(out / "manifest.sqlite") as m:
            seconds = [r[0] for r in m.db.execute("SELECT seconds FROM jobs WHERE status = 'done'")]
        peaks = ", ".join(f"{v:.0f}" for v in report.peak_rss_mb.values())
        print(f"| {n} | {report.seconds:.1f} | {report.scenes_per_minute:.1f} | {sequential / report.seconds:.2f} | "
              f"{statistics.mean(seconds):.2f} | {peaks} |", flush=True)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
