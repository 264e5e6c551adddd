"""The `georefseg` command: the JSON protocol programs drive it by, exit codes, one-line errors.

Bad inputs are checked in-process through ``cli.run`` (the same function the console script
calls); one subprocess run checks the protocol end to end, one the exit code and stderr of
a mistake as a shell sees them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.windows import Window
from shapely.geometry import box

from georefseg import cli
from georefseg.errors import OutputExistsError
from georefseg.models.base import Backend
from georefseg.models.card import ModelCard
from georefseg.models.registry import BACKENDS
from georefseg.protocol import PROTOCOL_VERSION
from georefseg.segmenter import Segmenter
from tests.fixtures import WordColourModel, scene_with_square, write_scene

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data" / "scene.tif"


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "georefseg.cli", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=600)


def run_here(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.run(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    img = scene_with_square(200, 300, (50, 90, 100, 160))
    return write_scene(tmp_path_factory.mktemp("cli") / "scene.tif", img, "EPSG:32633",
                       Affine(1, 0, 300000, 0, -1, 5000000))


@pytest.mark.slow
def test_json_result_and_progress_events_in_a_subprocess(tmp_path, tiny_weights, scene):
    """What the QGIS plugin reads: one JSON document on stdout, one JSON event per line on stderr."""
    out, prob = tmp_path / "o.gpkg", tmp_path / "p.tif"
    r = run("segment", str(scene), "the large red roof near the river", "-o", str(out), "--prob", str(prob),
            "--model", str(tiny_weights), "--device", "cpu", "--tile", "128", "--overlap", "32",
            "--threshold", "0.3", "--json", "--progress", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    written = gpd.read_file(out)
    assert doc["output"] == str(out) and doc["probability"] == str(prob) and doc["crs"] == "EPSG:32633"
    assert doc["feature_count"] == len(written)
    assert [f["rank"] for f in doc["features"]] == sorted(written["rank"])[:len(doc["features"])]
    assert [f["area_m2"] for f in doc["features"]] == pytest.approx(list(written.sort_values("rank")["area_m2"]))
    assert doc["grounding"]["passes"] == ["the red roof", "the river"] and doc["tiles"] == doc["windows_read"] == 6
    assert doc["model"] == "tiny" and set(doc["timings"]) >= {"model_s", "infer_s", "total_s"}
    events = [json.loads(line) for line in r.stderr.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "started" and kinds[-1] == "finished"
    assert events[0]["protocol"] == PROTOCOL_VERSION and [p["name"] for p in events[0]["phases"]] == [
        "load", "open", "infer", "vectorize", "ground", "write"]
    assert [e["phase"] for e in events if e["event"] == "phase"] == [p["name"] for p in events[0]["phases"]]
    progress = [e["progress"] for e in events if "progress" in e]  # one bar over the whole run, for any reader
    assert progress == sorted(progress) and progress[0] == 0.0 and progress[-1] == 1.0
    assert all(e["text"] for e in events if e["event"] in ("phase", "tiles"))
    ticks = [(e["done"], e["total"]) for e in events if e["event"] == "tiles"]
    assert ticks == [(i, 6) for i in range(1, 7)]
    assert events[-1]["feature_count"] == len(written) and all(e["t"] >= 0 for e in events)
    reading = next(e for e in events if e["event"] == "reading")
    assert reading["subject"] == "the red roof" and reading["order"] == {"by": "largest", "rank": 1}
    assert doc["grounding"]["reading"]["relations"] == [{"kind": "near", "rank": 1, "anchors": ["the river"]}]
    with rasterio.open(prob) as p:
        assert p.crs.to_epsg() == 32633 and p.shape == (200, 300)


def test_no_bar_is_drawn_where_nobody_watches(capsys, tmp_path, tiny_weights, scene):
    """stderr is not a terminal here, as in a log or a program's pipe: no progress bar is drawn into it."""
    code, stdout, err = run_here(capsys, "segment", str(scene), "the red roof", "-o", str(tmp_path / "o.gpkg"),
                                 "--model", str(tiny_weights), "--device", "cpu", "--tile", "128", "--overlap", "32",
                                 "--json")
    assert code == 0, err
    assert "━" not in err and "segmenting" not in err and json.loads(stdout)["tiles"] == 6


def test_a_mistake_in_a_subprocess_is_one_line_and_exit_2(tmp_path, scene):
    r = run("segment", str(scene), "x", "-o", str(tmp_path / "o.kml"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stdout == ""
    assert r.stderr.strip().splitlines() == [f"error: -o/--output {tmp_path / 'o.kml'}: unknown output format "
                                             "'.kml'; use .gpkg, .geojson, .shp or .parquet"]
    r = run("segment", str(scene), "x", "--tile", "0", "--progress", "json")
    assert r.returncode == 2
    last = json.loads(r.stderr.splitlines()[-1])
    assert last == {"event": "error", "message": "error: --tile 0 is out of range: use 32 to 4096 pixels",
                    "exit_code": 2, "t": last["t"]}


def test_summary_for_people(capsys, tmp_path, tiny_weights, scene):
    code, out, err = run_here(capsys, "segment", str(scene), "the large red roof near the river", "-o",
                              str(tmp_path / "o.gpkg"), "--model", str(tiny_weights), "--device", "cpu")
    assert code == 0, err
    assert "feature(s) for" in out and "2 phrases in one pass" in out and str(tmp_path / "o.gpkg") in out
    assert "read as: 'the red roof', one, largest, near 'the river'" in out


def test_quiet_prints_nothing(capsys, tmp_path, tiny_weights, scene):
    code, out, err = run_here(capsys, "segment", str(scene), "red", "-o", str(tmp_path / "o.geojson"), "--model",
                              str(tiny_weights), "--quiet")
    assert code == 0 and out == "" and err == ""
    assert (tmp_path / "o.geojson").is_file()


def test_info(capsys, scene, tiny_weights):
    code, out, _ = run_here(capsys, "info", str(scene))
    assert code == 0
    assert "EPSG:32633" in out and "300 × 200 px" in out and "1 of 512 px" in out
    code, out, _ = run_here(capsys, "info", str(scene), "--json", "--tile", "128", "--overlap", "32")
    d = json.loads(out)
    assert d["tiles"]["count"] == 6 and d["pixel_size_m"] == [1.0, 1.0]
    code, out, _ = run_here(capsys, "info", str(scene), "--json", "--model", str(tiny_weights))
    assert json.loads(out)["tiles"]["tile"] == 256  # the weights' own tiling


def test_info_reads_the_header_of_a_file_with_corrupt_pixels(capsys, real_scenes):
    code, out, err = run_here(capsys, "info", str(real_scenes / "rasterio_edge_cases" / "corrupt.tif"), "--json")
    assert code == 0, err
    assert json.loads(out)["width"] > 0


def test_models_and_version(capsys):
    code, out, _ = run_here(capsys, "models", "--json")
    assert code == 0 and [m["name"] for m in json.loads(out)] == ["tiny", "rmsin", "clipseg", "sam3", "rsrefseg2"]
    code, out, _ = run_here(capsys, "models")
    assert "tiny" in out and "rmsin" in out
    code, out, _ = run_here(capsys, "--version")
    assert code == 0 and out.strip() == "georefseg 0.1.0"


def _bad_cases(tmp_path: Path, scene: Path, real: Path) -> list[tuple[list[str], str]]:
    """At least 40 kinds of mistake, each with the words its one line must hold."""
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    existing = tmp_path / "exists.gpkg"
    existing.write_text("x")
    (tmp_path / "folder.gpkg").mkdir()
    (tmp_path / "stray.dbf").write_bytes(b"someone's table")
    (tmp_path / "empty.tif").write_bytes(b"")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    other = tmp_path / "hf"
    other.mkdir()
    (other / "config.json").write_text('{"model_type": "bert"}')
    (tmp_path / "items.json").write_text('{"type": "FeatureCollection", "features": [{"type": "Feature"}]}')
    b_out = str(tmp_path / "batch_out")
    (tmp_path / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    with rasterio.open(tmp_path / "nocrs.tif", "w", driver="GTiff", width=8, height=8, count=1, dtype="uint8") as d:
        d.write(np.zeros((1, 8, 8), np.uint8))
    with rasterio.open(tmp_path / "complex.tif", "w", driver="GTiff", width=8, height=8, count=1,
                       dtype="complex64", crs="EPSG:32633", transform=Affine(1, 0, 0, 0, -1, 0)) as d:
        d.write(np.zeros((1, 8, 8), np.complex64))
    utm = {"driver": "GTiff", "crs": "EPSG:32633", "transform": Affine(1, 0, 300000, 0, -1, 5000000)}
    with rasterio.open(tmp_path / "nodata.tif", "w", width=64, height=64, count=3, dtype="uint8", nodata=0,
                       **utm) as d:
        d.write(np.zeros((3, 64, 64), np.uint8))  # every pixel is nodata
    with rasterio.open(tmp_path / "nan.tif", "w", width=64, height=64, count=3, dtype="float32", **utm) as d:
        d.write(np.full((3, 64, 64), np.nan, np.float32))
    with rasterio.open(tmp_path / "pixel.tif", "w", width=1, height=1, count=3, dtype="uint8", **utm) as d:
        d.write(np.full((3, 1, 1), 200, np.uint8))
    with rasterio.MemoryFile() as mem:  # a photo renamed .tif
        with mem.open(driver="GTiff", width=16, height=16, count=3, dtype="uint8") as d:
            d.write(np.full((3, 16, 16), 128, np.uint8))
        rasterio.shutil.copy(mem.name, tmp_path / "photo.tif", driver="JPEG")
    (tmp_path / "photo.tif.aux.xml").unlink(missing_ok=True)
    (tmp_path / "mosaic.vrt").write_text(
        '<VRTDataset rasterXSize="8" rasterYSize="8"><SRS>EPSG:32633</SRS><GeoTransform>300000,1,0,5000000,0,-1'
        '</GeoTransform><VRTRasterBand dataType="Byte" band="1"><SimpleSource><SourceFilename relativeToVRT="1">'
        'moved_away.tif</SourceFilename><SourceBand>1</SourceBand></SimpleSource></VRTRasterBand></VRTDataset>')
    far = tmp_path / "far.geojson"
    gpd.GeoDataFrame(geometry=[box(10, 50, 10.01, 50.01)], crs=4326).to_file(far)
    edge = real / "rasterio_edge_cases"
    s = str(scene)
    return [
        (["segment", str(tmp_path / "nodata.tif"), "x"], "nodata.tif has no valid pixels: every pixel of it is nodata"),
        (["segment", str(tmp_path / "nan.tif"), "x"], "has no valid pixels: every pixel of it is nodata or NaN"),
        (["segment", str(tmp_path / "pixel.tif"), "x"], "pixel.tif is only 1 × 1 px"),
        (["segment", str(tmp_path / "photo.tif"), "x"],
         "photo.tif (a JPEG image, not a GeoTIFF, whatever its name says) has no coordinate reference system"),
        (["segment", str(tmp_path / "mosaic.vrt"), "x"], "mosaic.vrt is a VRT whose source"),
        (["segment", s, "x", "--aoi", str(far)], "--aoi does not overlap the scene: in EPSG:32633 it spans"),
        (["segment", s, "x", "--overlap", "300"],
         "--overlap 300 must be at least 0 and less than half the tile (256 px)"),
        (["segment", str(tmp_path / "missing.tif"), "x"], "does not exist"),
        (["segment", str(real / "README.md"), "x"], "not a raster"),
        (["segment", str(tmp_path / "empty.tif"), "x"], "not a raster"),
        (["segment", str(tmp_path), "x"], "is a folder, not a raster"),
        (["segment", str(edge / "corrupt.tif"), "x"], "corrupt or truncated"),
        (["segment", str(edge / "rotated.tif"), "x"], "no coordinate reference system"),
        (["segment", str(tmp_path / "nocrs.tif"), "x"], "no coordinate reference system"),
        (["segment", str(tmp_path / "complex.tif"), "x"], "pixels of type complex64"),
        (["segment", s, ""], "the EXPRESSION is empty"),
        (["segment", s, "   "], "the EXPRESSION is empty"),
        (["segment", s, "tank " * 80], "characters long"),
        (["segment", s, "x", "-o", str(tmp_path / "o.kml")], "unknown output format '.kml'"),
        (["segment", s, "x", "-o", str(tmp_path / "noext")], "unknown output format '(no extension)'"),
        (["segment", s, "x", "-o", str(blocker / "o.gpkg")], "is a file"),
        (["segment", s, "x", "-o", str(tmp_path / "folder.gpkg"), "--overwrite"], "is a folder"),
        (["segment", s, "x", "-o", str(existing)], "replace it with --overwrite"),
        (["segment", s, "x", "-o", str(tmp_path / "stray.shp")], "stray.dbf already exists"),
        (["segment", s, "x", "-o", s, "--overwrite"], "would write over"),
        (["segment", s, "x", "--prob", s, "--overwrite"], "--prob"),
        (["segment", s, "x", "--prob", str(tmp_path / "p.png")], "name it *.tif"),
        (["segment", s, "x", "--prob", str(tmp_path / "folder.gpkg")], "name it *.tif"),
        (["segment", s, "x", "-o", str(tmp_path / "o.geojson"), "--append"], "--append works with .gpkg"),
        (["segment", s, "x", "--append", "--overwrite"], "--append and overwrite exclude"),
        (["segment", s, "x", "-o", str(tmp_path / "o.geojson"), "--layer", "a"], "--layer names a layer"),
        (["segment", s, "x", "--bands", "1,2,9"], "band 9 is out of range"),
        (["segment", s, "x", "--bands", "0,1,2"], "band 0 is out of range"),
        (["segment", s, "x", "--bands", "1,2"], "--bands takes 1 or 3 band numbers"),
        (["segment", s, "x", "--bands", "a,b,c"], "--bands 'a,b,c': give band numbers"),
        (["segment", s, "x", "--model", "nope"], "unknown --model 'nope': known models are tiny"),
        (["segment", s, "x", "--model", str(tmp_path / "gone.safetensors")], "--model"),
        (["segment", s, "x", "--model", str(tmp_path / "junk.pth")], "is not weights any known model reads"),
        (["segment", s, "x", "--model", str(other)], "model_type 'bert'"),
        (["segment", s, "x", "--model", "rmsin"], "needs weights: pass --checkpoint"),
        (["segment", s, "x", "--checkpoint", str(tmp_path / "no.pth")], "--checkpoint"),
        (["segment", s, "x", "--checkpoint", str(tmp_path / "broken.safetensors")], "holds no tiny weights"),
        (["segment", s, "x", "--model", "nope", "--checkpoint", str(tmp_path / "junk.pth")], "unknown --model"),
        (["segment", s, "x", "--device", "tpu"], "unknown --device 'tpu'"),
        (["segment", s, "x", "--device", "cuda:0"], "no CUDA GPU"),
        (["segment", s, "x", "--threshold", "1.5"], "--threshold 1.5 must lie between 0.01 and 0.99"),
        (["segment", s, "x", "--threshold", "0"], "--threshold 0.0 must lie between 0.01 and 0.99"),
        (["segment", s, "x", "--min-area", "-1"], "--min-area -1.0 must be 0 or more"),
        (["segment", s, "x", "--max-features", "0"], "--max-features 0 must be at least 1"),
        (["segment", s, "x", "--simplify", "-2"], "--simplify -2.0 must be 0 or more"),
        (["segment", s, "x", "--tile", "0"], "--tile 0 is out of range"),
        (["segment", s, "x", "--tile", "31"], "--tile 31 is out of range"),
        (["segment", s, "x", "--tile", "100000"], "--tile 100000 is out of range"),
        (["segment", s, "x", "--tile", "128", "--overlap", "64"], "--overlap 64 must be"),
        (["segment", s, "x", "--overlap", "-1"], "--overlap -1 must be"),
        (["segment", s, "x", "--batch-size", "0"], "--batch-size 0 must be at least 1"),
        (["segment", s, "x", "--scheduler", "not an address"], "--scheduler 'not an address' is not"),
        (["segment", s, "x", "--bbox", "1,2,3"], "--bbox takes four numbers"),
        (["segment", s, "x", "--bbox", "a,b,c,d"], "--bbox 'a,b,c,d': give numbers"),
        (["segment", s, "x", "--bbox", "0,0,1,1", "--bbox-crs", "EPSG:4326"], "does not overlap the scene"),
        (["segment", s, "x", "--bbox", "0,0,1,1", "--bbox-crs", "NOPE"], "--bbox-crs 'NOPE' is not a CRS"),
        (["segment", s, "x", "--aoi", str(tmp_path / "none.geojson")], "--aoi"),
        (["segment", s, "x", "--aoi", str(blocker)], "is not a vector file"),
        (["info", str(tmp_path / "missing.tif")], "does not exist"),
        (["info", s, "--model", "nope"], "unknown --model 'nope'"),
        (["batch", str(tmp_path / "no_archive"), b_out, "--expr", "x"], "SOURCE " + str(tmp_path / "no_archive")),
        (["batch", str(other), b_out, "--expr", "x"], "holds no scene"),
        (["batch", str(scene.parent), b_out], "give --expr (repeatable), or --expressions"),
        (["batch", str(scene.parent), b_out, "--expr", " "], "--expr is empty"),
        (["batch", str(scene.parent), b_out, "--expr", "x", "--format", "kml"],
         "--format 'kml': use gpkg, geojson, shp or parquet"),
        (["batch", str(scene.parent), b_out, "--expr", "x", "--crs", "EPSG:0"], "--crs 'EPSG:0' is not a CRS"),
        (["batch", str(scene.parent), b_out, "--expr", "x", "--workers", "2", "--scheduler", "tcp://h:1"],
         "--workers and scheduler both"),
        (["batch", str(scene.parent), b_out, "--expr", "x", "--workers", "0"], "--workers 0 must be at least 1"),
        (["batch", str(scene.parent), b_out, "--expressions", str(blocker)], "--expressions"),
        (["batch", str(scene.parent), b_out, "--expr", "x", "--model", "nope"], "unknown --model 'nope'"),
        (["batch", str(tmp_path / "items.json"), b_out, "--expr", "x"], "is not a STAC"),
    ]


def _hashes(folder: Path) -> dict[Path, str]:
    import hashlib

    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_bad_input_gets_one_line_and_exit_2(capsys, tmp_path, scene, real_scenes):
    """Every mistake: exit 2, one line naming the flag, no traceback, nothing written or changed."""
    cases = _bad_cases(tmp_path, scene, real_scenes)
    assert len(cases) >= 40
    before, scene_before = _hashes(tmp_path), _hashes(scene.parent)
    paths = set(tmp_path.rglob("*"))
    for args, words in cases:
        if args[0] == "segment" and args[2] == "x":  # an object word the model knows: no note before the error
            args = [*args[:2], "the tank", *args[3:]]
        argv = [*args, "-o", str(tmp_path / "out.gpkg")] if args[0] == "segment" and "-o" not in args else args
        code, out, err = run_here(capsys, *argv)
        assert code == 2, (args, err)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1, (args, err)
        assert words in lines[0] and lines[0].startswith("error:"), (words, lines[0])
        assert "Traceback" not in err and out == ""
        assert _hashes(tmp_path) == before, args  # no file written, none changed
        assert set(tmp_path.rglob("*")) == paths, args  # no folder left either
    assert _hashes(scene.parent) == scene_before


def test_usage_errors_exit_2(capsys, scene):
    code, _, err = run_here(capsys, "segment", str(scene))
    assert code == 2 and "Missing argument" in err and "Traceback" not in err
    code, _, err = run_here(capsys, "segment", str(scene), "x", "--threshold", "abc")
    assert code == 2 and "--threshold" in err


def test_shipped_default_model_maps_the_sample_scene(readme_run):
    found = gpd.read_file(readme_run.output)
    assert found.crs.to_epsg() == 32633 and len(found) >= 1 and set(found["model"]) == {"tiny"}
    with rasterio.open(readme_run.probability) as p, rasterio.open(SAMPLE) as s:
        assert p.crs == s.crs and p.transform == s.transform and p.dtypes[0] == "float32"
        values = p.read(1)
        assert np.nanmin(values) >= 0.0 and np.nanmax(values) <= 1.0 and np.nanmax(values) > 0.5
    assert readme_run.windows_read == readme_run.tiles == 9


def test_numpy_scene_helper_is_sane(scene):
    with rasterio.open(scene) as src:
        assert src.read(1)[70, 130] > 200 and np.all(src.bounds == (300000, 4999800, 300300, 5000000))


@pytest.mark.slow
def test_dataset_train_evaluate_round_trip(capsys, tmp_path):
    data, out, metrics = tmp_path / "synth", tmp_path / "run", tmp_path / "m.json"
    code, _, err = run_here(capsys, "dataset", "synth", "-o", str(data), "--n", "12", "--seed", "3", "--quiet")
    assert code == 0, err
    code, _, err = run_here(capsys, "train", "--data", str(data), "-o", str(out), "--max-steps", "2",
                            "--batch-size", "2", "--size", "128", "--val-every", "2", "--workers", "0", "--quiet")
    assert code == 0, err
    assert (out / "best.safetensors").is_file() and json.loads((out / "best.json").read_text())["recipe"]
    code, stdout, err = run_here(capsys, "evaluate", "--data", str(data), "--model", str(out), "--split", "all",
                                 "--json", str(metrics), "--quiet")
    assert code == 0, err
    scores = json.loads(metrics.read_text())
    n_all = len((data / "samples.jsonl").read_text().splitlines())
    assert scores["n_target"] + scores["n_no_target"] == n_all and "mIoU" in stdout
    for key in ("mIoU", "oIoU", "prec@0.5", "prec@0.6", "prec@0.7", "prec@0.8", "prec@0.9"):
        assert 0.0 <= scores[key] <= 1.0
    assert scores["grounding"] is False
    code, stdout, err = run_here(capsys, "evaluate", "--data", str(data), "--model", str(out / "best.safetensors"),
                                 "--split", "all", "--json", str(metrics), "--grounding", "--quiet")
    assert code == 0, err
    grounded = json.loads(metrics.read_text())
    assert grounded["grounding"] is True and "with scene-level grounding" in stdout
    assert grounded["n_target"] == scores["n_target"] and 0.0 <= grounded["mIoU"] <= 1.0


# Every phase boundary, under SIGTERM and SIGKILL, half of them with an older pair of outputs in
# place (alternating, so that each phase, each signal and each state is met); and Ctrl-C once.
PHASES = ["load", "open", "infer", "vectorize", "ground", "write"]
KILLS = [(phase, sig, older) for i, phase in enumerate(PHASES)
         for sig, older in ((signal.SIGTERM, i % 2 == 0), (signal.SIGKILL, i % 2 == 1))] + [
    ("infer", signal.SIGINT, True)]


def _pair(out: Path, prob: Path) -> tuple[int, int] | None:
    """The outputs' inodes (a rename gives a file a new one), None when neither exists; a mixed
    pair, one without the other, fails here."""
    assert out.exists() == prob.exists(), f"a mixed pair: {out} {out.exists()}, {prob} {prob.exists()}"
    return (out.stat().st_ino, prob.stat().st_ino) if out.exists() else None


@pytest.mark.slow
def test_a_run_killed_at_any_phase_leaves_its_outputs_all_old_or_all_new(tmp_path, tiny_weights):
    """The polygon layer and the probability raster are one transaction: killed (politely or not) at
    every phase boundary, a run leaves the pair entirely old or entirely new, says what is true, and
    the same command run again succeeds and leaves nothing stray."""
    scene = tmp_path / "scene.tif"
    with rasterio.open(SAMPLE) as src:  # one 256 px tile of the sample: the tank and the river
        window = Window(480, 352, 256, 256)
        with rasterio.open(scene, "w", **{**src.profile, "width": 256, "height": 256,
                                          "transform": src.window_transform(window)}) as dst:
            dst.write(src.read(window=window))
    with Segmenter(tiny_weights, device="cpu") as seg:
        cases = []
        for i, (phase, sig, older) in enumerate(KILLS):  # a folder each, older pair first where there is one
            folder = tmp_path / f"maps{i}"
            out, prob = folder / "o.gpkg", folder / "p.tif"
            if older:
                folder.mkdir()
                seg.run(scene, "the storage tank", out, prob=prob)
            cases.append((phase, sig, older, folder, out, prob, _pair(out, prob) if older else None))

        def kill(case) -> tuple[int, str]:
            """Run the command in a process of its own and send it the signal at the phase's event."""
            phase, sig, older, folder, out, prob, _ = case
            command = ["segment", str(scene), "the storage tank", "-o", str(out), "--prob", str(prob), "--model",
                       str(tiny_weights), "--device", "cpu", "--progress", "json", *(["--overwrite"] if older else [])]
            # As from a terminal: SIGINT is not ignored in the child, whatever this test's runner does.
            proc = subprocess.Popen([sys.executable, "-m", "georefseg.cli", *command], stderr=subprocess.PIPE,
                                    stdout=subprocess.DEVNULL, text=True,
                                    preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
            for line in proc.stderr:
                if line.startswith("{") and json.loads(line).get("phase") == phase:
                    proc.send_signal(sig)
                    break
            rest = proc.stderr.read()
            return proc.wait(timeout=300), rest

        with ThreadPoolExecutor(2) as pool:  # two runs at a time: each is its own process and folder
            ended = list(pool.map(kill, cases))
        for (phase, sig, older, folder, out, prob, before), (code, rest) in zip(cases, ended, strict=True):
            after = _pair(out, prob) if folder.exists() else None
            new = after is not None and (before is None or not set(after) & set(before))
            assert after == before or new, (phase, sig, "the pair is neither all old nor all new")
            if sig == signal.SIGKILL:
                assert code == -signal.SIGKILL
            else:
                last = json.loads(rest.strip().splitlines()[-1])
                assert code == 130 and last == {**last, "event": "error", "exit_code": 130}, (phase, sig, rest)
                assert last["message"] == ("interrupted just after the outputs were written: "
                                           f"{out}, {prob} are complete" if new else
                                           "interrupted: no output was written (any that existed are unchanged)")
                stray = list(folder.iterdir()) if folder.exists() else []  # not even the folder the run made
                assert sorted(p.name for p in stray) == (["o.gpkg", "p.tif"] if after else []), (phase, sig)
            # The same command again: it clears what a killed run left, and succeeds (or, if the killed run
            # had finished its outputs, says they exist).
            if older or not new:
                seg.run(scene, "the storage tank", out, prob=prob, overwrite=older)
            else:
                with pytest.raises(OutputExistsError, match="already exists"):
                    seg.run(scene, "the storage tank", out, prob=prob)
            assert sorted(p.name for p in folder.iterdir()) == ["o.gpkg", "p.tif"], (phase, sig)
            with rasterio.open(prob) as written:
                assert written.shape == (256, 256) and "score" in gpd.read_file(out).columns


@pytest.fixture
def two_roofs(tmp_path, monkeypatch):
    """Two red roofs (1600 m² and 400 m² at 1 m) and a backend entry for the colour model."""
    img = scene_with_square(200, 300, (20, 60, 20, 60))
    img[:, 120:140, 200:220] = np.array([230, 25, 25], np.uint8)[:, None, None]
    monkeypatch.setitem(BACKENDS, "colour", Backend("colour", "colour fixture", "nothing", find=lambda p: None,
                                                     card=lambda w: ModelCard("colour", w, 128, 32, 1),
                                                     build=lambda card: WordColourModel()))
    return write_scene(tmp_path / "roofs.tif", img, "EPSG:32633", Affine(1, 0, 300000, 0, -1, 5000000))


def test_what_is_written_follows_the_expression(capsys, tmp_path, two_roofs):
    out = tmp_path / "o.gpkg"
    base = ["segment", str(two_roofs), "-o", str(out), "--model", "colour", "--overwrite"]
    assert run_here(capsys, *base[:2], "the red roof", *base[2:])[0] == 0
    assert list(gpd.read_file(out)["area_m2"]) == [1600.0]  # the referent alone
    assert run_here(capsys, *base[:2], "the red roofs", *base[2:])[0] == 0
    assert sorted(gpd.read_file(out)["area_m2"]) == [400.0, 1600.0]  # a plural: all of them
    assert run_here(capsys, *base[:2], "the smallest red roof", *base[2:], "--candidates")[0] == 0
    every = gpd.read_file(out)
    assert list(every["area_m2"]) == [400.0, 1600.0] and list(every["selected"]) == [True, False]
    assert run_here(capsys, *base[:2], "all red roofs", *base[2:], "--max-features", "1")[0] == 0
    assert len(gpd.read_file(out)) == 1


def test_nothing_found_is_exit_0_with_a_message_and_an_empty_layer(capsys, tmp_path, two_roofs):
    out = tmp_path / "o.gpkg"
    code, stdout, err = run_here(capsys, "segment", str(two_roofs), "the green roof", "-o", str(out), "--model",
                                 "colour")
    assert code == 0
    assert "note: the model found nothing that looks like 'the green roof' in this scene" in " ".join(err.split())
    assert "Nothing written" in stdout
    empty = gpd.read_file(out)
    assert len(empty) == 0 and list(empty.columns)[:3] == ["expression", "rank", "selected"]


def test_words_it_cannot_use_are_reported(capsys, tmp_path, two_roofs):
    code, stdout, err = run_here(capsys, "segment", str(two_roofs), "find the red roof not in the lake", "-o",
                                 str(tmp_path / "o.gpkg"), "--model", "colour")
    assert code == 0
    assert "warning: not understood, so not used: 'not in the lake', 'find'" in " ".join(err.split())
    assert "read as: 'the red roof', one, not understood: 'not in the lake', 'find'" in " ".join(stdout.split())


def test_batch_prints_its_report_and_a_rerun_skips_what_is_done(capsys, tmp_path):
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    with rasterio.open(SAMPLE) as src:
        window = Window(480, 352, 256, 256)
        profile = {**src.profile, "width": 256, "height": 256, "transform": src.window_transform(window)}
        with rasterio.open(scenes / "tank.tif", "w", **profile) as dst:
            dst.write(src.read(window=window))
    out = tmp_path / "out"
    code, stdout, _ = run_here(capsys, "batch", str(scenes), str(out), "--expr", "the storage tanks", "--json",
                               "--progress", "none")
    report = json.loads(stdout)
    assert code == 0 and (report["jobs"], report["done"], report["ran"]) == (1, 1, 1)
    assert report["merged"] == str(out / "merged.gpkg") and gpd.read_file(out / "merged.gpkg").crs.to_epsg() == 4326
    code, stdout, _ = run_here(capsys, "batch", str(scenes), str(out), "--expr", "the storage tanks",
                               "--progress", "none")
    summary = " ".join(stdout.split())
    assert code == 0 and "1 of 1 jobs done, 0 failed; 0 run now in" in summary and "scenes/min" not in summary
    assert "(1 done before, not run again)" in summary
    n = report['merged_features']
    assert f"merged: {out / 'merged.gpkg'} ({n} feature{'' if n == 1 else 's'}, EPSG:4326)" in stdout


def test_notes_say_what_happened_in_the_flags_words(capsys, tmp_path, two_roofs):
    """Guessed bands, a folder made, a layer replaced, candidates left out: each said, in flags."""
    with rasterio.open(two_roofs) as src:
        rgb, profile = src.read(), src.profile
    profile.update(count=12, photometric="MINISBLACK")
    twelve = tmp_path / "twelve.tif"
    with rasterio.open(twelve, "w", **profile) as dst:  # 12 bands, none marked red, green or blue
        dst.write(np.concatenate([rgb, np.zeros((9, *rgb.shape[1:]), rgb.dtype)]))
        dst.colorinterp = [rasterio.enums.ColorInterp.undefined] * 12
    out = tmp_path / "new" / "o.gpkg"
    code, _, err = run_here(capsys, "segment", str(twelve), "the red roofs", "-o", str(out), "--model", "colour",
                            "--layer", "roofs")
    said = " ".join(err.split())
    assert code == 0, err
    assert "note: read bands 1,2,3 of 12 as red, green, blue (no band is marked as such): choose others with " \
           "--bands, e.g. 4,3,2" in said
    assert f"note: created the folder {out.parent} for -o/--output" in said
    code, _, err = run_here(capsys, "segment", str(twelve), "the red roofs", "-o", str(out), "--model", "colour",
                            "--layer", "roofs", "--overwrite", "--candidates", "--min-area", "500")
    said = " ".join(err.split())
    assert code == 0, err
    assert f"note: --overwrite replaces layer 'roofs' of {out} (Polygon, 2 features)" in said
    assert "note: 1 of 2 candidates written (1 smaller than 500 m² (--min-area) not written)" in said
    code, stdout, err = run_here(capsys, "segment", str(two_roofs), "the red roofs", "-o", str(tmp_path / "p.gpkg"),
                                 "--model", "colour", "--min-area", "2e6", "--json")
    doc = json.loads(stdout)
    assert doc["grounding"]["message"] == "2 selected objects smaller than 2 km² (--min-area) not written"
    assert doc["notes"] == [doc["grounding"]["message"]]


def test_an_object_word_the_model_cannot_know_is_said_and_selects_nothing(capsys, tmp_path):
    """tiny never learnt 'elephant': it says so before the run, lists the word as not understood, and
    selects nothing; --candidates still writes what it scores, none selected."""
    out = tmp_path / "o.gpkg"
    code, stdout, err = run_here(capsys, "segment", str(SAMPLE), "the purple elephant near the river", "-o",
                                 str(out), "--device", "cpu", "--bbox", "455384,4989488,455640,4989744", "--json")
    doc = json.loads(stdout)
    assert code == 0 and doc["feature_count"] == 0 and len(gpd.read_file(out)) == 0
    assert doc["grounding"]["reading"]["unused"] == ["elephant"] and doc["grounding"]["selected"] == 0
    assert doc["notes"][0].startswith("tiny does not know 'elephant': it knows aircraft, airplane, boat, building")
    assert doc["notes"][0].endswith("nothing is selected (--candidates writes what it scores anyway)")
    code, _, err = run_here(capsys, "segment", str(SAMPLE), "the purple elephant", "-o", str(out), "--device", "cpu",
                            "--bbox", "455384,4989488,455640,4989744", "--candidates", "--overwrite")
    written = gpd.read_file(out)
    assert code == 0 and "note: tiny does not know 'elephant'" in " ".join(err.split())
    assert not written["selected"].any()  # listed with their scores, none said to be the referent
