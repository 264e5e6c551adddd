"""Model quality: the field's metrics on a held-out synthetic split and on real labelled imagery.

    python benchmarks/quality.py --synthetic data/synth_s0 [--model tiny|weights.safetensors]

Prints one JSON object with these parts:

* ``synthetic``: mIoU, oIoU, Prec@0.5–0.9 and presence accuracy on the test split of a
  dataset written by ``georefseg dataset synth`` (never used for training or tuning), for the
  model alone (as the field's papers report) and ``synthetic_grounded`` for what ``segment``
  chooses (the model plus scene-level grounding of size, position and relation words).
* ``real_chips`` (and ``real_chips_grounded``): the same metrics on chips made by
  ``georefseg dataset from-labels`` from the real SpaceNet Atlanta image and its OpenStreetMap
  footprints (expressions such as "the smallest building" or "the leftmost house", verified
  unique in each chip).
* ``real_scene``: ``segment`` over the whole Atlanta scene with the expression "buildings":
  the IoU in m² of the predicted polygons with all footprints, and how many footprints are
  found (IoU ≥ 0.5 with a predicted polygon) or touched at all.

The real scenes are evaluation data only: nothing here feeds back into training.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import geopandas as gpd
from shapely.ops import unary_union

from georefseg.api import segment
from georefseg.data import open_dataset
from georefseg.data.labels import build_from_labels
from georefseg.evaluate import evaluate
from georefseg.models import load_model
from georefseg.models.base import ReferringSegmenter

ATLANTA = Path(__file__).resolve().parents[1] / "tests" / "assets" / "real_scenes" / "spacenet_atlanta"


def scene_level(model: ReferringSegmenter, workdir: Path) -> dict:
    """Segment "buildings" over the whole real scene and compare with the footprints on the ground."""
    result = segment(ATLANTA / "sample_geotiff.tif", "buildings", workdir / "buildings.gpkg", model=model)
    truth = gpd.read_file(ATLANTA / "geotiff_labels.geojson").to_crs(result.features.crs)
    predicted = unary_union(list(result.features.geometry)) if len(result.features) else None
    footprints = unary_union(list(truth.geometry))
    inter = 0.0 if predicted is None else predicted.intersection(footprints).area
    union = footprints.area if predicted is None else predicted.union(footprints).area
    found = touched = 0
    for building in truth.geometry:
        ious = [g.intersection(building).area / g.union(building).area for g in result.features.geometry]
        found += max(ious, default=0.0) >= 0.5
        touched += any(g.intersects(building) for g in result.features.geometry)
    return {"expression": "buildings", "iou_m2": inter / union, "predicted_polygons": len(result.features),
            "predicted_area_m2": 0.0 if predicted is None else predicted.area, "footprint_area_m2": footprints.area,
            "footprints": len(truth), "found_iou50": found, "touched": touched}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", type=Path, help="dataset written by `georefseg dataset synth`")
    parser.add_argument("--model", default="tiny")
    args = parser.parse_args()
    net = load_model(args.model, device="cpu")
    report: dict = {"model": args.model}
    if args.synthetic:
        test = [s for s in open_dataset(args.synthetic) if s.split == "test"]
        report["synthetic"] = evaluate(net, test)
        report["synthetic_grounded"] = evaluate(net, test, grounding=True)
    with tempfile.TemporaryDirectory() as tmp:
        chips = Path(tmp) / "atlanta_chips"
        build_from_labels(ATLANTA / "sample_geotiff.tif", ATLANTA / "geotiff_labels.geojson", "building", chips)
        chip_samples = list(open_dataset(chips))
        report["real_chips"] = evaluate(net, chip_samples)
        report["real_chips_grounded"] = evaluate(net, chip_samples, grounding=True)
        report["real_scene"] = scene_level(net, Path(tmp))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
