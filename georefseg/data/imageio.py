"""Reading and writing plain (not georeferenced) dataset images and masks with rasterio/GDAL."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

from georefseg.errors import DatasetError


def read_image(path: str | Path) -> np.ndarray:
    """An RGB image as H×W×3 uint8 (grey images are repeated, alpha is dropped)."""
    data = _read(path)
    if data.shape[0] == 1:
        data = np.repeat(data, 3, axis=0)
    return np.ascontiguousarray(data[:3].transpose(1, 2, 0)).astype(np.uint8, copy=False)


def read_mask(path: str | Path) -> np.ndarray:
    """A binary mask (H×W bool): any non-zero value of the first band is foreground."""
    return _read(path)[0] > 0


def _read(path: str | Path) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                return src.read()
    except RasterioIOError as exc:
        raise DatasetError(f"cannot read image {path}: {str(exc).splitlines()[0]}") from exc


def write_png(path: str | Path, array: np.ndarray) -> None:
    """Write H×W or H×W×C uint8 as PNG."""
    data = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", driver="PNG", width=data.shape[2], height=data.shape[1],
                           count=data.shape[0], dtype="uint8") as dst:
            dst.write(data.astype(np.uint8, copy=False))
