"""The plugin object QGIS loads: a menu, a toolbar button, the dock panel and the Processing provider."""

from __future__ import annotations

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction

from .provider import ICON, GeorefsegProvider

MENU = "&georefseg"


class GeorefsegPlugin:
    """Created by :func:`georefseg_qgis.classFactory` with QGIS's ``iface``."""

    def __init__(self, iface):
        self.iface = iface
        self.provider: GeorefsegProvider | None = None
        self.panel = None
        self.actions: list[QAction] = []

    def initProcessing(self) -> None:
        """Register ``georefseg:segment``; QGIS calls this alone when it runs headless (qgis_process)."""
        if self.provider is None:
            self.provider = GeorefsegProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:
        self.initProcessing()
        main = self.iface.mainWindow()
        panel = QAction(QIcon(ICON), "georefseg panel", main)
        panel.setToolTip("georefseg: cut out what an expression names, as polygons")
        panel.triggered.connect(self.show_panel)
        options = QAction("Settings…", main)
        options.triggered.connect(self.show_settings)
        self.actions = [panel, options]
        self.iface.addToolBarIcon(panel)
        for action in self.actions:
            self.iface.addPluginToMenu(MENU, action)

    def show_panel(self):
        """Open the dock panel (made on first use, so QGIS starts no slower for the plugin)."""
        if self.panel is None:
            from .panel import SegmentPanel  # widgets and the map tool only when the panel is wanted

            self.panel = SegmentPanel(self.iface, self.iface.mainWindow())
            self.iface.addDockWidget(Qt.RightDockWidgetArea, self.panel)
        self.panel.show()
        self.panel.raise_()
        self.panel.load_models()
        return self.panel

    def show_settings(self) -> None:
        from .settings_dialog import SettingsDialog

        if SettingsDialog(self.iface.mainWindow()).exec_() and self.panel is not None:
            self.panel.engine = None  # check the new path at the next run

    def unload(self) -> None:
        for action in self.actions:
            self.iface.removePluginMenu(MENU, action)
        if self.actions:
            self.iface.removeToolBarIcon(self.actions[0])
        self.actions = []
        if self.panel is not None:
            self.panel.close_down()
            self.iface.removeDockWidget(self.panel)
            self.panel.deleteLater()
            self.panel = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
