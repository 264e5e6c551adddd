"""Stitcher: blends tile logits into the scene's probability raster in bounded memory.

Weighted logits are summed into full-width row strips that exist only while some tile that
touches them is still to come; a strip whose rows no later tile touches is divided by the
weight sum, turned into probabilities and written out, then dropped. Memory therefore
grows with scene width × tile size, never with scene area. The weight sum needs no storage:
the grid is a product of row and column offsets and each tile's weights are an outer
product, so the sum is the outer product of two 1-D sums.
"""

from __future__ import annotations

import numpy as np
import rasterio
from rasterio.windows import Window

from georefseg.tiling import Tile, TileGrid

NODATA = float("nan")
BLOCK = 512


class Stitcher:
    """Accepts tile logits in any order; writes finished rows to ``path`` (float32 GeoTIFF)."""

    def __init__(self, grid: TileGrid, path: str, crs, transform, strip: int = BLOCK):
        self.grid = grid
        self.strip = strip  # a multiple of the file's block height: every write fills whole blocks
        self.wsum_x = grid.weight_sum(horizontal=True)
        self.wsum_y = grid.weight_sum(horizontal=False)
        self.strips: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # index -> (sum, valid)
        self.pending_per_row = [len(grid.cols)] * len(grid.rows)
        self.rows_flushed = 0  # scene rows [0, rows_flushed) are written
        self.complete_rows = 0  # grid rows [0, complete_rows) have all their tiles
        self.dst = rasterio.open(
            path, "w", driver="GTiff", width=grid.width, height=grid.height, count=1,
            dtype="float32", crs=crs, transform=transform, nodata=NODATA, tiled=True,
            blockxsize=BLOCK, blockysize=BLOCK, compress="deflate", zlevel=1, predictor=3, BIGTIFF="IF_SAFER")
        self.peak_strips = 0

    def _strip(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        if k not in self.strips:
            rows = min(self.strip, self.grid.height - k * self.strip)
            self.strips[k] = (np.zeros((rows, self.grid.width), np.float32),
                              np.zeros((rows, self.grid.width), bool))
            self.peak_strips = max(self.peak_strips, len(self.strips))
        return self.strips[k]

    def add(self, tile: Tile, logits: np.ndarray | None, valid: np.ndarray | None) -> None:
        """Blend one tile (logits h×w at the tile window's size); None for a skipped tile."""
        if logits is not None:
            weighted = logits * self.grid.weights(tile)
            x0, y0 = int(tile.window.col_off), int(tile.window.row_off)
            h, w = weighted.shape
            for k in range(y0 // self.strip, (y0 + h - 1) // self.strip + 1):
                acc, val = self._strip(k)
                top = max(y0, k * self.strip)
                bottom = min(y0 + h, k * self.strip + acc.shape[0])
                acc[top - k * self.strip:bottom - k * self.strip, x0:x0 + w] += weighted[top - y0:bottom - y0]
                val[top - k * self.strip:bottom - k * self.strip, x0:x0 + w] |= valid[top - y0:bottom - y0]
        self.pending_per_row[tile.row] -= 1
        while self.complete_rows < len(self.pending_per_row) and self.pending_per_row[self.complete_rows] == 0:
            self.complete_rows += 1
        if self.complete_rows:
            self._flush(self.grid.rows_done_after(self.complete_rows - 1))

    def _flush(self, upto: int) -> None:
        """Write every strip that lies entirely above scene row ``upto``."""
        while self.rows_flushed < min(upto, self.grid.height):
            k = self.rows_flushed // self.strip
            end = min((k + 1) * self.strip, self.grid.height)
            if end > upto:
                return
            acc, val = self.strips.pop(k, (None, None))
            rows = end - k * self.strip
            out = np.full((rows, self.grid.width), NODATA, np.float32)
            if acc is not None:
                wsum = self.wsum_y[k * self.strip:end, None] * self.wsum_x[None, :]
                with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                    prob = 1.0 / (1.0 + np.exp(-acc / wsum))
                out = np.where(val & (wsum > 0), prob, NODATA).astype(np.float32)
            self.dst.write(out, 1, window=Window(0, k * self.strip, self.grid.width, rows))
            self.rows_flushed = end

    def close(self) -> None:
        """Write what is left and close the file."""
        if not self.dst.closed:
            self._flush(self.grid.height)
            self.dst.close()
