"""The zip as users get it: built, installed into a fresh QGIS profile, run headless by qgis_process."""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import PLUGIN_ROOT, TANK

sys.path.insert(0, str(PLUGIN_ROOT))
import build_zip  # noqa: E402


def qgis_process() -> str:
    """Debian's /usr/bin/qgis_process wrapper passes --noversioncheck, which qgis_process 3.22 rejects
    ("Command --noversioncheck not known!"); the program it wraps works."""
    for name in ("qgis_process.bin", "qgis_process"):
        found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").is_file() else None)
        if found:
            return found
    raise RuntimeError("qgis_process is not installed: apt-get install qgis")


@pytest.fixture(scope="module")
def plugin_zip(tmp_path_factory) -> Path:
    return build_zip.build(tmp_path_factory.mktemp("dist"))


def test_the_zip_holds_the_plugin_and_nothing_else(plugin_zip):
    names = zipfile.ZipFile(plugin_zip).namelist()
    assert "georefseg_qgis/__init__.py" in names and "georefseg_qgis/metadata.txt" in names
    assert "georefseg_qgis/icon.png" in names and "georefseg_qgis/provider.py" in names
    assert all(n.startswith("georefseg_qgis/") and "/tests/" not in n and "__pycache__" not in n for n in names)
    metadata = configparser.ConfigParser()
    metadata.read_string(zipfile.ZipFile(plugin_zip).read("georefseg_qgis/metadata.txt").decode())
    general = metadata["general"]
    assert general["qgisMinimumVersion"] == "3.22" and general["hasProcessingProvider"] == "yes"
    assert plugin_zip.name == f"georefseg_qgis-{general['version']}.zip"
    assert build_zip.build(plugin_zip.parent).read_bytes() == plugin_zip.read_bytes()  # same sources, same bytes


def install(plugin_zip: Path, config: Path) -> Path:
    """Unpack the zip into a fresh profile folder, as Plugins ▸ Install from ZIP does; returns its QGIS3.ini."""
    plugins = config / "profiles" / "default" / "python" / "plugins"
    plugins.mkdir(parents=True)
    zipfile.ZipFile(plugin_zip).extractall(plugins)
    return config / "profiles" / "default" / "QGIS" / "QGIS3.ini"


def qgis_environment(config: Path) -> dict[str, str]:
    """This environment for a QGIS program using the profile folder ``config``."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    # QGIS's embedded Python takes its home from the first python3 on PATH: an active venv's would win.
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep)
                                  if not Path(p, "pyvenv.cfg").exists() and not Path(p).parent.joinpath("pyvenv.cfg")
                                  .exists())
    env.update(QGIS_CUSTOM_CONFIG_PATH=str(config), QT_QPA_PLATFORM="offscreen")
    return env


@pytest.mark.slow
def test_installed_from_the_zip_qgis_process_runs_it_headless(plugin_zip, scene, engine_path, cli_result, tmp_path):
    config = tmp_path / "config"  # a fresh profile folder: nothing installed, nothing set
    ini = install(plugin_zip, config)
    env = qgis_environment(config)
    run = [qgis_process()]
    enabled = subprocess.run([*run, "plugins", "enable", "georefseg_qgis"], env=env, capture_output=True, text=True)
    assert enabled.returncode == 0, enabled.stderr
    with ini.open("a") as settings:  # what Settings… stores: where the engine is
        settings.write(f"\n[georefseg]\nexecutable={engine_path}\n")
    listed = subprocess.run([*run, "list"], env=env, capture_output=True, text=True)
    assert "georefseg:segment" in listed.stdout
    out = tmp_path / "headless.gpkg"
    done = subprocess.run([*run, "--json", "run", "georefseg:segment", "--", f"INPUT={scene}", f"EXPRESSION={TANK}",
                           f"OUTPUT={out}"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["results"]["FEATURE_COUNT"] == cli_result["feature_count"]
    assert report["results"]["OUTPUT"] == f"{out}|layername=headless"
    from qgis.core import QgsVectorLayer

    layer = QgsVectorLayer(report["results"]["OUTPUT"], "headless", "ogr")
    cli = QgsVectorLayer(f"{cli_result['output']}|layername=cli", "cli", "ogr")
    assert layer.crs().authid() == "EPSG:32633"
    [ours], [theirs] = list(layer.getFeatures()), list(cli.getFeatures())
    assert ours.geometry().equals(theirs.geometry()) and ours["score"] == pytest.approx(theirs["score"])


DESKTOP_CHECK = """
import json, os
from qgis.core import QgsApplication, QgsProject
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QDockWidget
from qgis.utils import iface, plugins


def check():
    try:
        found = inspect()
    except Exception as exc:  # said in the file, and QGIS still quits
        found = {"error": repr(exc)}
    finish(found)


def finish(found):
    panel = plugins["georefseg_qgis"].panel
    if panel is not None and panel.models_task is not None:  # QGIS would ask whether to cancel it on exit
        QTimer.singleShot(200, lambda: finish(found))
        return
    if panel is not None:
        found["models"] = [panel.model.itemText(i) for i in range(panel.model.count())]
    with open(os.environ["CHECKED"], "w") as f:
        json.dump(found, f)
    QgsProject.instance().clear()
    iface.actionExit().trigger()


def inspect():
    panel = plugins["georefseg_qgis"].show_panel()
    menu = next(a.menu() for a in iface.pluginMenu().actions() if a.menu() and a.text() == "&georefseg")
    return {"menu": [a.text() for a in menu.actions()],
             "toolbar": [a.text() for a in iface.pluginToolBar().actions()],
             "provider": QgsApplication.processingRegistry().algorithmById("georefseg:segment") is not None,
             "dock": iface.mainWindow().findChild(QDockWidget, "GeorefsegPanel") is panel and panel.isVisible(),
             "canvas": panel.canvas is iface.mapCanvas()}


QTimer.singleShot(2000, check)
"""


@pytest.mark.slow
def test_qgis_desktop_loads_it_with_its_real_iface(plugin_zip, engine_path, tmp_path):
    """Real QGIS (the desktop program, on a virtual X display) loads the installed plugin through
    classFactory with its own iface: menu, toolbar button, dock panel and Processing provider."""
    xvfb = shutil.which("xvfb-run")
    assert xvfb, "the desktop test needs xvfb-run: apt-get install xvfb"
    ini = install(plugin_zip, tmp_path / "config")
    ini.parent.mkdir(parents=True)
    ini.write_text(f"[PythonPlugins]\ngeorefseg_qgis=true\n\n[georefseg]\nexecutable={engine_path}\n")
    script, checked = tmp_path / "check.py", tmp_path / "checked.json"
    script.write_text(DESKTOP_CHECK)
    env = qgis_environment(tmp_path / "config")
    env.pop("QT_QPA_PLATFORM")  # a real (virtual) display this time
    env["CHECKED"] = str(checked)
    subprocess.run([xvfb, "-a", "-s", "-screen 0 1280x800x24", "qgis", "--noversioncheck", "--nologo", "--code",
                    str(script)], env=env, capture_output=True, timeout=120)
    found = json.loads(checked.read_text())
    assert "georefseg panel" in found.pop("toolbar")  # beside QGIS's own plugin buttons
    assert found == {"menu": ["georefseg panel", "Settings…"], "provider": True, "dock": True, "canvas": True,
                     "models": ["tiny", "rmsin", "clipseg", "sam3", "rsrefseg2"]}
