"""The training loop, with a small tiny model: real steps, export, validation, resume, Ctrl-C, a kill."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from georefseg.data.synth import write_synthetic_dataset
from georefseg.errors import DatasetError, TrainingInterrupted
from georefseg.models import load_model
from georefseg.training import TrainConfig, train
from georefseg.training.recipe import poly, warmup_cosine

SMALL = {"widths": [8, 16, 32, 48], "blocks": [1, 1, 1, 1], "text_dim": 32, "heads": 2, "arc_kernels": 1,
         "tile_size": 128, "min_overlap": 16}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds") / "synth"
    write_synthetic_dataset(root, 24, seed=11, size=64)
    return root


def _cfg(data, out, **kw) -> TrainConfig:
    base = {"batch_size": 4, "size": 64, "val_every": 3, "val_limit": 6, "checkpoint_every": 2,
            "workers": 0, "warmup_steps": 2, "device": "cpu", "arch": SMALL, "calibrate": False}
    return TrainConfig(data=str(data), out=str(out), **{**base, **kw})


def test_train_exports_weights_that_load(dataset, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left = run / f".last.pt.georefseg-{int(dead.stdout)}.part"  # what a killed run left mid-checkpoint
    left.write_bytes(b"half a checkpoint")
    vals = []
    state = train(_cfg(dataset, run, max_steps=6), on_validate=lambda s, m: vals.append(s))
    assert not left.exists() and not [p for p in run.iterdir() if p.name.endswith(".part")]
    # What the weights can know is stored beside them: the object words of the training split.
    vocabulary = json.loads((run / "best.vocabulary.json").read_text())["nouns"]
    assert vocabulary and all(len(w.split()) <= 4 and not w.startswith("the ") for w in vocabulary)
    assert load_model(str(run / "best.safetensors"), device="cpu").card.vocabulary == tuple(vocabulary)
    assert state.step == 6 and vals == [3, 6]
    recipe = json.loads((tmp_path / "run" / "best.json").read_text())
    assert recipe["config"]["widths"] == SMALL["widths"] and recipe["recipe"]["lr"] == 2e-3
    assert [g["name"] for g in recipe["groups"]] == ["decay", "no_decay"]
    assert 0 <= recipe["val_metrics"]["mIoU"] <= 1
    model = load_model(str(tmp_path / "run" / "best.safetensors"), device="cpu")
    assert model.config.widths == SMALL["widths"]
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert any("val" in h for h in history)


def test_interrupt_leaves_a_resumable_checkpoint(dataset, tmp_path):
    out = tmp_path / "run"

    def stop_at_3(pace):
        if pace["step"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted, match="with resume to go on"):
        train(_cfg(dataset, out, max_steps=5), on_step=stop_at_3)
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["state"]["step"] == 3
    steps = []
    state = train(_cfg(dataset, out, max_steps=5), resume=True, on_step=lambda pace: steps.append(pace["step"]))
    assert steps == [4, 5] and state.step == 5


def test_synthetic_stream_and_schedule(dataset, tmp_path):
    state = train(_cfg("synth:5", tmp_path / "s", max_steps=2, val_data=str(dataset)))
    assert state.step == 2
    with pytest.raises(Exception, match="needs max_steps"):
        train(_cfg("synth:5", tmp_path / "s2"))
    cosine = warmup_cosine(10)
    assert cosine(0, 100) == pytest.approx(0.1)
    assert cosine(10, 100) == pytest.approx(1.0)
    assert 0 < cosine(55, 100) < 1
    assert poly(0.9)(0, 100) == 1.0 and poly(0.9)(100, 100) == 0.0
    assert poly(0.9)(50, 100) == pytest.approx(0.5 ** 0.9)


def test_empty_split_is_an_error(tmp_path):
    root = tmp_path / "tiny"
    write_synthetic_dataset(root, 1, seed=0, size=32)
    with pytest.raises(DatasetError):
        train(_cfg(root, tmp_path / "o", max_steps=1, batch_size=64))


def test_killed_run_resumes_to_the_uninterrupted_result(dataset, tmp_path):
    """`georefseg train` killed (SIGKILL) after a checkpoint, then `--resume`d, ends with the very
    weights of a run that was never interrupted."""
    import os
    import signal

    from safetensors.torch import load_file

    args = [sys.executable, "-m", "georefseg.cli", "train", "--data", str(dataset), "--max-steps", "8",
            "--batch-size", "4", "--size", "64", "--val-every", "4", "--checkpoint-every", "2", "--workers", "0",
            "--device", "cpu", "--no-calibrate", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    whole = subprocess.run([*args, "-o", str(tmp_path / "whole")], env=env, capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr
    cut = tmp_path / "cut"
    proc = subprocess.Popen([*args, "-o", str(cut), "--progress", "json"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:  # bounded by the run's own end: step 8
            event = json.loads(line)
            if event.get("event") == "step" and event["step"] == 5 and (cut / "last.pt").is_file():
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert torch.load(cut / "last.pt", weights_only=True)["state"]["step"] == 4
    resumed = subprocess.run([*args, "-o", str(cut), "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    a, b = load_file(str(tmp_path / "whole" / "last.safetensors")), load_file(str(cut / "last.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((cut / "history.json").read_text())[-1]["step"] == 8
