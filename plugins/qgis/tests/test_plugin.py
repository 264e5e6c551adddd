"""The plugin as QGIS loads it: classFactory, menus, toolbar, the panel, the Processing provider."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from georefseg_qgis import classFactory
from qgis.core import QgsApplication
from stand_in_iface import StandInIface

PACKAGE = Path(__file__).resolve().parents[1] / "georefseg_qgis"


def test_class_factory_loads_and_unloads_everything_it_adds():
    iface = StandInIface()
    plugin = classFactory(iface)
    plugin.initGui()
    registry = QgsApplication.processingRegistry()
    assert registry.providerById("georefseg") is not None
    algorithm = registry.algorithmById("georefseg:segment")
    assert algorithm is not None
    names = [p.name() for p in algorithm.parameterDefinitions()]
    for name in ("INPUT", "EXPRESSION", "OUTPUT", "EXTENT", "MODEL", "THRESHOLD", "MIN_AREA", "PROB"):
        assert name in names
    assert [a.text() for a in iface.menus["&georefseg"]] == ["georefseg panel", "Settings…"]
    assert len(iface.toolbar.actions()) == 1
    panel = plugin.show_panel()
    assert panel in iface.docks and panel.isVisibleTo(iface.window)
    plugin.unload()
    assert registry.providerById("georefseg") is None
    assert iface.menus == {} and iface.toolbar.actions() == [] and iface.docks == []


def test_the_plugin_imports_neither_torch_nor_georefseg():
    """The engine runs in its own process: nothing of it, or of torch, is imported into QGIS's Python."""
    imported = set()
    for module in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
    outside = {m for m in imported if m not in sys.stdlib_module_names and m not in ("qgis", "processing")}
    assert outside == set() and "georefseg" not in imported and "torch" not in imported
