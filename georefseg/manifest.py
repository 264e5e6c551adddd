"""The batch manifest: one SQLite row per (scene, expression, options) job and where it stands.

Every change is one committed transaction (WAL journal, full sync), so a run killed at any
moment leaves the manifest as it was after its last finished job; a job that was running then
reads as unfinished and is redone. Only the batch's client writes here; workers only compute.

Statuses: ``pending`` (known, not started), ``running`` (submitted to a worker), ``done``
(its output written), ``failed`` (its one-line error recorded).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    key TEXT PRIMARY KEY,          -- sha256 of scene path, expression and options
    scene TEXT NOT NULL,           -- the path rasterio opens
    scene_id TEXT NOT NULL,
    datetime TEXT,                 -- acquisition time (ISO 8601), from STAC
    expression TEXT NOT NULL,
    options TEXT NOT NULL,         -- JSON: model, weights, segment options, format
    output TEXT NOT NULL,          -- the per-scene output, relative to the batch folder
    status TEXT NOT NULL DEFAULT 'pending',
    error TEXT,                    -- the one-line reason a job failed
    attempts INTEGER NOT NULL DEFAULT 0,
    worker_losses INTEGER NOT NULL DEFAULT 0,  -- times a worker died while running it (Dask reran it)
    worker TEXT,                   -- the Dask worker that finished it
    features INTEGER,
    seconds REAL,
    peak_rss_mb REAL,              -- the worker process's peak memory when it finished the job
    updated REAL                   -- Unix time of the last change
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    started REAL NOT NULL,
    finished REAL,
    arguments TEXT NOT NULL,
    report TEXT
);
"""


def job_key(scene_path: str, expression: str, options: dict) -> str:
    """The identity of a job: the same scene, expression and options give the same key."""
    text = json.dumps([scene_path, expression, options], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Job:
    """One scene and one expression, under one set of options.

    Attributes
    ----------
    key : str
        :func:`job_key` of the three.
    scene, scene_id, datetime : str
        As :class:`georefseg.archive.SceneRef`.
    expression : str
        What to find.
    options : dict
        Model, weights, segment options and output format (JSON types).
    output : str
        The per-scene output, relative to the batch folder.
    """

    key: str
    scene: str
    scene_id: str
    datetime: str | None
    expression: str
    options: dict
    output: str


class Manifest:
    """The jobs of one batch folder, in ``<folder>/manifest.sqlite``.

    Parameters
    ----------
    path : path
        The SQLite file; made with its tables if new.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30)  # autocommit: one statement, one commit
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def add(self, jobs: list[Job]) -> None:
        """Record jobs not seen before as pending; known ones keep their status."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany(
                "INSERT OR IGNORE INTO jobs (key, scene, scene_id, datetime, expression, options, output, updated) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(j.key, j.scene, j.scene_id, j.datetime, j.expression, json.dumps(j.options, sort_keys=True),
                  j.output, time.time()) for j in jobs])

    def status(self, keys: list[str]) -> dict[str, dict]:
        """The rows of these jobs, by key."""
        rows = {}
        for i in range(0, len(keys), 500):  # SQLite's limit on bound parameters
            chunk = keys[i:i + 500]
            cursor = self.db.execute(f"SELECT * FROM jobs WHERE key IN ({','.join('?' * len(chunk))})", chunk)
            names = [d[0] for d in cursor.description]
            rows.update({r[0]: dict(zip(names, r, strict=True)) for r in cursor})
        return rows

    def _set(self, key: str, **values) -> None:
        values["updated"] = time.time()
        columns = ", ".join(f"{k} = ?" for k in values)
        self.db.execute(f"UPDATE jobs SET {columns} WHERE key = ?", [*values.values(), key])

    def running(self, key: str) -> None:
        """The job was submitted to a worker (one more attempt)."""
        self.db.execute("UPDATE jobs SET status = 'running', error = NULL, attempts = attempts + 1, updated = ? "
                        "WHERE key = ?", (time.time(), key))

    def done(self, key: str, features: int, seconds: float, worker: str, worker_losses: int = 0,
             peak_rss_mb: float | None = None) -> None:
        self._set(key, status="done", error=None, features=features, seconds=seconds, worker=worker,
                  worker_losses=worker_losses, peak_rss_mb=peak_rss_mb)

    def failed(self, key: str, error: str, worker_losses: int = 0) -> None:
        self._set(key, status="failed", error=error, worker_losses=worker_losses)

    def start_run(self, arguments: dict) -> int:
        cursor = self.db.execute("INSERT INTO runs (started, arguments) VALUES (?, ?)",
                                 (time.time(), json.dumps(arguments, sort_keys=True, default=str)))
        return int(cursor.lastrowid)

    def finish_run(self, run_id: int, report: dict) -> None:
        self.db.execute("UPDATE runs SET finished = ?, report = ? WHERE id = ?",
                        (time.time(), json.dumps(report, default=str), run_id))
