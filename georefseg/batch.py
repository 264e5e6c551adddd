"""Batch mapping: many scenes × expressions, resumable, on this machine or a Dask cluster.

:func:`map_archive` lists the scenes (:mod:`georefseg.archive`), records one job per scene and
expression in the manifest (:mod:`georefseg.manifest`), runs the unfinished ones — on a
``dask.distributed`` cluster when one is asked for, each worker process holding one
:class:`~georefseg.api.Segmenter` for all its jobs — and then merges every finished job's
polygons into one layer in one CRS (:mod:`georefseg.merge`).

What makes it safe to kill at any moment: a job's output is written atomically by the engine
before the client records it as done; the merged layer and the report are rebuilt from the
finished outputs at the end of every run and written atomically too. A rerun with the same
arguments redoes exactly the jobs that had not finished.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path

import geopandas as gpd
from pyproj import CRS
from pyproj.exceptions import CRSError

from georefseg import protocol
from georefseg.archive import SceneRef, expressions_from_csv, find_scenes
from georefseg.atomic import process_alive, remove_stale, working_folder, write_text
from georefseg.cluster import available_cores, connect_scheduler, dask_warnings, local_cluster
from georefseg.errors import BatchInterrupted, GeorefsegError, InputError
from georefseg.formats import VectorFormat, format_named
from georefseg.manifest import Job, Manifest, job_key
from georefseg.merge import merge_scenes
from georefseg.models.registry import resolve
from georefseg.options import SegmentOptions
from georefseg.outputs import write_vector
from georefseg.request import validate_expression
from georefseg.segmenter import Segmenter

log = logging.getLogger(__name__)

PROGRESS_TOPIC = "georefseg-batch-progress"
EXIT_FAILED = 3  # the batch finished, but some jobs failed (listed in the report)
LOCK = "batch.lock"  # the pid of the batch running in a folder

Emit = Callable[[dict], None]


def _ignore(event: dict) -> None:
    """The progress callback of a batch nobody watches."""


@dataclass
class BatchReport:
    """What a batch run did; also written as ``report.json`` in its folder.

    Attributes
    ----------
    jobs : int
        Jobs the arguments describe (scenes × their expressions).
    done, failed : int
        Jobs finished / failed after this run (all runs of the folder together).
    skipped : int
        Jobs an earlier run finished, done or failed (not redone); ``skipped_failed`` of them failed.
    ran : int
        Jobs this run started.
    failures : list of dict
        scene, expression and the one-line error of every failed job.
    merged : str
        The merged layer's path; ``merged_features`` its features.
    seconds : float
        Wall-clock time of this run; ``scenes_per_minute`` the jobs it ran per minute of it.
    worker_losses : int
        Times a worker died under a job this run (Dask ran the job again elsewhere).
    peak_rss_mb : dict
        Per worker (address, or ``pid N`` in-process), the peak resident memory its jobs saw, MB.
    workers, dashboard : int or None, str or None
        The LocalCluster's size (``workers=``) and the Dask dashboard's address, if any.
    crs, manifest : str
        The merged layer's CRS, and the manifest's path.
    """

    jobs: int
    done: int
    failed: int
    skipped: int
    skipped_failed: int
    ran: int
    failures: list[dict]
    merged: str
    merged_features: int
    seconds: float
    scenes_per_minute: float
    workers: int | None
    dashboard: str | None
    worker_losses: int = 0
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    crs: str = "EPSG:4326"
    manifest: str = ""

    @property
    def exit_code(self) -> int:
        """0 when every job is done, :data:`EXIT_FAILED` when some failed."""
        return EXIT_FAILED if self.failed else 0

    def to_dict(self) -> dict:
        return asdict(self)


# --- on the worker -------------------------------------------------------------------------

_SEGMENTERS: dict[str, Segmenter] = {}  # per worker process: one Segmenter per model set-up, for all its jobs


def _segmenter(model: str, weights: str | None, device: str, options: dict) -> Segmenter:
    key = json.dumps([model, weights, device, options], sort_keys=True)
    if key not in _SEGMENTERS:
        _SEGMENTERS[key] = Segmenter(model, weights, device=device, options=SegmentOptions.from_dict(options))
    return _SEGMENTERS[key]


def _current_worker():
    """The Dask worker running this code, or None outside one."""
    try:
        from distributed import get_worker

        return get_worker()
    except ValueError:
        return None


def job_threads(workers: int | None, threads: int | None) -> int | None:
    """The intra-op threads each job's model gets: ``threads`` if given, else the cores shared
    among ``workers`` local worker processes; None (the process's own setting) without either."""
    if threads is not None:
        return threads
    return None if workers is None else max(1, available_cores() // workers)


def _use_threads(threads: int | None) -> None:
    """Give this job's model ``threads`` intra-op threads (None: leave the process's own)."""
    import torch

    if threads is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def run_job(payload: dict, progress: Emit | None = None) -> dict:
    """Map one scene for one expression and write its output; what a worker runs.

    Parameters
    ----------
    payload
        ``key``, ``scene`` (path), ``scene_id``, ``expression``, ``output`` (absolute path),
        ``model``, ``weights``, ``device``, ``options`` (:meth:`SegmentOptions.to_dict`).
    progress
        Called with the engine's events; on a Dask worker they go to the client instead.

    Returns
    -------
    dict
        ``key``, ``features``, ``seconds``, ``worker`` and, when the scene could not be mapped,
        ``error``: its one line (a bad scene fails its job, never the batch).
    """
    t0 = time.perf_counter()
    on_worker = _current_worker()
    worker = f"pid {os.getpid()}" if on_worker is None else on_worker.address

    def relay(event: dict) -> None:  # from a worker, engine events reach the client as worker events
        if on_worker is not None:
            on_worker.log_event(PROGRESS_TOPIC, protocol.scene(payload["scene_id"], payload["expression"], event))

    emit = progress or relay
    try:
        _use_threads(payload.get("threads"))
        seg = _segmenter(payload["model"], payload["weights"], payload["device"], payload["options"])
        result = seg.run(payload["scene"], payload["expression"], payload["output"], overwrite=True,
                         scene_id=payload["scene_id"], progress=emit)
    except GeorefsegError as exc:
        return {"key": payload["key"], "error": str(exc), "worker": worker}
    except Exception as exc:  # an unreadable asset, a GDAL error mid-read: this scene's failure, recorded
        text = str(exc).splitlines()[0] if str(exc) else ""
        return {"key": payload["key"], "error": f"unexpected {type(exc).__name__}: {text}", "worker": worker}
    return {"key": payload["key"], "features": len(result.features), "seconds": round(time.perf_counter() - t0, 3),
            "worker": worker, "peak_rss_mb": _peak_rss_mb()}


def _peak_rss_mb() -> float | None:
    """This process's peak resident memory so far, in MB (None where the OS does not say)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)  # bytes on macOS, KiB on Linux


# --- on the client -------------------------------------------------------------------------

def _slug(expression: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", expression.lower()).strip("_")[:40] or "expression"


def plan_jobs(scenes: list[SceneRef], expressions: list[str], per_scene: dict[str, list[str]], options: dict,
              fmt: VectorFormat) -> list[Job]:
    """The jobs: every scene with the expressions for all scenes and its own from the CSV, in
    scene order; each output named by scene id, expression and the job's key."""
    jobs = []
    for ref in scenes:
        for expression in dict.fromkeys([*expressions, *per_scene.get(ref.id, [])]):
            key = job_key(ref.path, expression, options)
            folder = re.sub(r"[^\w.-]+", "_", ref.id)  # a STAC id may hold "/" or ":"
            output = f"scenes/{folder}/{_slug(expression)}-{key[:8]}{fmt.extension}"
            jobs.append(Job(key, ref.path, ref.id, ref.datetime, expression, options, output))
    return jobs


def _check(crs, workers: int | None, scheduler: str | None) -> CRS:
    if workers is not None and scheduler is not None:
        raise InputError("{param} and scheduler both say where to run: give one", param="workers")
    if workers is not None and workers < 1:
        raise InputError(f"{{param}} {workers} must be at least 1", param="workers")
    try:
        return CRS.from_user_input(crs)
    except CRSError as exc:
        raise InputError(f"{{param}} {crs!r} is not a CRS: give e.g. EPSG:4326", param="crs") from exc


def _worker_losses(key: str, dask_scheduler=None) -> int:
    """How many times the task was on a worker that died (run on the scheduler)."""
    task = dask_scheduler.tasks.get(key)
    return 0 if task is None else task.suspicious


def _read_layer(path: Path, job: dict, fmt: VectorFormat) -> gpd.GeoDataFrame:
    layer = fmt.read(path, None)  # its `scene` field is the job's scene id already
    layer["datetime"] = job["datetime"] or ""
    return layer


def _write_json(path: Path, data: dict) -> None:
    write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def map_archive(source: str | Path, outdir: str | Path, expressions: list[str] | tuple[str, ...] = (), *,
                expressions_csv: str | Path | None = None, glob: str | None = None, asset: str | None = None,
                model: str = "tiny", checkpoint: str | Path | None = None, device: str = "auto",
                options: SegmentOptions | None = None, fmt: str = "gpkg", crs="EPSG:4326",
                workers: int | None = None, scheduler: str | None = None, retry_failed: bool = False,
                verbose: bool = False, progress: Emit | None = None, threads: int | None = None) -> BatchReport:
    """Map every scene of ``source`` for its expressions into ``outdir``; resumable.

    Parameters
    ----------
    source
        A folder (searched recursively; ``glob`` picks files), a text file with one path per
        line, or a STAC catalog, collection, item or ItemCollection JSON (``asset`` names the
        asset to map).
    outdir
        The batch folder: ``scenes/<id>/`` per-scene outputs, ``merged.gpkg`` (or
        ``merged.parquet``), ``report.json`` and ``manifest.sqlite``.
    expressions
        What to find in every scene.
    expressions_csv
        A CSV (``scene,expression``) of expressions for particular scenes.
    model, checkpoint, device, options
        As for :class:`~georefseg.api.Segmenter`.
    fmt
        The format of the per-scene outputs and the merged layer, by name (``gpkg``,
        ``parquet``, …: see :data:`georefseg.formats.VECTOR_FORMATS`).
    crs
        The merged layer's CRS.
    workers
        Start a LocalCluster of this many worker processes (one job at a time each); Dask's
        scratch space lives in a working folder of ``outdir``, removed at the end.
    threads
        Threads each job's model uses (torch's intra-op threads). Default with ``workers``: the
        machine's cores shared among them (cores ÷ ``workers``; Dask itself gives each worker
        process one thread, which left the other cores idle); without a cluster, all cores; on
        a ``scheduler``, what its workers' environment gives (Dask: one), unless given.
    scheduler
        Or submit to an existing ``dask.distributed`` scheduler (``tcp://host:8786``); its
        workers must see the scenes, the folder and the weights at the same paths.
        With neither, jobs run one after another in this process.
    retry_failed
        Run again the jobs an earlier run recorded as failed (by default they are skipped).
    verbose
        Let Dask's own warnings through (a worker restarted, a slow shutdown); by default only
        its errors reach stderr.
    progress
        Called with events: ``batch`` (jobs, to run, skipped, dashboard), ``scene`` (a job's
        engine phase or tiles), ``job`` (one finished or failed), ``merged`` and ``finished``.

    Returns
    -------
    BatchReport
        Also in ``outdir/report.json``; ``exit_code`` says whether anything failed.
    """
    t0 = time.perf_counter()
    emit = progress or _ignore
    options = options or SegmentOptions()
    vector = format_named(fmt)
    target_crs = _check(crs, workers, scheduler)
    try:
        texts = [validate_expression(e) for e in expressions]
    except InputError as exc:  # the same words, about this function's parameter
        raise InputError(exc.template, param="expressions") from None
    scenes = find_scenes(source, glob, asset)
    per_scene = expressions_from_csv(expressions_csv, scenes) if expressions_csv is not None else {}
    try:
        per_scene = {scene: [validate_expression(e) for e in exprs] for scene, exprs in per_scene.items()}
    except InputError as exc:
        raise InputError(exc.template, param="expressions_csv") from None
    if not texts and not per_scene:
        raise InputError("no expression: give {param} (repeatable), or {expressions_csv} with a CSV of "
                         "scene,expression rows", param="expressions")
    backend, weights = resolve(model, checkpoint)  # a wrong model fails here, before any cluster starts
    weights_path = None if weights is None else str(Path(weights).resolve())
    job_options = {"model": backend.name, "weights": weights_path, "segment": options.to_dict(), "format": fmt}
    jobs = plan_jobs(scenes, texts, per_scene, job_options, vector)
    outdir = Path(outdir)
    _check_not_running(outdir)
    with dask_warnings(shown=verbose):  # Dask's own warnings only with --verbose, the level restored after
        # An unreachable scheduler is refused before anything is written.
        client = None if scheduler is None else connect_scheduler(scheduler)
        scratch = None
        try:
            outdir.mkdir(parents=True, exist_ok=True)
            _lock(outdir)
            for folder in [outdir, *(outdir / "scenes").glob("*")]:
                remove_stale(folder)  # parts and working folders of runs that were killed
            if workers is not None:  # Dask's scratch space in the run's own working folder, removed at the end
                scratch = working_folder(outdir)
                client = local_cluster(workers, local_directory=scratch, quiet=not verbose)
            with Manifest(outdir / "manifest.sqlite") as manifest:
                manifest.add(jobs)
                run_id = manifest.start_run({"source": str(source), "expressions": texts, "csv": str(expressions_csv),
                                             "options": job_options, "crs": target_crs.to_string()})
                state = manifest.status([j.key for j in jobs])
                todo = [j for j in jobs if _needs_run(state[j.key], outdir, retry_failed)]
                failed_before = sum(state[j.key]["status"] == "failed" for j in jobs if j not in todo)
                dashboard = None if client is None else client.dashboard_link
                emit(protocol.batch(len(jobs), len(todo), len(jobs) - len(todo), workers, dashboard))
                payload = {"model": backend.name, "weights": weights_path, "device": device,
                           "threads": job_threads(workers, threads),
                           "options": options.to_dict()}
                try:
                    losses = _run_jobs(todo, outdir, payload, manifest, client, emit)
                except KeyboardInterrupt:
                    done = sum(r["status"] == "done" for r in manifest.status([j.key for j in jobs]).values())
                    raise BatchInterrupted(f"interrupted: {done} of {len(jobs)} jobs are finished and kept in "
                                           f"{outdir}; run the same command again to do the rest") from None
                report = _finish(jobs, manifest, outdir, vector, target_crs, t0, ran=len(todo), workers=workers,
                                 dashboard=dashboard, losses=losses, failed_before=failed_before)
                manifest.finish_run(run_id, report.to_dict())
        finally:
            if outdir.is_dir():
                (outdir / LOCK).unlink(missing_ok=True)
            if client is not None:
                cluster = client.cluster
                client.close()
                if cluster is not None and workers is not None:  # the LocalCluster this run started
                    cluster.close()
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
    emit(protocol.merged(report.merged_features, report.merged))
    emit(protocol.batch_finished(report.to_dict()))
    return report


def _check_not_running(outdir: Path) -> None:
    """Refuse a second batch in a folder while one runs there: both would do the same jobs."""
    try:
        pid = int((outdir / LOCK).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    if pid != os.getpid() and process_alive(pid):
        raise InputError(f"another batch (process {pid}) is running in {{param}} {outdir}: wait for it, or stop it "
                         "and run again (finished jobs are kept)", param="outdir")


def _lock(outdir: Path) -> None:
    """Mark the folder as this process's (atomically); a lock left by a killed run is simply replaced."""
    write_text(outdir / LOCK, f"{os.getpid()}\n")


def _finish(jobs: list[Job], manifest: Manifest, outdir: Path, fmt: VectorFormat, crs: CRS, t0: float, *, ran: int,
            workers: int | None, dashboard: str | None, losses: int, failed_before: int) -> BatchReport:
    """Merge every finished job's output into one layer and write it and the report (both atomically)."""
    state = manifest.status([j.key for j in jobs])
    finished = [state[j.key] for j in jobs if state[j.key]["status"] == "done"]
    merged = merge_scenes([_read_layer(outdir / row["output"], row, fmt) for row in finished], crs)
    merged_path = outdir / f"merged{fmt.extension}"
    write_vector(merged, merged_path, layer="merged" if fmt.multi_layer else None)
    failures = [{"scene": state[j.key]["scene_id"], "expression": j.expression, "error": state[j.key]["error"]}
                for j in jobs if state[j.key]["status"] == "failed"]
    seconds = time.perf_counter() - t0
    report = BatchReport(
        jobs=len(jobs), done=len(finished), failed=len(failures), skipped=len(jobs) - ran,
        skipped_failed=failed_before, ran=ran,
        failures=failures, merged=str(merged_path), merged_features=len(merged), seconds=round(seconds, 2),
        scenes_per_minute=round(60 * ran / seconds, 2) if ran else 0.0, workers=workers, dashboard=dashboard,
        worker_losses=losses, peak_rss_mb=_peaks(finished), crs=crs.to_string(),
        manifest=str(outdir / "manifest.sqlite"))
    _write_json(outdir / "report.json", report.to_dict())
    return report


def _peaks(rows: list[dict]) -> dict[str, float]:
    peaks: dict[str, float] = {}
    for row in rows:
        if row["peak_rss_mb"] is not None:
            peaks[row["worker"]] = max(peaks.get(row["worker"], 0.0), row["peak_rss_mb"])
    return dict(sorted(peaks.items()))


def _needs_run(row: dict, outdir: Path, retry_failed: bool) -> bool:
    if row["status"] == "done":
        return not (outdir / row["output"]).exists()  # finished, but its output has gone: redo it
    if row["status"] == "failed":
        return retry_failed
    return True  # pending, or running when an earlier run was killed


def _run_jobs(todo: list[Job], outdir: Path, common: dict, manifest: Manifest, client, emit: Emit) -> int:
    """Run the jobs (on the cluster when there is a client), recording each as it ends; returns
    the number of worker losses seen."""
    total, losses = len(todo), 0

    def record(job: Job, result: dict, lost: int, done: int) -> None:
        if "error" in result:
            log.warning("job %s (%s, %r) failed: %s", job.key[:8], job.scene_id, job.expression, result["error"])
            manifest.failed(job.key, result["error"], lost)
        else:
            manifest.done(job.key, result["features"], result["seconds"], result["worker"], lost,
                          result.get("peak_rss_mb"))
        emit(protocol.job(job.scene_id, job.expression, done, total, result, lost))

    payloads = {j.key: {**common, "key": j.key, "scene": j.scene, "scene_id": j.scene_id,
                        "expression": j.expression, "output": str((outdir / j.output).resolve())} for j in todo}
    if client is None:
        for n, job in enumerate(todo, start=1):
            manifest.running(job.key)

            def relay(event: dict, job: Job = job) -> None:
                emit(protocol.scene(job.scene_id, job.expression, event))

            record(job, run_job(payloads[job.key], relay), 0, n)
        return 0
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    client.subscribe_topic(PROGRESS_TOPIC, lambda event: emit(event[1]))  # (time, message) pairs
    by_key = {f"georefseg-job-{j.key}": j for j in todo}
    window = 2 * max(1, sum(client.nthreads().values()))  # in flight at once: memory stays bounded
    waiting = iter(by_key)

    def submit(name: str):
        manifest.running(by_key[name].key)
        return client.submit(run_job, payloads[by_key[name].key], key=name, pure=False)

    futures = as_completed([submit(name) for name in islice(waiting, window)], loop=client.loop)
    for n, future in enumerate(futures, start=1):
        job = by_key[future.key]
        lost = client.run_on_scheduler(_worker_losses, future.key)
        try:
            result = future.result()
        except KilledWorker as exc:
            result = {"error": f"the workers running it died ({exc.last_worker.address if exc.last_worker else '?'}"
                               " last): out of memory? give the workers more, or split the scene"}
        losses += lost
        record(job, result, lost, n)
        future.release()
        if (name := next(waiting, None)) is not None:
            futures.add(submit(name))
    client.unsubscribe_topic(PROGRESS_TOPIC)
    return losses
