"""Stitcher: blends tile logits into the scene's probability rasters in bounded memory.

One pass over the tiles answers several phrases (the subject and its anchors), so each tile
brings K logit maps and the Stitcher writes K rasters, one per phrase. Weighted logits are
summed into full-width row strips that exist only while some tile that touches them is still
to come; a strip whose rows no later tile touches is handed to a writer thread, which divides
it by the weight sum, turns it into probabilities and writes it out, so that GeoTIFF encoding
overlaps with the model instead of following it. Memory therefore grows with K × scene width
× tile size, never with scene area. The weight sum needs no storage: the grid is a product of
row and column offsets and each tile's weights are an outer product, so the sum is the outer
product of two 1-D sums.

Blending weights are zero in a margin of ``overlap // 4`` pixels along sides shared with a
neighbour and rise smoothly (cosine) to one over the rest of the overlap; sides on the scene
border keep full weight. So a model whose receptive field reaches at most ``overlap // 4``
pixels gives, after blending, exactly what it gives on the whole scene at once.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import rasterio
from rasterio.windows import Window

from georefseg.tiling import Tile, TileGrid

NODATA = float("nan")
BLOCK = 512
_QUEUED_STRIPS = 2  # finished strips waiting for the writer: bounds memory if writing lags


@lru_cache(maxsize=64)
def _ramp(length: int, overlap: int, start_on_border: bool, end_on_border: bool) -> np.ndarray:
    """1-D weights along a tile side (pixels): 0 in the margin, cosine rise, 1 in the middle."""
    margin = overlap // 4
    rise = max(1, overlap - 2 * margin)
    d = np.arange(length, dtype=np.float64) + 0.5
    w = np.ones(length)
    for dist, on_border in ((d, start_on_border), (length - d, end_on_border)):
        if not on_border and overlap > 0:
            t = np.clip((dist - margin) / rise, 0.0, 1.0)
            w = np.minimum(w, np.sin(0.5 * np.pi * t) ** 2)
    return w.astype(np.float32)


def tile_weights(grid: TileGrid, tile: Tile) -> np.ndarray:
    """Blending weights (h×w float32) for a tile's output."""
    w, h = int(tile.window.width), int(tile.window.height)
    left, top, right, bottom = tile.border
    return _ramp(h, grid.overlap, top, bottom)[:, None] * _ramp(w, grid.overlap, left, right)[None, :]


def weight_sum(grid: TileGrid, horizontal: bool) -> np.ndarray:
    """Sum over all tiles of the weights along one axis. Weights are outer products of per-axis
    ramps and the grid is a product of offsets, so the 2-D weight sum is the outer product of
    the two axis sums."""
    size, offsets = (grid.width, grid.cols) if horizontal else (grid.height, grid.rows)
    total = np.zeros(size, np.float32)
    for off in offsets:
        length = min(grid.tile, size - off)
        total[off:off + length] += _ramp(length, grid.overlap, off == 0, off + length == size)
    return total


class Stitcher:
    """Accepts tiles' logits (K×h×w, one map per phrase) in any order; writes finished rows to
    ``paths`` (one float32 GeoTIFF per phrase, on the scene's grid)."""

    def __init__(self, grid: TileGrid, paths: Sequence[str], crs, transform, strip: int = BLOCK):
        self.grid = grid
        self.strip = strip  # a multiple of the file's block height: every write fills whole blocks
        self.wsum_x = weight_sum(grid, horizontal=True)
        self.wsum_y = weight_sum(grid, horizontal=False)
        self.strips: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # index -> (K×rows×W sum, rows×W valid)
        self.pending_per_row = [len(grid.cols)] * len(grid.rows)
        self.rows_flushed = 0  # scene rows [0, rows_flushed) are handed to the writer
        self.complete_rows = 0  # grid rows [0, complete_rows) have all their tiles
        self.peak_strips = 0
        self.dsts = [rasterio.open(
            path, "w", driver="GTiff", width=grid.width, height=grid.height, count=1,
            dtype="float32", crs=crs, transform=transform, nodata=NODATA, tiled=True,
            blockxsize=BLOCK, blockysize=BLOCK, compress="zstd", zstd_level=1, predictor=3, BIGTIFF="IF_SAFER")
            for path in paths]
        self._queue: queue.Queue = queue.Queue(maxsize=_QUEUED_STRIPS)
        self._error: BaseException | None = None
        self._writer = threading.Thread(target=self._write_strips, daemon=True, name="georefseg-writer")
        self._writer.start()

    def _strip(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        if k not in self.strips:
            rows = min(self.strip, self.grid.height - k * self.strip)
            self.strips[k] = (np.zeros((len(self.dsts), rows, self.grid.width), np.float32),
                              np.zeros((rows, self.grid.width), bool))
            self.peak_strips = max(self.peak_strips, len(self.strips))
        return self.strips[k]

    def add(self, tile: Tile, logits: np.ndarray | None, valid: np.ndarray | None) -> None:
        """Blend one tile: logits K×h×w at the tile window's size; None for a skipped tile."""
        if logits is not None:
            weighted = logits * tile_weights(self.grid, tile)
            x0, y0 = int(tile.window.col_off), int(tile.window.row_off)
            h, w = weighted.shape[-2:]
            for k in range(y0 // self.strip, (y0 + h - 1) // self.strip + 1):
                acc, val = self._strip(k)
                top = max(y0, k * self.strip)
                bottom = min(y0 + h, k * self.strip + acc.shape[1])
                rows = slice(top - k * self.strip, bottom - k * self.strip)
                acc[:, rows, x0:x0 + w] += weighted[:, top - y0:bottom - y0]
                val[rows, x0:x0 + w] |= valid[top - y0:bottom - y0]
        self.pending_per_row[tile.row] -= 1
        while self.complete_rows < len(self.pending_per_row) and self.pending_per_row[self.complete_rows] == 0:
            self.complete_rows += 1
        if self.complete_rows:
            self._flush(self.grid.rows_done_after(self.complete_rows - 1))

    def _flush(self, upto: int) -> None:
        """Hand every strip that lies entirely above scene row ``upto`` to the writer."""
        while self.rows_flushed < min(upto, self.grid.height):
            k = self.rows_flushed // self.strip
            end = min((k + 1) * self.strip, self.grid.height)
            if end > upto:
                return
            if self._error is not None:
                raise self._error
            self._queue.put((k, end, *self.strips.pop(k, (None, None))))
            self.rows_flushed = end

    def _write_strips(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is not None:
                continue  # drain, so that the producer never blocks on a dead writer
            try:
                self._write(*item)
            except BaseException as exc:  # re-raised in the thread that adds tiles
                self._error = exc

    def _write(self, k: int, end: int, acc: np.ndarray | None, val: np.ndarray | None) -> None:
        rows = end - k * self.strip
        window = Window(0, k * self.strip, self.grid.width, rows)
        if acc is None:
            empty = np.full((rows, self.grid.width), NODATA, np.float32)
            for dst in self.dsts:
                dst.write(empty, 1, window=window)
            return
        wsum = self.wsum_y[k * self.strip:end, None] * self.wsum_x[None, :]
        keep = val & (wsum > 0)
        for dst, logits in zip(self.dsts, acc, strict=True):
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                prob = 1.0 / (1.0 + np.exp(-logits / wsum))
            dst.write(np.where(keep, prob, NODATA).astype(np.float32), 1, window=window)

    def close(self, complete: bool = True) -> None:
        """Write what is left (unless ``complete`` is False: a run that failed, whose files
        are thrown away) and close the files; re-raises a failed write."""
        if self._writer.is_alive():
            try:
                if complete and self._error is None:
                    self._flush(self.grid.height)
            finally:
                self._queue.put(None)
                self._writer.join()
        for dst in self.dsts:
            if not dst.closed:
                dst.close()
        if self._error is not None:
            raise self._error
