"""Real QGIS, headless: one QgsApplication (with widgets, offscreen) and Processing for the session,
settings in a fresh profile folder, the real georefseg engine, and small real GeoTIFFs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
MADE: list[str] = []  # the folders this session makes outside pytest's tmp_path: removed at its end
if "XDG_RUNTIME_DIR" not in os.environ:
    MADE.append(tempfile.mkdtemp(prefix="xdg-"))
    os.environ["XDG_RUNTIME_DIR"] = MADE[-1]
# Qt's user settings (QSettings) in a folder of this session's own: never the user's, and never
# those of another pytest-xdist worker running beside it.
MADE.append(tempfile.mkdtemp(prefix="xdg-config-"))
os.environ["XDG_CONFIG_HOME"] = MADE[-1]

HERE = Path(__file__).resolve().parent
PLUGIN_ROOT = HERE.parent  # plugins/qgis: the folder that holds the georefseg_qgis package
REPO = PLUGIN_ROOT.parent.parent
SAMPLE = REPO / "sample_data" / "scene.tif"
QGIS_PLUGINS = "/usr/share/qgis/python/plugins"  # Processing itself
for path in (str(PLUGIN_ROOT), QGIS_PLUGINS):
    if path not in sys.path:
        sys.path.insert(0, path)

from qgis.core import QgsApplication  # noqa: E402

PROFILE = Path(tempfile.mkdtemp(prefix="qgis-profile-"))
MADE.append(str(PROFILE))
APP = QgsApplication([], True, str(PROFILE))  # its settings live in this fresh profile, not the user's
APP.initQgis()

from processing.core.Processing import Processing  # noqa: E402

Processing.initialize()


def engine_executable() -> str:
    """The georefseg engine the tests drive: $GEOREFSEG_EXECUTABLE, else on PATH, else the repo's .venv."""
    found = os.environ.get("GEOREFSEG_EXECUTABLE") or shutil.which("georefseg")
    venv = REPO / ".venv" / "bin" / "georefseg"
    if found is None and venv.is_file():
        found = str(venv)
    if found is None:
        raise RuntimeError("the plugin tests need the georefseg engine: pip install -e . in a venv, activate it")
    return found


@pytest.fixture(scope="session")
def engine_path() -> str:
    return engine_executable()


@pytest.fixture(autouse=True)
def engine_setting(engine_path):
    """Each test starts with the engine set in the plugin's settings and no recent expressions."""
    from georefseg_qgis import settings
    from qgis.core import QgsSettings

    QgsSettings().remove("georefseg")
    settings.set_executable(engine_path)
    yield
    QgsSettings().remove("georefseg")


@pytest.fixture(scope="session")
def scene(tmp_path_factory) -> Path:
    """512 × 512 px of the sample scene (1 m, UTM 33N) holding its large storage tank and the river."""
    from osgeo import gdal

    gdal.UseExceptions()
    path = tmp_path_factory.mktemp("scene") / "tanks.tif"
    gdal.Translate(str(path), str(SAMPLE), srcWin=[384, 256, 512, 512])
    return path


@pytest.fixture(scope="session")
def full_scene(tmp_path_factory) -> Path:
    """The whole sample scene (1024 × 1024 px, 9 tiles), copied: QGIS leaves statistics (.aux.xml) beside
    a raster it draws, and the repository's copy stays as it is."""
    path = tmp_path_factory.mktemp("full") / "scene.tif"
    shutil.copy(SAMPLE, path)
    return path


@pytest.fixture(scope="session")
def cli_result(scene, engine_path, tmp_path_factory) -> dict:
    """What the CLI writes for the tank expression on ``scene``: the reference the plugin must match."""
    import json

    out = tmp_path_factory.mktemp("cli") / "cli.gpkg"
    done = subprocess.run([engine_path, "segment", str(scene), TANK, "-o", str(out), "--json", "--progress", "none"],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


TANK = "the large storage tank near the river"


def wait_for(condition, timeout_s: float = 180.0) -> None:
    """Process Qt events until ``condition()`` holds (tasks report back through the event loop)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("timed out waiting")
        APP.processEvents()
        time.sleep(0.02)


def pytest_collection_modifyitems(items) -> None:
    """Every test here runs in real QGIS: marked ``qgis``, so a run can pick them (-m qgis) or leave them."""
    for item in items:
        item.add_marker(pytest.mark.qgis)


def pytest_sessionfinish(session, exitstatus) -> None:
    """Leave no /tmp/qgis-profile-* or /tmp/xdg-* folder behind."""
    for folder in MADE:
        shutil.rmtree(folder, ignore_errors=True)
