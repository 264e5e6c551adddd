"""Running ``georefseg segment`` as a subprocess and reading its machine-readable protocol.

The engine prints progress as JSON lines on stderr (``--progress json``: ``started``,
``reading``, ``phase``, ``tiles``, ``finished`` or ``error``), the result as one JSON document on
stdout (``--json``), and exits 0 (done, also when nothing matches), 2 (a mistake in the input),
130 (interrupted) or 1. :func:`run_segment` turns that into a return value, a callback per
event and exceptions with the engine's own one-line message; cancelling ends the engine's whole
process tree, politely first, so that it removes its temporary files and writes nothing.

Standard library only (the panel's task and the Processing algorithm both use it; tests run it
without QGIS too).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

from .engine import UPGRADE, Engine, engine_environment

# The engine's protocol version this plugin reads (georefseg.protocol.PROTOCOL_VERSION): the
# ``started`` event says which one the engine speaks. Phase names and their share of the bar come
# in the events themselves (``text``, ``progress``), so nothing here depends on them.
PROTOCOL_VERSION = 1
# The probabilities --threshold takes (georefseg.options.THRESHOLD_RANGE): the panel's and
# Processing's bounds.
THRESHOLD_RANGE = (0.01, 0.99)
DEFAULT_EXTENSION = ".gpkg"  # a temporary output's: the engine's first format, GeoPackage
DEVICES = ("auto", "cpu", "cuda", "mps")  # the --device choices offered in the panel and Processing
GRACE_S = 20.0  # after SIGTERM the engine unwinds (removing its temporary files) before it is killed


class EngineRunError(RuntimeError):
    """The engine stopped with an error; ``str()`` is its one-line message.

    Attributes
    ----------
    exit_code : int
        2 for a mistake in the input, 1 for anything else.
    """

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class RunCancelled(RuntimeError):
    """The run was cancelled; the engine was stopped and wrote nothing."""


@dataclass
class SegmentRequest:
    """One ``georefseg segment`` run, in the engine's units.

    Attributes
    ----------
    scene : str
        Raster path GDAL reads (a file, a ``/vsi…`` path).
    expression : str
        What to find.
    output : str
        Polygon output, in a format ``georefseg formats`` lists.
    layer : str, optional
        Layer name inside a GeoPackage output (default: the file's stem).
    model, checkpoint, device : str
        As ``--model``, ``--checkpoint``, ``--device``.
    threshold : float, optional
        Probability that makes a pixel part of an object (for models that separate objects,
        that keeps an object), within :data:`THRESHOLD_RANGE`; ``None``: the model's own.
    min_area_m2 : float, optional
        Smallest object kept, m² (default: the model's smallest object).
    candidates : bool
        Write every candidate (with ``selected``) instead of only the referent.
    bbox : tuple of float, optional
        West, south, east, north of the part to map, in ``bbox_crs`` (default: the scene's CRS).
    bbox_crs : str, optional
        CRS of ``bbox`` as an authority id (``EPSG:32633``) or WKT.
    prob : str, optional
        Also write the probability raster (GeoTIFF) here.
    overwrite : bool
        Replace an existing output (in a GeoPackage: that layer only).
    """

    scene: str
    expression: str
    output: str
    layer: str | None = None
    model: str = "tiny"
    checkpoint: str | None = None
    device: str = "auto"
    threshold: float | None = None
    min_area_m2: float | None = None
    candidates: bool = False
    bbox: tuple[float, float, float, float] | None = None
    bbox_crs: str | None = None
    prob: str | None = None
    overwrite: bool = True

    def arguments(self) -> list[str]:
        """The command line after the executable."""
        args = ["segment", "--json", "--progress", "json", "-o", self.output, "--model", self.model,
                "--device", self.device]
        optional = {"--layer": self.layer, "--checkpoint": self.checkpoint, "--prob": self.prob,
                    "--threshold": None if self.threshold is None else repr(float(self.threshold)),
                    "--bbox-crs": self.bbox_crs if self.bbox else None,
                    "--min-area": None if self.min_area_m2 is None else repr(float(self.min_area_m2)),
                    "--bbox": None if self.bbox is None else ",".join(repr(float(v)) for v in self.bbox)}
        for flag, value in optional.items():
            if value is not None:
                args += [flag, value]
        if self.candidates:
            args.append("--candidates")
        if self.overwrite:
            args.append("--overwrite")
        return [*args, "--", self.scene, self.expression]  # "--": an expression may start with "-"


def describe(event: dict) -> tuple[float | None, str | None]:
    """What an engine event means for a progress bar: (percent, text for a person); None where
    the event changes neither. Both come in the event (``progress`` 0–1, ``text``)."""
    progress = event.get("progress")
    percent = None if not isinstance(progress, (int, float)) else round(100 * float(progress), 2)
    text = event.get("text") if event.get("event") in ("phase", "tiles") else None
    return percent, text


def check_protocol(event: dict) -> None:
    """Refuse an engine whose ``started`` event speaks another protocol version than this plugin's.

    Raises
    ------
    EngineRunError
        The versions differ; the message says which and how to make them match.
    """
    spoken = event.get("protocol")
    if spoken != PROTOCOL_VERSION:
        raise EngineRunError(f"error: the georefseg engine speaks protocol {spoken or 'unknown'}, this plugin reads "
                             f"protocol {PROTOCOL_VERSION}: install matching versions ({UPGRADE}, and update the "
                             "plugin)", 2)


def _popen(command: list[str]) -> subprocess.Popen:
    if sys.platform == "win32":
        flags = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                text=True, encoding="utf-8", errors="replace", env=engine_environment(),
                                creationflags=flags)
    # Its own session: the engine and everything it starts form one process group to stop.
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            text=True, encoding="utf-8", errors="replace", env=engine_environment(),
                            start_new_session=True)


def stop_process_tree(process: subprocess.Popen, grace_s: float = GRACE_S) -> None:
    """End ``process`` and its children: SIGTERM to its process group (the engine then removes
    its temporary files and exits 130), SIGKILL to whatever is left after ``grace_s`` seconds."""
    if sys.platform == "win32":
        subprocess.run(["taskkill", "/T", "/F", "/PID", str(process.pid)], capture_output=True,
                       creationflags=subprocess.CREATE_NO_WINDOW)
        process.wait()
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError):  # children it started (dask workers) die with the group
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _pump(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def run_segment(engine: Engine, request: SegmentRequest, on_event: Callable[[dict], None] | None = None,
                cancelled: Callable[[], bool] | None = None, on_start: Callable[[int], None] | None = None) -> dict:
    """Run ``georefseg segment`` and return its JSON result document.

    Parameters
    ----------
    engine : Engine
        A checked installation (:func:`~georefseg_qgis.engine.check_engine`).
    request : SegmentRequest
        What to run.
    on_event : callable, optional
        Called with each progress event (a dict) as it arrives, on the calling thread.
    cancelled : callable, optional
        Polled about ten times a second; when it returns True the engine is stopped.
    on_start : callable, optional
        Called with the engine's process id once it runs.

    Returns
    -------
    dict
        The result: ``output``, ``crs``, ``feature_count``, ``features``, ``grounding``, …

    Raises
    ------
    RunCancelled
        ``cancelled()`` said so; the engine is stopped and left no output.
    EngineRunError
        The engine failed; the message is its own one line.
    """
    process = _popen([engine.path, *request.arguments()])
    if on_start is not None:
        on_start(process.pid)
    lines: queue.Queue = queue.Queue()
    stdout: list[str] = []
    readers = [threading.Thread(target=_pump, args=(process.stderr, lines), daemon=True),
               threading.Thread(target=lambda: stdout.append(process.stdout.read()), daemon=True)]
    for reader in readers:
        reader.start()
    error, other = None, []
    try:
        while True:
            if cancelled is not None and cancelled():
                stop_process_tree(process)
                raise RunCancelled("cancelled: the engine was stopped and wrote nothing")
            try:
                line = lines.get(timeout=0.1)
            except queue.Empty:
                continue
            if line is None:
                break
            event = _event(line)
            if event is None:
                other.append(line.strip())
                continue
            if event.get("event") == "error":
                error = event
                continue
            if event.get("event") == "started":
                check_protocol(event)  # an exception here stops the engine (below)
            if on_event is not None:
                on_event(event)
        process.wait()
    finally:
        if process.poll() is None:  # an exception from on_event: do not leave the engine running
            stop_process_tree(process)
        for reader in readers:
            reader.join()
        process.stdout.close()
        process.stderr.close()
    if process.returncode != 0:
        if error is not None:
            raise EngineRunError(error["message"], error.get("exit_code", process.returncode))
        raise EngineRunError(f"error: the engine stopped: {_last_words(other, process.returncode)}",
                             process.returncode)
    try:
        return json.loads(stdout[0])
    except (IndexError, ValueError) as exc:
        raise EngineRunError("error: the engine printed no result (is it georefseg?)", 1) from exc


def _last_words(lines: list[str], code: int) -> str:
    """The last line of text the engine printed, without the box a usage error is drawn in."""
    for line in reversed(lines):
        words = line.strip("│╭╮╰╯─ ").strip()
        if any(c.isalnum() for c in words):
            return words
    return f"exit code {code}"


def _event(line: str) -> dict | None:
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) and "event" in event else None
