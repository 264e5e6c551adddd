"""The engine's protocol, driven for real: arguments, events, errors, and stopping a process tree."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from georefseg_qgis.engine import check_engine, engine_environment
from georefseg_qgis.protocol import (
    PROTOCOL_VERSION,
    EngineRunError,
    SegmentRequest,
    describe,
    run_segment,
    stop_process_tree,
)


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


def test_the_bar_follows_what_the_engine_says(engine_path, tmp_path, scene):
    """Percent and text come from the engine's own events: no phase is known here by name."""
    events = []
    run_segment(check_engine(engine_path), SegmentRequest(str(scene), "the tank", str(tmp_path / "o.gpkg")),
                on_event=events.append)
    shown = [describe(e) for e in events]
    percents = [p for p, _ in shown if p is not None]
    assert events[0]["event"] == "started" and events[0]["protocol"] == PROTOCOL_VERSION
    assert percents == sorted(percents) and percents[0] == 0 and percents[-1] == 100
    texts = [t for _, t in shown if t]
    assert texts[0] == "loading the model" and any(t.endswith(": 1/1") for t in texts)  # one tile
    assert describe({"event": "reading", "text": "tank"}) == (None, None)


def test_an_engine_speaking_another_protocol_is_refused_and_stopped(tmp_path):
    engine = tmp_path / "georefseg"
    engine.write_text("#!/bin/sh\n[ \"$1\" = --version ] && { echo georefseg 9.0.0; exit 0; }\n"
                      "echo '{\"event\": \"started\", \"protocol\": 99}' >&2\nexec sleep 60\n")
    engine.chmod(0o755)
    pids = []
    with pytest.raises(EngineRunError, match="speaks protocol 99, this plugin reads protocol 1: install matching"):
        run_segment(check_engine(str(engine)), SegmentRequest("s.tif", "the tank", str(tmp_path / "o.gpkg")),
                    on_start=pids.append)
    assert gone_within(pids[0], 60)  # stopped, not left running


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


def gone_within(pid: int, bound_s: float) -> bool:
    """Whether ``pid`` is dead, polled for at most ``bound_s`` seconds."""
    deadline = time.monotonic() + bound_s
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


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
    stop_process_tree(parent, grace_s=1.0)
    assert parent.returncode is not None
    # SIGKILL reaches the child asynchronously (and init reaps it later): wait for that, with a bound.
    assert gone_within(child, 60), f"process {child} still alive"
