"""Take docs/qgis_panel.png: the georefseg panel with a result on the map, in real QGIS under Xvfb.

Run from the repository root (the engine installed in .venv, QGIS 3.22 and xvfb from Debian):

    bash docs/make_screenshot.sh

which installs the plugin zip into a fresh QGIS profile and starts QGIS with this file as its
startup code (``qgis --code``): it loads the sample scene, opens the panel, runs the README's
expression with the probability raster, waits for the result on the map, saves the main
window as a PNG and quits.
"""

import os

from qgis.core import QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import QTimer
from qgis.utils import iface, plugins

SCENE, OUT = os.environ["SCENE"], os.environ["SHOT"]
EXPRESSION = "the large storage tank near the river"


def start():
    scene = QgsRasterLayer(SCENE, "scene")
    QgsProject.instance().addMapLayer(scene)
    iface.mapCanvas().setExtent(scene.extent())
    panel = plugins["georefseg_qgis"].show_panel()
    panel.raster.setLayer(scene)
    panel.expression.setCurrentText(EXPRESSION)
    panel.with_probability.setChecked(True)
    panel.runFinished.connect(lambda result: QTimer.singleShot(4000, shoot))
    panel.run()


def shoot():
    iface.mapCanvas().zoomScale(2500)
    plugins["georefseg_qgis"].panel.expression.lineEdit().setCursorPosition(0)
    QTimer.singleShot(3000, save_and_quit)


def save_and_quit():
    iface.mainWindow().grab().save(OUT)
    QgsProject.instance().clear()  # no "temporary layers will be lost" question on the way out
    iface.actionExit().trigger()


iface.mainWindow().resize(1500, 900)
QTimer.singleShot(3000, start)
