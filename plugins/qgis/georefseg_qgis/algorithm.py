"""The Processing algorithm ``georefseg:segment``: the toolbox, graphical models, batch mode and
``qgis_process`` all run the engine through it."""

from __future__ import annotations

import re
from pathlib import Path

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
)

from . import settings
from .engine import EngineError, check_engine
from .extent import bbox_argument, crs_argument
from .layers import vector_source
from .protocol import DEVICES, THRESHOLD_RANGE, EngineRunError, RunCancelled, SegmentRequest, describe, run_segment

# What Processing hands over for "save to GeoPackage" with a table: ogr:dbname='x.gpkg' table="name" (geom)
OGR_URI = re.compile(r"""^ogr:dbname='(?P<path>(?:[^']|'')+)'\s+table="(?P<table>(?:[^"]|"")+)"\s*""")


def split_destination(destination: str) -> tuple[str, str | None]:
    """A Processing vector destination as (file path, GeoPackage layer or None)."""
    m = OGR_URI.match(destination)
    if m is not None:
        return m.group("path").replace("''", "'"), m.group("table").replace('""', '"')
    path, _, layer = destination.partition("|layername=")
    return path, layer or None


class SegmentAlgorithm(QgsProcessingAlgorithm):
    """Find what an expression refers to in a raster and write it as polygons."""

    INPUT, EXPRESSION, OUTPUT, EXTENT = "INPUT", "EXPRESSION", "OUTPUT", "EXTENT"
    MODEL, CHECKPOINT, DEVICE, THRESHOLD, MIN_AREA = "MODEL", "CHECKPOINT", "DEVICE", "THRESHOLD", "MIN_AREA"
    CANDIDATES, PROB, FEATURE_COUNT, MESSAGE = "CANDIDATES", "PROB", "FEATURE_COUNT", "MESSAGE"

    def name(self) -> str:
        return "segment"

    def displayName(self) -> str:
        return "Segment by expression"

    def shortHelpString(self) -> str:
        return ("Finds the object(s) a referring expression names, such as 'the large storage tank near the river', "
                "in a raster and writes them as polygons in the raster's CRS, with rank, score (0–1, calibrated) "
                "and area_m2. Runs the georefseg engine (a separate installation; see Plugins ▸ georefseg ▸ "
                "Settings). MODEL is a name from `georefseg models` or the path of a weights file or folder; "
                "EXTENT limits the run to part of the raster (any CRS: it is reprojected to the raster's).")

    def createInstance(self) -> SegmentAlgorithm:
        return SegmentAlgorithm()

    def initAlgorithm(self, config=None) -> None:
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Raster"))
        self.addParameter(QgsProcessingParameterString(self.EXPRESSION, "Expression (what to find)"))
        self.addParameter(QgsProcessingParameterExtent(self.EXTENT, "Map only this extent", optional=True))
        self.addParameter(QgsProcessingParameterString(self.MODEL, "Model (name, or weights file or folder)",
                                                       defaultValue="tiny"))
        self.addParameter(QgsProcessingParameterNumber(
            self.THRESHOLD, "Probability threshold (empty: the model's own)", QgsProcessingParameterNumber.Double,
            optional=True, minValue=THRESHOLD_RANGE[0], maxValue=THRESHOLD_RANGE[1]))
        self.addParameter(QgsProcessingParameterNumber(self.MIN_AREA, "Smallest object (m²; empty: the model's)",
                                                       QgsProcessingParameterNumber.Double, optional=True,
                                                       minValue=0.0))
        advanced = [
            QgsProcessingParameterFile(self.CHECKPOINT, "Weights for the named model", optional=True),
            QgsProcessingParameterEnum(self.DEVICE, "Device", list(DEVICES), defaultValue=0),
            QgsProcessingParameterBoolean(self.CANDIDATES, "Write all candidates, ranked (not only the referent)",
                                          defaultValue=False),
        ]
        for parameter in advanced:
            parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(parameter)
        self.addParameter(QgsProcessingParameterVectorDestination(self.OUTPUT, "Polygons",
                                                                  QgsProcessing.TypeVectorPolygon))
        self.addParameter(QgsProcessingParameterRasterDestination(self.PROB, "Probability raster", optional=True,
                                                                  createByDefault=False))
        self.addOutput(QgsProcessingOutputNumber(self.FEATURE_COUNT, "Features written"))
        self.addOutput(QgsProcessingOutputString(self.MESSAGE, "What the engine said about the result"))

    def scene_path(self, parameters, context) -> str:
        """The raster file INPUT names. A path is passed on as it is: opening it as a layer would
        make QGIS compute statistics and leave an .aux.xml beside the user's raster. A project
        layer gives its source."""
        value = parameters.get(self.INPUT)
        if isinstance(value, str) and Path(value.split("|")[0]).is_file():
            return value.split("|")[0]
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        if layer is None:
            raise QgsProcessingException("INPUT: not a raster layer")
        if layer.providerType() != "gdal":
            raise QgsProcessingException(f"INPUT: {layer.name()} is a {layer.providerType()} layer; georefseg reads "
                                         "raster files (GeoTIFF, COG, VRT): save it as a GeoTIFF first")
        return layer.source().split("|")[0]

    def request(self, parameters, context) -> SegmentRequest:
        """The engine request these parameters describe; a bad one raises QgsProcessingException."""
        scene = self.scene_path(parameters, context)
        expression = self.parameterAsString(parameters, self.EXPRESSION, context).strip()
        if not expression:
            raise QgsProcessingException("EXPRESSION: empty; say what to find, e.g. the large storage tank")
        bbox = bbox_crs = None
        if parameters.get(self.EXTENT) not in (None, ""):
            # In the extent's own CRS: the engine reprojects it to the raster's (pyproj, densified edges).
            bbox = bbox_argument(self.parameterAsExtent(parameters, self.EXTENT, context))
            extent_crs = self.parameterAsExtentCrs(parameters, self.EXTENT, context)
            bbox_crs = crs_argument(extent_crs) if extent_crs.isValid() else None
        output, table = split_destination(self.parameterAsOutputLayer(parameters, self.OUTPUT, context))
        prob = self.parameterAsOutputLayer(parameters, self.PROB, context) if parameters.get(self.PROB) else None
        min_area = parameters.get(self.MIN_AREA)
        return SegmentRequest(
            scene=scene, expression=expression, output=output,
            layer=table,
            model=self.parameterAsString(parameters, self.MODEL, context).strip() or "tiny",
            checkpoint=self.parameterAsFile(parameters, self.CHECKPOINT, context) or None,
            device=DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)],
            threshold=None if parameters.get(self.THRESHOLD) in (None, "") else
            self.parameterAsDouble(parameters, self.THRESHOLD, context),
            min_area_m2=None if min_area in (None, "") else self.parameterAsDouble(parameters, self.MIN_AREA, context),
            candidates=self.parameterAsBoolean(parameters, self.CANDIDATES, context),
            bbox=bbox, bbox_crs=bbox_crs, prob=prob or None)

    def processAlgorithm(self, parameters, context, feedback) -> dict:
        request = self.request(parameters, context)
        try:
            engine = check_engine(settings.executable())
        except EngineError as exc:
            raise QgsProcessingException(str(exc)) from exc
        feedback.pushInfo(f"georefseg {engine.version_text} at {engine.path}")

        def on_event(event: dict) -> None:
            percent, text = describe(event)
            if percent is not None:
                feedback.setProgress(percent)
            if event.get("event") == "reading":
                feedback.pushInfo(f"read as: {event.get('text')}")
            elif event.get("event") == "phase" and text:
                feedback.setProgressText(text)

        try:
            result = run_segment(engine, request, on_event=on_event, cancelled=feedback.isCanceled)
        except (EngineRunError, RunCancelled) as exc:
            raise QgsProcessingException(str(exc)) from exc
        message = (result.get("grounding") or {}).get("message") or ""
        if message:
            feedback.pushInfo(message)
        count = result.get("feature_count", 0)
        feedback.pushInfo(f"{count} {'feature' if count == 1 else 'features'} written to {result['output']}")
        return {self.OUTPUT: vector_source(request.output, result.get("layer")), self.PROB: request.prob,
                self.FEATURE_COUNT: result.get("feature_count", 0), self.MESSAGE: message}
