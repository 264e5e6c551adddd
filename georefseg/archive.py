"""What a batch maps: scenes from a folder, a list file or a STAC catalog, and their expressions.

Scenes are listed here, never opened (a corrupt one is the batch's to record, not this module's
to refuse), each with a short unique ``id`` that names its outputs and its rows in the merged
layer, and a ``datetime`` where STAC says when it was taken.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from georefseg.errors import InputError, InputNotFoundError

log = logging.getLogger(__name__)

RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".img")
GDAL_PREFIXES = ("/vsi", "http://", "https://", "s3://", "gs://")
# STAC media types of rasters GDAL reads, in the order an asset is picked when --asset is not given.
RASTER_MEDIA = ("image/tiff; application=geotiff; profile=cloud-optimized", "image/tiff; application=geotiff",
                "image/tiff", "image/jp2", "image/vnd.stac.geotiff")


@dataclass(frozen=True)
class SceneRef:
    """One scene of a batch.

    Attributes
    ----------
    path : str
        What rasterio opens: an absolute file path or a GDAL path (``/vsicurl/…``).
    id : str
        Unique within the batch: a STAC item's id, else the file's stem (made unique with a
        short hash of its path where two files share a stem).
    datetime : str or None
        ISO 8601 acquisition time, from STAC.
    """

    path: str
    id: str
    datetime: str | None = None


def _is_gdal_path(text: str) -> bool:
    return text.startswith(GDAL_PREFIXES)


def _unique_ids(paths: list[str]) -> list[SceneRef]:
    stems = [re.sub(r"[^\w.-]+", "_", Path(p).stem) or "scene" for p in paths]
    counts = Counter(stems)
    return [SceneRef(p, s if counts[s] == 1 else f"{s}-{hashlib.sha1(p.encode()).hexdigest()[:8]}")
            for p, s in zip(paths, stems, strict=True)]


def scenes_in_folder(folder: str | Path, glob: str | None = None) -> list[SceneRef]:
    """Rasters under ``folder``, recursively, sorted: those matching ``glob`` (e.g. ``"*_rgb.tif"``,
    matched in every subfolder), else every .tif/.tiff/.vrt/.jp2/.img."""
    folder = Path(folder)
    if glob:
        found = [p for p in folder.rglob(glob) if p.is_file()]
    else:
        found = [p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES]
    return _unique_ids(sorted(str(p.resolve()) for p in found))


def scenes_in_list(list_file: str | Path) -> list[SceneRef]:
    """One scene per line of a text file (blank lines and ``#`` comments skipped); relative paths
    are relative to the list's folder, GDAL paths pass through as they are."""
    list_file = Path(list_file)
    paths = []
    for line in list_file.read_text(encoding="utf-8").splitlines():
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        paths.append(entry if _is_gdal_path(entry) else str((list_file.parent / entry).resolve()))
    return _unique_ids(list(dict.fromkeys(paths)))


def _absolute(href: str, base: Path) -> str:
    """An asset href as rasterio opens it: relative to the STAC JSON's folder where it is relative,
    http(s) read lazily through GDAL's /vsicurl/, other GDAL paths as they are."""
    if href.startswith(("http://", "https://")):
        return "/vsicurl/" + href
    if href.startswith("file://"):
        href = href[len("file://"):]
    if _is_gdal_path(href) or Path(href).is_absolute():
        return href
    return str((base / href).resolve())


def _pick_asset(item, asset: str | None) -> str:
    """The href of the asset to map: ``asset``, else the first GeoTIFF/JPEG 2000 that is not a thumbnail."""
    if asset is not None:
        if asset not in item.assets:
            raise InputError(f"STAC item {item.id} has no asset {asset!r} (it has {', '.join(item.assets) or 'none'}):"
                             " choose one with {param}", param="asset")
        chosen = item.assets[asset]
    else:
        chosen = next((a for media in RASTER_MEDIA for a in item.assets.values()
                       if (a.media_type or "").lower() == media and "thumbnail" not in (a.roles or [])), None)
        if chosen is None:
            raise InputError(f"STAC item {item.id}: no GeoTIFF asset to pick by itself (assets: "
                             f"{', '.join(item.assets) or 'none'}): name one with {{param}}", param="asset")
    return chosen.get_absolute_href() or chosen.href


def _stac_items(path: Path) -> list:
    try:
        import pystac
    except ImportError:  # an optional part: georefseg[stac]
        raise InputError(f"{{param}} {path} is a STAC file, and reading STAC needs pystac: "
                         "pip install 'georefseg[stac]'", param="source") from None

    try:
        kind = json.loads(path.read_text(encoding="utf-8")).get("type")
        if kind == "FeatureCollection":
            return list(pystac.ItemCollection.from_file(str(path)))
        if kind == "Feature":
            return [pystac.Item.from_file(str(path))]
        return list(pystac.read_file(str(path)).get_items(recursive=True))
    except (ValueError, KeyError, AttributeError, TypeError, pystac.STACError, pystac.STACTypeError) as exc:
        raise InputError(f"{{param}} {path} is not a STAC catalog, collection, item or ItemCollection ({exc})",
                         param="source") from exc


def scenes_in_stac(path: str | Path, asset: str | None = None) -> list[SceneRef]:
    """A scene per STAC item (catalogs and collections walked recursively), its raster from
    ``asset`` (relative hrefs resolve against the JSON; absolute and ``/vsicurl/`` ones pass
    through) and its ``datetime`` (or ``start_datetime``).

    Raises
    ------
    InputError
        Not STAC, or an item without the asset (naming the assets it has).
    """
    path = Path(path)
    refs = []
    for item in _stac_items(path):
        href = _absolute(_pick_asset(item, asset), path.resolve().parent)
        when = item.datetime or item.common_metadata.start_datetime
        refs.append(SceneRef(href, item.id, None if when is None else when.isoformat()))
    ids = Counter(r.id for r in refs)
    if any(n > 1 for n in ids.values()):
        raise InputError(f"{path}: STAC item ids repeat ({', '.join(i for i, n in ids.items() if n > 1)}): "
                         "each scene needs its own id", param="source")
    return refs


def find_scenes(source: str | Path, glob: str | None = None, asset: str | None = None) -> list[SceneRef]:
    """The scenes ``source`` names: a folder, a STAC JSON file, or a text file of paths.

    Raises
    ------
    InputNotFoundError
        ``source`` does not exist.
    InputError
        It holds no scene, or is not readable as what it looks like.
    """
    source = Path(source)
    if not source.exists():
        raise InputNotFoundError(f"{{param}} {source} does not exist: give a folder, a list of paths or a STAC "
                                 "JSON file", param="source")
    if source.is_dir():
        refs = scenes_in_folder(source, glob)
    elif source.suffix.lower() == ".json":
        refs = scenes_in_stac(source, asset)
    else:
        refs = scenes_in_list(source)
    if not refs:
        what = f"matching {glob!r}" if glob else f"({', '.join(RASTER_SUFFIXES)})"
        raise InputError(f"{{param}} {source} holds no scene {what}" if source.is_dir() else
                         f"{{param}} {source} lists no scene", param="source")
    log.info("%d scene(s) in %s", len(refs), source)
    return refs


def expressions_from_csv(path: str | Path, scenes: list[SceneRef]) -> dict[str, list[str]]:
    """Expressions per scene id from a CSV with columns ``scene`` and ``expression`` (a scene named
    by its id, file name or path; one row per pair, several rows per scene allowed).

    Raises
    ------
    InputError
        Missing columns, or a row naming a scene that is not in the batch.
    """
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"{{param}} {path} does not exist", param="expressions_csv")
    names: dict[str, str] = {}
    for ref in scenes:
        for name in (ref.id, ref.path, Path(ref.path).name, Path(ref.path).stem):
            names.setdefault(name, ref.id)
    wanted: dict[str, list[str]] = {}
    with path.open(newline="", encoding="utf-8-sig") as f:
        rows = csv.DictReader(f)
        if not {"scene", "expression"} <= set(rows.fieldnames or []):
            raise InputError(f"{{param}} {path} needs the columns scene,expression (it has "
                             f"{','.join(rows.fieldnames or []) or 'none'})", param="expressions_csv")
        for n, row in enumerate(rows, start=2):
            scene, expression = (row["scene"] or "").strip(), " ".join((row["expression"] or "").split())
            if not expression:
                continue
            if scene not in names:
                raise InputError(f"{{param}} {path} line {n}: scene {scene!r} is not among the batch's scenes",
                                 param="expressions_csv")
            exprs = wanted.setdefault(names[scene], [])
            if expression not in exprs:
                exprs.append(expression)
    return wanted
