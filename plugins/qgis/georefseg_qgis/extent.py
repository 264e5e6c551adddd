"""Rectangles between the canvas's CRS and the raster's: what part of the scene to map."""

from __future__ import annotations

from qgis.core import QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsProject, QgsRasterLayer, QgsRectangle


def to_layer_crs(rect: QgsRectangle, crs: QgsCoordinateReferenceSystem, layer: QgsRasterLayer,
                 project: QgsProject | None = None) -> QgsRectangle:
    """``rect`` (in ``crs``) as the smallest rectangle in ``layer``'s CRS that holds it.

    The edges are densified before they are transformed (``transformBoundingBox``), so a
    rectangle drawn in Web Mercator still covers all of itself in UTM, where its edges curve.
    """
    if crs == layer.crs():
        return QgsRectangle(rect)
    transform = QgsCoordinateTransform(crs, layer.crs(), project or QgsProject.instance())
    return transform.transformBoundingBox(rect)


def crs_argument(crs: QgsCoordinateReferenceSystem) -> str:
    """The CRS as the engine's ``--bbox-crs`` takes it: an authority id where there is one, else WKT."""
    return crs.authid() or crs.toWkt()


def bbox_argument(rect: QgsRectangle) -> tuple[float, float, float, float]:
    """West, south, east, north of ``rect``, in its own units."""
    return rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum()
