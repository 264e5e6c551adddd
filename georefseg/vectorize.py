"""Probability raster → candidate objects (polygons with scores), in bounded memory.

The raster is read in row strips; each strip's mask (probability ≥ threshold) is labelled
into connected components, whose polygons (holes kept) and probability sums are collected.
Pieces that touch a strip seam are merged with their neighbours across it afterwards.
Geometry stays in pixel units until the end, so simplification and the minimum area use
ground units converted at the scene's pixel size, whatever the CRS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import rasterio
import shapely
from affine import Affine
from pyproj import CRS, Geod
from rasterio.features import shapes
from rasterio.windows import Window
from scipy import ndimage
from shapely import affinity
from shapely.geometry.base import BaseGeometry

from georefseg.groups import connected_groups
from georefseg.tiling import Tile, TileGrid


@dataclass
class Candidate:
    """A connected region of high probability: geometry in map units of the scene's CRS."""

    geometry: BaseGeometry
    score: float  # mean probability inside
    peak: float  # highest probability inside
    pixels: int
    area_m2: float


@dataclass
class _Piece:
    geom: BaseGeometry  # pixel coordinates
    prob_sum: float
    peak: float
    pixels: int
    touches_seam: bool


def _polygon(rings: list) -> BaseGeometry:
    """A polygon from GeoJSON rings, built by shapely's array functions (shapely.geometry.shape
    walks every vertex in Python: most of the vectorising time on large scenes)."""
    shell, *holes = (shapely.linearrings(np.asarray(r, dtype=np.float64)) for r in rings)
    return shapely.polygons(shell, holes or None)


def _strip_pieces(prob: np.ndarray, row0: int, threshold: float, seams: tuple[bool, bool]) -> list[_Piece]:
    mask = prob >= threshold  # NaN (nodata) compares False
    if not mask.any():
        return []
    labels, n = ndimage.label(mask)
    # Per-label sums, counts and peaks over the masked pixels only, with bincount and
    # maximum.at: several times faster than ndimage's per-label reductions on large strips.
    lab, val = labels[mask], prob[mask].astype(np.float64)
    sums = np.bincount(lab, weights=val, minlength=n + 1)[1:]
    counts = np.bincount(lab, minlength=n + 1)[1:]
    peaks = np.zeros(n + 1)
    np.maximum.at(peaks, lab, val)
    peaks = peaks[1:]
    top_labels = set(np.unique(labels[0])) if seams[0] else set()
    bottom_labels = set(np.unique(labels[-1])) if seams[1] else set()
    pieces = []
    # Each region traced within its own bounding box: GDAL's polygonize then scans the objects'
    # pixels, not the whole strip (most of a strip is background).
    for k, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        own = labels[box] == k
        to_strip = Affine.translation(box[1].start, row0 + box[0].start)
        for geom, _ in shapes(own.view(np.uint8), mask=own, connectivity=4, transform=to_strip):
            pieces.append(_Piece(_polygon(geom["coordinates"]), float(sums[k - 1]), float(peaks[k - 1]),
                                 int(counts[k - 1]), k in top_labels or k in bottom_labels))
    return pieces


def _merge_across_seams(pieces: list[_Piece]) -> list[_Piece]:
    seam = [p for p in pieces if p.touches_seam]
    done = [p for p in pieces if not p.touches_seam]
    if not seam:
        return done
    # Pieces that share an edge across a seam belong to one object: group by touching.
    geoms = [p.geom for p in seam]
    for members in connected_groups(geoms, lambda i, j: geoms[i].intersection(geoms[j]).length > 0):
        group = [seam[i] for i in members]
        geom = shapely.union_all([p.geom for p in group]) if len(group) > 1 else group[0].geom
        done.append(_Piece(geom, sum(p.prob_sum for p in group), max(p.peak for p in group),
                           sum(p.pixels for p in group), False))
    return done


def candidates_from_array(prob: np.ndarray, threshold: float = 0.5) -> list[Candidate]:
    """Connected regions of an in-memory probability array (a chip), in pixel coordinates;
    ``area_m2`` is then in pixels. For scenes on disk use :func:`extract_candidates`."""
    return [Candidate(p.geom, p.prob_sum / max(p.pixels, 1), p.peak, p.pixels, float(p.pixels))
            for p in _strip_pieces(prob, 0, threshold, (False, False))]


def ground_area_m2(geom: BaseGeometry, crs: CRS) -> float:
    """Area in m²: geodesic on the ellipsoid for geographic CRSs, planar otherwise."""
    if crs.is_geographic:
        return abs(Geod(ellps="WGS84").geometry_area_perimeter(geom)[0])
    unit = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
    return geom.area * unit * unit


def extract_candidates(prob_path: str, threshold: float = 0.5, strip_rows: int | None = None) -> list[Candidate]:
    """Connected regions of ``prob ≥ threshold`` as polygons in the raster's CRS, exact to the
    pixel edges (what ranking sees; :func:`refine` shapes them for output afterwards).

    Parameters
    ----------
    prob_path
        A probability raster (float32, 0–1, NaN for nodata) on the scene's grid.
    threshold
        Probability (0–1) from which a pixel belongs to a region.
    strip_rows
        Rows read and labelled at once (pixels); by default strips hold about 4 million
        pixels, so memory does not grow with the scene.

    Returns
    -------
    list of Candidate
        One per region, with its mean and peak probability, pixel count and area in m²
        (geodesic for geographic CRSs).
    """
    with rasterio.open(prob_path) as src:
        crs, transform, height, width = CRS.from_user_input(src.crs), src.transform, src.height, src.width
        strip_rows = strip_rows or max(16, min(2048, 4_000_000 // width))
        pieces: list[_Piece] = []
        for row0 in range(0, height, strip_rows):
            rows = min(strip_rows, height - row0)
            prob = src.read(1, window=Window(0, row0, width, rows))
            pieces += _strip_pieces(prob, row0, threshold, (row0 > 0, row0 + rows < height))
    matrix = [transform.a, transform.b, transform.d, transform.e, transform.xoff, transform.yoff]
    out = []
    for p in _merge_across_seams(pieces):
        geom = affinity.affine_transform(p.geom, matrix)
        out.append(Candidate(geom, p.prob_sum / max(p.pixels, 1), p.peak, p.pixels, ground_area_m2(geom, crs)))
    return out


def instance_candidates(per_tile: Sequence[tuple[Tile, tuple[np.ndarray, np.ndarray]]], grid: TileGrid,
                        transform: Affine, crs: CRS) -> list[Candidate]:
    """Candidates from a model's own instances (one phrase's, tile by tile), in the scene's CRS.

    An instance stays one polygon however it touches its neighbours. An object in the overlap
    of two tiles is seen by both: it is kept from the tile whose centre lies nearest its own
    centre (a partition of the scene, so exactly one tile owns it) — not twice, not halved.

    Parameters
    ----------
    per_tile
        (tile, (masks N×h×w bool on the tile's window, scores N in 0–1)) for every tile run.
    grid, transform, crs
        The tiling and the scene's georeferencing.
    """
    centres = np.array([[t.window.col_off + t.window.width / 2, t.window.row_off + t.window.height / 2]
                        for t in grid])
    out = []
    for tile, (masks, scores) in per_tile:
        to_map = transform @ Affine.translation(tile.window.col_off, tile.window.row_off)
        for mask, score in zip(masks, scores, strict=True):
            rows, cols = np.nonzero(mask)
            if not len(rows):
                continue
            centre = (cols.mean() + 0.5 + tile.window.col_off, rows.mean() + 0.5 + tile.window.row_off)
            if int(np.argmin(((centres - centre) ** 2).sum(axis=1))) != tile.index:
                continue  # another tile sees more of it around it
            parts = [_polygon(g["coordinates"]) for g, _ in shapes(mask.astype(np.uint8), mask=mask, connectivity=4,
                                                                   transform=to_map)]
            geom = shapely.union_all(parts) if len(parts) > 1 else parts[0]
            out.append(Candidate(geom, float(score), float(score), int(len(rows)), ground_area_m2(geom, crs)))
    return out


def refine(candidates: list[Candidate], crs: CRS, transform: Affine, min_area_m2: float = 0.0,
           simplify_m: float = 0.0, pixel_size_m: tuple[float, float] = (1.0, 1.0)) -> list[tuple[int, Candidate]]:
    """Candidates as they are written, after ranking, so that neither option changes the order.

    Parameters
    ----------
    candidates
        Candidates in rank order, geometry in ``crs`` on the grid ``transform``.
    min_area_m2
        Candidates whose exact ground area is below this many m² are dropped.
    simplify_m
        Outline simplification tolerance in metres on the ground (0: exact pixel edges;
        topology, holes included, is preserved); ``area_m2`` is then the simplified outline's.
    pixel_size_m
        Ground size of one pixel (x, y) in metres: metres become map units through it.

    Returns
    -------
    list of (int, Candidate)
        The kept candidates with their index in ``candidates``, in the same order.
    """
    # metres → pixels → map units: right for projected and geographic CRSs, rotated grids too
    tolerance = simplify_m / min(pixel_size_m) * abs(transform.determinant) ** 0.5 if simplify_m > 0 else 0.0
    kept = []
    for i, c in enumerate(candidates):
        if c.area_m2 < min_area_m2:
            continue
        if tolerance:
            geom = c.geometry.simplify(tolerance, preserve_topology=True)
            c = Candidate(geom, c.score, c.peak, c.pixels, ground_area_m2(geom, crs))
        kept.append((i, c))
    return kept
