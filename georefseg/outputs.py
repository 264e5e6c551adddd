"""Writing results: polygon layers and the probability COG, atomically, never harming other data.

Rules:

- an existing output is never replaced unless asked (``overwrite``); a Shapefile's sidecars
  (.shx, .dbf, .prj, .cpg) count as the file;
- in a GeoPackage only the run's own layer is written: other layers are kept, ``overwrite``
  replaces that layer alone and ``append`` adds features to it;
- every file is written through :mod:`georefseg.atomic`, so an interrupted run leaves no
  half-written output.

Formats come from :mod:`georefseg.formats`.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from georefseg.atomic import Transaction
from georefseg.errors import OutputError, OutputExistsError
from georefseg.formats import VECTOR_FORMATS, format_of

if TYPE_CHECKING:
    import geopandas as gpd

RASTER_EXTENSIONS = (".tif", ".tiff")

log = logging.getLogger(__name__)


def default_layer(path: str | Path) -> str:
    """The layer a run writes in a GeoPackage unless told otherwise: the file's stem."""
    return Path(path).stem


def _layers(path: Path) -> list[str] | None:
    """The layers of an existing multi-layer file, or None when it is not one GDAL can read."""
    import pyogrio

    try:
        return [str(name) for name, _ in pyogrio.list_layers(path)]
    except (pyogrio.errors.DataSourceError, OSError):
        return None


def check_vector_writable(path: str | Path, overwrite: bool = False, append: bool = False,
                          layer: str | None = None) -> None:
    """Refuse, before any work, a polygon output that would clobber data or cannot be written."""
    path = Path(path)
    fmt = format_of(path)
    if overwrite and append:
        raise OutputError("{param} and overwrite exclude each other: append adds to a layer, overwrite "
                          "replaces it", param="append")
    if append and not fmt.appendable:
        raise OutputError(f"{{param}} works with {' and '.join(f.extension for f in VECTOR_FORMATS if f.appendable)} "
                          f"outputs, "
                          f"not {path.suffix}", param="append")
    if layer is not None and not fmt.multi_layer:
        raise OutputError(f"{{param}} names a layer in a {fmt.label}; {path.suffix} files hold one layer",
                          param="layer")
    _check_target(path)
    existing = [p for p in fmt.parts(path) if p.exists()]
    if not existing or overwrite or append:
        return
    if fmt.multi_layer:
        layers = _layers(path)
        name = layer or default_layer(path)
        if layers is not None and name not in layers:
            return  # a new layer beside the others harms nothing
        if layers is not None:
            raise OutputExistsError(f"{path} already has a layer {name!r}: replace that layer (only) with "
                                    "{param}, add to it with {append}, or choose another layer", param="overwrite")
    raise OutputExistsError(f"{existing[0]} already exists: choose another name, or replace it with {{param}}",
                            param="overwrite")


def check_raster_writable(path: str | Path, overwrite: bool = False) -> None:
    """Refuse, before any work, a raster output that would clobber a file or cannot be written."""
    path = Path(path)
    if path.suffix.lower() not in RASTER_EXTENSIONS:
        raise OutputError(f"{{param}} {path}: the probability raster is a GeoTIFF, name it *.tif", param="prob")
    _check_target(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} already exists: choose another name, or replace it with {{param}}",
                                param="overwrite")


def _check_target(path: Path) -> None:
    if path.is_dir():
        raise OutputError(f"{path} is a folder: give a file name for the output", param="output")
    folder = _first_existing(path.parent)
    if not folder.is_dir():
        raise OutputError(f"cannot create the output folder {path.parent}: {folder} is a file")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"the output folder {folder} is not writable: choose another {{param}}", param="output")


def _first_existing(folder: Path) -> Path:
    folder = folder.absolute()
    while not folder.exists():
        folder = folder.parent
    return folder


def make_folders(path: str | Path) -> list[Path]:
    """Create the missing folders above ``path``; returns the ones created, deepest last, so
    that a failed run can remove exactly those (:func:`remove_folders`)."""
    folder = Path(path).absolute().parent
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    missing.reverse()
    for f in missing:
        try:
            f.mkdir()
        except OSError as exc:
            remove_folders(missing[:missing.index(f)])
            raise OutputError(f"cannot create the output folder {f} ({exc.strerror})") from exc
    return missing


def remove_folders(created: list[Path]) -> None:
    """Remove folders :func:`make_folders` created, deepest first, where they are still empty."""
    for folder in reversed(created):
        try:
            folder.rmdir()
        except OSError:
            return  # not empty: something else lives there now


def write_vector(gdf: gpd.GeoDataFrame, path: str | Path, layer: str | None = None, append: bool = False,
                 transaction: Transaction | None = None) -> None:
    """Polygons in the format the extension names (see :mod:`georefseg.formats`), declared as
    Polygon (MultiPolygon when any feature is one) with typed fields, also when empty. In a
    multi-layer file, ``layer`` (default: the file's stem) is written and every other layer kept.

    Every file of the output is staged in ``transaction`` (default: one of its own, committed
    here): the output changes only when that transaction commits."""
    path = Path(path)
    fmt = format_of(path)
    if transaction is None:
        with Transaction([path]) as own:
            write_vector(gdf, path, layer, append, own)
            own.commit()
        return
    staged = transaction.path_for(path)
    keep = path.exists() and (append or (fmt.multi_layer and _layers(path) is not None))
    if keep:  # work on a copy, so that the original stays whole until the commit
        for part in fmt.parts(path):
            if part.exists():
                shutil.copy2(part, transaction.path_for(part))
    fmt.write(gdf, staged, (layer or default_layer(path)) if fmt.multi_layer or fmt.appendable else None, append)
    for part in fmt.parts(path):
        if transaction.path_for(part).exists():
            transaction.replace(part)
        elif part.exists():
            transaction.delete(part)  # an old sidecar would not match the new file
    log.info("staged %d feature(s) for %s", len(gdf), path)


def write_cog(src_path: str | Path, path: str | Path, transaction: Transaction | None = None) -> None:
    """Copy a GeoTIFF to a Cloud-Optimised GeoTIFF (deflate level 1, 512 px blocks, overviews),
    staged in ``transaction`` (default: written at once, atomically).

    Level 1 writes twice as fast as deflate's default 6 and makes files about 1 % larger:
    probabilities are noisy floats that compress little at any level."""
    if transaction is None:
        with Transaction([path]) as own:
            write_cog(src_path, path, own)
            own.commit()
        return
    import rasterio
    import rasterio.shutil

    with rasterio.open(src_path) as src:
        rotated = src.transform.b != 0 or src.transform.d != 0
    staged = transaction.path_for(path)
    if rotated:
        # The COG driver refuses rotated geotransforms: keep a tiled GeoTIFF with overviews.
        rasterio.shutil.copy(src_path, staged, driver="GTiff", tiled=True, blockxsize=512,
                             blockysize=512, compress="deflate", predictor=3, COPY_SRC_OVERVIEWS="YES")
    else:
        rasterio.shutil.copy(src_path, staged, driver="COG", COMPRESS="DEFLATE", LEVEL=1, PREDICTOR="YES",
                             BLOCKSIZE=512, OVERVIEWS="AUTO", RESAMPLING="AVERAGE",
                             NUM_THREADS="ALL_CPUS", BIGTIFF="IF_SAFER")
    transaction.replace(path)
