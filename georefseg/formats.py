"""The vector formats georefseg writes and reads: one table, from which everything else derives.

The writer (:mod:`georefseg.outputs`), batch mapping, the CLI's help and errors and
``georefseg formats --json`` (which the QGIS plugin reads for its file filters) all take the
formats from :data:`VECTOR_FORMATS`; adding a format is one row here.

Imports neither geopandas nor GDAL until a file is written or read, so that listing the
formats costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from georefseg.errors import OutputError

if TYPE_CHECKING:
    import geopandas as gpd

SHAPEFILE_SIDECARS = (".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx")


def _geometry_type(gdf: gpd.GeoDataFrame) -> tuple[str, bool]:
    """(declared geometry type, promote to multi): Polygon unless some feature is a MultiPolygon,
    so that an empty layer declares Polygon too."""
    multi = bool(len(gdf)) and bool((gdf.geom_type == "MultiPolygon").any())
    return ("MultiPolygon", True) if multi else ("Polygon", False)


def _ogr_writer(driver: str, **options) -> Callable:
    def write(gdf: gpd.GeoDataFrame, path: Path, layer: str | None, append: bool) -> None:
        geometry_type, promote = _geometry_type(gdf)
        gdf.to_file(path, driver=driver, layer=layer, mode="a" if append else "w", engine="pyogrio",
                    geometry_type=geometry_type, promote_to_multi=promote, **options)
    return write


def _write_geojson(gdf: gpd.GeoDataFrame, path: Path, layer: str | None, append: bool) -> None:
    # RFC 7946: coordinates in EPSG:4326, whatever the scene's CRS.
    _ogr_writer("GeoJSON", layer_options={"RFC7946": "YES"})(gdf.to_crs("EPSG:4326"), path, None, append)


def _write_parquet(gdf: gpd.GeoDataFrame, path: Path, layer: str | None, append: bool) -> None:
    gdf.to_parquet(path, index=False)


def _read_ogr(path: Path, layer: str | None) -> gpd.GeoDataFrame:
    import pyogrio

    return pyogrio.read_dataframe(path, layer=layer)


def _read_parquet(path: Path, layer: str | None) -> gpd.GeoDataFrame:
    import geopandas as gpd

    return gpd.read_parquet(path)


@dataclass(frozen=True)
class VectorFormat:
    """One vector format.

    Attributes
    ----------
    name : str
        Its short name (``gpkg``), as ``batch --format`` takes it.
    label : str
        What people call it (``GeoPackage``).
    extensions : tuple of str
        File extensions, the usual one first.
    driver : str
        The GDAL/OGR driver (or ``Parquet``).
    appendable : bool
        Features can be added to an existing file (``--append``).
    multi_layer : bool
        One file holds several layers (``--layer``); other layers are kept when one is written.
    crs : str or None
        The CRS the format requires (GeoJSON: EPSG:4326); None writes the layer's own.
    sidecars : tuple of str
        Extensions of the files that belong to one output beside it (a Shapefile's .dbf, …).
    write, read : callable
        ``write(gdf, path, layer, append)`` and ``read(path, layer)``.
    """

    name: str
    label: str
    extensions: tuple[str, ...]
    driver: str
    appendable: bool
    multi_layer: bool
    write: Callable
    read: Callable
    crs: str | None = None
    sidecars: tuple[str, ...] = ()

    @property
    def extension(self) -> str:
        return self.extensions[0]

    def parts(self, path: str | Path) -> list[Path]:
        """The files that make up an output at ``path``: the file and its sidecars."""
        path = Path(path)
        return [path, *(path.with_suffix(ext) for ext in self.sidecars)]

    def to_dict(self) -> dict:
        return {"name": self.name, "label": self.label, "extensions": list(self.extensions), "driver": self.driver,
                "appendable": self.appendable, "multi_layer": self.multi_layer, "crs": self.crs}


VECTOR_FORMATS: tuple[VectorFormat, ...] = (
    # GeoPackage 1.3: 1.4 (GDAL ≥ 3.7's default) warns in QGIS 3.22–3.28, whose GDAL reads 1.3.
    VectorFormat("gpkg", "GeoPackage", (".gpkg",), "GPKG", appendable=True, multi_layer=True,
                 write=_ogr_writer("GPKG", dataset_options={"VERSION": "1.3"}), read=_read_ogr),
    VectorFormat("geojson", "GeoJSON", (".geojson", ".json"), "GeoJSON", appendable=False, multi_layer=False,
                 write=_write_geojson, read=_read_ogr, crs="EPSG:4326"),
    VectorFormat("shp", "Shapefile", (".shp",), "ESRI Shapefile", appendable=True, multi_layer=False,
                 write=_ogr_writer("ESRI Shapefile"), read=_read_ogr, sidecars=SHAPEFILE_SIDECARS),
    VectorFormat("parquet", "GeoParquet", (".parquet",), "Parquet", appendable=False, multi_layer=False,
                 write=_write_parquet, read=_read_parquet),
)
BY_NAME = {f.name: f for f in VECTOR_FORMATS}
BY_EXTENSION = {ext: f for f in VECTOR_FORMATS for ext in f.extensions}


def listed(attribute: str = "extension", formats=VECTOR_FORMATS) -> str:
    """The formats in words for help and errors: ".gpkg, .geojson, .shp or .parquet"."""
    items = [getattr(f, attribute) for f in formats]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def format_of(path: str | Path, param: str = "output") -> VectorFormat:
    """The format an output path names by its extension; an OutputError naming ``param`` else."""
    ext = Path(path).suffix.lower()
    if ext not in BY_EXTENSION:
        raise OutputError(f"{{param}} {path}: unknown output format {ext or '(no extension)'!r}; use {listed()}",
                          param=param)
    return BY_EXTENSION[ext]


def format_named(name: str, param: str = "format") -> VectorFormat:
    """The format called ``name`` (``gpkg``, …); an OutputError naming ``param`` else."""
    if name not in BY_NAME:
        raise OutputError(f"{{param}} {name!r}: use {listed('name')}", param=param)
    return BY_NAME[name]


def file_parts(path: str | Path) -> list[Path]:
    """The files an output at ``path`` consists of (the path alone for unknown extensions)."""
    ext = Path(path).suffix.lower()
    return BY_EXTENSION[ext].parts(path) if ext in BY_EXTENSION else [Path(path)]
