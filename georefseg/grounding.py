"""Scene-level grounding: which candidates an expression refers to, judged over the whole scene.

A tile's model sees only its tile, so words about the scene — size superlatives ("the largest",
"the large tank"), places in the scene ("in the upper left", "the northernmost ship") and
relations to things that may lie in another tile ("near the river", "left of the red
building") — cannot be judged there. :func:`parse_expression` takes them out of the
expression; the model is asked only for the rest (the *subject*, e.g. "the white storage
tank") and for each relation's *anchor* ("the river"); :func:`rank_candidates` then scores
every subject candidate against those words over the whole scene.

Geometry is compared in the scene's pixel frame (x east, y south for north-up rasters), and
distances relative to the objects' own sizes, so the same words mean the same thing at any
ground resolution and in any CRS.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
import shapely
from affine import Affine
from shapely import affinity
from shapely.geometry.base import BaseGeometry
from shapely.ops import nearest_points

from georefseg.vectorize import Candidate

# Land cover: an anchor made of it means all of it ("near the river"), not one object.
STUFF = {"river", "rivers", "stream", "canal", "lake", "lakes", "pond", "water", "sea", "coast",
         "shore", "harbour", "harbor", "road", "roads", "street", "highway", "railway", "forest",
         "field", "fields", "coastline"}

_SIZE = {"largest": "largest", "biggest": "largest", "large": "largest", "big": "largest",
         "huge": "largest", "giant": "largest", "smallest": "smallest", "small": "smallest",
         "tiniest": "smallest", "tiny": "smallest", "little": "smallest"}
# (axis, side): axis 0 = x (0 = west/left), axis 1 = y (0 = north/top).
_EXTREMES = {"leftmost": (0, 0), "westernmost": (0, 0), "westmost": (0, 0), "rightmost": (0, 1),
             "easternmost": (0, 1), "eastmost": (0, 1), "topmost": (1, 0), "uppermost": (1, 0),
             "northernmost": (1, 0), "northmost": (1, 0), "bottommost": (1, 1), "lowermost": (1, 1),
             "southernmost": (1, 1), "southmost": (1, 1)}
_SIDE_NAMES = {(0, 0): "left", (0, 1): "right", (1, 0): "top", (1, 1): "bottom"}
_VERTICAL = {"upper": 0, "top": 0, "north": 0, "northern": 0, "lower": 1, "bottom": 1, "south": 1,
             "southern": 1}
_HORIZONTAL = {"left": 0, "west": 0, "western": 0, "right": 1, "east": 1, "eastern": 1}
_RELATIONS = {
    "near": r"near(?:\s+to)?|nearby|next\s+to|close\s+to|closest\s+to|nearest(?:\s+to)?|beside|by|"
            r"adjacent\s+to|along(?:side)?|around",
    "far": r"far\s+from|away\s+from",
    "west": r"(?:to\s+the\s+)?(?:left|west)\s+of",
    "east": r"(?:to\s+the\s+)?(?:right|east)\s+of",
    "north": r"above|(?:to\s+the\s+)?north\s+of",
    "south": r"below|under(?:neath)?|(?:to\s+the\s+)?south\s+of",
    "within": r"on|in|inside|within|at",
}
IDENTITY = Affine.identity()
_DIRECTIONS = {"west": (-1.0, 0.0), "east": (1.0, 0.0), "north": (0.0, -1.0), "south": (0.0, 1.0)}

_V = "|".join(sorted(_VERTICAL, key=len, reverse=True))
_H = "|".join(sorted(_HORIZONTAL, key=len, reverse=True))
_REGION_TAIL = (r"(?:\s+(?:side|part|half|corner|edge|area|portion|end))?"
                r"(?:\s+of\s+the\s+(?:image|scene|map|picture|tile))?")
_REGION_RE = re.compile(
    rf"\b(?:in|on|at|to(?:wards?)?)\s+the\s+(?:(?P<v>{_V})(?:[\s-]?(?P<h>{_H}))?|(?P<h2>{_H})|"
    rf"(?P<c>cent(?:er|re)|middle)){_REGION_TAIL}\b(?!\s+of\b)")
_CORNER_RE = re.compile(rf"\b(?P<v>{_V})[\s-]?(?P<h>{_H})\b")  # "the upper-left tank"
_RELATION_RE = re.compile(
    r"(?:\b(?:that|which)\s+(?:is|are)\s+)?\b(?P<rel>" + "|".join(f"(?P<{k}>{v})" for k, v in _RELATIONS.items())
    + r")\s+(?P<anchor>(?:the|a|an)\s+.+?)(?=\s+and\s+|\s*,|$)")


@dataclass(frozen=True)
class Relation:
    """A relation to an anchor: kind is near, far, within, west, east, north or south."""

    kind: str
    anchor: Query


@dataclass(frozen=True)
class Query:
    """An expression split into what a tile model is asked for and what the scene decides."""

    text: str
    subject: str
    size: str | None = None  # "largest" | "smallest"
    region: tuple[tuple[int, int], ...] = ()  # half-planes (axis, side); ((-1, -1),) is the centre
    extreme: tuple[int, int] | None = None
    relations: tuple[Relation, ...] = field(default=())

    @property
    def scene_level(self) -> bool:
        """Whether any word is judged over the scene rather than in a tile."""
        return bool(self.size or self.region or self.extreme or self.relations)

    @property
    def is_stuff(self) -> bool:
        return bool(set(re.findall(r"[a-z]+", self.subject)) & STUFF)

    def phrases(self) -> list[str]:
        """What the tiles are asked for, one pass each: the expression as written when nothing
        in it is judged over the scene, else the subject, then each anchor once."""
        if not self.scene_level:
            return [self.text]
        out = [self.subject]
        for r in self.relations:
            if r.anchor.subject not in out:
                out.append(r.anchor.subject)
        return out

    def describe(self) -> str:
        parts = [f"subject {self.subject!r}"]
        if self.size:
            parts.append(self.size)
        if self.region:
            parts.append("region " + ("centre" if self.region == ((-1, -1),) else
                                      " ".join(_SIDE_NAMES[r] for r in self.region)))
        if self.extreme:
            parts.append(f"{_SIDE_NAMES[self.extreme]}most")
        parts += [f"{r.kind} {r.anchor.subject!r}" for r in self.relations]
        return ", ".join(parts)


def _clean(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip(" ,.;")
    text = re.sub(r"\b(?:that|which)\s+(?:is|are)\s*$", "", text).strip()
    text = re.sub(r"(?:\s+and)+$", "", text).strip()
    return re.sub(r"\s+and\s+(?=and\b)", " ", text)


def parse_expression(text: str, with_relations: bool = True) -> Query:
    """Split an expression into the subject a tile model can judge and scene-level words."""
    low = " ".join(text.lower().replace("’", "'").split())
    relations: list[Relation] = []
    region: list[tuple[int, int]] = []

    m = _REGION_RE.search(low)
    if m:
        if m["c"]:
            region = [(-1, -1)]
        else:
            if m["v"]:
                region.append((1, _VERTICAL[m["v"]]))
            h = m["h"] or m["h2"]
            if h:
                region.append((0, _HORIZONTAL[h]))
        low = low[:m.start()] + " " + low[m.end():]
    if with_relations:
        while (m := _RELATION_RE.search(low)) is not None:
            kind = next(k for k in _RELATIONS if m[k])
            anchor = parse_expression(_clean(m["anchor"]), with_relations=False)
            relations.append(Relation(kind, anchor))
            low = low[:m.start()] + " " + low[m.end():]
    if not region and (m := _CORNER_RE.search(low)):
        region = [(1, _VERTICAL[m["v"]]), (0, _HORIZONTAL[m["h"]])]
        low = low[:m.start()] + " " + low[m.end():]

    size = extreme = None
    words = []
    for w in low.split():
        if w in _SIZE and size is None:
            size = _SIZE[w]
        elif w in _EXTREMES and extreme is None:
            extreme = _EXTREMES[w]
        else:
            words.append(w)
    subject = _clean(" ".join(words))
    if not re.search(r"[a-z]", re.sub(r"\b(?:the|a|an|one|that|which|is|are|and)\b", "", subject)):
        # Nothing but scene-level words ("the largest one"): ask the model for all of it.
        subject = _clean(low) or text
    return Query(text, subject, size, tuple(region), extreme, tuple(relations))


@dataclass
class Grounded:
    """A candidate with its scene-level score and the parts it is made of."""

    candidate: Candidate
    score: float
    parts: dict[str, float]


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, x))))


def _to_pixels(geom: BaseGeometry, to_px: Affine) -> BaseGeometry:
    return affinity.affine_transform(geom, [to_px.a, to_px.b, to_px.d, to_px.e, to_px.c, to_px.f])


def _extent(g: BaseGeometry) -> float:
    """A length that says how big an object is: the side of a square of its area."""
    return math.sqrt(max(g.area, 1.0))


def _size_scores(areas: np.ndarray, which: str) -> np.ndarray:
    if which == "largest":
        return (areas / areas.max()) ** 2
    # Fragments (a sliver at a tile edge, a speck of noise) are not the "smallest" object.
    real = areas >= 0.25 * np.median(areas)
    smallest = areas[real].min()
    return np.where(real, (smallest / areas) ** 2, 0.05)


def _position_scores(cents: np.ndarray, size: tuple[int, int], region: tuple[tuple[int, int], ...],
                     extreme: tuple[int, int] | None) -> np.ndarray:
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
    if extreme is not None:
        axis, side = extreme
        toward = t[:, axis] if side == 0 else 1 - t[:, axis]
        out *= np.exp(-(toward - toward.min()) / 0.04)
    return out


def _same_object(g: BaseGeometry, anchor: BaseGeometry) -> bool:
    """The anchor itself is not related to itself ("the tank next to the white tank")."""
    inter = g.intersection(anchor).area
    return inter > 0.5 * (g.area + anchor.area - inter)


def _relation_score(kind: str, g: BaseGeometry, anchor: BaseGeometry, anchor_is_stuff: bool) -> float:
    size = _extent(g) if anchor_is_stuff else max(_extent(g), _extent(anchor))
    d = g.distance(anchor)
    if kind in ("near", "far"):
        near = math.exp(-max(0.0, d - 4.0 - 0.15 * size) / (4.0 + 0.3 * size))
        return near if kind == "near" else 1.0 - near
    if kind == "within":
        return g.intersection(anchor.buffer(2.0)).area / max(g.area, 1e-9)
    ux, uy = _DIRECTIONS[kind]
    a, b = g.centroid, (anchor.centroid if not anchor_is_stuff else nearest_points(anchor, g)[0])
    dx, dy = a.x - b.x, a.y - b.y
    along, across = dx * ux + dy * uy, abs(dx * uy - dy * ux)
    gap = (_extent(g) + (0.0 if anchor_is_stuff else _extent(anchor))) / 2
    return (_sigmoid((along - gap) / (0.3 * gap + 1.0)) * _sigmoid((0.8 * along - across) / (0.3 * gap + 1.0))
            * math.exp(-max(0.0, along) / (25.0 * gap + 1.0)))


def rank_candidates(candidates: list[Candidate], query: Query | None = None,
                    anchors: dict[str, list[Candidate]] | None = None, to_pixels: Affine = IDENTITY,
                    size: tuple[int, int] = (1, 1), top: int | None = None) -> list[Grounded]:
    """Candidates of the query's subject, best first, scored over the whole scene.

    The score is the model's mean probability (how well the candidate fits the subject) times
    one factor in [0, 1] per scene-level word. ``anchors`` holds the candidates found for each
    anchor phrase; an anchor with none found leaves its relation out (it cannot be judged).
    ``to_pixels`` maps map coordinates to the scene's pixel frame of ``size`` (width, height).
    """
    if not candidates:
        return []
    query = query or Query("", "")
    anchors = anchors or {}
    geoms = [_to_pixels(c.geometry, to_pixels) for c in candidates]
    evidence = np.array([c.score for c in candidates])
    parts: dict[str, np.ndarray] = {"evidence": evidence}
    if query.size:
        parts[query.size] = _size_scores(np.array([g.area for g in geoms]), query.size)
    if query.region or query.extreme:
        cents = np.array([[g.centroid.x, g.centroid.y] for g in geoms])
        parts["position"] = _position_scores(cents, size, query.region, query.extreme)
    for i, rel in enumerate(query.relations):
        found = anchors.get(rel.anchor.subject, [])
        if not found:
            continue
        if rel.anchor.is_stuff:
            anchor = shapely.union_all([_to_pixels(a.geometry, to_pixels) for a in found])
        else:  # one object: the best by its own words ("the largest building")
            best = rank_candidates(found, rel.anchor, None, to_pixels, size, 1)[0]
            anchor = _to_pixels(best.candidate.geometry, to_pixels)
        parts[f"{rel.kind}:{i}"] = np.array([
            0.0 if _same_object(g, anchor) else _relation_score(rel.kind, g, anchor, rel.anchor.is_stuff)
            for g in geoms])
    total = np.prod(np.stack(list(parts.values())), axis=0)
    areas = np.array([c.area_m2 for c in candidates])
    order = sorted(range(len(candidates)), key=lambda i: (-round(float(total[i]), 6), -areas[i]))
    ranked = [Grounded(candidates[i], float(total[i]), {k: float(v[i]) for k, v in parts.items()}) for i in order]
    return ranked[:top] if top else ranked
