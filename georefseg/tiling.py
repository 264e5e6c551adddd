"""TileGrid: overlapping windows over a scene, in raster order.

Tiles are ``tile`` pixels square and step by ``tile - overlap``. The last tile of a row or
column is shifted back to end on the scene edge, so every tile lies inside the scene (a
scene smaller than one tile gets a single tile, padded when read). How tiles are blended
where they overlap is the blender's business (:mod:`georefseg.stitch`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from affine import Affine
from rasterio.windows import Window

from georefseg.errors import InputError

MIN_TILE, MAX_TILE = 32, 4096  # pixels; a 4096² tile already needs GBs of activations


@dataclass(frozen=True)
class Tile:
    """One window: its place in the grid and in the scene, and which sides touch the border."""

    index: int
    row: int
    col: int
    window: Window  # inside the scene; smaller than tile×tile only for small scenes
    border: tuple[bool, bool, bool, bool]  # left, top, right, bottom side on the scene border

    def transform(self, scene_transform: Affine) -> Affine:
        """Geotransform of this tile's pixels."""
        return scene_transform @ Affine.translation(self.window.col_off, self.window.row_off)


def check_tiling(tile: int, overlap: int) -> None:
    """Refuse tile and overlap sizes (pixels) no run can use; errors name ``tile_px``/``overlap_px``."""
    if not MIN_TILE <= tile <= MAX_TILE:
        raise InputError(f"{{param}} {tile} is out of range: use {MIN_TILE} to {MAX_TILE} pixels", param="tile_px")
    if not 0 <= overlap < tile // 2:
        raise InputError(f"{{param}} {overlap} must be at least 0 and less than half the tile ({tile // 2} px)",
                         param="overlap_px")


def _offsets(size: int, tile: int, step: int) -> list[int]:
    if size <= tile:
        return [0]
    n = math.ceil((size - tile) / step) + 1
    return [min(i * step, size - tile) for i in range(n)]


class TileGrid:
    """Overlapping tiles covering a scene.

    Parameters
    ----------
    width, height
        Scene size in pixels.
    tile
        Tile side in pixels (32 to 4096).
    overlap
        Pixels that neighbouring tiles share (0 to less than half a tile).
    """

    def __init__(self, width: int, height: int, tile: int, overlap: int):
        check_tiling(tile, overlap)
        self.width, self.height, self.tile, self.overlap = width, height, tile, overlap
        self.step = tile - overlap
        self.cols = _offsets(width, tile, self.step)
        self.rows = _offsets(height, tile, self.step)

    def __len__(self) -> int:
        return len(self.cols) * len(self.rows)

    def __iter__(self):
        i = 0
        for r, y in enumerate(self.rows):
            for c, x in enumerate(self.cols):
                w, h = min(self.tile, self.width - x), min(self.tile, self.height - y)
                border = (x == 0, y == 0, x + w == self.width, y + h == self.height)
                yield Tile(i, r, c, Window(x, y, w, h), border)
                i += 1

    def rows_done_after(self, tile_row: int) -> int:
        """Scene rows that no tile after row ``tile_row`` of the grid touches."""
        if tile_row + 1 >= len(self.rows):
            return self.height
        return self.rows[tile_row + 1]
