"""Synthetic scenes and expressions: deterministic, varied, and each expression true to its mask."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pytest
from shapely.geometry import box

from georefseg.data.expressions import SYNONYMS
from georefseg.data.synth import (
    COLOURS,
    STUFF_WORDS,
    SyntheticStream,
    generate_scene,
    make_samples,
    write_synthetic_dataset,
)


def _category_in(text: str) -> str | None:
    """The category of the head noun: the earliest category word (relations come after it)."""
    found = [(m.start(), cat) for cat, words in SYNONYMS.items() for w in words
             if (m := re.search(rf"\b{w}\b", text))]
    return min(found)[1] if found else None


def test_same_seed_same_scene():
    a = generate_scene(np.random.default_rng([1, 2]))
    b = generate_scene(np.random.default_rng([1, 2]))
    c = generate_scene(np.random.default_rng([1, 3]))
    assert np.array_equal(a.image, b.image) and not np.array_equal(a.image, c.image)
    assert [o.geometry.wkt for o in a.objects] == [o.geometry.wkt for o in b.objects]


def test_objects_at_any_rotation_and_many_sizes():
    angles, areas, cats = [], {}, set()
    for i in range(40):
        for o in generate_scene(np.random.default_rng([5, i])).objects:
            cats.add(o.category)
            areas.setdefault(o.category, []).append(o.area)
            if o.category == "building":
                rect = o.geometry.minimum_rotated_rectangle.exterior.coords
                angles.append(np.degrees(np.arctan2(rect[1][1] - rect[0][1], rect[1][0] - rect[0][0])) % 90)
    assert cats == set(SYNONYMS)
    assert np.histogram(angles, bins=6, range=(0, 90))[0].min() > 0  # all orientations occur
    for cat, a in areas.items():
        assert max(a) / min(a) > 2.5, cat


def test_expressions_agree_with_the_scene():
    checked = {"colour": 0, "absent": 0, "stuff": 0}
    for i in range(60):
        rng = np.random.default_rng([7, i])
        scene = generate_scene(rng)
        for s in make_samples(scene, rng):
            mask = scene.mask(s.target)
            if "stuff" in s.kinds:
                # "the river": all river in view, or nothing when the scene has none
                name = next(k for k, words in STUFF_WORDS.items() if s.expression in words)
                geom = {"river": scene.rivers, "lake": scene.lakes, "road": scene.roads, "water": scene.water}[name]
                in_view = geom.intersection(box(0, 0, scene.width, scene.height)).area
                assert (mask.sum() > 0.8 * in_view) if s.target else (in_view < 20 and not mask.any())
                checked["stuff"] += 1
                continue
            cat = _category_in(s.expression)
            if not s.target:
                assert not mask.any()
                if s.kinds == ["absent", "category"]:
                    assert cat not in {o.category for o in scene.objects}
                    checked["absent"] += 1
                continue
            (target,) = s.target
            assert mask.any() and cat == target.category, s.expression
            if set(s.kinds) == {"category", "colour"}:
                # "the red building": exactly one building is red
                colour = next(c for c in COLOURS if re.search(rf"\b{c}\b", s.expression))
                same = [o for o in scene.objects if o.category == cat and o.colour == colour]
                assert same == [target], s.expression
                checked["colour"] += 1
            if s.kinds == ["category"]:
                assert [o for o in scene.objects if o.category == cat] == [target]
    assert checked["colour"] > 5 and checked["absent"] > 2 and checked["stuff"] > 3


def test_dataset_folder_is_deterministic_and_splits_share_no_scene(tmp_path):
    a = write_synthetic_dataset(tmp_path / "a", 30, seed=4, size=96, workers=1)
    write_synthetic_dataset(tmp_path / "b", 30, seed=4, size=96, workers=2)
    lines = [json.loads(x) for x in (tmp_path / "a" / "samples.jsonl").read_text().splitlines()]
    assert (tmp_path / "a" / "samples.jsonl").read_text() == (tmp_path / "b" / "samples.jsonl").read_text()
    digest = [hashlib.sha256((tmp_path / d / "images" / "000007.png").read_bytes()).hexdigest() for d in "ab"]
    assert digest[0] == digest[1]
    by_split: dict[str, set] = {}
    for rec in lines:
        by_split.setdefault(rec["split"], set()).add(rec["image"])
    assert by_split["train"].isdisjoint(by_split["test"]) and by_split["train"].isdisjoint(by_split["val"])
    assert sum(a["samples"].values()) == len(lines)
    assert any(rec["mask"] is None for rec in lines)  # some expressions refer to nothing


@pytest.mark.parametrize("workers", [0])
def test_stream_yields_training_items(workers):
    it = iter(SyntheticStream(seed=3, size=64, buffer=4))
    items = [next(it) for _ in range(10)]
    assert all(i["image"].shape == (3, 64, 64) and i["mask"].shape == (1, 64, 64) for i in items)
    assert {i["present"] for i in items} <= {0.0, 1.0}
    assert all((i["mask"].sum() > 0) == bool(i["present"]) for i in items)
