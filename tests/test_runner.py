"""Runners: the threaded scheduler and a real dask.distributed LocalCluster agree."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from distributed import LocalCluster
from fixtures import scene_with_square, write_scene

from georefseg.api import segment
from georefseg.errors import InputError


@pytest.fixture
def scene(tmp_path):
    img = scene_with_square(300, 420, (100, 160, 200, 260))
    return write_scene(tmp_path / "s.tif", img, "EPSG:32633", Affine(1, 0, 300000, 0, -1, 5000000))


def test_distributed_cluster_gives_the_threaded_result(scene, tmp_path, tiny_weights):
    local = segment(scene, "the red roof", prob=tmp_path / "local.tif", model=str(tiny_weights),
                    device="cpu", tile=128, overlap=32, batch_size=3)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None) as cluster:
        remote = segment(scene, "the red roof", prob=tmp_path / "remote.tif", model=str(tiny_weights),
                         device="cpu", tile=128, overlap=32, batch_size=3,
                         scheduler=cluster.scheduler_address)
    with rasterio.open(tmp_path / "local.tif") as a, rasterio.open(tmp_path / "remote.tif") as b:
        assert np.allclose(a.read(1), b.read(1), atol=1e-5)
    assert remote.tiles == local.tiles == 15  # 5 × 3 tiles of 128 px
    assert remote.timings["model_s"] > 0


def test_unreachable_scheduler_is_a_clear_error(scene, tmp_path, tiny_weights):
    with pytest.raises(InputError, match="cannot reach the Dask scheduler"):
        segment(scene, "x", tmp_path / "o.gpkg", model=str(tiny_weights), scheduler="tcp://127.0.0.1:1")
    assert not (tmp_path / "o.gpkg").exists()
