"""The `georefseg` command as a user runs it: exit codes, one-line errors, outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine
from fixtures import scene_with_square, write_scene

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data" / "scene.tif"


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "georefseg.cli", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=600)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    img = scene_with_square(200, 300, (50, 90, 100, 160))
    return write_scene(tmp_path_factory.mktemp("cli") / "scene.tif", img, "EPSG:32633",
                       Affine(1, 0, 300000, 0, -1, 5000000))


def test_segment_writes_outputs_and_summary(tmp_path, tiny_weights):
    r = run("segment", str(SAMPLE), "the large storage tank near the river", "-o", str(tmp_path / "o.gpkg"),
            "--prob", str(tmp_path / "p.tif"), "--model", str(tiny_weights), "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert "candidate(s) for" in r.stdout and "× 2 passes" in r.stdout and str(tmp_path / "o.gpkg") in r.stdout
    assert "judged over the whole scene: subject 'the storage tank', largest, near 'the river'" in r.stdout
    assert "tiles" in r.stderr  # the progress bar
    gdf = gpd.read_file(tmp_path / "o.gpkg")
    assert gdf.crs.to_epsg() == 32633
    assert (tmp_path / "p.tif").is_file()


def test_quiet_prints_nothing(tmp_path, tiny_weights, scene):
    r = run("segment", str(scene), "red", "-o", str(tmp_path / "o.geojson"), "--model", str(tiny_weights),
            "--quiet")
    assert r.returncode == 0 and r.stdout == "" and r.stderr == ""
    assert (tmp_path / "o.geojson").is_file()


def test_info(scene):
    r = run("info", str(scene))
    assert r.returncode == 0
    assert "EPSG:32633" in r.stdout and "300 × 200 px" in r.stdout and "1 of 512 px" in r.stdout
    r = run("info", str(scene), "--json", "--tile", "128", "--overlap", "32")
    d = json.loads(r.stdout)
    assert d["tiles"]["count"] == 6 and d["pixel_size_m"] == [1.0, 1.0]


def test_models_lists_both():
    r = run("models")
    assert r.returncode == 0 and "tiny" in r.stdout and "rmsin" in r.stdout


def _bad_cases(tmp_path: Path, scene: Path, real: Path) -> list[tuple[list[str], str]]:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    existing = tmp_path / "exists.gpkg"
    existing.write_text("x")
    edge = real / "rasterio_edge_cases"
    return [
        (["segment", str(tmp_path / "missing.tif"), "x"], "does not exist"),
        (["segment", str(real / "README.md"), "x"], "not a raster"),
        (["segment", str(edge / "corrupt.tif"), "x"], "corrupt or truncated"),
        (["segment", str(edge / "rotated.tif"), "x"], "no coordinate reference system"),
        (["segment", str(scene), ""], "expression is empty"),
        (["segment", str(scene), "tank " * 80], "characters long"),
        (["segment", str(scene), "x", "-o", str(tmp_path / "o.kml")], "unknown output format"),
        (["segment", str(scene), "x", "-o", str(blocker / "o.gpkg")], "cannot create the output folder"),
        (["segment", str(scene), "x", "--bands", "1,2,9"], "band 9 is out of range"),
        (["segment", str(scene), "x", "-o", str(existing)], "already exists"),
        (["segment", str(scene), "x", "--model", "nope"], "unknown model"),
        (["segment", str(scene), "x", "--device", "tpu"], "unknown device"),
    ]


def test_bad_input_gets_one_line_and_nonzero_exit(tmp_path, scene, real_scenes):
    for args, words in _bad_cases(tmp_path, scene, real_scenes):
        r = run(*args, "-o", str(tmp_path / "out.gpkg")) if "-o" not in args else run(*args)
        assert r.returncode == 2, (args, r.stderr)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1, (args, r.stderr)
        assert words in lines[0] and lines[0].startswith("error:")
        assert "Traceback" not in r.stderr
    assert not (tmp_path / "out.gpkg").exists()
    assert (tmp_path / "exists.gpkg").read_text() == "x"


def test_usage_errors_exit_nonzero(scene):
    r = run("segment", str(scene))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    r = run("segment", str(scene), "x", "--threshold", "abc")
    assert r.returncode != 0 and "Traceback" not in r.stderr


def test_shipped_default_model_maps_the_sample_scene(tmp_path):
    out, prob = tmp_path / "tanks.gpkg", tmp_path / "tanks_prob.tif"
    r = run("segment", str(SAMPLE), "the large storage tank near the river", "-o", str(out), "--prob", str(prob),
            "--quiet")
    assert r.returncode == 0, r.stderr
    found = gpd.read_file(out)
    assert found.crs.to_epsg() == 32633 and len(found) >= 1 and set(found["model"]) == {"tiny"}
    with rasterio.open(prob) as p, rasterio.open(SAMPLE) as s:
        assert p.crs == s.crs and p.transform == s.transform and p.dtypes[0] == "float32"
        values = p.read(1)
        assert np.nanmin(values) >= 0.0 and np.nanmax(values) <= 1.0 and np.nanmax(values) > 0.5


def test_numpy_scene_helper_is_sane(scene):
    import rasterio

    with rasterio.open(scene) as src:
        assert src.read(1)[70, 130] > 200 and np.all(src.bounds == (300000, 4999800, 300300, 5000000))


def test_dataset_train_evaluate_round_trip(tmp_path):
    data, out, metrics = tmp_path / "synth", tmp_path / "run", tmp_path / "m.json"
    r = run("dataset", "synth", "-o", str(data), "--n", "12", "--seed", "3", "--quiet")
    assert r.returncode == 0, r.stderr
    r = run("train", "--data", str(data), "-o", str(out), "--max-steps", "2", "--batch-size", "2",
            "--size", "128", "--val-every", "2", "--workers", "0", "--quiet")
    assert r.returncode == 0, r.stderr
    assert (out / "best.safetensors").is_file() and json.loads((out / "best.json").read_text())["recipe"]
    r = run("evaluate", "--data", str(data), "--model", str(out / "best.safetensors"), "--split", "all",
            "--json", str(metrics), "--quiet")
    assert r.returncode == 0, r.stderr
    scores = json.loads(metrics.read_text())
    n_all = len((data / "samples.jsonl").read_text().splitlines())
    assert scores["n_target"] + scores["n_no_target"] == n_all and "mIoU" in r.stdout
    for key in ("mIoU", "oIoU", "prec@0.5", "prec@0.6", "prec@0.7", "prec@0.8", "prec@0.9"):
        assert 0.0 <= scores[key] <= 1.0
    assert scores["grounding"] is False
    r = run("evaluate", "--data", str(data), "--model", str(out / "best.safetensors"), "--split", "all",
            "--json", str(metrics), "--grounding", "--quiet")
    assert r.returncode == 0, r.stderr
    grounded = json.loads(metrics.read_text())
    assert grounded["grounding"] is True and "with scene-level grounding" in r.stdout
    assert grounded["n_target"] == scores["n_target"] and 0.0 <= grounded["mIoU"] <= 1.0
