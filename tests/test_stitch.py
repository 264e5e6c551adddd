"""Stitcher: seam-free blending equal to whole-scene inference, in bounded memory."""

from __future__ import annotations

import numpy as np
import rasterio
import torch
from affine import Affine
from rasterio.windows import Window

from georefseg.api import segment
from georefseg.raster import Scene
from georefseg.stitch import Stitcher, tile_weights, weight_sum
from georefseg.tiling import TileGrid
from tests.fixtures import ColourModel, scene_with_square, write_scene


def test_tiled_output_equals_whole_scene_output(tmp_path):
    # 300×217 is no multiple of the 128-px tile; the model's receptive radius (2) fits in the
    # zero-weight margin (overlap // 4 = 8), so blending must reproduce whole-scene inference.
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (3, 217, 300), dtype=np.uint8)
    img[:, 60:120, 40:200] = np.array([230, 25, 25], np.uint8)[:, None, None]
    path = write_scene(tmp_path / "s.tif", img, "EPSG:32633", Affine(1, 0, 0, 0, -1, 0))
    model = ColourModel(tile_size=128, min_overlap=32)
    result = segment(path, "red", prob=tmp_path / "p.tif", model=model)
    assert result.tiles == 6
    with rasterio.open(tmp_path / "p.tif") as src:
        tiled = src.read(1)
    with Scene(path) as sc:
        whole, _ = sc.read(Window(0, 0, 300, 217))
    with torch.no_grad():
        logits = model.segment(torch.from_numpy(whole)[None], model.encode_text(["red"])).logits
    expected = torch.sigmoid(logits)[0, 0].numpy()
    assert np.abs(tiled - expected).max() < 1e-5


def test_plain_averaging_would_have_seams(tmp_path):
    # The same check with a model whose receptive field is larger than the margin shows the
    # test can fail: its tiled output differs from whole-scene inference.
    class WideModel(ColourModel):
        def segment(self, images, text):
            out = super().segment(images, text)
            out.logits = torch.nn.functional.avg_pool2d(out.logits, 41, 1, 20, count_include_pad=False)
            return out

    img = scene_with_square(217, 300, (60, 120, 40, 200))
    path = write_scene(tmp_path / "s.tif", img, "EPSG:32633", Affine(1, 0, 0, 0, -1, 0))
    model = WideModel()
    segment(path, "red", prob=tmp_path / "p.tif", model=model)
    with rasterio.open(tmp_path / "p.tif") as src:
        tiled = src.read(1)
    with Scene(path) as sc:
        whole, _ = sc.read(Window(0, 0, 300, 217))
    with torch.no_grad():
        expected = torch.sigmoid(model.segment(torch.from_numpy(whole)[None], None).logits)[0, 0].numpy()
    assert np.abs(tiled - expected).max() > 1e-3


def test_tiles_in_any_order_and_memory_held_in_few_strips(tmp_path):
    grid = TileGrid(200, 8000, 64, 16)
    paths = [str(tmp_path / "a.tif"), str(tmp_path / "b.tif")]  # two phrases, blended in one pass
    st = Stitcher(grid, paths, "EPSG:32633", Affine(1, 0, 0, 0, -1, 0))
    tiles = list(grid)
    rng = np.random.default_rng(0)
    # shuffle within a sliding window of 8 tiles, as a cluster returns them
    order = []
    for start in range(0, len(tiles), 8):
        chunk = tiles[start:start + 8]
        order += [chunk[i] for i in rng.permutation(len(chunk))]
    for t in order:
        h, w = int(t.window.height), int(t.window.width)
        st.add(t, np.stack([np.full((h, w), 2.0, np.float32), np.full((h, w), -1.0, np.float32)]),
               np.ones((h, w), bool))
    st.close()
    with rasterio.open(paths[0]) as a, rasterio.open(paths[1]) as b:
        first, second = a.read(1), b.read(1)
    assert np.allclose(first, 1 / (1 + np.exp(-2.0)), atol=1e-6)
    assert np.allclose(second, 1 / (1 + np.exp(1.0)), atol=1e-6)
    # never more than a few strips alive, though the scene has 16 of them
    assert st.peak_strips <= 3


def test_skipped_tiles_leave_nodata(tmp_path):
    grid = TileGrid(128, 128, 64, 16)
    st = Stitcher(grid, [str(tmp_path / "o.tif")], "EPSG:32633", Affine(1, 0, 0, 0, -1, 0))
    for t in grid:
        st.add(t, None, None)
    st.close()
    with rasterio.open(tmp_path / "o.tif") as src:
        assert np.isnan(src.read(1)).all()
        assert np.isnan(src.nodata)


def test_weights_fall_to_zero_at_shared_edges_and_not_at_the_border():
    grid = TileGrid(300, 300, 128, 32)
    tiles = list(grid)
    corner = tile_weights(grid, tiles[0])
    assert corner[0, 0] == 1.0  # scene border: full weight
    assert corner[64, 127] == 0.0 and corner[127, 64] == 0.0  # shared sides: zero margin
    assert corner[64, 64] == 1.0


def test_weight_sum_is_the_sum_of_tile_weights_and_positive():
    grid = TileGrid(300, 217, 128, 32)
    brute = np.zeros((217, 300))
    for t in grid:
        w = t.window
        rows, cols = slice(int(w.row_off), int(w.row_off + w.height)), slice(int(w.col_off), int(w.col_off + w.width))
        brute[rows, cols] += tile_weights(grid, t)
    separable = weight_sum(grid, False)[:, None] * weight_sum(grid, True)[None, :]
    assert np.allclose(brute, separable, atol=1e-5)
    assert brute.min() > 0
