"""The dock panel on a real map canvas: a run in a QgsTask, the styled result, cancel, bad engines."""

from __future__ import annotations

import pytest
from conftest import TANK, wait_for
from georefseg_qgis import settings
from georefseg_qgis.panel import DRAWN, MAP_EXTENT, SegmentPanel
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsSingleBandPseudoColorRenderer,
)
from stand_in_iface import StandInIface


@pytest.fixture
def panel(scene):
    QgsProject.instance().clear()
    iface = StandInIface()
    raster = QgsRasterLayer(str(scene), "tanks")
    QgsProject.instance().addMapLayer(raster)
    iface.canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:3857"))  # the canvas is not in the raster's CRS
    iface.canvas.setLayers([raster])
    panel = SegmentPanel(iface)
    panel.raster.setLayer(raster)
    results = []
    panel.runFinished.connect(results.append)
    panel.results = results
    yield panel
    panel.close_down()
    QgsProject.instance().clear()


def messages(panel) -> list[str]:
    return [item.text() for item in panel.iface.bar.items()]


def test_a_run_from_the_panel_adds_the_styled_result_and_zooms_to_it(panel, cli_result):
    panel.expression.setCurrentText(TANK)
    panel.with_probability.setChecked(True)
    panel.run()
    assert not panel.run_button.isEnabled() and panel.cancel_button.isEnabled()
    wait_for(lambda: panel.results)
    result = panel.results[0]
    assert "error" not in result, result
    layers = {layer.name(): layer for layer in QgsProject.instance().mapLayers().values()}
    vector, prob = layers[TANK], layers[f"{TANK} (probability)"]
    assert vector.featureCount() == cli_result["feature_count"] == 1
    feature = next(vector.getFeatures())
    assert feature["rank"] == 1 and feature["score"] == pytest.approx(cli_result["features"][0]["score"], abs=1e-6)
    assert vector.labelsEnabled() and "rank" in vector.labeling().settings().fieldName
    assert isinstance(prob.renderer(), QgsSingleBandPseudoColorRenderer)
    assert prob.renderer().shader().rasterShaderFunction().colorRampItemList()  # a real ramp, 0–1
    canvas = panel.canvas
    to_canvas = QgsCoordinateTransform(vector.crs(), canvas.mapSettings().destinationCrs(), QgsProject.instance())
    assert canvas.extent().contains(to_canvas.transformBoundingBox(vector.extent()))  # zoomed to it, in 3857
    assert canvas.extent().width() < 1000  # …and close in: the tank is ~37 m across
    assert settings.recent_expressions()[0] == TANK and panel.expression.itemText(0) == TANK
    assert panel.run_button.isEnabled() and panel.progress.value() == 100
    assert result["wall_s"] > 0 and "written in" in panel.phase.text()


def test_cancel_stops_the_engine_and_leaves_no_output(panel, full_scene, tmp_path):

    full = QgsRasterLayer(str(full_scene), "sample")  # 9 tiles: long enough to cancel in the middle
    QgsProject.instance().addMapLayer(full)
    panel.raster.setLayer(full)
    panel.expression.setCurrentText(TANK)
    out = tmp_path / "cancelled.gpkg"
    panel.output.setFilePath(str(out))
    panel.with_probability.setChecked(True)
    panel.run()
    task = panel.task
    wait_for(lambda: task.pid is not None and task.progress() > 10)  # the engine is segmenting tiles
    panel.cancel()
    wait_for(lambda: panel.results)
    assert panel.results[0]["error"].startswith("cancelled")
    with pytest.raises(ProcessLookupError):
        import os

        os.kill(task.pid, 0)
    assert list(tmp_path.iterdir()) == []  # no polygons, no probability raster, no temporary files
    assert panel.run_button.isEnabled() and not panel.cancel_button.isEnabled()


def test_the_model_list_comes_from_the_engine_and_errors_from_its_line(panel, tmp_path):
    from osgeo import gdal

    panel.load_models()
    wait_for(lambda: panel.models_task is None)
    names = [panel.model.itemText(i) for i in range(panel.model.count())]
    assert {"tiny", "rmsin", "clipseg", "sam3", "rsrefseg2"} <= set(names) and panel.model.currentText() == "tiny"
    unplaced = tmp_path / "no_crs.tif"
    gdal.GetDriverByName("GTiff").Create(str(unplaced), 64, 64, 3)
    layer = QgsRasterLayer(str(unplaced), "no crs")
    QgsProject.instance().addMapLayer(layer)
    panel.raster.setLayer(layer)
    panel.expression.setCurrentText("the tank")
    panel.run()
    wait_for(lambda: panel.results)
    [message] = messages(panel)
    assert message.startswith("error: ") and "has no coordinate reference system" in message
    assert panel.results[0]["error"] == message and panel.run_button.isEnabled()


def test_a_missing_engine_is_one_message_with_the_install_line(panel, tmp_path):
    from georefseg_qgis.engine import INSTALL

    settings.set_executable(str(tmp_path / "nowhere" / "georefseg"))
    panel.expression.setCurrentText("the tank")
    panel.run()
    assert panel.task is None and panel.results == [{"error": "engine"}]
    [message] = messages(panel)
    assert "no georefseg engine at" in message and INSTALL in message


def test_the_map_extent_and_a_drawn_rectangle_reach_the_raster_in_its_crs(panel):
    layer = panel.raster.currentLayer()
    panel.expression.setCurrentText("the tank")
    utm_box = QgsRectangle(455600, 4989500, 455700, 4989600)
    to_canvas = QgsCoordinateTransform(layer.crs(), panel.canvas.mapSettings().destinationCrs(),
                                       QgsProject.instance())
    panel.canvas.setExtent(to_canvas.transformBoundingBox(utm_box))
    panel.area.setCurrentText(MAP_EXTENT)
    request = panel.request()
    west, south, east, north = request.bbox
    seen = panel.canvas.extent()  # what the canvas shows (it pads to its aspect ratio)
    back = QgsCoordinateTransform(panel.canvas.mapSettings().destinationCrs(), layer.crs(), QgsProject.instance())
    shown = back.transformBoundingBox(seen)
    assert (west, south, east, north) == pytest.approx((shown.xMinimum(), shown.yMinimum(), shown.xMaximum(),
                                                         shown.yMaximum()))
    assert west <= 455600 + 1e-6 and east >= 455700 - 1e-6 and request.bbox_crs == "EPSG:32633"
    drawn = QgsRectangle(utm_box)
    panel.set_drawn_rectangle(to_canvas.transformBoundingBox(drawn), panel.canvas.mapSettings().destinationCrs())
    assert panel.area.currentText() == DRAWN
    west, south, east, north = panel.request().bbox
    # Web Mercator → UTM: the box that holds the drawn one, a metre or so larger where edges curve.
    assert 455590 < west <= 455600 and 455700 <= east < 455710 and 4989490 < south <= 4989500
    assert 4989600 <= north < 4989610


def test_bad_fields_say_what_to_do_before_anything_runs(panel):
    panel.expression.setCurrentText("")
    panel.run()
    assert panel.task is None and any("type an expression" in m for m in messages(panel))
    panel.expression.setCurrentText("the tank")
    panel.area.setCurrentText(DRAWN)
    panel.run()
    assert panel.task is None and any("press Draw" in m for m in messages(panel))
