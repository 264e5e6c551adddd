"""Finding and checking the georefseg engine: the ``georefseg`` command-line program.

The plugin never imports georefseg (or torch): QGIS's own Python rarely has them, and installing
deep-learning packages into it is what breaks other plugins. The engine is a separate
installation (a venv, a conda environment, pipx) that the plugin runs as a program. This module
finds that program and checks, with ``georefseg --version``, that it runs and is new enough;
everything it says on failure ends with the one command that fixes it.

Standard library only, so that it is testable without QGIS.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

MIN_VERSION = (0, 1, 0)
# georefseg is distributed as its source (the repository this plugin comes from) and the wheel
# built from it (`python -m build`), not from PyPI: the commands name that source.
SOURCE = "<georefseg source folder or wheel>"
INSTALL = f"python3 -m venv ~/georefseg && ~/georefseg/bin/pip install {SOURCE}"
UPGRADE = f"~/georefseg/bin/pip install --upgrade {SOURCE} (version {'.'.join(map(str, MIN_VERSION))} or newer)"
ENV_VARIABLE = "GEOREFSEG_EXECUTABLE"  # the engine's path where there is no Settings dialog (servers, qgis_process)
WHERE = f"set its path in Plugins ▸ georefseg ▸ Settings (or in {ENV_VARIABLE})"
EXE = "georefseg.exe" if sys.platform == "win32" else "georefseg"
# Where an environment keeps its programs: <env>/bin on Linux and macOS, <env>/Scripts on Windows.
ENV_FOLDERS = ("bin", "Scripts", "")

# Variables QGIS sets for its own Python and GDAL; passed on, they would make the engine's Python
# import QGIS's packages or its rasterio read another GDAL's data files.
QGIS_ONLY_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "GDAL_DATA", "GDAL_DRIVER_PATH", "PROJ_LIB",
                       "PROJ_DATA", "PROJ_NETWORK", "QGIS_PREFIX_PATH", "QT_PLUGIN_PATH")


class EngineError(RuntimeError):
    """The engine cannot be used; the message says why and how to fix it, in one line."""


@dataclass(frozen=True)
class Engine:
    """A checked georefseg installation.

    Attributes
    ----------
    path : str
        The ``georefseg`` executable.
    version : tuple of int
        Its version, e.g. ``(0, 1, 0)``.
    """

    path: str
    version: tuple[int, ...]

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))


def engine_environment() -> dict[str, str]:
    """The environment the engine runs in: this one without QGIS's Python and GDAL variables,
    unbuffered UTF-8 output so that progress arrives line by line."""
    env = {k: v for k, v in os.environ.items() if k not in QGIS_ONLY_VARIABLES}
    env.update(PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8", NO_COLOR="1")
    return env


def _in_folder(folder: Path) -> Path | None:
    for sub in ENV_FOLDERS:
        candidate = folder / sub / EXE
        if candidate.is_file():
            return candidate
    return None


def find_executable(configured: str | None = None) -> str:
    """The georefseg executable to run.

    Parameters
    ----------
    configured : str, optional
        What the user set: the executable itself, or the folder of a venv or conda environment
        (its ``bin/`` or ``Scripts/`` is searched). Empty or None: ``$GEOREFSEG_EXECUTABLE``
        (the same, for machines without the Settings dialog), else search PATH, then the
        active conda environment or venv, then ``~/.local/bin`` (pipx, ``pip install --user``).

    Raises
    ------
    EngineError
        Nothing usable is there; the message gives the install command.
    """
    configured = configured or os.environ.get(ENV_VARIABLE, "").strip()
    if configured:
        path = Path(configured).expanduser()
        found = _in_folder(path) if path.is_dir() else (path if path.is_file() else None)
        if found is None:
            raise EngineError(f"no georefseg engine at {configured}: point the setting to the georefseg program or "
                              f"to the environment it is installed in, or install it there with: {INSTALL}")
        return str(found)
    on_path = shutil.which(EXE)
    if on_path:
        return on_path
    homes = [os.environ.get("CONDA_PREFIX"), os.environ.get("VIRTUAL_ENV"), str(Path.home() / ".local")]
    for home in filter(None, homes):
        found = _in_folder(Path(home))
        if found is not None:
            return str(found)
    raise EngineError(f"georefseg engine not found: install it with: {INSTALL} (Python ≥ 3.10), then {WHERE} "
                      "or put it on PATH")


def parse_version(text: str) -> tuple[int, ...] | None:
    """``(0, 1, 0)`` from ``georefseg --version`` output such as ``georefseg 0.1.0``."""
    m = re.search(r"georefseg\s+(\d+(?:\.\d+)+)", text)
    return None if m is None else tuple(int(p) for p in m.group(1).split("."))


def check_engine(configured: str | None = None, timeout_s: float = 60.0) -> Engine:
    """Find the engine and check that it runs and is at least :data:`MIN_VERSION`.

    Parameters
    ----------
    configured : str, optional
        See :func:`find_executable`.
    timeout_s : float
        Seconds ``georefseg --version`` may take.

    Raises
    ------
    EngineError
        Missing, broken (does not start, or says something other than its version) or too old;
        the message names the path and the command that fixes it.
    """
    path = find_executable(configured)
    try:
        done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=timeout_s,
                              env=engine_environment(), stdin=subprocess.DEVNULL, **hidden_window())
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EngineError(f"the georefseg engine at {path} does not start ({exc}): reinstall it with: "
                          f"{UPGRADE}") from exc
    version = parse_version(done.stdout) if done.returncode == 0 else None
    if version is None:
        said = (done.stderr.strip() or done.stdout.strip() or f"exit code {done.returncode}").splitlines()[-1]
        raise EngineError(f"the georefseg engine at {path} is broken ({said}): reinstall it with: {UPGRADE}")
    if version < MIN_VERSION:
        raise EngineError(f"the georefseg engine at {path} is version {'.'.join(map(str, version))}, older than "
                          f"this plugin needs: upgrade it with: {UPGRADE}")
    return Engine(path, version)


def hidden_window() -> dict:
    """Keyword arguments that keep a console window from flashing up on Windows."""
    if sys.platform == "win32":
        return {"creationflags": subprocess.CREATE_NO_WINDOW}
    return {}


def _ask(engine: Engine, command: str, what: str, timeout_s: float) -> list:
    """The JSON list ``georefseg COMMAND --json`` prints.

    Raises
    ------
    EngineError
        The engine did not answer with a list.
    """
    try:
        done = subprocess.run([engine.path, command, "--json"], capture_output=True, text=True, timeout=timeout_s,
                              env=engine_environment(), stdin=subprocess.DEVNULL, **hidden_window())
        answer = json.loads(done.stdout)
    except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
        raise EngineError(f"the georefseg engine at {engine.path} did not list its {what} ({exc}): reinstall it "
                          f"with: {UPGRADE}") from exc
    return [item for item in answer if isinstance(item, dict) and "name" in item] if isinstance(answer, list) else []


def list_models(engine: Engine, timeout_s: float = 120.0) -> list[dict]:
    """The models the engine knows (``georefseg models --json``): dicts with ``name``,
    ``summary`` and ``needs``."""
    return _ask(engine, "models", "models", timeout_s)


def list_formats(engine: Engine, timeout_s: float = 60.0) -> list[dict]:
    """The vector formats the engine writes (``georefseg formats --json``): dicts with ``name``,
    ``label``, ``extensions``, ``appendable``, ``multi_layer`` and ``crs``, the default first."""
    return _ask(engine, "formats", "output formats", timeout_s)


def file_filter(formats: list[dict]) -> str:
    """A Qt file-dialog filter for the formats: ``GeoPackage (*.gpkg);;GeoJSON (*.geojson *.json);;…``."""
    return ";;".join(f"{f['label']} ({' '.join('*' + e for e in f['extensions'])})" for f in formats)
