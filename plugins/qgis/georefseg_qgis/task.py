"""The panel's run, off the GUI thread: a QgsTask that drives the engine and reports its phases."""

from __future__ import annotations

import time

from qgis.core import QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from .engine import Engine
from .protocol import EngineRunError, RunCancelled, SegmentRequest, describe, run_segment


class SegmentTask(QgsTask):
    """Runs one :class:`SegmentRequest` in QGIS's task manager (progress in its status bar too).

    Signals (delivered on the GUI thread)
    -------------------------------------
    phaseChanged(str)
        What the engine is doing, e.g. "segmenting tiles: 3/9".
    succeeded(dict)
        The engine's result document, plus ``wall_s``: seconds from start to result.
    failed(str)
        The engine's one-line error, or the reason the run was cancelled.
    """

    phaseChanged = pyqtSignal(str)
    succeeded = pyqtSignal(dict)
    failed = pyqtSignal(str)

    def __init__(self, engine: Engine, request: SegmentRequest):
        super().__init__(f"georefseg: {request.expression}", QgsTask.CanCancel)
        self.engine, self.request = engine, request
        self.result: dict | None = None
        self.error: str | None = None
        self.pid: int | None = None

    def run(self) -> bool:  # on a worker thread: no widgets here
        t0 = time.perf_counter()
        try:
            self.result = run_segment(self.engine, self.request, on_event=self._on_event, cancelled=self.isCanceled,
                                      on_start=self._started)
        except (EngineRunError, RunCancelled, OSError) as exc:
            self.error = str(exc)
            return False
        self.result["wall_s"] = round(time.perf_counter() - t0, 3)
        return True

    def _started(self, pid: int) -> None:
        self.pid = pid

    def _on_event(self, event: dict) -> None:
        percent, text = describe(event)
        if percent is not None:
            self.setProgress(percent)
        if text:
            self.phaseChanged.emit(text)

    def finished(self, ok: bool) -> None:  # back on the GUI thread
        if ok:
            self.succeeded.emit(self.result)
        else:
            self.failed.emit(self.error or "cancelled: the engine was stopped and wrote nothing")
