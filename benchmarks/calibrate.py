"""Fit a model's score calibration and selection cut-offs on synthetic validation scenes.

    python benchmarks/calibrate.py [--model tiny] [--checkpoint W] [--fit 40] [--check 20] [--write]

Runs ``segment`` (all candidates, uncalibrated) on multi-tile synthetic scenes from two seed
families that neither training (synth:100), the held-out dataset (seed 0) nor the sample
scene uses: family 11 to fit, family 7 (also scene_grounding.py's) to check. Expressions are
the generator's (one referent, verified unique over the scene; absent ones; land cover) plus
plurals ("the buildings", "all ships") and counts ("the two largest tanks") built from the
scene's own objects. A candidate is right when its IoU with a target is ≥ 0.5 (for land cover:
when at least half of it lies on the target). Prints the fitted table, the reliability table
(score band → share right) on both families, and the cut-offs: ``select_one`` maximises the
share of singular expressions answered right (the referent, or nothing when it is absent),
``select_all`` the mean F1 of plural ones. ``--write`` stores it beside the weights
(``tiny.calibration.json``), where ``segment`` reads it. Never fit on a test split.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from shapely import affinity
from shapely.ops import unary_union

from georefseg.api import Segmenter, SegmentOptions
from georefseg.atomic import write_text
from georefseg.calibration import Calibration, calibration_path, reliability
from georefseg.data.expressions import SYNONYMS
from georefseg.data.synth import generate_scene, make_samples, write_scene_geotiff
from georefseg.models import load_model
from georefseg.models.registry import resolve

SIZE, CRS, ORIGIN, PIXEL = 768, "EPSG:32633", (455000.0, 4990000.0), 1.0
FIT_SEED, CHECK_SEED = 11, 7
TO_MAP = [PIXEL, 0, 0, -PIXEL, ORIGIN[0], ORIGIN[1]]
COUNT_WORDS = {2: "two", 3: "three"}
# Object words tiny never learnt, for the negatives of the calibration's "unknown" row: English
# nouns and made-up words, none of them in benchmarks/unknown_words.py (which checks the result).
UNKNOWN_NOUNS = ("kangaroo", "skyscraper", "barn owl", "carousel", "submarine", "igloo", "totem pole", "bulldozer",
                 "pyramid", "observatory", "scarecrow", "waterwheel", "gazebo", "trampoline", "haystack",
                 "mailbox", "obelisk", "windsock", "bandstand", "pergola")
SYLLABLES = ("bra", "zon", "kel", "mip", "tuv", "orf", "quee", "lax", "dro", "vin", "sep", "gub")


def _plural(word: str) -> str:
    return word[:-1] + "ies" if word.endswith("y") else word + ("es" if word.endswith(("s", "x", "ch")) else "s")


def plural_samples(scene, rng: np.random.Generator) -> list[tuple[str, list, str]]:
    """(expression, targets, kind) for plurals and counts of the scene's own categories."""
    present = sorted({o.category for o in scene.objects if o.category in SYNONYMS})
    out = []
    if present:
        cat = str(rng.choice(present))
        noun = str(rng.choice(SYNONYMS[cat]))
        objs = [o for o in scene.objects if o.category == cat]
        form = rng.integers(3)
        text = [f"the {_plural(noun)}", f"all {_plural(noun)}", f"every {noun}"][form]
        out.append((text, objs, "all"))
        areas = sorted((o.geometry.area for o in objs), reverse=True)
        n = int(rng.integers(2, 4))
        if len(objs) > n and areas[n - 1] > 1.3 * areas[n]:
            top = sorted(objs, key=lambda o: -o.geometry.area)[:n]
            out.append((f"the {COUNT_WORDS[n]} largest {_plural(noun)}", top, "count"))
    absent = sorted(set(SYNONYMS) - set(present))
    if absent and rng.random() < 0.5:
        out.append((f"the {_plural(str(rng.choice(SYNONYMS[str(rng.choice(absent))])))}", [], "all"))
    return out


def unknown_expression(rng: np.random.Generator) -> str:
    """An expression about an object word the model cannot know: an English noun it never saw, or a
    made-up one, sometimes with words about the scene."""
    noun = (str(rng.choice(UNKNOWN_NOUNS)) if rng.random() < 0.5 else
            "".join(rng.choice(SYLLABLES, size=int(rng.integers(2, 4)))))
    return str(rng.choice([f"the {noun}", f"the largest {noun}", f"the {noun} near the river", f"all {noun}s"]))


def right(geom, targets: list, stuff: bool) -> bool:
    for t in targets:
        inter = geom.intersection(t).area
        if (inter / geom.area >= 0.5) if stuff else (inter / geom.union(t).area >= 0.5):
            return True
    return False


def run_family(seg: Segmenter, seed: int, scenes: int, tmp: Path) -> list[dict]:
    """One record per expression: its kind, target count and (raw score, right) per candidate."""
    records = []
    for i in range(scenes):
        rng = np.random.default_rng([seed, i])
        scene = generate_scene(rng, SIZE, density=0.8)
        path = tmp / f"scene_{seed}_{i}.tif"
        write_scene_geotiff(path, scene, CRS, ORIGIN, PIXEL)
        jobs = [(s.expression, [o.geometry for o in s.target], "stuff" if "stuff" in s.kinds else "one")
                for s in make_samples(scene, rng, n_present=3, p_absent=0.3, p_stuff=0.2)]
        jobs += [(t, [o.geometry for o in objs], k) for t, objs, k in plural_samples(scene, rng)]
        jobs.append((unknown_expression(rng), [], "unknown"))
        for text, targets, kind in jobs:
            targets = [affinity.affine_transform(t, TO_MAP) for t in targets]
            feats = seg.run(path, text).features
            stuff = kind == "stuff"
            records.append({"text": text, "kind": kind, "targets": len(targets),
                            "target_area": unary_union(targets).area if targets else 0.0,
                            "cands": [(float(r.score), right(r.geometry, targets, stuff))
                                      for r in feats.itertuples()]})
    return records


def answer_right(rec: dict, cal: Calibration, bar: float) -> float:
    """Singular: 1 when the referent is written (rank 1 right and above the bar) or, for an
    absent one, nothing is. Plural: the F1 of the written candidates against the targets."""
    scores = cal([s for s, _ in rec["cands"]]) if rec["cands"] else np.array([])
    ok = [r for _, r in rec["cands"]]
    if rec["kind"] == "one":
        if not rec["targets"]:
            return float(not len(scores) or scores[0] < bar)
        return float(len(scores) > 0 and scores[0] >= bar and ok[0])
    written = [r for s, r in zip(scores, ok, strict=True) if s >= bar]
    if rec["kind"] == "count":
        written = written[:rec["targets"]]
    if not rec["targets"]:
        return float(not written)
    if rec["kind"] == "stuff":  # land cover: a written piece on the target is right
        return float(bool(written) and np.mean(written) >= 0.5)
    tp = sum(written)
    return 2 * tp / (len(written) + rec["targets"]) if written or rec["targets"] else 1.0


def cutoff(records: list[dict], cal: Calibration, kinds: tuple[str, ...]) -> tuple[float, float]:
    chosen = [r for r in records if r["kind"] in kinds]
    grid = np.round(np.arange(0.05, 0.96, 0.05), 2)
    accs = [np.mean([answer_right(r, cal, b) for r in chosen]) for b in grid]
    best = int(np.argmax(accs))
    return float(grid[best]), float(accs[best])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--fit", type=int, default=40, help="scenes of the fitting family")
    parser.add_argument("--check", type=int, default=20, help="scenes of the checking family")
    parser.add_argument("--write", action="store_true", help="store the calibration beside the weights")
    args = parser.parse_args()
    net = load_model(args.model, args.checkpoint, device="cpu")
    with tempfile.TemporaryDirectory() as tmp, \
            Segmenter(net, options=SegmentOptions(candidates=True), calibration=Calibration()) as seg:
        fit = run_family(seg, FIT_SEED, args.fit, Path(tmp))
        check = run_family(seg, CHECK_SEED, args.check, Path(tmp))
    known = [r for r in fit if r["kind"] != "unknown"]
    raw = [s for r in known for s, _ in r["cands"]]
    ok = [c for r in known for _, c in r["cands"]]
    # Candidates for object words the model cannot know: all wrong, so their score is their
    # (smoothed) share right; the model's vocabulary tells them apart at run time.
    unknown = [c for r in fit if r["kind"] == "unknown" for _, c in r["cands"]]
    unknown_score = round((sum(unknown) + 1) / (len(unknown) + 2), 5)
    source = (f"{args.model} on synthetic validation scenes: seed family {FIT_SEED}, {args.fit} scenes of "
              f"{SIZE}² px, {len(fit)} expressions ({len(fit) - len(known)} about object words it cannot know), "
              f"{len(raw) + len(unknown)} candidates (benchmarks/calibrate.py)")
    cal = Calibration.fit(raw, ok, source)
    one, acc_one = cutoff(known, cal, ("one",))
    every, acc_all = cutoff(known, cal, ("all", "count", "stuff"))
    cal = Calibration(cal.raw, cal.calibrated, one, every, source, unknown=unknown_score)

    def table(every_record: list[dict]) -> dict:
        records = [r for r in every_record if r["kind"] != "unknown"]
        strange = [r for r in every_record if r["kind"] == "unknown"]
        scores = cal([s for r in records for s, _ in r["cands"]])
        return {"candidates": reliability(scores, [c for r in records for _, c in r["cands"]]),
                "unknown_object_words": {"expressions": len(strange),
                                         "candidates": sum(len(r["cands"]) for r in strange),
                                         "score": cal.unknown,
                                         "right": sum(c for r in strange for _, c in r["cands"])},
                "singular_right": round(float(np.mean([answer_right(r, cal, one) for r in records
                                                       if r["kind"] == "one"])), 3),
                "singular_present_right": round(float(np.mean([answer_right(r, cal, one) for r in records
                                                               if r["kind"] == "one" and r["targets"]])), 3),
                "singular_absent_right": round(float(np.mean([answer_right(r, cal, one) for r in records
                                                              if r["kind"] == "one" and not r["targets"]])), 3),
                "plural_f1": round(float(np.mean([answer_right(r, cal, every) for r in records
                                                  if r["kind"] in ("all", "count", "stuff")])), 3),
                "expressions": len(records)}

    rel = {f"fit (family {FIT_SEED})": table(fit), f"check (family {CHECK_SEED}, {args.check} scenes)": table(check)}
    cal = Calibration(cal.raw, cal.calibrated, one, every, source, rel, unknown=unknown_score)
    print(json.dumps({"select_one": one, "select_one_right_on_fit": round(acc_one, 3), "select_all": every,
                      "select_all_f1_on_fit": round(acc_all, 3),
                      "table": list(zip(cal.raw, cal.calibrated, strict=True)), "reliability": rel}, indent=1))
    if args.write:
        backend, weights = resolve(args.model, args.checkpoint)
        weights = backend.card(weights).weights
        if weights is None:
            raise SystemExit(f"{backend.name} has no weights to store a calibration beside: give --checkpoint")
        target = calibration_path(weights)
        write_text(target, cal.to_json() + "\n")
        print(f"wrote {target} for {backend.name}")


if __name__ == "__main__":
    main()
