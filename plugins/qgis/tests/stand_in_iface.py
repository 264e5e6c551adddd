"""What headless QGIS lacks: ``iface``. Everything behind it here is a real QGIS widget (map
canvas, message bar, main window); only the glue QGIS's desktop would provide is written out."""

from __future__ import annotations

from qgis.gui import QgsMapCanvas, QgsMessageBar
from qgis.PyQt.QtWidgets import QMainWindow, QToolBar


class StandInIface:
    """The parts of ``QgisInterface`` the plugin calls, recording menus and toolbar buttons."""

    def __init__(self):
        self.window = QMainWindow()
        self.canvas = QgsMapCanvas(self.window)
        self.window.setCentralWidget(self.canvas)
        self.bar = QgsMessageBar(self.window)
        self.toolbar = QToolBar(self.window)
        self.window.addToolBar(self.toolbar)
        self.menus: dict[str, list] = {}
        self.docks: list = []

    def mainWindow(self):
        return self.window

    def mapCanvas(self):
        return self.canvas

    def messageBar(self):
        return self.bar

    def addToolBarIcon(self, action):
        self.toolbar.addAction(action)

    def removeToolBarIcon(self, action):
        self.toolbar.removeAction(action)

    def addPluginToMenu(self, menu, action):
        self.menus.setdefault(menu, []).append(action)

    def removePluginMenu(self, menu, action):
        self.menus[menu].remove(action)
        if not self.menus[menu]:
            del self.menus[menu]

    def addDockWidget(self, area, dock):
        self.window.addDockWidget(area, dock)
        self.docks.append(dock)

    def removeDockWidget(self, dock):
        self.window.removeDockWidget(dock)
        self.docks.remove(dock)
