"""Showing long work: a rich progress bar for people, JSON lines for programs.

Both take the events of :mod:`georefseg.protocol` (the Segmenter's ``phase`` and ``tiles``,
the CLI's ``started``, ``finished`` and ``error``), so every front end (the terminal, the QGIS
plugin through ``--progress json``, batch mapping) sees the same stream.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import AbstractContextManager, nullcontext
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from georefseg import protocol


class JsonLines:
    """One JSON object per line on ``stream`` (stderr by default), flushed at once, each with
    ``t``: seconds since the reporter started."""

    def __init__(self, stream: TextIO | None = None):
        self.stream, self.t0 = stream or sys.stderr, time.perf_counter()

    def __call__(self, event: dict) -> None:
        self.stream.write(json.dumps({**event, "t": round(time.perf_counter() - self.t0, 3)}) + "\n")
        self.stream.flush()

    def loading(self, what: str) -> AbstractContextManager:
        """Say that ``what`` (the model) is loading: a ``load`` phase event."""
        self(protocol.phase("load", model=what))
        return nullcontext()

    def close(self) -> None:
        """Nothing is held open: each line is already flushed."""


class RichBar:
    """A terminal bar over tiles, titled with the current phase; silent until work begins,
    so that an early error prints alone."""

    def __init__(self, console: Console, what: str = "segmenting"):
        self.bar = Progress(TextColumn(f"[bold]{what}"), TextColumn("{task.fields[phase]}"), BarColumn(),
                            MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                            console=console, transient=False)
        self.task = self.bar.add_task("tiles", total=None, phase="")
        self.started = False

    def __call__(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "phase":
            phrases = event.get("phrases", [])
            words = f" ({len(phrases)} phrases: {', '.join(phrases)})" if len(phrases) > 1 else ""
            self.bar.update(self.task, phase=event["text"] + words)
        elif kind == "tiles":
            if not self.started:
                self.bar.start()
                self.started = True
            self.bar.update(self.task, completed=event["done"], total=event["total"])

    def loading(self, what: str) -> AbstractContextManager:
        """A spinner while ``what`` (the model) loads: erased when done, silent off a terminal."""
        return self.bar.console.status(f"loading {what}…")

    def close(self) -> None:
        if self.started:  # a bar never shown leaves no blank line before an error
            self.bar.stop()


class BatchBar:
    """A terminal view of a batch: a bar over jobs, and what the scenes being mapped are doing.

    Takes :func:`georefseg.batch.map_archive`'s events (``batch``, ``scene``, ``job``,
    ``merged``); prints the dashboard link and each failure as it happens."""

    def __init__(self, console: Console):
        self.console = console
        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("eta"),
                            TimeRemainingColumn(), console=console, transient=False)
        self.jobs = self.bar.add_task("jobs", total=None, info="")
        self.scene = self.bar.add_task("scene", total=None, info="")
        self.started = False

    def __call__(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "batch":  # silent until the work begins, so that an early error prints alone
            self.bar.start()
            self.started = True
            self.bar.update(self.jobs, total=event["to_run"], completed=0,
                            info=f"{event['skipped']} of {event['jobs']} finished before")
            if event.get("dashboard"):
                self.console.print(f"Dask dashboard: {event['dashboard']}", highlight=False)
        elif kind == "scene" and event.get("kind") == "tiles":
            self.bar.update(self.scene, completed=event["done"], total=event["total"], info=f"{event['scene']}: tiles")
        elif kind == "scene" and event.get("kind") == "phase":
            self.bar.update(self.scene, info=f"{event['scene']}: {event['phase']}")
        elif kind == "job":
            self.bar.update(self.jobs, completed=event["done"])
            if event["status"] == "failed":
                self.console.print(f"[red]failed:[/] {event['scene']} ({event['expression']}): {event['error']}",
                                   highlight=False)
        elif kind == "merged":
            self.bar.update(self.scene, info=f"merged {event['features']} features")

    def close(self) -> None:
        if self.started:
            self.bar.stop()


class TrainingBar:
    """A terminal bar over training steps with loss, learning rate and pace; validation results
    printed above it."""

    def __init__(self, console: Console):
        self.bar = Progress(TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("eta"),
                            TimeRemainingColumn(), console=console)
        self.task = self.bar.add_task("steps", total=None, info="")
        self.started = False

    def __call__(self, event: dict) -> None:
        if not self.started:
            self.bar.start()
            self.started = True
        if event.get("event") == "step":
            self.bar.update(self.task, completed=event["step"], total=event["total"],
                            info=f"loss {event['loss']:.4f} lr {event['lr']:.1e} {event['samples_per_s']:.1f}/s")
        elif event.get("event") == "validated":
            self.bar.console.print(event["text"])

    def loading(self, what: str) -> AbstractContextManager:
        return nullcontext()

    def close(self) -> None:
        if self.started:
            self.bar.stop()


class Silent:
    """No progress at all (``--quiet``, ``--progress none``)."""

    def __call__(self, event: dict) -> None:
        pass

    def loading(self, what: str) -> AbstractContextManager:
        return nullcontext()

    def close(self) -> None:
        pass
