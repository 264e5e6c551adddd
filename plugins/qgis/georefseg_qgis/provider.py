"""The Processing provider ``georefseg``: where ``georefseg:segment`` lives in the toolbox."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from . import settings
from .algorithm import SegmentAlgorithm
from .engine import EngineError, check_engine, list_formats
from .protocol import DEFAULT_EXTENSION

ICON = str(Path(__file__).with_name("icon.png"))


@lru_cache(maxsize=8)
def output_extensions(configured: str) -> tuple[str, ...]:
    """The polygon file extensions the engine at ``configured`` writes (``georefseg formats``),
    asked once per engine path; only the default when no engine answers (its runs fail with the
    engine's own message then)."""
    try:
        formats = list_formats(check_engine(configured))
    except EngineError:
        formats = []
    return tuple(e.lstrip(".") for f in formats for e in f["extensions"]) or (DEFAULT_EXTENSION.lstrip("."),)


class GeorefsegProvider(QgsProcessingProvider):
    """Provider id ``georefseg``; writes what the engine writes (the polygon formats it lists, and
    GeoTIFF probability rasters)."""

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
        return list(output_extensions(settings.executable()))

    def defaultVectorFileExtension(self, hasGeometry: bool = True) -> str:
        return DEFAULT_EXTENSION.lstrip(".")

    def supportedOutputRasterLayerExtensions(self) -> list[str]:
        return ["tif"]

    def defaultRasterFileExtension(self) -> str:
        return "tif"
