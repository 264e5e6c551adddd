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


def test_installed_from_the_zip_qgis_process_runs_it_headless(plugin_zip, scene, engine_path, cli_result, tmp_path):
    config = tmp_path / "config"  # a fresh profile folder: nothing installed, nothing set
    plugins = config / "profiles" / "default" / "python" / "plugins"
    plugins.mkdir(parents=True)
    zipfile.ZipFile(plugin_zip).extractall(plugins)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    # QGIS's embedded Python takes its home from the first python3 on PATH: an active venv's would win.
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep)
                                  if not Path(p, "pyvenv.cfg").exists() and not Path(p).parent.joinpath("pyvenv.cfg")
                                  .exists())
    env.update(QGIS_CUSTOM_CONFIG_PATH=str(config), QT_QPA_PLATFORM="offscreen")
    run = [qgis_process()]
    enabled = subprocess.run([*run, "plugins", "enable", "georefseg_qgis"], env=env, capture_output=True, text=True)
    assert enabled.returncode == 0, enabled.stderr
    ini = config / "profiles" / "default" / "QGIS" / "QGIS3.ini"
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
