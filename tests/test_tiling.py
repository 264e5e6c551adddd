"""TileGrid: coverage, edges, and the sizes it refuses."""

from __future__ import annotations

import numpy as np
import pytest

from georefseg.errors import InputError
from georefseg.tiling import TileGrid


@pytest.mark.parametrize("size", [(300, 217), (512, 512), (1000, 77), (50, 40)])
def test_tiles_cover_the_scene_inside_its_bounds(size):
    width, height = size
    grid = TileGrid(width, height, 128, 32)
    covered = np.zeros((height, width), int)
    for t in grid:
        w = t.window
        assert w.col_off >= 0 and w.row_off >= 0
        assert w.col_off + w.width <= width and w.row_off + w.height <= height
        # tiles keep their full size unless the scene itself is smaller
        assert w.width == min(128, width) and w.height == min(128, height)
        covered[int(w.row_off):int(w.row_off + w.height), int(w.col_off):int(w.col_off + w.width)] += 1
    assert covered.min() >= 1
    assert len(grid) == len(list(grid))


def test_bad_tile_or_overlap_is_refused():
    with pytest.raises(InputError, match="tile_px 16 is out of range"):
        TileGrid(100, 100, 16, 0)
    with pytest.raises(InputError, match="tile_px 100000 is out of range: use 32 to 4096"):
        TileGrid(100, 100, 100_000, 0)
    with pytest.raises(InputError, match="overlap"):
        TileGrid(100, 100, 128, 64)
