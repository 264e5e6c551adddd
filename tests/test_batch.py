"""Batch mapping on a real dask.distributed LocalCluster: failures recorded, overlaps merged, and
runs killed (the client, or a worker) that resume to exactly the uninterrupted result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import geopandas as gpd
import psutil
import pytest
import rasterio
from pyproj import Transformer
from rasterio.windows import Window
from shapely.geometry import shape

from georefseg.batch import EXIT_FAILED, map_archive
from georefseg.errors import BatchInterrupted, InputError
from georefseg.manifest import Manifest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data" / "scene.tif"
TRUTH = shape(json.loads((ROOT / "sample_data" / "truth.geojson").read_text())["features"][0]["geometry"])
EXPRESSION = "the storage tanks"
# 256² windows (col, row) of the sample scene (1 m, UTM 33N). The tank of truth.geojson lies at
# cols ~606–643: whole in "a", cut by the left edge of "b" (the two overlap from col 620 to 736).
WINDOWS = {"a": (480, 352), "b": (620, 352), "c": (0, 0), "d": (0, 768), "e": (768, 768)}


def write_scenes(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with rasterio.open(SAMPLE) as src:
        for name, (col, row) in WINDOWS.items():
            window = Window(col, row, 256, 256)
            profile = {**src.profile, "width": 256, "height": 256, "transform": src.window_transform(window)}
            with rasterio.open(folder / f"{name}.tif", "w", **profile) as dst:
                dst.write(src.read(window=window))
    (folder / "corrupt.tif").write_bytes(b"II*\x00" + b"\x00" * 64)  # a TIFF header and nothing readable
    return folder


def rows(path: Path) -> list[tuple]:
    """The merged layer, comparable: fields and geometry (WKB, exact) in file order."""
    layer = gpd.read_file(path)
    return [(r.expression, r.scene, r.scenes, r.score, r.area_m2, r.geometry.wkb) for r in layer.itertuples()]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    return write_scenes(tmp_path_factory.mktemp("archive") / "scenes")


@pytest.fixture(scope="module")
def cluster():
    """A real LocalCluster of two worker processes that the batches here submit to (``scheduler=``):
    each worker loads the model once for all of this module's batches."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as local:
        yield local


@pytest.fixture(scope="module")
def baseline(scenes, cluster, tmp_path_factory):
    """The uninterrupted batch on the cluster: what every interrupted run must end as."""
    out = tmp_path_factory.mktemp("baseline")
    events = []
    report = map_archive(scenes, out, [EXPRESSION], scheduler=cluster.scheduler_address, progress=events.append)
    return report, out, events


@pytest.mark.cluster
def test_a_batch_maps_every_scene_and_records_the_corrupt_one(baseline, cluster):
    report, out, events = baseline
    assert (report.jobs, report.done, report.failed, report.ran, report.skipped) == (6, 5, 1, 6, 0)
    assert report.exit_code == EXIT_FAILED and report.dashboard.startswith("http://127.0.0.1")
    [failure] = report.failures
    assert failure["scene"] == "corrupt" and "corrupt.tif" in failure["error"] and "\n" not in failure["error"]
    with Manifest(out / "manifest.sqlite") as m:
        states = {r[0]: r[1:] for r in m.db.execute("SELECT scene_id, status, attempts, worker FROM jobs")}
    assert {k: v[0] for k, v in states.items()} == {**{k: "done" for k in WINDOWS}, "corrupt": "failed"}
    assert len({v[2] for k, v in states.items() if k != "corrupt"}) == 2  # both workers took jobs
    assert json.loads((out / "report.json").read_text())["failed"] == 1
    from distributed import Client

    with Client(cluster.scheduler_address, set_as_default=False) as client:  # each worker: one Segmenter, all jobs
        held = client.run(lambda: len(__import__("georefseg.batch").batch._SEGMENTERS))
    assert list(held.values()) == [1, 1]
    kinds = {e["event"] for e in events}
    assert {"batch", "scene", "job", "merged", "finished"} <= kinds
    assert any(e["event"] == "scene" and e["kind"] == "tiles" for e in events)  # per-scene progress from workers


@pytest.mark.cluster
def test_the_tank_in_the_overlap_is_one_whole_feature(baseline):
    report, out, _ = baseline
    merged = gpd.read_file(out / "merged.gpkg")
    assert merged.crs.to_epsg() == 4326 and report.merged_features == len(merged)
    per_scene = {p.parent.name: gpd.read_file(p) for p in sorted((out / "scenes").glob("*/*.gpkg"))}
    assert set(per_scene) == set(WINDOWS)
    to_utm = merged.to_crs(32633)
    [tank] = [i for i, g in enumerate(to_utm.geometry) if g.intersects(TRUTH.centroid)]
    row = merged.iloc[tank]
    assert row["scenes"] == "a,b"  # seen by both scenes, written once
    assert to_utm.geometry.iloc[tank].intersection(TRUTH).area / to_utm.geometry.iloc[tank].union(TRUTH).area > 0.7
    pieces = [g for layer in per_scene.values() for g in layer.geometry if g.intersects(TRUTH.centroid)]
    assert len(pieces) == 2  # the whole tank in a, its cut part in b
    assert to_utm.geometry.iloc[tank].area == pytest.approx(pieces[0].union(pieces[1]).area, rel=1e-3)
    assert row["area_m2"] == pytest.approx(to_utm.geometry.iloc[tank].area, rel=2e-3)
    centre = Transformer.from_crs(4326, 32633, always_xy=True).transform(row.geometry.centroid.x,
                                                                          row.geometry.centroid.y)
    assert abs(centre[0] - TRUTH.centroid.x) < 3 and abs(centre[1] - TRUTH.centroid.y) < 3
    # Every other object is in the merged layer once: those b shares with a (the overlap, cols 620–736) once, as a,b.
    shared = [g for g in per_scene["b"].geometry if any(g.intersection(h).area > 1 for h in per_scene["a"].geometry)]
    assert len(merged) == sum(len(layer) for layer in per_scene.values()) - len(shared)
    assert (merged["scenes"] == "a,b").sum() == len(shared) and set(merged["scenes"]) <= {*WINDOWS, "a,b"}


def wait_for_events(process: subprocess.Popen, wanted) -> list[dict]:
    events = []
    for line in process.stderr:
        if line.startswith("{"):
            events.append(json.loads(line))
            if wanted(events):
                return events
    raise AssertionError(f"the batch ended first: {events[-3:]}")


@pytest.mark.cluster
@pytest.mark.slow
def test_killing_the_client_loses_nothing_and_the_rerun_finishes_identically(scenes, baseline, cluster, tmp_path):
    """The client (with the LocalCluster it started: --workers) is SIGKILLed after two jobs; the
    rerun, here on the module's cluster, does exactly the rest."""
    out = tmp_path / "killed"
    first = subprocess.Popen([sys.executable, "-m", "georefseg.cli", "batch", str(scenes), str(out), "--expr",
                              EXPRESSION, "--workers", "2", "--progress", "json"], stderr=subprocess.PIPE, text=True)
    wait_for_events(first, lambda ev: sum(e["event"] == "job" and e["status"] == "done" for e in ev) >= 2)
    family = psutil.Process(first.pid).children(recursive=True)
    first.send_signal(signal.SIGKILL)
    first.wait()
    psutil.wait_procs(family, timeout=30)  # its cluster dies with it
    assert not [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    with Manifest(out / "manifest.sqlite") as m:
        before = dict(m.db.execute("SELECT scene_id, status FROM jobs"))
    assert 2 <= sum(s == "done" for s in before.values()) < 6 and not (out / "merged.gpkg").exists()
    events = []  # the rerun, with the same arguments (here through the API the CLI calls)
    again = map_archive(scenes, out, [EXPRESSION], scheduler=cluster.scheduler_address, progress=events.append)
    assert again.exit_code == EXIT_FAILED
    started = next(e for e in events if e["event"] == "batch")
    finished_before = sum(s in ("done", "failed") for s in before.values())  # a failure is not retried unasked
    assert started["skipped"] == finished_before and started["to_run"] == 6 - finished_before  # none redone
    assert rows(out / "merged.gpkg") == rows(baseline[1] / "merged.gpkg")
    with Manifest(out / "manifest.sqlite") as m:
        attempts = dict(m.db.execute("SELECT scene_id, attempts FROM jobs"))
    assert all(attempts[k] == 1 for k, s in before.items() if s == "done")
    leftovers = [p for p in out.rglob("*") if ".georefseg-" in p.name or p.name.endswith(".part")]
    assert leftovers == []


@pytest.mark.cluster
@pytest.mark.slow
def test_a_killed_worker_is_survived_and_the_manifest_shows_it(scenes, baseline, cluster, tmp_path):
    from distributed import Client

    out = tmp_path / "worker"
    killed = []

    def kill_a_busy_worker(spy: Client) -> None:
        """SIGKILL a worker while a job is on it (its first job spends seconds loading the model)."""
        while not (busy := [w for w, keys in spy.processing().items() if keys]):
            time.sleep(0.02)
        pid = spy.run(os.getpid, workers=[busy[0]])[busy[0]]
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    with Client(cluster.scheduler_address, set_as_default=False) as spy:
        spy.restart()  # fresh worker processes, without the models the earlier batches loaded
        killer = threading.Thread(target=kill_a_busy_worker, args=(spy,), daemon=True)
        killer.start()
        report = map_archive(scenes, out, [EXPRESSION], scheduler=cluster.scheduler_address)
        killer.join(timeout=60)
    assert killed and (not psutil.pid_exists(killed[0]) or psutil.Process(killed[0]).status() == "zombie")
    assert (report.done, report.failed) == (5, 1)
    assert rows(out / "merged.gpkg") == rows(baseline[1] / "merged.gpkg")
    with Manifest(out / "manifest.sqlite") as m:
        losses = sum(r[0] for r in m.db.execute("SELECT worker_losses FROM jobs"))
    assert losses >= 1 and report.worker_losses == losses


def test_failed_jobs_are_skipped_until_retry_failed(tmp_path):
    folder = tmp_path / "scenes"
    folder.mkdir()
    (folder / "late.tif").write_bytes(b"not yet")
    first = map_archive(folder, tmp_path / "out", [EXPRESSION])
    assert first.failed == 1 and first.exit_code == EXIT_FAILED
    write_scenes(tmp_path / "good")
    os.replace(tmp_path / "good" / "a.tif", folder / "late.tif")  # the file arrives whole
    again = map_archive(folder, tmp_path / "out", [EXPRESSION])
    assert (again.ran, again.failed, again.merged_features) == (0, 1, 0)
    retried = map_archive(folder, tmp_path / "out", [EXPRESSION], retry_failed=True)
    assert (retried.ran, retried.done, retried.failed, retried.exit_code) == (1, 1, 0, 0)
    assert retried.merged_features > 0


def test_a_stac_item_collection_maps_its_assets_with_their_dates(tmp_path):
    write_scenes(tmp_path / "assets")
    items = [{"type": "Feature", "stac_version": "1.0.0", "id": f"tile-{n}", "geometry": None, "bbox": None,
              "properties": {"datetime": f"2024-0{i + 1}-15T10:00:00Z"}, "links": [],
              "assets": {"image": {"href": f"assets/{n}.tif", "type": "image/tiff; application=geotiff"}}}
             for i, n in enumerate(["a", "b"])]
    stac = tmp_path / "items.json"
    stac.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    report = map_archive(stac, tmp_path / "out", [EXPRESSION], asset="image", fmt="parquet", crs="EPSG:32633")
    assert (report.done, report.failed) == (2, 0)
    merged = gpd.read_parquet(tmp_path / "out" / "merged.parquet")
    assert merged.crs.to_epsg() == 32633 and set(merged["scene"]) <= {"tile-a", "tile-b"}
    tank = merged[merged.geometry.intersects(TRUTH.centroid)].iloc[0]
    assert tank["scenes"] == "tile-a,tile-b" and tank["datetime"] in ("2024-01-15T10:00:00+00:00",
                                                                       "2024-02-15T10:00:00+00:00")
    assert set(merged["datetime"]) <= {"2024-01-15T10:00:00+00:00", "2024-02-15T10:00:00+00:00"}


def test_ctrl_c_keeps_the_finished_jobs_and_says_how_to_go_on(tmp_path):
    folder = write_scenes(tmp_path / "scenes")
    (folder / "corrupt.tif").unlink()
    out = tmp_path / "out"

    def interrupt_after_two(event: dict) -> None:
        if event["event"] == "job" and event["done"] == 2:
            raise KeyboardInterrupt  # what Ctrl-C (or SIGTERM, through the CLI) raises

    with pytest.raises(BatchInterrupted, match="interrupted: 2 of 5 jobs are finished and kept in .*run the same"):
        map_archive(folder, out, [EXPRESSION], progress=interrupt_after_two)
    assert not (out / "merged.gpkg").exists()
    report = map_archive(folder, out, [EXPRESSION])
    assert (report.skipped, report.ran, report.done) == (2, 3, 5)


def test_a_second_batch_in_a_busy_folder_is_refused(tmp_path):
    folder = write_scenes(tmp_path / "scenes")
    out = tmp_path / "out"
    out.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / "batch.lock").write_text(f"{sleeper.pid}\n")  # as a running batch leaves it
        with pytest.raises(InputError, match=f"another batch \\(process {sleeper.pid}\\) is running in outdir"):
            map_archive(folder, out, [EXPRESSION])
    finally:
        sleeper.kill()
        sleeper.wait()
    assert sorted(p.name for p in out.iterdir()) == ["batch.lock"]  # nothing else was written
    report = map_archive(folder, out, [EXPRESSION], glob="a.tif")  # its process is gone: the lock is stale
    assert report.done == 1 and not (out / "batch.lock").exists()


def test_each_job_gets_its_share_of_the_cores():
    """Dask gives a worker process one thread; a job's model gets cores ÷ workers unless told."""
    import torch

    from georefseg.batch import _use_threads, job_threads
    from georefseg.cluster import available_cores

    cores = available_cores()
    assert job_threads(1, None) == cores and job_threads(2, None) == max(1, cores // 2)
    assert job_threads(cores * 4, None) == 1 and job_threads(2, 3) == 3 and job_threads(None, None) is None
    before = torch.get_num_threads()
    try:
        _use_threads(1)
        assert torch.get_num_threads() == 1
        _use_threads(None)  # leaves the process's own setting
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
