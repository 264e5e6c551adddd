"""Scene-level grounding: which candidates an expression refers to, judged over the whole scene.

:func:`ground` takes the candidates found for the subject and for each anchor of a
:class:`~georefseg.expression.Query`, gives every subject candidate a raw score — the model's
*evidence* that it is the subject, times one factor in [0, 1] per scene-level word (order,
region, relation) — calibrates it (:class:`~georefseg.calibration.Calibration`), and selects
what the expression refers to: the best candidate for "the tank" (or nothing when even the
best is below the model's cut-off), every candidate above the cut-off for "the tanks" and for
land cover, the best N above it for "the two largest tanks".

Evidence is built so that a speck cannot win: it is the geometric mean of a candidate's mean
and peak probability times a support factor that is ½ at the model's minimum object size (two
output cells across) and tends to 1 for larger objects. Orders ("the second largest", "the
leftmost", "the closest to the river") count places among the candidates the model is sure
of, so noise cannot take a place. An anchor counts as found only where it passes the same bar.

Geometry is compared in the scene's pixel frame (x east, y south for north-up rasters), and
distances relative to the objects' own sizes, so the same words mean the same thing at any
ground resolution and in any CRS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import shapely
from affine import Affine
from shapely import affinity
from shapely.geometry.base import BaseGeometry
from shapely.ops import nearest_points

from georefseg.calibration import Calibration
from georefseg.expression import ORDERING_RELATIONS, Query
from georefseg.vectorize import Candidate

IDENTITY = Affine.identity()
_R = math.sqrt(0.5)
DIRECTIONS = {"west": (-1.0, 0.0), "east": (1.0, 0.0), "north": (0.0, -1.0), "south": (0.0, 1.0),
              "northeast": (_R, -_R), "northwest": (-_R, -_R), "southeast": (_R, _R), "southwest": (-_R, _R)}
ORDER_STEP = 0.3  # an order's factor falls by this much per place away from the places asked for
ANCHOR_OPTIONS = 5  # objects a singular anchor may be, when the model is not sure which


@dataclass
class Grounded:
    """A candidate with its calibrated score, raw score and the factors the raw score is made of."""

    candidate: Candidate
    score: float
    raw: float
    parts: dict[str, float]


@dataclass
class Grounding:
    """Candidates best first, which of them the expression refers to, and why."""

    ranked: list[Grounded]
    selected: list[bool]
    anchors: dict[str, int] = field(default_factory=dict)  # anchor phrase → candidates counted as found
    message: str | None = None  # why nothing was selected, or which words could not be judged


def evidence(c: Candidate, min_object_px: float) -> float:
    """How surely the model sees the subject in a candidate, in [0, 1] (see the module docstring)."""
    return math.sqrt(max(c.score, 0.0) * max(c.peak, 0.0)) * c.pixels / (c.pixels + min_object_px)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, x))))


def _to_pixels(geom: BaseGeometry, to_px: Affine) -> BaseGeometry:
    return affinity.affine_transform(geom, [to_px.a, to_px.b, to_px.d, to_px.e, to_px.c, to_px.f])


def _extent(g: BaseGeometry) -> float:
    """A length that says how big an object is: the side of a square of its area."""
    return math.sqrt(max(g.area, 1.0))


def _position_scores(cents: np.ndarray, size: tuple[int, int], region: tuple[tuple[int, int], ...]) -> np.ndarray:
    """Soft half-planes (or the centre) of the scene: ~1 inside, falling off near the middle."""
    dims = np.array(size, dtype=float)
    t = cents / dims  # 0..1 across the scene
    out = np.ones(len(cents))
    if region == ((-1, -1),):
        r = np.hypot(t[:, 0] - 0.5, t[:, 1] - 0.5)
        out *= 1 / (1 + np.exp((r - 0.25) / 0.05))
    else:
        for axis, side in region:
            toward = t[:, axis] if side == 0 else 1 - t[:, axis]
            out *= 1 / (1 + np.exp((toward - 0.42) / 0.04))
    return out


def _same_object(g: BaseGeometry, anchor: BaseGeometry) -> bool:
    """The anchor itself is not related to itself ("the tank next to the white tank")."""
    inter = g.intersection(anchor).area
    return inter > 0.5 * (g.area + anchor.area - inter)


def _relation_score(kind: str, g: BaseGeometry, anchor: BaseGeometry, anchor_is_stuff: bool,
                    limit_px: float | None = None) -> float:
    """How well ``g`` stands in relation ``kind`` to ``anchor`` (pixels), 0–1; ``limit_px`` is the
    distance of within_m and beyond_m, in pixels."""
    size = _extent(g) if anchor_is_stuff else max(_extent(g), _extent(anchor))
    d = g.distance(anchor)
    if kind in ("near", "far"):
        near = math.exp(-max(0.0, d - 4.0 - 0.15 * size) / (4.0 + 0.3 * size))
        return near if kind == "near" else 1.0 - near
    if kind in ("within_m", "beyond_m"):  # a distance on the ground: soft by a tenth of it (a pixel at least)
        inside = _sigmoid((limit_px - d) / max(1.0, 0.1 * limit_px))
        return inside if kind == "within_m" else 1.0 - inside
    if kind == "within":
        return g.intersection(anchor.buffer(2.0)).area / max(g.area, 1e-9)
    if kind == "contains":
        return anchor.intersection(g.buffer(2.0)).area / max(anchor.area, 1e-9)
    ux, uy = DIRECTIONS[kind]
    a, b = g.centroid, (anchor.centroid if not anchor_is_stuff else nearest_points(anchor, g)[0])
    dx, dy = a.x - b.x, a.y - b.y
    along, across = dx * ux + dy * uy, abs(dx * uy - dy * ux)
    gap = (_extent(g) + (0.0 if anchor_is_stuff else _extent(anchor))) / 2
    # Anything on that side counts ("every roof west of the river"); the closer, the better a
    # single referent fits.
    return (_sigmoid((along - gap) / (0.3 * gap + 1.0)) * _sigmoid((0.8 * along - across) / (0.3 * gap + 1.0))
            * (0.5 + 0.5 * math.exp(-max(0.0, along) / (25.0 * gap + 1.0))))


def _between_score(g: BaseGeometry, a: BaseGeometry, b: BaseGeometry) -> float:
    """High for an object on the way from one anchor to the other, near the line joining them."""
    pa, pb, c = nearest_points(a, g)[0], nearest_points(b, g)[0], g.centroid
    vx, vy = pb.x - pa.x, pb.y - pa.y
    length = math.hypot(vx, vy)
    if length < 1e-9:
        return 0.0
    t = ((c.x - pa.x) * vx + (c.y - pa.y) * vy) / length**2
    off = abs((c.x - pa.x) * vy - (c.y - pa.y) * vx) / length
    inside = _sigmoid(min(t, 1 - t) * length / (0.05 * length + 1.0))
    return inside * math.exp(-off / (0.25 * length + _extent(g)))


def _order_values(by: str, geoms: list[BaseGeometry], anchor: BaseGeometry | None = None) -> np.ndarray:
    """What an order sorts by, larger first."""
    if by in ("largest", "smallest"):
        areas = np.array([g.area for g in geoms])
        return areas if by == "largest" else -areas
    if by in ORDERING_RELATIONS:
        dist = np.array([g.distance(anchor) for g in geoms])
        return -dist if by == "nearest" else dist
    cents = np.array([[g.centroid.x, g.centroid.y] for g in geoms])
    axis, sign = {"left": (0, -1), "right": (0, 1), "top": (1, -1), "bottom": (1, 1)}[by]
    return sign * cents[:, axis]


def _order_scores(values: np.ndarray, eligible: np.ndarray, rank: int, number: int | None) -> np.ndarray:
    """1 for the candidates at places ``rank`` … ``rank + number - 1`` of an order (``number``
    None: the first half), ORDER_STEP times less per place further away. Places are counted
    among ``eligible`` candidates only, so that noise cannot take one."""
    ahead_of = np.sort(values[eligible])[::-1]
    if not len(ahead_of):
        return np.ones(len(values))
    place = np.array([np.sum(ahead_of > v) for v in values])
    lo = rank - 1
    hi = lo + (number if number else max(1, len(ahead_of) // 2)) - 1
    dist = np.where(place < lo, lo - place, np.where(place > hi, place - hi, 0))
    return ORDER_STEP ** dist


class _Judge:
    """The pieces every scoring step shares: pixel frame, minimum object size, calibration."""

    def __init__(self, to_pixels: Affine, size: tuple[int, int], min_object_px: float, calibration: Calibration,
                 pixel_size_m: float = 1.0):
        self.to_pixels, self.size, self.min_px, self.cal = to_pixels, size, min_object_px, calibration
        self.pixel_m = pixel_size_m

    def sure(self, cands: list[Candidate], bar: float) -> list[Candidate]:
        """The candidates the model is sure enough of: evidence above ``bar``, calibrated."""
        if not cands:
            return []
        ev = self.cal([evidence(c, self.min_px) for c in cands])
        return [c for c, e in zip(cands, ev, strict=True) if e >= bar and c.pixels >= self.min_px]

    def anchor(self, query: Query, found: list[Candidate]) -> tuple[list[tuple[BaseGeometry, float]], int]:
        """What an anchor may be, in pixels, with a weight each: all of it for land cover and
        plurals; else the few objects its own words rank best ("the largest building"), each
        weighted by its score against the best one's, so that a relation holds to the right
        one when the model is not sure which it is. Empty when the model is not sure of any.
        Also returns how many candidates count as found."""
        plural = query.is_stuff or query.number != 1
        sure = self.sure(found, self.cal.select_all if plural else self.cal.select_one)
        if not sure:
            return [], 0
        if plural:
            return [(shapely.union_all([_to_pixels(a.geometry, self.to_pixels) for a in sure]), 1.0)], len(sure)
        ranked = self.rank(sure, query, {})[0][:ANCHOR_OPTIONS]
        top = max(ranked[0].raw, 1e-9)
        return [(_to_pixels(g.candidate.geometry, self.to_pixels), g.raw / top) for g in ranked], len(sure)

    def rank(self, cands: list[Candidate], query: Query,
             anchors: dict[str, list[Candidate]]) -> tuple[list[Grounded], dict[str, int], list[str]]:
        """Candidates best first; the anchors counted as found; the relations left out."""
        geoms = [_to_pixels(c.geometry, self.to_pixels) for c in cands]
        ev = np.array([evidence(c, self.min_px) for c in cands])
        parts: dict[str, np.ndarray] = {"evidence": ev}
        sure = (self.cal(ev) >= self.cal.select_all) & np.array([c.pixels >= self.min_px for c in cands])
        if not sure.any():
            sure = ev >= 0.5 * ev.max()
        if query.region:
            cents = np.array([[g.centroid.x, g.centroid.y] for g in geoms])
            parts["position"] = _position_scores(cents, self.size, query.region)
        found: dict[str, int] = {}
        left_out: list[str] = []
        orders: list[tuple[str, np.ndarray, int, np.ndarray]] = []  # (name, values, rank, allowed)
        for i, rel in enumerate(query.relations):
            options = []
            for a in rel.anchors:
                found_options, found[a.subject] = self.anchor(a, anchors.get(a.subject, []))
                options.append(found_options)
            if not all(options):
                left_out.append(rel.describe())
                continue
            if rel.kind in ORDERING_RELATIONS:
                anchor = options[0][0][0]
                itself = np.array([_same_object(g, anchor) for g in geoms])  # not its own anchor
                orders.append((f"{rel.kind}:{i}", _order_values(rel.kind, geoms, anchor), rel.rank, ~itself))
            elif rel.kind == "between":
                a, b = options[0][0][0], options[1][0][0]
                parts[f"{rel.kind}:{i}"] = np.array([0.0 if _same_object(g, a) or _same_object(g, b)
                                                     else _between_score(g, a, b) for g in geoms])
            else:
                stuff = rel.anchor.is_stuff or rel.anchor.number != 1
                limit = None if rel.metres is None else rel.metres / self.pixel_m
                parts[f"{rel.kind}:{i}"] = np.array([
                    max(0.0 if _same_object(g, anchor) else w * _relation_score(rel.kind, g, anchor, stuff, limit)
                        for anchor, w in options[0]) for g in geoms])
        if query.order:
            orders.append((query.order.describe(), _order_values(query.order.by, geoms), query.order.rank,
                           np.ones(len(cands), bool)))
        # Orders are judged last, among the candidates the other words keep: "the largest tank
        # near the river" is the largest of the tanks near the river.
        others = np.prod(np.stack(list(parts.values())[1:]), axis=0) if len(parts) > 1 else np.ones(len(cands))
        for name, values, rank, allowed in orders:
            among = sure & allowed & (others >= 0.5)
            among = among if among.any() else sure & allowed
            parts[name] = np.where(allowed, _order_scores(values, among, rank, query.number), 0.0)
        raw = np.prod(np.stack(list(parts.values())), axis=0)
        score = self.cal(raw)
        areas = np.array([c.area_m2 for c in cands])
        order = sorted(range(len(cands)), key=lambda i: (-round(float(raw[i]), 6), -areas[i]))
        ranked = [Grounded(cands[i], float(score[i]), float(raw[i]), {k: float(v[i]) for k, v in parts.items()})
                  for i in order]
        return ranked, found, left_out


def ground(candidates: list[Candidate], query: Query, anchors: dict[str, list[Candidate]] | None = None, *,
           to_pixels: Affine = IDENTITY, size: tuple[int, int] = (1, 1), min_object_px: float = 1.0,
           calibration: Calibration | None = None, pixel_size_m: float = 1.0,
           unknown_word: str | None = None) -> Grounding:
    """Rank the subject's candidates over the whole scene and select what the query refers to.

    Parameters
    ----------
    candidates
        The subject's candidates (geometry in map units).
    query
        The expression as read by :func:`georefseg.expression.parse_expression`.
    anchors
        Each anchor phrase's candidates; an anchor the model is not sure of leaves its
        relation out (it cannot be judged), and the message says so.
    to_pixels, size
        Map coordinates → the scene's pixel frame, and that frame's (width, height) in pixels.
    pixel_size_m
        Metres on the ground per pixel: turns distances said in metres ("within 100 m of the
        river") into the pixel frame.
    unknown_word
        The subject's object word when the model cannot know it (see
        :meth:`~georefseg.models.card.ModelCard.unknown_word`): candidates are still ranked, but
        none is selected, and their scores are no higher than the calibration's ``unknown``.
    min_object_px
        The model's smallest object, in pixels (see
        :attr:`~georefseg.models.base.ReferringSegmenter.min_object_px`).
    calibration
        The model's score calibration and cut-offs (default: uncalibrated, cut-offs 0.5).
    """
    cal = calibration or Calibration()
    judge = _Judge(to_pixels, size, min_object_px, cal, pixel_size_m)
    if not candidates:
        return Grounding([], [], {}, f"the model found nothing that looks like {query.subject!r} in this scene")
    ranked, found, left_out = judge.rank(candidates, query, anchors or {})
    if unknown_word is not None:  # no score can say the model found what it has never learnt
        cap = 1.0 if cal.unknown is None else cal.unknown
        ranked = [replace(g, score=min(g.score, cap)) for g in ranked]
        return Grounding(ranked, [False] * len(ranked), found,
                         f"nothing selected: the model cannot know {unknown_word!r}")
    number = None if query.is_stuff else query.number
    bar = cal.select_one if number == 1 else cal.select_all
    if number == 1:
        selected = [i == 0 and g.score >= bar for i, g in enumerate(ranked)]
    else:
        selected = [g.score >= bar for g in ranked]
        if number is not None:
            keep = set([i for i, s in enumerate(selected) if s][:number])
            selected = [i in keep for i in range(len(ranked))]
    notes = []
    if not any(selected):
        notes.append(f"no candidate is sure enough to be {query.subject!r}: the best scores "
                     f"{ranked[0].score:.2f}, below the cut-off {bar:.2f}")
    elif number is not None and number > 1 and sum(selected) < number:
        notes.append(f"{number} were asked for, {sum(selected)} passed the cut-off {bar:.2f}")
    if left_out:
        notes.append("not found, so left out: " + "; ".join(left_out))
    return Grounding(ranked, selected, found, "; ".join(notes) or None)
