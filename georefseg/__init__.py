"""georefseg: referring segmentation of satellite scenes, from an expression to polygons on the map.

The public API is on the package and imports lazily, so ``import georefseg`` stays cheap (no
torch, GDAL or Dask until a name is used)::

    import georefseg

    result = georefseg.segment("scene.tif", "the large storage tank near the river", "tanks.gpkg")
    with georefseg.Segmenter("tiny") as seg:
        seg.run("other.tif", "the ships", "ships.gpkg")
"""

import importlib
import logging
import os

# OpenMP threads that sleep when idle instead of spinning. Measured on 2 cores: a 2048² run with
# one core busy elsewhere went from 0.25 to 0.41 MP/s; on a quiet machine 4096² runs gave
# 0.72–0.86 MP/s spinning and 0.77–0.80 sleeping (the reader, writer and COG threads get the
# cores back), and small scenes lose up to 0.3 s per 9 tiles. Spinning collapses whenever the
# cores are shared, so sleeping is the default; set OMP_WAIT_POLICY=ACTIVE to choose otherwise.
# OpenMP reads it once, when torch loads: so before any georefseg module imports torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

# A library logs, the application decides where it goes (logging.basicConfig, or the CLI).
logging.getLogger(__name__).addHandler(logging.NullHandler())

# name → the module that defines it: imported on first use.
_EXPORTS = {
    "segment": "georefseg.segmenter",
    "Segmenter": "georefseg.segmenter",
    "SegmentOptions": "georefseg.options",
    "SegmentResult": "georefseg.result",
    "Request": "georefseg.request",
    "check_request": "georefseg.request",
    "map_archive": "georefseg.batch",
    "load_model": "georefseg.models.registry",
    "list_models": "georefseg.models.registry",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'georefseg' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # once: later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
