"""The Dask cluster batch starts: on loopback, its scratch space where it is told, its warnings kept quiet."""

from __future__ import annotations

import logging

import pytest

from georefseg.cluster import dask_warnings, local_cluster


@pytest.mark.cluster
def test_a_local_cluster_keeps_its_scratch_and_its_warnings_to_itself(tmp_path):
    nanny = logging.getLogger("distributed.nanny")  # where "Worker process still alive …" comes from
    with dask_warnings(shown=False):
        client = local_cluster(1, local_directory=tmp_path, quiet=True)
        try:
            assert client.submit(sum, [1, 2]).result(timeout=120) == 3
            assert "127.0.0.1" in client.scheduler.address
            assert not nanny.isEnabledFor(logging.WARNING) and nanny.isEnabledFor(logging.ERROR)
            assert any(tmp_path.iterdir())  # Dask's scratch space is here, not in the system's temporary folder
        finally:
            cluster = client.cluster
            client.close()
            cluster.close()
    assert nanny.isEnabledFor(logging.WARNING)  # as it was: --verbose, or any other program's choice
