"""Running a model over a TileGrid: windows read in parallel with Dask, batched to the model.

Every tile is read and normalised once and answers all the run's phrases (the subject and
its anchors) in one model call: results carry K logit maps, one per phrase.

Two runners share one per-batch function (read → normalise → model → logits):
- ``LocalRunner``: Dask's threaded scheduler reads the windows of the next batches while the
  model (CPU or GPU, driven by one thread) works on the current one.
- ``DistributedRunner``: each batch is a task on a ``dask.distributed`` cluster, over one
  Client that its owner keeps for many scenes. Workers hold the model once: built from its
  :class:`ModelSpec` (name + weights path, which must be readable on the workers) or, for a
  model object, scattered once to every worker. At most a few batches per worker are in
  flight, so memory stays bounded on both sides.

Both yield ``TileResult`` in whatever order results arrive; the Stitcher accepts any order.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import dask
import dask.threaded
import numpy as np
import torch

from georefseg.cluster import available_cores
from georefseg.models.base import ReferringSegmenter, TextBatch
from georefseg.models.device import compile_for_inference
from georefseg.models.registry import load_model
from georefseg.raster import Scene
from georefseg.tiling import Tile, TileGrid

# One phrase's instances in one tile: masks (N×h×w bool) and scores (N, 0–1).
TileInstances = tuple[np.ndarray, np.ndarray]


@dataclass
class TileResult:
    tile: Tile
    logits: np.ndarray | None  # K×h×w float32 referring log-odds; None when the tile was skipped
    valid: np.ndarray | None
    instances: list[TileInstances] | None = None  # per phrase, from models that separate objects


@dataclass(frozen=True)
class ModelSpec:
    """How a worker process builds the model: ``load_model(name, checkpoint, device)``."""

    name: str
    checkpoint: str | None = None
    device: str = "auto"


def read_tile(scene: Scene, tile: Tile, size: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The tile's input (3×size×size, reflect-padded when the scene is smaller than a tile)
    and validity mask (h×w), or None when no pixel is valid (such tiles cost nothing more)."""
    image, valid = scene.read(tile.window)
    if image is None:
        return None
    h, w = valid.shape
    if (h, w) != (size, size):
        image = np.pad(image, ((0, 0), (0, size - h), (0, size - w)), mode="reflect" if min(h, w) > 1 else "edge")
    return image, valid


def predict_batch(model: ReferringSegmenter, images: np.ndarray, phrases: TextBatch,
                  threshold: float | None = None) -> tuple[np.ndarray, list[list[TileInstances]] | None]:
    """Referring log-odds (B×K×H×W float32) of K phrases for a batch of normalised tiles, and
    the model's instances per tile and phrase, when it gives them, whose score reaches
    ``threshold``."""
    device = model.device
    x = torch.from_numpy(images).to(device, non_blocking=True)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16,
                                                enabled=device.type == "cuda"):
        pred = model.predict(x, phrases.to(device), threshold)
    instances = None if pred.instances is None else [
        [(inst.masks.bool().cpu().numpy(), inst.scores.float().cpu().numpy()) for inst in per_image]
        for per_image in pred.instances]
    return pred.logits.float().cpu().numpy(), instances


class BatchTimer:
    """Wall time spent inside the model, for the engine's efficiency figure."""

    def __init__(self):
        self.model_s = 0.0
        self.batches = 0


def _results(tiles: list[Tile], reads: list, logits: np.ndarray | None,
             instances: list[list[TileInstances]] | None = None) -> list[TileResult]:
    out, j = [], 0
    for tile, read in zip(tiles, reads, strict=True):
        if read is None:
            out.append(TileResult(tile, None, None))
            continue
        h, w = read[1].shape  # tiles padded to the model's size are cropped back
        own = None if instances is None else [(m[:, :h, :w], s) for m, s in instances[j]]
        out.append(TileResult(tile, logits[j, :, :h, :w], read[1], own))
        j += 1
    return out


def _batches(grid: TileGrid, batch_size: int) -> Iterator[list[Tile]]:
    batch: list[Tile] = []
    for tile in grid:
        batch.append(tile)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _yield_to_the_model() -> None:
    """Lower the calling thread's scheduling priority (nice 10; Linux sets it per thread), so
    that it runs on the cores the model leaves idle instead of slowing the model down."""
    # Not Linux, or not allowed: the reads then share the cores.
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


class LocalRunner:
    """Threaded Dask reads, prefetched ``prefetch`` batches ahead of the model.

    The reads run in a pool of their own, ``read_threads`` wide (default: one per core, at most
    16: a batch of 8 tiles with the next one prefetched needs no more; each thread holds its own
    GDAL handle). When the model runs on the CPU those threads yield to it
    (:func:`_yield_to_the_model`): they
    decode and normalise the next tiles on whatever the model leaves idle, so the model keeps
    its speed; when it runs on a GPU they have the cores to themselves.
    """

    def __init__(self, model: ReferringSegmenter, read_threads: int | None = None, prefetch: int = 2):
        self.model, self.prefetch = model, prefetch
        self.read_threads = read_threads or min(16, available_cores())

    def run(self, scene: Scene, grid: TileGrid, phrases: Sequence[str], batch_size: int,
            timer: BatchTimer, threshold: float | None = None) -> Iterator[TileResult]:
        text = self.model.encode_text(list(phrases))  # once per run, not per batch
        q: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()

        def offer(item) -> bool:
            """Hand ``item`` to the consumer unless it has stopped listening."""
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.2)
                    return True
                except queue.Full:
                    continue
            return False

        background = _yield_to_the_model if self.model.device.type == "cpu" else None
        pool = ThreadPoolExecutor(self.read_threads, thread_name_prefix="georefseg-read", initializer=background)

        def produce() -> None:
            if background is not None:
                background()
            try:
                for tiles in _batches(grid, batch_size):
                    tasks = [dask.delayed(read_tile)(scene, t, grid.tile) for t in tiles]
                    # The threaded scheduler itself, on this run's pool: by name, dask would
                    # first import dask.distributed to look for a default client (half a second
                    # at start-up), and share its pool with the caller's own dask work.
                    reads = dask.compute(*tasks, scheduler=dask.threaded.get, pool=pool)
                    if not offer((tiles, reads)):
                        return
                offer(None)
            except BaseException as exc:  # handed to the consumer, which re-raises it
                offer(exc)

        thread = threading.Thread(target=produce, daemon=True, name="georefseg-reader")
        thread.start()
        try:
            while (item := q.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                tiles, reads = item
                images = [r[0] for r in reads if r is not None]
                logits = instances = None
                if images:
                    t0 = time.perf_counter()
                    logits, instances = predict_batch(self.model, np.stack(images), text, threshold)
                    timer.model_s += time.perf_counter() - t0
                    timer.batches += 1
                yield from _results(tiles, list(reads), logits, instances)
        finally:
            # Wait for the reader (at most one batch of reads) so that no thread is inside GDAL
            # when the caller goes on, or when an interrupted process exits.
            stop.set()
            thread.join()
            pool.shutdown()
            scene.close()


# ----------------------------------------------------------------------------- distributed

_WORKER_MODELS: dict[ModelSpec | int, ReferringSegmenter] = {}
_WORKER_TEXT: dict[tuple[int, tuple[str, ...]], TextBatch] = {}
_WORKER_LOCK = threading.Lock()


def _worker_model(model: ModelSpec | ReferringSegmenter, compile_model: bool) -> ReferringSegmenter:
    """The worker's model, prepared once: built from a spec, or the scattered object itself;
    compiled on first use when asked."""
    key = model if isinstance(model, ModelSpec) else id(model)
    if key not in _WORKER_MODELS:
        if isinstance(model, ModelSpec):
            model = load_model(model.name, model.checkpoint, model.device)
        _WORKER_MODELS[key] = compile_for_inference(model) if compile_model else model
    return _WORKER_MODELS[key]


def _worker_batch(scene: Scene, tiles: list[Tile], size: int, model_ref: ModelSpec | ReferringSegmenter,
                  compile_model: bool, phrases: tuple[str, ...],
                  threshold: float | None) -> tuple[list[Tile], list, tuple | None, float]:
    """Runs on a Dask worker: read, normalise and infer one batch for every phrase."""
    reads = [read_tile(scene, t, size) for t in tiles]
    images = [r[0] for r in reads if r is not None]
    prediction, took = None, 0.0
    if images:
        with _WORKER_LOCK:  # threads of one worker share the model: one batch at a time
            model = _worker_model(model_ref, compile_model)
            key = (id(model), phrases)
            if key not in _WORKER_TEXT:
                _WORKER_TEXT[key] = model.encode_text(list(phrases))
            t0 = time.perf_counter()
            prediction = predict_batch(model, np.stack(images), _WORKER_TEXT[key], threshold)
            took = time.perf_counter() - t0
    scene.close()
    # Only what the stitcher needs travels back: validity masks, logits (and instances).
    return tiles, [None if r is None else (None, r[1]) for r in reads], prediction, took


class DistributedRunner:
    """Batches as tasks on the cluster behind ``client`` (which its caller owns and closes)."""

    def __init__(self, client, model: ModelSpec | ReferringSegmenter, compile_model: bool = False,
                 in_flight_per_worker: int = 2):
        self.client, self.compile_model, self.in_flight_per_worker = client, compile_model, in_flight_per_worker
        # A model object travels to every worker once, for all the scenes this runner serves.
        self.model_ref = model if isinstance(model, ModelSpec) else client.scatter(model, broadcast=True)

    def run(self, scene: Scene, grid: TileGrid, phrases: Sequence[str], batch_size: int,
            timer: BatchTimer, threshold: float | None = None) -> Iterator[TileResult]:
        from distributed import as_completed

        workers = max(1, len(self.client.scheduler_info().get("workers", {})))
        limit = workers * self.in_flight_per_worker
        batches = _batches(grid, batch_size)
        scene_f = self.client.scatter(scene, broadcast=True)
        key = tuple(phrases)

        def submit(tiles: list[Tile]):
            return self.client.submit(_worker_batch, scene_f, tiles, grid.tile, self.model_ref, self.compile_model,
                                      key, threshold, pure=False)

        first = []
        for tiles in batches:
            first.append(submit(tiles))
            if len(first) >= limit:
                break
        pending = as_completed(first, loop=self.client.loop)
        for fut in pending:
            tiles, reads, prediction, took = fut.result()
            scene.windows_read += len(tiles)  # read on a worker, counted here
            timer.model_s += took
            timer.batches += prediction is not None
            yield from _results(tiles, reads, *(prediction or (None, None)))
            nxt = next(batches, None)
            if nxt is not None:
                pending.add(submit(nxt))
