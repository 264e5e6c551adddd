"""Dask clusters: connecting to a scheduler, or starting a local one; shared by the Segmenter and batch."""

from __future__ import annotations

import logging
from pathlib import Path

from georefseg.errors import SchedulerError

log = logging.getLogger(__name__)


def connect_scheduler(address: str):
    """A ``dask.distributed`` Client of the scheduler at ``address`` (``tcp://HOST:PORT``).

    Raises
    ------
    SchedulerError
        Not an address, or nothing answers there within 10 s.
    """
    from distributed import Client

    if "://" not in address and ":" not in address:
        raise SchedulerError(f"{{param}} {address!r} is not a scheduler address: write it as tcp://HOST:PORT",
                             param="scheduler")
    try:
        client = Client(address, timeout="10s", set_as_default=False)
    except (OSError, ValueError, TypeError) as exc:
        raise SchedulerError(f"cannot reach the Dask scheduler at {{param}} {address} "
                             f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}): "
                             "start one with `dask scheduler`, or check the address", param="scheduler") from exc
    log.info("connected to the Dask scheduler at %s", address)
    return client


def local_cluster(workers: int, threads_per_worker: int = 1, local_directory: str | Path | None = None,
                  quiet: bool = True):
    """A Client of a new LocalCluster of ``workers`` processes on this machine (loopback only,
    dashboard on a free port); closing the client's cluster stops them.

    ``local_directory`` holds the workers' scratch space (default: the system's temporary
    folder); ``quiet`` keeps Dask's own warnings ("Worker process still alive after 4.0
    seconds, killing") off stderr, letting only its errors through."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker, processes=True,
                           host="127.0.0.1", dashboard_address="127.0.0.1:0",
                           local_directory=None if local_directory is None else str(local_directory),
                           silence_logs=logging.ERROR if quiet else logging.WARNING)
    log.info("started a LocalCluster of %d worker(s): %s", workers, cluster.dashboard_link)
    return Client(cluster, set_as_default=False)
