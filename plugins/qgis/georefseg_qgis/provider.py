"""The Processing provider ``georefseg``: where ``georefseg:segment`` lives in the toolbox."""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .algorithm import SegmentAlgorithm

ICON = str(Path(__file__).with_name("icon.png"))


class GeorefsegProvider(QgsProcessingProvider):
    """Provider id ``georefseg``; writes what the engine writes (GeoPackage, GeoJSON, Shapefile,
    GeoParquet polygons and GeoTIFF probability rasters)."""

    def id(self) -> str:
        return "georefseg"

    def name(self) -> str:
        return "georefseg"

    def longName(self) -> str:
        return "georefseg: referring segmentation of satellite scenes"

    def icon(self) -> QIcon:
        return QIcon(ICON)

    def loadAlgorithms(self) -> None:
        self.addAlgorithm(SegmentAlgorithm())

    def supportsNonFileBasedOutput(self) -> bool:
        return False  # the engine writes files: a "temporary layer" is a temporary GeoPackage

    def supportedOutputVectorLayerExtensions(self) -> list[str]:
        return ["gpkg", "geojson", "shp", "parquet"]

    def defaultVectorFileExtension(self, hasGeometry: bool = True) -> str:
        return "gpkg"

    def supportedOutputRasterLayerExtensions(self) -> list[str]:
        return ["tif"]

    def defaultRasterFileExtension(self) -> str:
        return "tif"
