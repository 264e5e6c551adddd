"""Atomic writes and transactions: nothing half-written, a pair never half old and half new."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from georefseg.atomic import JOURNAL, Transaction, atomic_path, remove_stale


def _old_pair(folder):
    folder.mkdir(exist_ok=True)
    (folder / "a.txt").write_text("old a")
    (folder / "b.txt").write_text("old b")
    (folder / "sidecar.txt").write_text("old sidecar")


def _killed_while_committing(folder, renames_before_kill: int | None, b_folder=None) -> subprocess.CompletedProcess:
    """A process stages a new pair and is SIGKILLed: before its journal (None) or after that many renames."""
    code = f"""
import os, signal
from pathlib import Path
import georefseg.atomic as atomic
folder, b = Path({str(folder)!r}), Path({str(b_folder or folder)!r})
txn = atomic.Transaction([folder / "a.txt", b / "b.txt"])
txn.path_for(folder / "a.txt").write_text("new a")
txn.path_for(b / "b.txt").write_text("new b")
txn.replace(folder / "a.txt"); txn.replace(b / "b.txt"); txn.delete(folder / "sidecar.txt")
n = {renames_before_kill!r}
if n is None:
    os.kill(os.getpid(), signal.SIGKILL)
real = atomic._apply
def apply_then_die(moves):
    real(moves[:n])
    os.kill(os.getpid(), signal.SIGKILL)
atomic._apply = apply_then_die
txn.commit()
"""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("renames", [0, 1, 2])
def test_a_kill_between_renames_is_completed_by_the_next_look(tmp_path, renames):
    _old_pair(tmp_path)
    assert _killed_while_committing(tmp_path, renames).returncode == -signal.SIGKILL
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".georefseg-")]
    assert leftovers and (leftovers[0] / JOURNAL).is_file()  # the commit point was passed
    assert remove_stale(tmp_path) == leftovers
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {"a.txt": "new a", "b.txt": "new b"}


def test_a_kill_before_the_journal_changes_nothing(tmp_path):
    _old_pair(tmp_path)
    assert _killed_while_committing(tmp_path, None).returncode == -signal.SIGKILL
    remove_stale(tmp_path)
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {
        "a.txt": "old a", "b.txt": "old b", "sidecar.txt": "old sidecar"}


def test_files_in_two_folders_commit_together_and_an_error_changes_nothing(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    with pytest.raises(RuntimeError), Transaction([one / "x.txt", two / "y.txt"]) as txn:
        txn.path_for(one / "x.txt").write_text("x")
        txn.replace(one / "x.txt")
        raise RuntimeError("the run failed before its commit")
    assert list(one.iterdir()) == list(two.iterdir()) == []
    with Transaction([one / "x.txt", two / "y.txt"]) as txn:
        for target in (one / "x.txt", two / "y.txt"):
            txn.path_for(target).write_text(target.stem)
            txn.replace(target)
        pointer = next(p for p in two.iterdir() if p.name.startswith(".georefseg-"))
        txn.commit()
    assert [p.name for p in one.iterdir()] == ["x.txt"] and [p.name for p in two.iterdir()] == ["y.txt"]
    assert not pointer.exists() and txn.committed


def test_an_atomic_file_is_the_old_one_until_it_is_complete(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")
    with pytest.raises(ValueError), atomic_path(target) as part:
        part.write_text("half")
        raise ValueError("stopped half-way")
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]


def test_the_folder_without_the_journal_completes_the_commit_too(tmp_path):
    """The pair in two folders, killed after one rename: whichever folder is looked at first, its
    pointer leads to the journal and the whole commit is completed."""
    one, two = tmp_path / "one", tmp_path / "two"
    _old_pair(one)
    two.mkdir()
    (one / "b.txt").rename(two / "b.txt")
    assert _killed_while_committing(one, 1, two).returncode == -signal.SIGKILL
    assert (one / "a.txt").read_text() == "new a" and (two / "b.txt").read_text() == "old b"  # mixed until…
    remove_stale(two)  # …the next run looks in the folder that holds only a pointer
    assert (two / "b.txt").read_text() == "new b" and [p.name for p in two.iterdir()] == ["b.txt"]
    assert sorted(p.name for p in one.iterdir()) == ["a.txt"]
