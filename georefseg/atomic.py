"""Writing files atomically, and recognising what runs that died left behind.

Everything georefseg writes — polygon layers, probability rasters, batch reports, weights,
training checkpoints, dataset indexes — goes through :func:`atomic_path`: the bytes go to a
part file beside the destination, which replaces the destination in one ``os.replace`` only
once it is complete, so a crash, Ctrl-C or SIGKILL never leaves a half-written file under the
final name. Outputs made of several files (a Shapefile and its sidecars) are built in a
:func:`working_folder` first.

Part files (``.NAME.georefseg-PID.part``) and working folders (``.georefseg-PID-…``) carry the
writing process's id: :func:`remove_stale` removes those of processes that are gone, and never
those of a run still going.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

WORK_PREFIX = ".georefseg-"
PART_SUFFIX = ".part"
_OWNED = re.compile(rf"^{re.escape(WORK_PREFIX)}(\d+)-|\.georefseg-(\d+){re.escape(PART_SUFFIX)}$")


def part_path(path: str | Path) -> Path:
    """Where :func:`atomic_path` writes ``path`` before it is complete: a hidden file beside it,
    named for this process."""
    path = Path(path)
    return path.with_name(f".{path.name}.georefseg-{os.getpid()}{PART_SUFFIX}")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A part file to write ``path`` into: renamed onto ``path`` when the block ends normally,
    removed when it raises (or is interrupted), so ``path`` is either the old file or the
    complete new one.

    Examples
    --------
    >>> with atomic_path("report.json") as part:  # doctest: +SKIP
    ...     part.write_text("{}")
    """
    path = Path(path)
    part = part_path(path)
    try:
        yield part
        os.replace(part, path)
    finally:
        if part.exists():
            part.unlink()


def write_text(path: str | Path, text: str) -> None:
    """``path`` holds ``text`` (UTF-8), written atomically."""
    with atomic_path(path) as part:
        part.write_text(text, encoding="utf-8")


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (as any user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def owner(name: str) -> int | None:
    """The process id a part file's or working folder's name carries; None for other names."""
    m = _OWNED.search(name)
    return None if m is None else int(m.group(1) or m.group(2))


def remove_stale(folder: str | Path) -> list[Path]:
    """Remove the part files and working folders in ``folder`` that georefseg processes which
    are gone left behind; returns what was removed."""
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        pid = owner(entry.name)
        if pid is None or process_alive(pid):
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    if removed:
        log.info("removed %d file(s) left by runs that died in %s", len(removed), folder)
    return removed


def working_folder(folder: str | Path | None) -> Path:
    """A fresh working folder in ``folder`` (the system's temporary folder if None), named for
    this process; stale ones of dead runs there are removed first."""
    if folder is not None:
        remove_stale(folder)
    return Path(tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{os.getpid()}-", dir=folder))
