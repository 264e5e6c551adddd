"""A run from the QGIS panel against the same run of the CLI: what the plugin adds.

    QT_QPA_PLATFORM=offscreen /usr/bin/python3 benchmarks/qgis_panel.py [--repeat 3] [--scene PATH]

Run in QGIS's Python (Debian's /usr/bin/python3 with python3-qgis) with the engine on PATH (an
active venv) or in $GEOREFSEG_EXECUTABLE. Both sides run the README's expression on the sample
scene (9 tiles on a CPU) into a fresh GeoPackage: the CLI as ``georefseg segment`` in a subprocess,
timed from start to exit; the panel from Run to its result on the map (task start, engine,
loading and styling the layers, zoom). Prints the median of each and the difference, in seconds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "plugins" / "qgis"), str(REPO / "plugins" / "qgis" / "tests")]

from qgis.core import QgsApplication, QgsProject, QgsRasterLayer  # noqa: E402

EXPRESSION = "the large storage tank near the river"


def cli_seconds(engine: str, scene: Path, out: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([engine, "segment", str(scene), EXPRESSION, "-o", str(out), "--progress", "none", "--quiet"],
                   check=True)
    return time.perf_counter() - t0


def panel_seconds(app, scene: Path, out: Path) -> float:
    from georefseg_qgis.panel import SegmentPanel
    from stand_in_iface import StandInIface

    QgsProject.instance().clear()
    layer = QgsRasterLayer(str(scene), "scene")
    QgsProject.instance().addMapLayer(layer)
    panel = SegmentPanel(StandInIface())
    panel.raster.setLayer(layer)
    panel.expression.setCurrentText(EXPRESSION)
    panel.output.setFilePath(str(out))
    done = []
    panel.runFinished.connect(done.append)
    t0 = time.perf_counter()
    panel.run()
    while not done:
        app.processEvents()
        time.sleep(0.005)
    seconds = time.perf_counter() - t0
    if "error" in done[0]:
        raise SystemExit(done[0]["error"])
    panel.close_down()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scene", default=str(REPO / "sample_data" / "scene.tif"))
    args = parser.parse_args()
    engine = os.environ.get("GEOREFSEG_EXECUTABLE") or shutil.which("georefseg")
    if engine is None:
        raise SystemExit("georefseg is not on PATH: activate the engine's venv or set GEOREFSEG_EXECUTABLE")
    work = Path(tempfile.mkdtemp(prefix="georefseg-bench-"))
    scene = work / Path(args.scene).name
    shutil.copy(args.scene, scene)  # QGIS leaves statistics beside a raster it draws
    app = QgsApplication([], True, str(work / "profile"))
    app.initQgis()
    from georefseg_qgis import settings

    settings.set_executable(engine)
    cli_seconds(engine, scene, work / "warm.gpkg")  # the first start reads torch from disk: not counted
    cli, panel = [], []
    for i in range(args.repeat):  # interleaved, so that both see the same machine
        cli.append(cli_seconds(engine, scene, work / f"cli{i}.gpkg"))
        panel.append(panel_seconds(app, scene, work / f"panel{i}.gpkg"))
    c, p = statistics.median(cli), statistics.median(panel)
    print(f"scene {Path(args.scene).name}, {args.repeat} runs each (median)")
    print(f"CLI   (georefseg segment, start to exit):      {c:6.2f} s   runs: {', '.join(f'{s:.2f}' for s in cli)}")
    print(f"panel (Run to polygons on the map):            {p:6.2f} s   runs: {', '.join(f'{s:.2f}' for s in panel)}")
    print(f"the panel adds {p - c:+.2f} s ({100 * (p - c) / c:+.1f} %)")
    shutil.rmtree(work, ignore_errors=True)
    app.exitQgis()


if __name__ == "__main__":
    main()
