"""Scene: a georeferenced raster opened for tiled inference.

Validates what the engine needs (a readable raster with a CRS, bands that exist), picks the
bands to show the model, and computes normalisation statistics once for the whole scene
(from overviews, or from windows sampled across it) so that every tile is normalised the
same way: per-tile statistics would make each tile look different and leave seams.
"""

from __future__ import annotations

import copy
import math
import threading
import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from pyproj import CRS, Geod, Transformer
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window, from_bounds

from georefseg.errors import InputError, InputNotFoundError

# How a person calls what a GDAL driver reads (for messages about files that are not GeoTIFFs).
DRIVER_NAMES = {"JPEG": "JPEG image", "PNG": "PNG image", "GIF": "GIF image", "BMP": "BMP image",
                "JP2OpenJPEG": "JPEG 2000 image", "WEBP": "WebP image", "HFA": "Erdas Imagine file",
                "netCDF": "netCDF file", "HDF5": "HDF5 file"}
SUPPORTED_DTYPES = ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64")
_STAT_SIDE = 1024  # side of the decimated view that statistics come from (overviews or small scenes)
_STAT_GRID, _STAT_WINDOW = 32, 48  # otherwise: a 32×32 grid of 48-px windows spread over the scene


@dataclass(frozen=True)
class BandStats:
    """Per-band values mapped to 0 and 1, and the value that fills nodata pixels."""

    low: np.ndarray
    high: np.ndarray
    fill: np.ndarray


class Scene:
    """An open raster: georeferencing, band choice and scene-wide normalisation.

    Use as a context manager, or call :meth:`close`. Reading is thread-safe: each thread
    gets its own dataset handle (GDAL handles must not be shared between threads).
    """

    def __init__(self, path: str | Path, bands: list[int] | None = None):
        self.path = str(path)
        p = Path(self.path)
        if "://" not in self.path and not self.path.startswith("/vsi") and not p.exists():
            raise InputNotFoundError(f"scene {self.path} does not exist: check the path")
        if p.is_dir():
            raise InputError(f"{self.path} is a folder, not a raster: give a GeoTIFF, COG or VRT file")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                src = rasterio.open(self.path)
        except RasterioIOError as exc:
            raise InputError(f"{self.path} is not a raster GDAL can read ({_first_line(exc)}): "
                             "give a GeoTIFF, COG or VRT file") from exc
        with src:
            self.width, self.height, self.count = src.width, src.height, src.count
            self.crs: CRS | None = CRS.from_user_input(src.crs) if src.crs else None
            self.transform: Affine = src.transform
            self.dtype = src.dtypes[0]
            self.nodata = src.nodata
            self.colorinterp = list(src.colorinterp)
            self.has_overviews = bool(src.overviews(1))
            self.driver = src.driver
            sources = list(src.files)[1:] if self.driver == "VRT" else []
        missing = [f for f in sources if "://" not in f and not f.startswith("/vsi") and not Path(f).exists()]
        if missing:
            raise InputError(f"{self.path} is a VRT whose source {missing[0]} is missing"
                             + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                             + ": put it back where the VRT says (relative paths are relative to the .vrt), "
                             "or build the VRT again")
        if self.crs is None:
            fix = (f"assign one first, e.g. gdal_edit.py -a_srs EPSG:32633 {self.path}" if self.driver == "GTiff" else
                   "make a georeferenced GeoTIFF of it, e.g. gdal_translate -a_srs EPSG:32633 -a_ullr WEST NORTH "
                   f"EAST SOUTH {self.path} out.tif")
            raise InputError(f"{self.path}{self._kind()} has no coordinate reference system, so results could "
                             f"not be placed on the map: {fix}")
        if self.transform.is_identity:
            raise InputError(f"{self.path} has no geotransform (pixel-to-map mapping): "
                             "georeference it first, e.g. with gdal_translate -a_ullr")
        if self.dtype not in SUPPORTED_DTYPES:
            raise InputError(f"{self.path} has pixels of type {self.dtype}, which georefseg does not "
                             f"read: convert to one of {', '.join(SUPPORTED_DTYPES)}")
        self.band_note: str | None = None  # set when the bands were guessed among more (a note template)
        self.bands = self._choose_bands(bands)
        self._local, self._count_lock = threading.local(), threading.Lock()
        self.windows_read = 0  # model inputs read: how often the engine went to the pixels
        self.offset = (0, 0)  # (col, row) of pixel (0, 0) in the file: non-zero for a crop

    def _kind(self) -> str:
        """What the file is, where its name may say otherwise: " (a JPEG image, not a GeoTIFF)"."""
        if self.driver in ("GTiff", "COG", "VRT"):
            return ""
        name = DRIVER_NAMES.get(self.driver, f"{self.driver} file")
        return f" (a {name}, not a GeoTIFF, whatever its name says)" if Path(self.path).suffix.lower() in (
            ".tif", ".tiff") else f" (a {name})"

    # ------------------------------------------------------------------ bands

    def _choose_bands(self, bands: list[int] | None) -> list[int]:
        if bands:
            bad = [b for b in bands if not 1 <= b <= self.count]
            if bad:
                raise InputError(f"band {bad[0]} is out of range: {self.path} has bands 1 to {self.count}")
            if len(bands) not in (1, 3):
                raise InputError(f"{{param}} takes 1 or 3 band numbers (got {len(bands)}): "
                                 "the model sees red, green, blue, or one grey band", param="bands")
            return list(bands)
        ci = self.colorinterp
        rgb = [ci.index(c) + 1 for c in (ColorInterp.red, ColorInterp.green, ColorInterp.blue) if c in ci]
        if len(rgb) == 3:
            return rgb
        data_bands = [i + 1 for i, c in enumerate(ci) if c != ColorInterp.alpha]
        chosen = data_bands[:3] if len(data_bands) >= 3 else data_bands[:1]
        if len(data_bands) > len(chosen):  # a guess among more bands: say which, and how to choose
            self.band_note = (f"read bands {','.join(map(str, chosen))} of {self.count} as red, green, blue (no band "
                              "is marked as such): choose others with {bands}, e.g. 4,3,2")
        return chosen

    # ------------------------------------------------------------------ geometry

    @property
    def is_geographic(self) -> bool:
        return self.crs.is_geographic

    @property
    def is_rotated(self) -> bool:
        return self.transform.b != 0 or self.transform.d != 0

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        xs, ys = zip(*(self.transform @ (c, r) for c in (0, self.width) for r in (0, self.height)),
                     strict=True)
        return min(xs), min(ys), max(xs), max(ys)

    def pixel_size_m(self) -> tuple[float, float]:
        """Ground size of one pixel (x, y) in metres at the scene centre."""
        t = self.transform
        cx, cy = self.width / 2, self.height / 2
        p0, px, py = t @ (cx, cy), t @ (cx + 1, cy), t @ (cx, cy + 1)
        if self.is_geographic:
            geod = Geod(ellps="WGS84")
            return (geod.inv(*p0, *px)[2], geod.inv(*p0, *py)[2])
        unit = self.crs.axis_info[0].unit_conversion_factor if self.crs.axis_info else 1.0
        return (math.dist(p0, px) * unit, math.dist(p0, py) * unit)

    # ------------------------------------------------------------------ reading

    def _dataset(self):
        ds = getattr(self._local, "ds", None)
        if ds is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                ds = self._local.ds = rasterio.open(self.path)
        return ds

    def __getstate__(self) -> dict:
        # Open handles stay behind; a copy (e.g. on a Dask worker) opens its own.
        return {k: v for k, v in self.__dict__.items() if k not in ("_local", "_count_lock")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local, self._count_lock = threading.local(), threading.Lock()

    def close(self) -> None:
        ds = getattr(self._local, "ds", None)
        if ds is not None:
            ds.close()
            self._local.ds = None

    def __enter__(self) -> Scene:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _guarded(self, window: Window, read):
        try:
            return read()
        except RasterioIOError as exc:
            raise InputError(f"{self.path} is corrupt or truncated: reading pixels "
                             f"{window.col_off},{window.row_off} to {window.col_off + window.width},"
                             f"{window.row_off + window.height} failed ({_first_line(exc)}); "
                             "re-download or re-export the file") from exc

    def read_mask(self, window: Window, out_shape: tuple[int, int] | None = None) -> np.ndarray:
        """Validity mask (h×w bool) from nodata values, alpha or an internal mask."""
        ds = self._dataset()
        kwargs = {"window": window} if out_shape is None else {"window": window, "out_shape": out_shape}
        return self._guarded(window, lambda: ds.dataset_mask(**kwargs) > 0)

    def read_raw(self, window: Window, valid: np.ndarray,
                 out_shape: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Selected bands (C×h×w float32, as stored) and the mask, narrowed by NaNs in float data."""
        ds = self._dataset()
        kwargs = {"window": window}
        if out_shape is not None:
            kwargs["out_shape"] = (len(self.bands), *out_shape)
        data = self._guarded(window, lambda: ds.read(self.bands, **kwargs)).astype(np.float32, copy=False)
        if np.dtype(self.dtype).kind == "f":  # NaNs in float scenes are nodata too, whatever the header says
            valid = valid & np.isfinite(data).all(axis=0)
        return data, valid

    def window(self, bounds: tuple[float, float, float, float], crs=None, param: str = "bbox") -> Window:
        """The pixels (a window inside the scene) that ``bounds`` cover: west, south, east, north
        in ``crs`` (default the scene's CRS). Header maths only.

        Errors name ``param``: bounds that are not west < east and south < north, a rotated
        scene, or bounds that miss the scene."""
        west, south, east, north = (float(v) for v in bounds)
        if not (west < east and south < north):
            raise InputError(f"{{param}} {west},{south},{east},{north} must be west,south,east,north with "
                             "west < east and south < north", param=param)
        if self.is_rotated:
            raise InputError("{param} needs a north-up scene; this one has a rotated grid: map all of it",
                             param=param)
        asked = ""
        if crs is not None and CRS.from_user_input(crs) != self.crs:
            west, south, east, north = Transformer.from_crs(crs, self.crs, always_xy=True).transform_bounds(
                west, south, east, north, densify_pts=21)
            asked = f" ({', '.join(f'{v:.6g}' for v in bounds)} in {CRS.from_user_input(crs).to_string()})"
        win = from_bounds(west, south, east, north, transform=self.transform).round_offsets().round_lengths()
        col0, row0 = max(0, int(win.col_off)), max(0, int(win.row_off))
        col1 = min(self.width, int(win.col_off + win.width))
        row1 = min(self.height, int(win.row_off + win.height))
        if col1 - col0 < 1 or row1 - row0 < 1:
            digits = 6 if self.crs.is_geographic else 1
            here = ", ".join(f"{v:.{digits}f}" for v in (west, south, east, north))
            scene = ", ".join(f"{v:.{digits}f}" for v in self.bounds)
            raise InputError(f"{{param}} does not overlap the scene: in {self.crs.to_string()} it spans {here}"
                             f"{asked}, the scene {scene} (west, south, east, north)", param=param)
        return Window(col0, row0, col1 - col0, row1 - row0)

    def crop(self, window: Window) -> Scene:
        """The part of the scene inside ``window`` (see :meth:`window`), as a scene of its own:
        its grid starts at the window's corner, its normalisation is the whole scene's (so a
        crop's pixels read as in a full run)."""
        col0, row0 = int(window.col_off), int(window.row_off)
        self.stats  # noqa: B018 - the whole scene's, computed before the view shares them
        view = copy.copy(self)  # through __getstate__/__setstate__: its own handles and lock
        view.windows_read, view.offset = 0, (self.offset[0] + col0, self.offset[1] + row0)
        view.width, view.height = int(window.width), int(window.height)
        view.transform = self.transform @ Affine.translation(col0, row0)
        return view

    def read(self, window: Window) -> tuple[np.ndarray | None, np.ndarray]:
        """Model input for a window: 3×h×w float32 in [0, 1] and its validity mask.

        A window without a valid pixel returns ``None`` for the input: its bands are never
        read. Invalid pixels get the scene's typical value so the model sees no false edges.
        """
        with self._count_lock:
            self.windows_read += 1
        window = Window(window.col_off + self.offset[0], window.row_off + self.offset[1], window.width, window.height)
        valid = self.read_mask(window)
        if not valid.any():
            return None, valid
        data, valid = self.read_raw(window, valid)
        if not valid.any():  # NaN everywhere in a float scene: as good as nodata
            return None, valid
        scaled = (data - self.stats.low[:, None, None]) / (self.stats.high - self.stats.low)[:, None, None]
        scaled = np.clip(scaled, 0.0, 1.0)
        if not valid.all():
            scaled = np.where(valid[None], scaled, self.stats.fill[:, None, None])
        if scaled.shape[0] == 1:
            scaled = np.repeat(scaled, 3, axis=0)
        return scaled, valid

    def _sample_pixels(self) -> np.ndarray:
        """Valid pixels (C×N) from across the scene, at a cost that does not grow with it:
        a decimated read where overviews make that cheap (or the scene is small), else a grid
        of small full-resolution windows (a decimated read without overviews decodes every block)."""
        if self.has_overviews or max(self.width, self.height) <= 2 * _STAT_SIDE:
            scale = max(1.0, max(self.width, self.height) / _STAT_SIDE)
            shape = (max(1, round(self.height / scale)), max(1, round(self.width / scale)))
            whole = Window(0, 0, self.width, self.height)
            data, valid = self.read_raw(whole, self.read_mask(whole, shape), shape)
            return data[:, valid]
        parts = []
        w, h = min(_STAT_WINDOW, self.width), min(_STAT_WINDOW, self.height)
        centres = (np.arange(_STAT_GRID) + 0.5) / _STAT_GRID  # evenly spread, edges not favoured
        for fy in centres:
            for fx in centres:
                win = Window(int(fx * self.width - w / 2), int(fy * self.height - h / 2), w, h)
                valid = self.read_mask(win)
                if valid.any():
                    data, valid = self.read_raw(win, valid)
                    parts.append(data[:, valid])
        return np.concatenate(parts, axis=1) if parts else np.zeros((len(self.bands), 0), np.float32)

    @cached_property
    def stats(self) -> BandStats:
        """Scene-wide normalisation: uint8 as is (0–255 → 0–1); other types stretched between
        their 2nd and 98th percentiles over pixels sampled across the whole scene. Computed on
        first use (the header alone serves `georefseg info`, even when pixels are corrupt)."""
        pixels = self._sample_pixels()
        if self.dtype == "uint8":
            low, high = np.zeros(len(self.bands), np.float32), np.full(len(self.bands), 255.0, np.float32)
        elif pixels.size:
            low, high = np.percentile(pixels, [2, 98], axis=1).astype(np.float32)
        else:
            low, high = np.zeros(len(self.bands), np.float32), np.ones(len(self.bands), np.float32)
        high = np.where(high > low, high, low + 1).astype(np.float32)
        if pixels.size:
            fill = np.clip((np.median(pixels, axis=1) - low) / (high - low), 0, 1).astype(np.float32)
        else:
            fill = np.full(len(self.bands), 0.5, np.float32)
        if len(self.bands) == 1:
            fill = np.repeat(fill, 3)
        return BandStats(low, high, fill)

    def describe(self) -> dict:
        """What `georefseg info` prints."""
        return {"path": self.path, "driver": self.driver, "width": self.width, "height": self.height,
                "bands": self.count, "dtype": self.dtype, "model_bands": self.bands,
                "colour_interpretation": [c.name for c in self.colorinterp],
                "crs": self.crs.to_string(), "crs_name": self.crs.name,
                "pixel_size_m": [round(v, 4) for v in self.pixel_size_m()],
                "bounds": [round(v, 6) for v in self.bounds], "nodata": self.nodata,
                "rotated": self.is_rotated, "overviews": self.has_overviews}


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
