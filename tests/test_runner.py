"""Runners: the threaded scheduler and a real dask.distributed LocalCluster agree."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from distributed import LocalCluster
from shapely.geometry import box

from georefseg.api import Segmenter, SegmentOptions, segment
from georefseg.errors import SchedulerError
from tests.fixtures import InstanceColourModel, scene_with_square, write_scene


@pytest.fixture
def scene(tmp_path):
    img = scene_with_square(300, 420, (100, 160, 200, 260))
    return write_scene(tmp_path / "s.tif", img, "EPSG:32633", Affine(1, 0, 300000, 0, -1, 5000000))


@pytest.mark.cluster
@pytest.mark.slow
def test_distributed_cluster_gives_the_threaded_result(scene, tmp_path, tiny_weights):
    local = segment(scene, "the red roof", prob=tmp_path / "local.tif", model=str(tiny_weights),
                    device="cpu", tile_px=128, overlap_px=32, batch_size=3)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None) as cluster:
        remote = segment(scene, "the red roof", prob=tmp_path / "remote.tif", model=str(tiny_weights),
                         device="cpu", tile_px=128, overlap_px=32, batch_size=3,
                         scheduler=cluster.scheduler_address)
    with rasterio.open(tmp_path / "local.tif") as a, rasterio.open(tmp_path / "remote.tif") as b:
        assert np.allclose(a.read(1), b.read(1), atol=1e-5)
    assert remote.tiles == local.tiles == 15  # 5 × 3 tiles of 128 px
    assert remote.windows_read == local.windows_read == 15
    assert remote.timings["model_s"] > 0


@pytest.mark.cluster
def test_a_model_object_runs_on_the_cluster_through_one_client(scene, tmp_path):
    """A model object is sent to the workers once; one Segmenter maps two scenes over one client.
    The model separates objects, so its instances travel back from the workers too."""
    other = write_scene(tmp_path / "t.tif", scene_with_square(200, 200, (20, 60, 20, 60)), "EPSG:32633",
                        Affine(1, 0, 300000, 0, -1, 5000000))
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Segmenter(InstanceColourModel(), options=SegmentOptions(batch_size=2),
                      scheduler=cluster.scheduler_address) as seg:
        client = seg._client
        a = seg.run(scene, "red", tmp_path / "a.gpkg")
        b = seg.run(other, "red", tmp_path / "b.gpkg")
        assert seg._client is client and len(client.scheduler_info()["workers"]) == 1
    assert a.features.geometry.iloc[0].equals(box(300200, 4999840, 300260, 4999900))
    assert b.features.geometry.iloc[0].equals(box(300020, 4999940, 300060, 4999980))
    assert a.timings["model_s"] > 0 and client.status == "closed"
    assert a.grounding["candidates"] == b.grounding["candidates"] == 1  # one instance each, not one per tile


@pytest.mark.parametrize("address, words", [("tcp://127.0.0.1:1", "cannot reach the Dask scheduler"),
                                            ("not an address", "is not a scheduler address")])
@pytest.mark.slow
def test_unreachable_scheduler_is_a_clear_error(scene, tmp_path, tiny_weights, address, words):
    with pytest.raises(SchedulerError, match=words) as err:
        segment(scene, "x", tmp_path / "o.gpkg", model=str(tiny_weights), scheduler=address)
    assert isinstance(err.value, ConnectionError) and err.value.param == "scheduler"
    assert not (tmp_path / "o.gpkg").exists()
