"""The dock panel: pick a raster, type what to find, Run; the result lands on the map."""

from __future__ import annotations

import re
from pathlib import Path

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsGeometry,
    QgsMapLayerProxyModel,
    QgsProcessingUtils,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsTask,
    QgsWkbTypes,
)
from qgis.gui import QgsFileWidget, QgsMapLayerComboBox, QgsMapToolExtent, QgsRubberBand
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor
from qgis.PyQt.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDockWidget,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from . import settings
from .engine import EngineError, check_engine, file_filter, list_formats, list_models
from .extent import bbox_argument, crs_argument, to_layer_crs
from .layers import probability_layer, result_layer
from .protocol import DEFAULT_EXTENSION, DEVICES, THRESHOLD_RANGE, SegmentRequest
from .task import SegmentTask

WHOLE, MAP_EXTENT, DRAWN = "whole raster", "current map extent", "drawn rectangle"
MESSAGE_S = 10  # seconds a success message stays in the message bar


def slug(expression: str) -> str:
    """A file and layer name from an expression: "the large tank" -> "the_large_tank"."""
    words = re.sub(r"[^0-9A-Za-z]+", "_", expression).strip("_").lower()
    return words[:48] or "georefseg"


class SegmentPanel(QDockWidget):
    """The georefseg dock: every engine option a map user needs, and the run's progress.

    Signals
    -------
    runFinished(dict)
        After each run: the engine's result (with ``wall_s``) or ``{"error": message}``.
    """

    runFinished = pyqtSignal(dict)

    def __init__(self, iface, parent=None):
        super().__init__("georefseg", parent)
        self.setObjectName("GeorefsegPanel")
        self.iface, self.canvas = iface, iface.mapCanvas()
        self.task: SegmentTask | None = None
        self.engine = None  # (the configured path it was checked for, the Engine)
        self.drawn: tuple[QgsRectangle, QgsCoordinateReferenceSystem] | None = None
        self.previous_tool = None
        self.models_task = None
        self.closed = False  # set when the plugin unloads: late answers from the engine are dropped
        self._build()
        self.rectangle_tool = QgsMapToolExtent(self.canvas)
        self.rectangle_tool.extentChanged.connect(self._drawn)
        self.band = QgsRubberBand(self.canvas, QgsWkbTypes.PolygonGeometry)
        self.band.setStrokeColor(QColor(255, 32, 160))
        self.band.setFillColor(QColor(255, 32, 160, 30))
        self.band.setWidth(2)

    # --- building -------------------------------------------------------------------------
    def _build(self) -> None:
        body = QWidget()
        form = QFormLayout()
        self.raster = QgsMapLayerComboBox()
        self.raster.setFilters(QgsMapLayerProxyModel.RasterLayer)
        form.addRow("Raster", self.raster)
        self.expression = QComboBox()
        self.expression.setEditable(True)
        self.expression.setInsertPolicy(QComboBox.NoInsert)
        self.expression.lineEdit().setPlaceholderText("e.g. the large storage tank near the river")
        self.expression.addItems(settings.recent_expressions())
        self.expression.setCurrentText("")
        self.expression.lineEdit().returnPressed.connect(self.run)
        form.addRow("Find", self.expression)
        self.model = QComboBox()
        self.model.setEditable(True)  # a name, or the path of a weights file or folder
        self.model.addItem("tiny")
        self.model.setToolTip("a model the engine knows, or the path of a weights file or folder")
        self.model.currentTextChanged.connect(self._model_chosen)
        form.addRow("Model", self.model)
        self.checkpoint = QgsFileWidget()
        self.checkpoint.setStorageMode(QgsFileWidget.GetFile)
        self.checkpoint.lineEdit().setPlaceholderText("the model's own weights (for tiny: none needed)")
        form.addRow("Weights", self.checkpoint)
        self.device = QComboBox()
        self.device.addItems(DEVICES)
        form.addRow("Device", self.device)
        self.threshold = QDoubleSpinBox()
        low, high = THRESHOLD_RANGE
        self.threshold.setDecimals(2)
        self.threshold.setRange(0.0, high)  # 0: the special value, "the model's own" (0.5; SAM 3: 0.3)
        self.threshold.setSpecialValueText("model's own")
        self.threshold.setSingleStep(0.05)
        self.threshold.setValue(0.0)
        self.threshold.setToolTip(f"probability ({low}–{high}) that makes a pixel part of an object (for models "
                                  "that separate objects, SAM 3: that keeps an object); lowest: the model's own")
        form.addRow("Threshold", self.threshold)
        self.referent = QRadioButton("only what the expression refers to")
        self.candidates = QRadioButton("all candidates, ranked")
        self.referent.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.referent)
        group.addButton(self.candidates)
        write = QVBoxLayout()
        write.addWidget(self.referent)
        write.addWidget(self.candidates)
        form.addRow("Write", write)
        self.area = QComboBox()
        self.area.addItems([WHOLE, MAP_EXTENT, DRAWN])
        self.draw = QPushButton("Draw")
        self.draw.setToolTip("drag a rectangle on the map")
        self.draw.clicked.connect(self.start_drawing)
        area = QHBoxLayout()
        area.addWidget(self.area, 1)
        area.addWidget(self.draw)
        form.addRow("Area", area)
        self.output = QgsFileWidget()
        self.output.setStorageMode(QgsFileWidget.SaveFile)
        self.output.setFilter(f"GeoPackage (*{DEFAULT_EXTENSION})")  # until the engine lists its formats
        self.output.lineEdit().setPlaceholderText("[temporary GeoPackage]")
        form.addRow("Output", self.output)
        self.with_probability = QCheckBox("also add the probability raster")
        form.addRow("", self.with_probability)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.phase = QLabel("")
        self.phase.setWordWrap(True)
        self.phase.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Preferred)
        self.run_button = QPushButton("Run")
        self.run_button.setDefault(True)
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        column = QVBoxLayout(body)
        column.addLayout(form)
        column.addWidget(self.progress)
        column.addWidget(self.phase)
        column.addLayout(buttons)
        column.addStretch(1)
        self.setWidget(body)

    # --- engine and models ----------------------------------------------------------------
    def checked_engine(self):
        """The engine, checked once per configured path; None (and a message) if it is unusable."""
        configured = settings.executable()
        if self.engine is None or self.engine[0] != configured:
            try:
                self.engine = (configured, check_engine(configured))
            except EngineError as exc:
                self.engine = None  # (the configured path it was checked for, the Engine)
                self.message(str(exc), Qgis.Critical)
                return None
        return self.engine[1]

    def load_models(self) -> None:
        """Fill the model list from ``georefseg models --json``, in the background (it takes seconds)."""
        engine = self.checked_engine()
        if engine is None or self.models_task is not None:
            return
        self.models_task = QgsTask.fromFunction("georefseg: models",
                                                lambda task: (list_models(engine), list_formats(engine)),
                                                on_finished=self._models_listed)
        QgsApplication.taskManager().addTask(self.models_task)

    def _models_listed(self, exception, listed=None) -> None:
        self.models_task = None
        if self.closed or exception is not None or not listed:
            return  # the model box still takes a name or a path typed in
        models, formats = listed
        if formats:
            self.output.setFilter(file_filter(formats))
        if not models:
            return
        current = self.model.currentText()
        self.model.blockSignals(True)
        self.model.clear()
        for m in models:
            self.model.addItem(m["name"], m)
            self.model.setItemData(self.model.count() - 1, f"{m.get('summary', '')}\nneeds: {m.get('needs', '')}",
                                   Qt.ToolTipRole)
        self.model.setCurrentText(current)
        self.model.blockSignals(False)
        self._model_chosen(current)

    def _model_chosen(self, name: str) -> None:
        index = self.model.findText(name)
        info = self.model.itemData(index) if index >= 0 else None
        needs = info.get("needs", "") if isinstance(info, dict) else ""
        # Hugging Face models are folders; the others single files.
        self.checkpoint.setStorageMode(QgsFileWidget.GetDirectory if "DIR" in needs else QgsFileWidget.GetFile)
        self.checkpoint.setToolTip(needs)

    # --- area ------------------------------------------------------------------------------
    def start_drawing(self) -> None:
        """Let the user drag the rectangle to map on the canvas."""
        self.previous_tool = self.canvas.mapTool()
        self.canvas.setMapTool(self.rectangle_tool)

    def _drawn(self, rect: QgsRectangle) -> None:
        self.set_drawn_rectangle(rect, self.canvas.mapSettings().destinationCrs())
        if self.previous_tool is not None:
            self.canvas.setMapTool(self.previous_tool)

    def set_drawn_rectangle(self, rect: QgsRectangle, crs: QgsCoordinateReferenceSystem) -> None:
        """Use ``rect`` (in ``crs``) as the area to map, and show it on the map."""
        self.drawn = (QgsRectangle(rect), crs)
        self.area.setCurrentText(DRAWN)
        self.band.reset(QgsWkbTypes.PolygonGeometry)
        shown = QgsCoordinateTransform(crs, self.canvas.mapSettings().destinationCrs(), QgsProject.instance())
        self.band.setToGeometry(QgsGeometry.fromRect(shown.transformBoundingBox(rect)), None)

    def area_in(self, layer: QgsRasterLayer) -> QgsRectangle | None:
        """The chosen area in ``layer``'s CRS; None for the whole raster.

        Raises
        ------
        ValueError
            A drawn rectangle is asked for but none was drawn.
        """
        choice = self.area.currentText()
        if choice == WHOLE:
            return None
        if choice == MAP_EXTENT:
            return to_layer_crs(self.canvas.extent(), self.canvas.mapSettings().destinationCrs(), layer)
        if self.drawn is None:
            raise ValueError("no rectangle drawn: press Draw and drag one on the map, or choose another area")
        return to_layer_crs(self.drawn[0], self.drawn[1], layer)

    # --- running ---------------------------------------------------------------------------
    def threshold_value(self) -> float | None:
        """The threshold asked for, within THRESHOLD_RANGE; None: the model's own."""
        value = self.threshold.value()
        return None if value < THRESHOLD_RANGE[0] else value

    def request(self) -> SegmentRequest:
        """The engine request the panel's fields describe.

        Raises
        ------
        ValueError
            A field is missing or unusable; the message says which and what to do.
        """
        layer = self.raster.currentLayer()
        if layer is None:
            raise ValueError("no raster chosen: add a GeoTIFF to the project and pick it under Raster")
        if layer.providerType() != "gdal":
            raise ValueError(f"{layer.name()} is a {layer.providerType()} layer: georefseg reads raster files "
                             "(GeoTIFF, COG, VRT); save it as a GeoTIFF first")
        expression = self.expression.currentText().strip()
        if not expression:
            raise ValueError("nothing to find: type an expression, e.g. the large storage tank near the river")
        output = self.output.filePath().strip() or QgsProcessingUtils.generateTempFilename(
            slug(expression) + DEFAULT_EXTENSION)
        if Path(output).suffix == "":
            output += DEFAULT_EXTENSION
        bbox = self.area_in(layer)
        prob = None
        if self.with_probability.isChecked():
            prob = str(Path(output).with_name(Path(output).stem + "_probability.tif"))
        return SegmentRequest(
            scene=layer.source().split("|")[0], expression=expression, output=output,
            model=self.model.currentText().strip() or "tiny", checkpoint=self.checkpoint.filePath().strip() or None,
            device=self.device.currentText(), threshold=self.threshold_value(),
            candidates=self.candidates.isChecked(),
            bbox=None if bbox is None else bbox_argument(bbox),
            bbox_crs=None if bbox is None else crs_argument(layer.crs()), prob=prob)

    def run(self) -> None:
        """Start the engine on the panel's request, in a QgsTask."""
        if self.task is not None:
            return
        try:
            request = self.request()
        except ValueError as exc:
            self.message(str(exc), Qgis.Warning)
            return
        engine = self.checked_engine()
        if engine is None:
            self.runFinished.emit({"error": "engine"})
            return
        names = settings.remember_expression(request.expression)
        self.expression.blockSignals(True)
        self.expression.clear()
        self.expression.addItems(names)
        self.expression.setCurrentText(request.expression)
        self.expression.blockSignals(False)
        self.task = SegmentTask(engine, request)
        self.task.progressChanged.connect(lambda p: self.progress.setValue(int(p)))
        self.task.phaseChanged.connect(self.phase.setText)
        self.task.succeeded.connect(self._succeeded)
        self.task.failed.connect(self._failed)
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self.phase.setText("starting the engine")
        QgsApplication.taskManager().addTask(self.task)

    def cancel(self) -> None:
        """Stop the running engine; it writes nothing."""
        if self.task is not None:
            self.phase.setText("cancelling")
            self.task.cancel()

    def _done(self) -> SegmentRequest:
        request = self.task.request
        self.task = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        return request

    def _succeeded(self, result: dict) -> None:
        request = self._done()
        self.progress.setValue(100)
        try:
            self.add_result(request, result)
        except ValueError as exc:
            self.message(str(exc), Qgis.Critical)
            result = {"error": str(exc)}
        self.runFinished.emit(result)

    def _failed(self, message: str) -> None:
        self._done()
        self.progress.setValue(0)
        self.phase.setText(message)
        cancelled = message.startswith("cancelled")
        self.message(message, Qgis.Info if cancelled else Qgis.Critical)
        self.runFinished.emit({"error": message})

    def add_result(self, request: SegmentRequest, result: dict) -> None:
        """Add the polygons (and the probability raster) to the project, zoom to them, say what was found."""
        project = QgsProject.instance()
        title = request.expression
        if request.prob:
            project.addMapLayer(probability_layer(request.prob, f"{title} (probability)"))
        vector = result_layer(result["output"], result.get("layer"), title)
        project.addMapLayer(vector)
        count, wall = result.get("feature_count", 0), result.get("wall_s")
        said = (result.get("grounding") or {}).get("message")
        self.phase.setText(f"{count} written in {wall:.1f} s" if wall is not None else f"{count} written")
        if count:
            self.zoom_to(vector)
            self.message(f"{count} {'object' if count == 1 else 'objects'} for '{title}'", Qgis.Success, MESSAGE_S)
        else:
            self.message(said or f"nothing found for '{title}'", Qgis.Info, MESSAGE_S)

    def zoom_to(self, layer) -> None:
        """Show all of ``layer``, with a margin, in the canvas's CRS."""
        transform = QgsCoordinateTransform(layer.crs(), self.canvas.mapSettings().destinationCrs(),
                                           QgsProject.instance())
        extent = transform.transformBoundingBox(layer.extent())
        extent.scale(1.5)
        self.canvas.setExtent(extent)
        self.canvas.refresh()

    def message(self, text: str, level, duration: int = 0) -> None:
        """One line in QGIS's message bar, titled georefseg."""
        self.iface.messageBar().pushMessage("georefseg", text, level=level, duration=duration)

    def close_down(self) -> None:
        """Stop a running engine and take the rectangle off the map (the plugin is unloading)."""
        self.closed = True
        if self.task is not None:
            self.task.cancel()
        self.band.reset(QgsWkbTypes.PolygonGeometry)
        if self.canvas.mapTool() is self.rectangle_tool:
            self.canvas.unsetMapTool(self.rectangle_tool)
