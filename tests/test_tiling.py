"""TileGrid: coverage, edges, and blending weights."""

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


def test_weights_fall_to_zero_at_shared_edges_and_not_at_the_border():
    grid = TileGrid(300, 300, 128, 32)
    tiles = list(grid)
    corner = grid.weights(tiles[0])
    assert corner[0, 0] == 1.0  # scene border: full weight
    assert corner[64, 127] == 0.0 and corner[127, 64] == 0.0  # shared sides: zero margin
    assert corner[64, 64] == 1.0


def test_weight_sum_is_the_sum_of_tile_weights_and_positive():
    grid = TileGrid(300, 217, 128, 32)
    brute = np.zeros((217, 300))
    for t in grid:
        w = t.window
        brute[int(w.row_off):int(w.row_off + w.height), int(w.col_off):int(w.col_off + w.width)] += grid.weights(t)
    separable = grid.weight_sum(False)[:, None] * grid.weight_sum(True)[None, :]
    assert np.allclose(brute, separable, atol=1e-5)
    assert brute.min() > 0


def test_bad_tile_or_overlap_is_refused():
    with pytest.raises(InputError, match="tile_px 16 is out of range"):
        TileGrid(100, 100, 16, 0)
    with pytest.raises(InputError, match="tile_px 100000 is out of range: use 32 to 4096"):
        TileGrid(100, 100, 100_000, 0)
    with pytest.raises(InputError, match="overlap"):
        TileGrid(100, 100, 128, 64)
