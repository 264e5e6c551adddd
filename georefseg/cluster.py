"""Dask clusters: connecting to a scheduler, or starting a local one; shared by the Segmenter and batch."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from georefseg.errors import SchedulerError

log = logging.getLogger(__name__)


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity where the OS says, else all)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _refused(address: str) -> None:
    """Raise SchedulerError at once when nothing listens at a ``tcp://`` address: the Client
    would retry for its whole timeout before saying so."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        port = parts.port
    except ValueError:  # not a port number: the Client's own error says so
        return
    if parts.scheme != "tcp" or parts.hostname is None or port is None:
        return
    try:
        socket.create_connection((parts.hostname, port), timeout=10).close()
    except ConnectionRefusedError as exc:
        raise SchedulerError(f"cannot reach the Dask scheduler at {{param}} {address} (nothing listens there: "
                             f"{exc.strerror}): start one with `dask scheduler`, or check the address",
                             param="scheduler") from exc
    except OSError:  # unresolvable or unreachable: the Client's own error says which
        return


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
    _refused(address)
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
    folder); ``quiet`` keeps the worker processes' own warnings off stderr, letting only their
    errors through (for this process's, see :func:`dask_warnings`)."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker, processes=True,
                           host="127.0.0.1", dashboard_address="127.0.0.1:0",
                           local_directory=None if local_directory is None else str(local_directory),
                           silence_logs=logging.ERROR if quiet else logging.WARNING)
    log.info("started a LocalCluster of %d worker(s): %s", workers, cluster.dashboard_link)
    return Client(cluster, set_as_default=False)


@contextmanager
def dask_warnings(shown: bool) -> Iterator[None]:
    """Within the block, Dask's own warnings in this process (its scheduler's and nannies': "Worker
    process still alive after 4.0 seconds, killing") reach stderr only if ``shown``; its errors
    always do. The level is put back afterwards."""
    # Dask's configuration gives some of its loggers levels of their own ("distributed.nanny"):
    # each is raised, and put back after; those made during the block inherit "distributed"'s.
    names = ["distributed", *(n for n in logging.Logger.manager.loggerDict if n.startswith("distributed."))]
    loggers = [logging.getLogger(n) for n in names]
    before = [lg.level for lg in loggers]
    if not shown:
        for lg in loggers:
            if lg.level < logging.ERROR:
                lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, before, strict=True):
            lg.setLevel(level)
