"""georefseg for QGIS: referring segmentation of rasters from a dock panel and from Processing.

The engine (the ``georefseg`` program) runs in a process of its own; this package imports only
QGIS and the standard library.
"""


def classFactory(iface):  # noqa: N802 (the name QGIS looks for)
    """The plugin object for QGIS's ``iface``."""
    from .plugin import GeorefsegPlugin

    return GeorefsegPlugin(iface)
