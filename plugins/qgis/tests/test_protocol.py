"""The engine's protocol, driven for real: arguments, events, errors, and stopping a process tree."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from georefseg_qgis.engine import check_engine, engine_environment
from georefseg_qgis.protocol import EngineRunError, SegmentRequest, describe, run_segment, stop_process_tree


def test_arguments_put_the_scene_and_expression_after_the_options():
    request = SegmentRequest("/d/s.tif", "-the tank", "/d/o.gpkg", layer="tanks", checkpoint="/w", threshold=0.4,
                             min_area_m2=25, candidates=True, bbox=(1, 2, 3, 4), bbox_crs="EPSG:3857", prob="/d/p.tif")
    args = request.arguments()
    assert args[:4] == ["segment", "--json", "--progress", "json"]
    assert args[-3:] == ["--", "/d/s.tif", "-the tank"]  # an expression starting with "-" is not a flag
    pairs = dict(zip(args, args[1:], strict=False))
    assert pairs["--bbox"] == "1.0,2.0,3.0,4.0" and pairs["--bbox-crs"] == "EPSG:3857"
    assert pairs["--min-area"] == "25.0" and pairs["--threshold"] == "0.4" and pairs["--layer"] == "tanks"
    assert "--candidates" in args and "--overwrite" in args
    assert "--bbox-crs" not in SegmentRequest("s", "e", "o", bbox_crs="EPSG:4326").arguments()


def test_describe_maps_phases_and_tiles_onto_one_bar():
    assert describe({"event": "phase", "phase": "load"}) == (2, "loading the model")
    assert describe({"event": "tiles", "done": 3, "total": 6}) == (51.0, "segmenting tiles: 3/6")
    assert describe({"event": "finished"}) == (100, None)
    assert describe({"event": "reading"}) == (None, None)


def test_a_mistake_comes_back_as_the_engines_line_and_code(engine_path, tmp_path):
    engine = check_engine(engine_path)
    events = []
    with pytest.raises(EngineRunError) as caught:
        run_segment(engine, SegmentRequest(str(tmp_path / "absent.tif"), "the tank", str(tmp_path / "o.gpkg")),
                    on_event=events.append)
    assert caught.value.exit_code == 2
    assert str(caught.value) == f"error: scene {tmp_path / 'absent.tif'} does not exist: check the path"
    assert events[0]["event"] == "started" and list(tmp_path.iterdir()) == []


def test_qgis_python_and_gdal_variables_stay_out_of_the_engine(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/usr/share/qgis/python")
    monkeypatch.setenv("GDAL_DATA", "/usr/share/gdal")
    env = engine_environment()
    assert "PYTHONPATH" not in env and "GDAL_DATA" not in env and env["PYTHONUNBUFFERED"] == "1"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is dead, only not yet reaped
        return stat.read().split(")")[-1].split()[0] != "Z"


def test_stopping_ends_the_whole_process_tree():
    """A parent that ignores SIGTERM and a child it started: both are gone afterwards."""
    script = ("import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
              "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); print(c.pid, flush=True);"
              "time.sleep(600)")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    child = int(parent.stdout.readline())
    assert alive(child)
    t0 = time.monotonic()
    stop_process_tree(parent, grace_s=1.0)
    assert parent.returncode is not None and not alive(child)
    assert time.monotonic() - t0 < 10
