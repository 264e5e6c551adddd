"""Referring expressions built from predicates checked against every object of a scene.

A predicate answers +1 (clearly true), -1 (clearly false) or 0 (borderline) for an object.
An expression refers to its target only if the target is clearly true for every predicate and
every other object is clearly false for at least one of them; superlatives ("the largest")
then compare the target with the objects that are left, with a margin. Borderline cases are
never allowed to decide, so a person looking at the image would agree with the label.

The same machinery serves synthetic scenes and datasets made from a user's GIS layers: both
hand over objects with ``category``, ``colour`` (or None), ``geometry`` in pixel coordinates,
and the scene's water and road geometry and size.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from shapely.geometry.base import BaseGeometry

SYNONYMS: dict[str, tuple[str, ...]] = {
    "storage tank": ("storage tank", "oil tank", "tank", "storage tank"),
    "building": ("building", "house", "building"),
    "ship": ("ship", "boat", "vessel"),
    "plane": ("plane", "airplane", "aircraft"),
    "vehicle": ("vehicle", "car", "vehicle"),
}

NEAR_WORDS = ("near the {}", "next to the {}", "by the {}", "close to the {}", "beside the {}")
SIZE_WORDS = {"largest": ("largest", "biggest", "large", "big"),
              "smallest": ("smallest", "small", "tiniest")}
# Half-plane position words: (axis, side) with 0 = left/top, 1 = right/bottom.
REGIONS: dict[str, tuple[tuple[int, int], ...]] = {
    "on the left": ((0, 0),), "on the right": ((0, 1),), "at the top": ((1, 0),),
    "at the bottom": ((1, 1),), "in the upper left": ((0, 0), (1, 0)),
    "in the upper right": ((0, 1), (1, 0)), "in the lower left": ((0, 0), (1, 1)),
    "in the lower right": ((0, 1), (1, 1)),
}
EXTREMES = {"leftmost": (0, 0), "rightmost": (0, 1), "topmost": (1, 0), "bottommost": (1, 1)}
DIRECTIONS = {"left of": (-1, 0), "right of": (1, 0), "above": (0, -1), "below": (0, 1)}


class SceneLike(Protocol):
    objects: list[Any]
    rivers: BaseGeometry
    lakes: BaseGeometry
    roads: BaseGeometry
    width: int
    height: int


@dataclass
class Expression:
    text: str
    kinds: list[str]


@dataclass
class Predicate:
    """A filter on objects: ``test`` returns +1, 0 or -1."""

    kind: str
    slot: str  # where its words go: "pre" (before the noun), "noun", "post"
    words: str
    test: Callable[[Any], int]


@dataclass
class Superlative:
    """An ordering: the target must come first among the remaining candidates, by ``margin``."""

    kind: str
    words: str
    key: Callable[[Any], float]  # larger is "more"
    margin: Callable[[float, float], bool]  # (target key, other key) -> clearly ahead


def _three_way(value: float, yes_below: float, no_above: float) -> int:
    if value <= yes_below:
        return 1
    return -1 if value >= no_above else 0


def _size(obj: Any) -> float:
    return math.sqrt(obj.geometry.area)


def _near(geom: BaseGeometry, what: str) -> Predicate:
    def test(obj: Any) -> int:
        if geom.is_empty:
            return -1
        d = obj.geometry.distance(geom)
        return _three_way(d, 4.0 + 0.15 * _size(obj), 18.0 + 0.6 * _size(obj))
    return Predicate("relation", "post", what, test)


def _region(scene: SceneLike, words: str) -> Predicate:
    dims = (scene.width, scene.height)

    def test(obj: Any) -> int:
        c = obj.geometry.centroid
        results = []
        for axis, side in REGIONS[words]:
            t = (c.x, c.y)[axis] / dims[axis]
            t = t if side == 0 else 1 - t
            results.append(_three_way(t, 0.36, 0.46))
        return min(results)
    return Predicate("position", "post", words, test)


def _direction(ref: Any, words: str, ref_words: str) -> Predicate:
    ux, uy = DIRECTIONS[words]

    def test(obj: Any) -> int:
        if obj is ref:
            return -1
        a, b = obj.geometry.centroid, ref.geometry.centroid
        along = (a.x - b.x) * ux + (a.y - b.y) * uy
        across = abs((a.x - b.x) * uy - (a.y - b.y) * ux)
        gap = (_size(obj) + _size(ref)) / 2
        if along > gap and across < along * 0.8:
            return 1
        return -1 if along < gap * 0.3 or across > along * 1.6 else 0
    return Predicate("relation", "post", f"{words} the {ref_words}", test)


def _next_to(ref: Any, ref_words: str, rng: np.random.Generator) -> Predicate:
    def test(obj: Any) -> int:
        if obj is ref:
            return -1
        d = obj.geometry.distance(ref.geometry)
        return _three_way(d, 6.0 + 0.3 * _size(ref), 30.0 + 0.8 * _size(ref))
    words = str(rng.choice(NEAR_WORDS)).format(ref_words)
    return Predicate("relation", "post", words, test)


def _superlatives(scene: SceneLike, rng: np.random.Generator) -> list[Superlative]:
    sups = [
        Superlative("size", str(rng.choice(SIZE_WORDS["largest"])), lambda o: o.geometry.area,
                    lambda t, o: t >= 1.4 * o),
        Superlative("size", str(rng.choice(SIZE_WORDS["smallest"])), lambda o: -o.geometry.area,
                    lambda t, o: -t * 1.4 <= -o),
    ]
    dims = (scene.width, scene.height)
    for words, (axis, side) in EXTREMES.items():
        sign = -1.0 if side == 0 else 1.0
        sups.append(Superlative(
            "position", words,
            lambda o, axis=axis, sign=sign: sign * (o.geometry.centroid.x, o.geometry.centroid.y)[axis],
            lambda t, o, axis=axis: t - o >= 0.08 * dims[axis]))
    return sups


def _verdicts(objects: list[Any], preds: list[Predicate]) -> list[int]:
    """For each object: the worst answer over the predicates (+1 all true, -1 some false)."""
    return [min((p.test(o) for p in preds), default=1) for o in objects]


def _refers_to(scene: SceneLike, target: Any, preds: list[Predicate], sup: Superlative | None) -> bool:
    verdicts = _verdicts(scene.objects, preds)
    rivals = [o for o, v in zip(scene.objects, verdicts, strict=True) if o is not target and v >= 0]
    if verdicts[scene.objects.index(target)] != 1:
        return False
    if sup is None:
        return not rivals
    if not rivals:
        return False  # a superlative over one object reads oddly ("the largest" of one)
    t = sup.key(target)
    return all(sup.margin(t, sup.key(o)) for o in rivals)


def _phrase(preds: list[Predicate], sup: Superlative | None, rng: np.random.Generator) -> str:
    noun = next(p.words for p in preds if p.slot == "noun")
    pre = [p.words for p in preds if p.slot == "pre"]
    post = [p.words for p in preds if p.slot == "post"]
    head = " ".join(([sup.words] if sup else []) + pre + [noun])
    tail = " and ".join(post)
    article = "the" if rng.random() < 0.9 or sup else "a"
    text = f"{article} {head}"
    if tail:
        text += (" that is " if rng.random() < 0.15 else " ") + tail
    return text


def _category(obj: Any, rng: np.random.Generator) -> Predicate:
    cat = obj.category
    return Predicate("category", "noun", str(rng.choice(SYNONYMS.get(cat, (cat,)))),
                     lambda o: 1 if o.category == cat else -1)


def _colour(colour: str) -> Predicate:
    return Predicate("colour", "pre", colour, lambda o: 1 if o.colour == colour else -1)


def _simple_reference(scene: SceneLike, ref: Any, rng: np.random.Generator) -> str | None:
    """Words that single out ``ref`` by category, or colour and category; None if they don't."""
    options = [[_category(ref, rng)]]
    if ref.colour is not None:
        options.append([_colour(ref.colour), _category(ref, rng)])
    for preds in options:
        if _refers_to(scene, ref, preds, None):
            return " ".join(p.words for p in preds)
    return None


def _candidate_predicates(scene: SceneLike, target: Any, rng: np.random.Generator) -> list[tuple[float, Predicate]]:
    """Weighted predicates that are clearly true of the target."""
    cands: list[tuple[float, Predicate]] = []
    if target.colour is not None:
        cands.append((1.2, _colour(target.colour)))
    for words in REGIONS:
        cands.append((0.12, _region(scene, words)))
    if target.category == "ship":
        if not scene.rivers.is_empty:
            cands.append((0.6, Predicate("relation", "post", "on the river",
                                         lambda o: 1 if o.geometry.within(scene.rivers.buffer(0.5)) else -1)))
        if not scene.lakes.is_empty:
            cands.append((0.6, Predicate("relation", "post", "in the lake",
                                         lambda o: 1 if o.geometry.within(scene.lakes.buffer(0.5)) else -1)))
    else:
        for geom, names, weight in ((scene.rivers, ("river",), 0.9), (scene.lakes, ("lake",), 0.6),
                                    (scene.roads, ("road",), 0.7 if target.category != "vehicle" else 0)):
            if weight and not geom.is_empty:
                cands.append((weight, _near(geom, str(rng.choice(NEAR_WORDS)).format(names[0]))))
    others = [o for o in scene.objects if o is not target]
    for ref in rng.permutation(len(others))[:4] if others else []:
        ref = others[int(ref)]
        ref_words = _simple_reference(scene, ref, rng)
        if ref_words is None:
            continue
        cands.append((0.35, _next_to(ref, ref_words, rng)))
        for words in DIRECTIONS:
            cands.append((0.1, _direction(ref, words, ref_words)))
    return [(w, p) for w, p in cands if p.test(target) == 1]


def describe_target(scene: SceneLike, target: Any, rng: np.random.Generator,
                    max_modifiers: int = 3) -> Expression | None:
    """An expression that refers to ``target`` alone, or None if none is found."""
    preds = [_category(target, rng)]
    pool = _candidate_predicates(scene, target, rng)
    sups = _superlatives(scene, rng)
    for _ in range(max_modifiers + 1):
        if _refers_to(scene, target, preds, None):
            return _finish(preds, None, pool, rng)
        # A superlative may finish the expression (weights favour size over position).
        ok = [s for s in sups if _refers_to(scene, target, preds, s)]
        if ok and (rng.random() < 0.4 or not pool):
            weights = np.array([3.0 if s.kind == "size" else 1.0 for s in ok])
            return _finish(preds, ok[rng.choice(len(ok), p=weights / weights.sum())], pool, rng)
        if not pool or len(preds) > max_modifiers:
            return None
        weights = np.array([w for w, _ in pool])
        added = pool.pop(rng.choice(len(pool), p=weights / weights.sum()))[1]
        preds.append(added)
        pool = [(w, p) for w, p in pool if p.kind != added.kind or p.kind == "relation"]
    return None


def _finish(preds: list[Predicate], sup: Superlative | None, pool: list[tuple[float, Predicate]],
            rng: np.random.Generator) -> Expression:
    # Sometimes say a little more than needed, as people do ("the large white tank").
    if pool and len(preds) < 3 and rng.random() < 0.25:
        preds = preds + [pool[rng.integers(len(pool))][1]]
    kinds = sorted({p.kind for p in preds} | ({sup.kind} if sup else set()))
    return Expression(_phrase(preds, sup, rng), kinds)


def describe_absent(scene: SceneLike, rng: np.random.Generator,
                    categories: tuple[str, ...] = tuple(SYNONYMS),
                    colours: dict[str, tuple[str, ...]] | None = None) -> Expression | None:
    """An expression that fits no object of the scene ("the plane" where there is none)."""
    present = {o.category for o in scene.objects}
    missing = [c for c in categories if c not in present]
    if missing and (rng.random() < 0.5 or not present):
        cat = str(rng.choice(missing))
        preds = [Predicate("category", "noun", str(rng.choice(SYNONYMS.get(cat, (cat,)))), lambda o: -1)]
        if colours and rng.random() < 0.4:
            preds.insert(0, _colour(str(rng.choice(colours[cat]))))
        return Expression(_phrase(preds, None, rng), ["absent", "category"])
    if not present:
        return None
    # The category is there but the description fits none of its objects.
    anchor = scene.objects[rng.integers(len(scene.objects))]
    cat_pred = _category(anchor, rng)
    options: list[Predicate] = []
    if colours:
        used = {o.colour for o in scene.objects if o.category == anchor.category}
        options += [_colour(c) for c in colours.get(anchor.category, ()) if c not in used]
    for geom, name in ((scene.rivers, "river"), (scene.roads, "road"), (scene.lakes, "lake")):
        if not geom.is_empty and anchor.category not in ("ship", "vehicle"):
            options.append(_near(geom, str(rng.choice(NEAR_WORDS)).format(name)))
    rng.shuffle(options)
    for extra in options:
        preds = [cat_pred, extra]
        if all(v == -1 for v in _verdicts(scene.objects, preds)):
            return Expression(_phrase(preds, None, rng), ["absent", extra.kind])
    return None
