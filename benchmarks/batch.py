"""Batch throughput: scenes per minute with 1 and 2 Dask workers, and peak memory per worker.

    python benchmarks/batch.py [--scenes 8] [--workers 1,2]

Maps N copies of the sample scene (1024² px at 1 m, 9 tiles of the shipped `tiny` each) for one
expression with ``georefseg.batch.map_archive`` on a fresh LocalCluster per worker count
(processes of one thread each), into a fresh folder each time. Prints, per worker count: the
run's wall time (cluster start and one model load per worker included), scenes per minute of
it, the mean seconds per job on a worker, and each worker's peak resident memory (MB) as its
jobs reported it.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
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
    print("| workers | wall (s) | scenes/min | s per job (mean, on a worker) | peak RSS per worker (MB) |")
    print("|---|---|---|---|---|")
    for n in (int(w) for w in args.workers.split(",")):
        out = work / f"out{n}"
        report = map_archive(scenes, out, [args.expression], workers=n)
        with Manifest(out / "manifest.sqlite") as m:
            seconds = [r[0] for r in m.db.execute("SELECT seconds FROM jobs WHERE status = 'done'")]
        peaks = ", ".join(f"{v:.0f}" for v in report.peak_rss_mb.values())
        print(f"| {n} | {report.seconds:.1f} | {report.scenes_per_minute:.1f} | {statistics.mean(seconds):.2f} "
              f"| {peaks} |", flush=True)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
