"""Finding and checking the engine: real programs on disk, run for real."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from georefseg_qgis.engine import (
    ENV_VARIABLE,
    INSTALL,
    UPGRADE,
    EngineError,
    check_engine,
    find_executable,
    parse_version,
)


def program(folder: Path, body: str) -> Path:
    """An executable ``georefseg`` in ``folder/bin`` that runs ``body`` (a shell script)."""
    path = folder / "bin" / "georefseg"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_the_real_engine_checks_out(engine_path):
    engine = check_engine(engine_path)
    assert engine.path == engine_path and engine.version >= (0, 1, 0)


def test_an_environment_folder_is_searched_for_its_program(engine_path):
    venv = Path(engine_path).parent.parent  # …/.venv/bin/georefseg -> …/.venv
    assert find_executable(str(venv)) == str(venv / "bin" / "georefseg")


def test_found_on_path_when_nothing_is_set(engine_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{Path(engine_path).parent}{os.pathsep}/usr/bin:/bin")
    assert find_executable("") == engine_path


def test_the_environment_names_the_engine_where_no_setting_does(engine_path, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # not on PATH: found through the variable alone
    monkeypatch.setenv(ENV_VARIABLE, engine_path)
    assert check_engine("").path == engine_path
    monkeypatch.setenv(ENV_VARIABLE, str(Path(engine_path).parent.parent))  # or the environment's folder
    assert check_engine("").path == engine_path


def test_missing_engine_says_the_one_install_line(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VARIABLE, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    for name in ("CONDA_PREFIX", "VIRTUAL_ENV"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(EngineError) as caught:
        check_engine("")
    message = str(caught.value)
    assert message.startswith("georefseg engine not found") and INSTALL in message and "\n" not in message
    assert "pip install <georefseg source folder or wheel>" in message and "GEOREFSEG_EXECUTABLE" in message
    with pytest.raises(EngineError, match="no georefseg engine at /nowhere/georefseg"):
        check_engine("/nowhere/georefseg")


def test_broken_engine_is_named_with_what_it_said(tmp_path):
    broken = program(tmp_path, 'echo "Traceback (most recent call last):" >&2\n'
                               'echo "ModuleNotFoundError: No module named \'torch\'" >&2\nexit 1')
    with pytest.raises(EngineError) as caught:
        check_engine(str(broken))
    message = str(caught.value)
    assert str(broken) in message and "No module named 'torch'" in message and UPGRADE in message


def test_too_old_engine_says_upgrade(tmp_path):
    old = program(tmp_path, 'echo "georefseg 0.0.9"')
    with pytest.raises(EngineError, match=r"version 0\.0\.9, older than this plugin needs") as caught:
        check_engine(str(tmp_path))  # the environment's folder: bin/georefseg is found in it
    assert UPGRADE in str(caught.value) and str(old) in str(caught.value)


def test_versions_read_from_what_the_engine_prints():
    assert parse_version("georefseg 0.1.0\n") == (0, 1, 0)
    assert parse_version("georefseg 1.12.3rc1") == (1, 12, 3)
    assert parse_version("Usage: something else") is None
