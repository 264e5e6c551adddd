"""Writing files atomically, and recognising what runs that died left behind.

Everything georefseg writes — polygon layers, probability rasters, batch reports, weights,
training checkpoints, dataset indexes — goes through :func:`atomic_path` or a
:class:`Transaction`. :func:`atomic_path` writes one file: the bytes go to a part file beside
the destination, which replaces it in one ``os.replace`` once complete, so a crash, Ctrl-C or
SIGKILL never leaves a half-written file under the final name. A :class:`Transaction` commits
several files together (a run's polygon layer with its sidecars and its probability raster):
all are staged in working folders beside their destinations, then a journal is written — the
commit point — and the files are renamed into place. A run killed before the journal changed
nothing the user can see; one killed between two renames is completed by the next run that
looks in that folder (:func:`remove_stale`), so a pair of outputs is never left half old,
half new.

Part files (``.NAME.georefseg-PID.part``) and working folders (``.georefseg-PID-…``) carry the
writing process's id: :func:`remove_stale` removes (or completes) those of processes that are
gone, and never touches those of a run still going.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

WORK_PREFIX = ".georefseg-"
PART_SUFFIX = ".part"
JOURNAL = "commit.json"  # in a transaction's first working folder: the moves that complete it
POINTER = "part-of.json"  # in its other working folders: which folder holds the journal
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
    """Clear up after georefseg processes that are gone: a transaction they had committed is
    completed (its journal's renames done), everything else they left in ``folder`` — part
    files, working folders — is removed. Returns the entries cleared."""
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for entry in sorted(folder.iterdir()):
        pid = owner(entry.name)
        if pid is None or process_alive(pid) or not entry.exists():  # (a completed journal removes others)
            continue
        if entry.is_dir():
            _finish_or_drop(entry)
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


def _finish_or_drop(workdir: Path) -> None:
    """A dead process's working folder: roll its transaction forward if it had reached the commit
    point (a journal, here or in the folder a pointer names), else remove it."""
    journal = workdir / JOURNAL
    if not journal.is_file() and (workdir / POINTER).is_file():
        try:
            journal = Path(json.loads((workdir / POINTER).read_text(encoding="utf-8"))["journal"])
        except (OSError, ValueError, KeyError, TypeError):
            journal = workdir / JOURNAL  # unreadable: written before the commit point, so dropped
    if journal.is_file():
        try:
            record = json.loads(journal.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            record = None  # a journal is written atomically: unreadable means it is not ours
        if record is not None:
            _apply(record["moves"])
            log.info("completed the outputs of a run that was killed while writing them: %s",
                     ", ".join(target for _, target in record["moves"]))
            for other in record["folders"]:
                shutil.rmtree(other, ignore_errors=True)
    shutil.rmtree(workdir, ignore_errors=True)


def _apply(moves: list) -> None:
    """Rename each staged file onto its target (``None``: remove the target); done ones are skipped."""
    for staged, target in moves:
        if staged is None:
            Path(target).unlink(missing_ok=True)
        elif Path(staged).exists():
            os.replace(staged, target)


@contextmanager
def _signals_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until the block is done (POSIX, main thread): a commit is not cut."""
    held = hasattr(signal, "pthread_sigmask") and threading.current_thread() is threading.main_thread()
    if held:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        if held:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class Transaction:
    """Files that are written together and appear together: all old, or all new.

    Each file is written to :meth:`path_for` (a working folder beside its target), and
    :meth:`replace` or :meth:`delete` say what the commit does with it; :meth:`commit` then
    makes every change at once. Leaving the ``with`` block without a commit (an error, Ctrl-C)
    removes everything staged and changes nothing.

    Parameters
    ----------
    targets
        The files the transaction may write; their folders must exist. With none, its working
        folder is in the system's temporary folder (for scratch files).
    """

    def __init__(self, targets: Iterable[str | Path] = ()):
        folders = list(dict.fromkeys(Path(t).absolute().parent for t in targets))
        self._folders = {f: working_folder(f) for f in folders}  # dead runs' leftovers cleared first
        self.workdir = next(iter(self._folders.values())) if folders else working_folder(None)
        self._moves: list[tuple[Path | None, Path]] = []
        self.committed = False

    def path_for(self, target: str | Path) -> Path:
        """Where to write ``target`` before the commit."""
        target = Path(target).absolute()
        return self._folders[target.parent] / target.name

    def replace(self, target: str | Path) -> None:
        """At the commit, the file written at :meth:`path_for` replaces ``target``."""
        self._moves.append((self.path_for(target), Path(target).absolute()))

    def delete(self, target: str | Path) -> None:
        """At the commit, ``target`` is removed (an old sidecar the new output has none of)."""
        self._moves.append((None, Path(target).absolute()))

    def commit(self) -> None:
        """Make every change: the journal first (the commit point), then the renames."""
        # The journal's own folder last, so that a kill during the clean-up leaves nothing to redo.
        folders = [str(f) for f in self._folders.values() if f != self.workdir] + [str(self.workdir)]
        journal = self.workdir / JOURNAL
        with _signals_held():
            for folder in self._folders.values():
                if folder != self.workdir:
                    write_text(folder / POINTER, json.dumps({"journal": str(journal)}))
            write_text(journal, json.dumps({"moves": [[None if s is None else str(s), str(t)]
                                                      for s, t in self._moves], "folders": folders}))
            self.committed = True
            _apply([(s, t) for s, t in self._moves])
            for folder in folders:
                shutil.rmtree(folder, ignore_errors=True)

    def abort(self) -> None:
        """Remove everything staged; nothing the user sees has changed."""
        for folder in {self.workdir, *self._folders.values()}:
            shutil.rmtree(folder, ignore_errors=True)

    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, *exc) -> None:
        if not self.committed:
            self.abort()
