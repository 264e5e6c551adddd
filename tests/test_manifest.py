"""The SQLite manifest: job identity, status changes, and what a kill leaves."""

from __future__ import annotations

import subprocess
import sys

from georefseg.manifest import Job, Manifest, job_key


def jobs(n: int = 3) -> list[Job]:
    options = {"model": "tiny", "segment": {"threshold": 0.5}}
    return [Job(job_key(f"/s/{i}.tif", "the tanks", options), f"/s/{i}.tif", str(i), None, "the tanks", options,
                f"scenes/{i}/out.gpkg") for i in range(n)]


def test_the_same_scene_expression_and_options_are_the_same_job():
    a = job_key("/s/a.tif", "the tanks", {"threshold": 0.5, "model": "tiny"})
    assert a == job_key("/s/a.tif", "the tanks", {"model": "tiny", "threshold": 0.5})
    assert a != job_key("/s/a.tif", "the tanks", {"model": "tiny", "threshold": 0.6})
    assert a != job_key("/s/a.tif", "the ships", {"model": "tiny", "threshold": 0.5})


def test_statuses_and_adding_again_keeps_them(tmp_path):
    with Manifest(tmp_path / "m.sqlite") as m:
        todo = jobs()
        m.add(todo)
        m.running(todo[0].key)
        m.done(todo[0].key, features=4, seconds=1.5, worker="tcp://w1", worker_losses=1)
        m.running(todo[1].key)
        m.failed(todo[1].key, "scene is corrupt")
        m.add(todo)  # a rerun adds the same jobs: nothing is reset
        rows = m.status([j.key for j in todo])
    assert [rows[j.key]["status"] for j in todo] == ["done", "failed", "pending"]
    assert rows[todo[0].key]["worker_losses"] == 1 and rows[todo[0].key]["attempts"] == 1
    assert rows[todo[1].key]["error"] == "scene is corrupt"


def test_a_kill_in_the_middle_of_a_write_leaves_the_last_commit(tmp_path):
    path = tmp_path / "m.sqlite"
    with Manifest(path) as m:
        m.add(jobs())
    script = f"""
import os, signal, sys
from georefseg.manifest import Manifest
m = Manifest({str(path)!r})
key = m.db.execute("SELECT key FROM jobs ORDER BY scene_id").fetchone()[0]
m.done(key, 1, 0.1, "w")
m.db.execute("BEGIN IMMEDIATE")
m.db.execute("UPDATE jobs SET status = 'failed'")  # never committed: killed first
os.kill(os.getpid(), signal.SIGKILL)
"""
    killed = subprocess.run([sys.executable, "-c", script])
    assert killed.returncode == -9
    with Manifest(path) as m:
        statuses = [r[0] for r in m.db.execute("SELECT status FROM jobs ORDER BY scene_id")]
    assert statuses == ["done", "pending", "pending"]
