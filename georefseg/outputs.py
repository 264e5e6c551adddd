"""Writing results: polygon layers and the probability COG, atomically, never harming other data.

Every file is first written next to its destination under a temporary name and renamed into
place at the end, so an interrupted run leaves no half-written output. Rules:

- an existing output is never replaced unless asked (``overwrite``); a Shapefile's sidecars
  (.shx, .dbf, .prj, .cpg) count as the file;
- in a GeoPackage only the run's own layer is written: other layers are kept, ``overwrite``
  replaces that layer alone and ``append`` adds features to it;
- working folders and part files carry the writing process's id, so a later run removes
  those of runs that died (SIGKILL, power loss) and never those of a run still going.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import geopandas as gpd
import pyogrio
import rasterio
import rasterio.shutil

from georefseg.errors import OutputError, OutputExistsError

VECTOR_FORMATS = {".gpkg": "GPKG", ".geojson": "GeoJSON", ".json": "GeoJSON", ".shp": "ESRI Shapefile",
                  ".parquet": "Parquet"}
APPENDABLE = ("GPKG", "ESRI Shapefile")
SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx")
WORK_PREFIX = ".georefseg-"
_OWNED = re.compile(rf"^{re.escape(WORK_PREFIX)}(\d+)-|\.georefseg-(\d+)\.part$")


def vector_format(path: str | Path) -> str:
    """The OGR driver for an output path, from its extension."""
    ext = Path(path).suffix.lower()
    if ext not in VECTOR_FORMATS:
        raise OutputError(f"{{param}} {path}: unknown output format {ext or '(no extension)'!r}; "
                          "use .gpkg, .geojson, .shp or .parquet", param="output")
    return VECTOR_FORMATS[ext]


def file_parts(path: str | Path) -> list[Path]:
    """The files that make up ``path``: a Shapefile and its sidecars, else the path itself."""
    path = Path(path)
    if path.suffix.lower() == ".shp":
        return [path.with_suffix(ext) for ext in SHAPEFILE_PARTS]
    return [path]


def default_layer(path: str | Path) -> str:
    """The layer a run writes in a GeoPackage unless told otherwise: the file's stem."""
    return Path(path).stem


def _gpkg_layers(path: Path) -> list[str] | None:
    """The layers of an existing GeoPackage, or None when the file is not one GDAL can read."""
    try:
        return [str(name) for name, _ in pyogrio.list_layers(path)]
    except (pyogrio.errors.DataSourceError, OSError):
        return None


def check_vector_writable(path: str | Path, overwrite: bool = False, append: bool = False,
                          layer: str | None = None) -> None:
    """Refuse, before any work, a polygon output that would clobber data or cannot be written."""
    path = Path(path)
    driver = vector_format(path)
    if overwrite and append:
        raise OutputError("{param} and overwrite exclude each other: append adds to a layer, overwrite "
                          "replaces it", param="append")
    if append and driver not in APPENDABLE:
        raise OutputError(f"{{param}} works with .gpkg and .shp outputs, not {path.suffix}", param="append")
    if layer is not None and driver != "GPKG":
        raise OutputError(f"{{param}} names a layer in a GeoPackage; {path.suffix} files hold one layer",
                          param="layer")
    _check_target(path)
    existing = [p for p in file_parts(path) if p.exists()]
    if not existing or overwrite or append:
        return
    if driver == "GPKG":
        layers = _gpkg_layers(path)
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
    if path.suffix.lower() not in (".tif", ".tiff"):
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


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (as any user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def remove_stale(folder: str | Path) -> list[Path]:
    """Remove working folders and part files in ``folder`` left by georefseg runs that died."""
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        m = _OWNED.search(entry.name)
        if m is None or process_alive(int(m.group(1) or m.group(2))):
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def working_folder(folder: str | Path | None) -> Path:
    """A fresh working folder in ``folder`` (the system's temporary folder if None), named for
    this process; stale ones of dead runs there are removed first."""
    if folder is not None:
        remove_stale(folder)
    return Path(tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{os.getpid()}-", dir=folder))


def _part(path: Path) -> Path:
    return path.with_name(f".{path.name}.georefseg-{os.getpid()}.part")


def _geometry_type(gdf: gpd.GeoDataFrame) -> tuple[str, bool]:
    """(declared geometry type, promote to multi): Polygon unless some feature is a MultiPolygon."""
    multi = bool(len(gdf)) and bool((gdf.geom_type == "MultiPolygon").any())
    return ("MultiPolygon", True) if multi else ("Polygon", False)


def write_vector(gdf: gpd.GeoDataFrame, path: str | Path, layer: str | None = None, append: bool = False) -> None:
    """Polygons in the format the extension names (GeoJSON in EPSG:4326, RFC 7946), declared as
    Polygon (MultiPolygon when any feature is one) with typed fields, also when empty. In a
    GeoPackage, ``layer`` (default: the file's stem) is written and every other layer kept."""
    path = Path(path)
    driver = vector_format(path)
    tmpdir = working_folder(path.parent)
    try:
        tmp = tmpdir / path.name
        if driver == "Parquet":
            gdf.to_parquet(tmp, index=False)
            os.replace(tmp, path)
            return
        geometry_type, promote = _geometry_type(gdf)
        kwargs = {"engine": "pyogrio", "geometry_type": geometry_type, "promote_to_multi": promote}
        if driver == "GeoJSON":
            gdf.to_crs("EPSG:4326").to_file(tmp, driver="GeoJSON", layer_options={"RFC7946": "YES"}, **kwargs)
            os.replace(tmp, path)
            return
        if driver == "GPKG":  # 1.4 (GDAL ≥ 3.7's default) warns in QGIS 3.22–3.28, whose GDAL reads 1.3
            kwargs["dataset_options"] = {"VERSION": "1.3"}
        keep = path.exists() and (append or (driver == "GPKG" and _gpkg_layers(path) is not None))
        if keep:  # work on a copy, so that the original stays whole until the rename
            for part in file_parts(path):
                if part.exists():
                    shutil.copy2(part, tmpdir / part.name)
        gdf.to_file(tmp, driver=driver, layer=layer or default_layer(path), mode="a" if append else "w", **kwargs)
        for part in file_parts(path):
            written = tmpdir / part.name
            if written.exists():
                os.replace(written, part)
            elif driver == "ESRI Shapefile":
                part.unlink(missing_ok=True)  # an old sidecar would not match the new file
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def write_cog(src_path: str | Path, path: str | Path) -> None:
    """Copy a GeoTIFF to a Cloud-Optimised GeoTIFF (deflate level 1, 512 px blocks, overviews).

    Level 1 writes twice as fast as deflate's default 6 and makes files about 1 % larger:
    probabilities are noisy floats that compress little at any level."""
    path = Path(path)
    tmp = _part(path)
    try:
        with rasterio.open(src_path) as src:
            rotated = src.transform.b != 0 or src.transform.d != 0
        if rotated:
            # The COG driver refuses rotated geotransforms: keep a tiled GeoTIFF with overviews.
            rasterio.shutil.copy(src_path, tmp, driver="GTiff", tiled=True, blockxsize=512,
                                 blockysize=512, compress="deflate", predictor=3, COPY_SRC_OVERVIEWS="YES")
        else:
            rasterio.shutil.copy(src_path, tmp, driver="COG", COMPRESS="DEFLATE", LEVEL=1, PREDICTOR="YES",
                                 BLOCKSIZE=512, OVERVIEWS="AUTO", RESAMPLING="AVERAGE",
                                 NUM_THREADS="ALL_CPUS", BIGTIFF="IF_SAFER")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
