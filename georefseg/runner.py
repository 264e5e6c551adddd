"""Running a model over a TileGrid: windows read in parallel with Dask, batched to the model.

Two runners share one per-batch function (read → normalise → model → logits):
- ``LocalRunner``: Dask's threaded scheduler reads the windows of the next batches while the
  model (CPU or GPU, driven by one thread) works on the current one.
- ``DistributedRunner``: each batch is a task on a ``dask.distributed`` cluster; workers
  build the model once from its spec (name + checkpoint path, which must be readable on the
  workers) and return logits. At most a few batches per worker are in flight, so memory
  stays bounded on both sides.

Both yield ``TileResult`` in whatever order results arrive; the Stitcher accepts any order.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import dask
import numpy as np
import torch

from georefseg.models.base import ReferringSegmenter, TextBatch
from georefseg.raster import Scene
from georefseg.tiling import Tile, TileGrid


@dataclass
class TileResult:
    tile: Tile
    logits: np.ndarray | None  # h×w float32 referring log-odds; None when the tile was skipped
    valid: np.ndarray | None


@dataclass(frozen=True)
class ModelSpec:
    """How a worker process rebuilds the model: ``load_model(name, checkpoint, device)``."""

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


def predict_batch(model: ReferringSegmenter, images: np.ndarray, text: TextBatch) -> np.ndarray:
    """Referring log-odds (B×H×W float32) for a batch of normalised tiles."""
    device = model.device
    x = torch.from_numpy(images).to(device, non_blocking=True)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16,
                                                enabled=device.type == "cuda"):
        out = model.segment(x, text.repeat_to(len(x)).to(device))
        logits = out.referring_logits().float()
    return logits[:, 0].cpu().numpy()


class BatchTimer:
    """Wall time spent inside the model, for the engine's efficiency figure."""

    def __init__(self):
        self.model_s = 0.0
        self.batches = 0


def _results(tiles: list[Tile], reads: list, logits: np.ndarray | None) -> list[TileResult]:
    out, j = [], 0
    for tile, read in zip(tiles, reads, strict=True):
        if read is None:
            out.append(TileResult(tile, None, None))
            continue
        h, w = read[1].shape
        out.append(TileResult(tile, logits[j, :h, :w], read[1]))
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


class LocalRunner:
    """Threaded Dask reads, prefetched ``prefetch`` batches ahead of the model."""

    def __init__(self, read_threads: int = 2, prefetch: int = 2):
        self.read_threads, self.prefetch = read_threads, prefetch

    def run(self, scene: Scene, grid: TileGrid, model: ReferringSegmenter, text: TextBatch,
            batch_size: int, timer: BatchTimer) -> Iterator[TileResult]:
        q: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()

        def produce() -> None:
            try:
                for tiles in _batches(grid, batch_size):
                    tasks = [dask.delayed(read_tile)(scene, t, grid.tile) for t in tiles]
                    reads = dask.compute(*tasks, scheduler="threads", num_workers=self.read_threads)
                    while not stop.is_set():
                        try:
                            q.put((tiles, reads), timeout=0.2)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
                q.put(None)
            except BaseException as exc:  # handed to the consumer, which re-raises it
                q.put(exc)

        thread = threading.Thread(target=produce, daemon=True, name="georefseg-reader")
        thread.start()
        try:
            while (item := q.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                tiles, reads = item
                images = [r[0] for r in reads if r is not None]
                logits = None
                if images:
                    t0 = time.perf_counter()
                    logits = predict_batch(model, np.stack(images), text)
                    timer.model_s += time.perf_counter() - t0
                    timer.batches += 1
                yield from _results(tiles, list(reads), logits)
        finally:
            stop.set()
            scene.close()


# ----------------------------------------------------------------------------- distributed

_WORKER_MODELS: dict[ModelSpec, ReferringSegmenter] = {}
_WORKER_LOCK = threading.Lock()


def _worker_batch(scene: Scene, tiles: list[Tile], size: int, spec: ModelSpec,
                  expression: str) -> tuple[list[Tile], list, np.ndarray | None, float]:
    """Runs on a Dask worker: read, normalise and infer one batch."""
    from georefseg.models.registry import load_model

    with _WORKER_LOCK:  # one model per worker process, built on first use
        if spec not in _WORKER_MODELS:
            _WORKER_MODELS[spec] = load_model(spec.name, spec.checkpoint, spec.device)
        model = _WORKER_MODELS[spec]
    reads = [read_tile(scene, t, size) for t in tiles]
    images = [r[0] for r in reads if r is not None]
    logits, took = None, 0.0
    if images:
        t0 = time.perf_counter()
        with _WORKER_LOCK:  # threads of one worker share the model: one batch at a time
            logits = predict_batch(model, np.stack(images), model.encode_text([expression]))
        took = time.perf_counter() - t0
    scene.close()
    # Only what the stitcher needs travels back: masks as bool, logits cropped per tile.
    return tiles, [None if r is None else (None, r[1]) for r in reads], logits, took


class DistributedRunner:
    """Batches as tasks on a ``dask.distributed`` scheduler at ``address``."""

    def __init__(self, address: str, spec: ModelSpec, in_flight_per_worker: int = 2):
        from distributed import Client

        from georefseg.errors import InputError

        try:
            self.client = Client(address, timeout="10s", set_as_default=False)
        except OSError as exc:
            raise InputError(f"cannot reach the Dask scheduler at {address} ({exc}): start one with "
                             "`dask scheduler` or check the address") from exc
        self.spec, self.in_flight_per_worker = spec, in_flight_per_worker

    def close(self) -> None:
        self.client.close()

    def run(self, scene: Scene, grid: TileGrid, expression: str, batch_size: int,
            timer: BatchTimer) -> Iterator[TileResult]:
        from distributed import as_completed

        workers = max(1, len(self.client.scheduler_info().get("workers", {})))
        limit = workers * self.in_flight_per_worker
        batches = _batches(grid, batch_size)
        scene_f = self.client.scatter(scene, broadcast=True)

        def submit(tiles: list[Tile]):
            return self.client.submit(_worker_batch, scene_f, tiles, grid.tile, self.spec, expression,
                                      pure=False)

        first = []
        for tiles in batches:
            first.append(submit(tiles))
            if len(first) >= limit:
                break
        pending = as_completed(first, loop=self.client.loop)
        for fut in pending:
            tiles, reads, logits, took = fut.result()
            timer.model_s += took
            timer.batches += logits is not None
            yield from _results(tiles, reads, logits)
            nxt = next(batches, None)
            if nxt is not None:
                pending.add(submit(nxt))
