"""The engine's outputs as styled map layers: outlines labelled with rank and score, and the
probability raster under a colour ramp."""

from __future__ import annotations

from qgis.core import (
    QgsColorRampShader,
    QgsFillSymbol,
    QgsPalLayerSettings,
    QgsRasterLayer,
    QgsRasterShader,
    QgsSingleBandPseudoColorRenderer,
    QgsStyle,
    QgsTextBufferSettings,
    QgsTextFormat,
    QgsVectorLayer,
    QgsVectorLayerSimpleLabeling,
)
from qgis.PyQt.QtGui import QColor

OUTLINE = {"color": "0,0,0,0", "outline_color": "255,32,160,255", "outline_width": "0.7", "outline_width_unit": "MM"}
LABEL = "'#' || \"rank\" || '  ' || format_number(\"score\", 2)"  # "#1  0.58"
RAMP = "Viridis"
PROB_OPACITY = 0.6


def vector_source(path: str, layer: str | None) -> str:
    """The OGR data source of an output: the layer the engine says it wrote (multi-layer formats
    such as GeoPackage), else the file as is."""
    return f"{path}|layername={layer}" if layer else path


def result_layer(path: str, layer: str | None, title: str) -> QgsVectorLayer:
    """The polygons the engine wrote, outlined and labelled "#rank  score".

    Raises
    ------
    ValueError
        The output cannot be read as a vector layer.
    """
    vector = QgsVectorLayer(vector_source(path, layer), title, "ogr")
    if not vector.isValid():
        raise ValueError(f"the engine's output {path} does not open as a vector layer")
    vector.renderer().setSymbol(QgsFillSymbol.createSimple(OUTLINE))
    settings = QgsPalLayerSettings()
    settings.fieldName, settings.isExpression = LABEL, True
    text = QgsTextFormat()
    text.setSize(9)
    text.setColor(QColor(255, 255, 255))
    buffer = QgsTextBufferSettings()
    buffer.setEnabled(True)
    buffer.setColor(QColor(200, 0, 120))
    buffer.setSize(1.0)
    text.setBuffer(buffer)
    settings.setFormat(text)
    vector.setLabeling(QgsVectorLayerSimpleLabeling(settings))
    vector.setLabelsEnabled(True)
    return vector


def probability_layer(path: str, title: str) -> QgsRasterLayer:
    """The probability raster (0–1) under a continuous colour ramp, partly transparent.

    Raises
    ------
    ValueError
        The file cannot be read as a raster.
    """
    raster = QgsRasterLayer(path, title, "gdal")
    if not raster.isValid():
        raise ValueError(f"the engine's probability raster {path} does not open as a raster layer")
    ramp = QgsStyle.defaultStyle().colorRamp(RAMP)
    shader_function = QgsColorRampShader(0.0, 1.0, ramp, QgsColorRampShader.Interpolated,
                                         QgsColorRampShader.Continuous)
    shader_function.classifyColorRamp(5, band=1, extent=raster.extent(), input=raster.dataProvider())
    shader = QgsRasterShader(0.0, 1.0)
    shader.setRasterShaderFunction(shader_function)
    renderer = QgsSingleBandPseudoColorRenderer(raster.dataProvider(), 1, shader)
    renderer.setClassificationMin(0.0)
    renderer.setClassificationMax(1.0)
    raster.setRenderer(renderer)
    raster.renderer().setOpacity(PROB_OPACITY)
    return raster
