"""georefseg: referring segmentation of satellite scenes, from an expression to polygons on the map."""

__version__ = "0.1.0"
