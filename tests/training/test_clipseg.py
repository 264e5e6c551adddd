"""Fine-tuning CLIPSeg (a small random model of the real architecture) with the one loop: what it
trains, what it writes, that `segment` loads the result, and DDP under torchrun (gloo, CPU)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from georefseg.data.synth import write_synthetic_dataset
from georefseg.models import load_model
from georefseg.training import TrainConfig, train
from tests.models.hf.test_clipseg import INPUT_PX, make_clipseg_folder


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("clipseg-train")
    write_synthetic_dataset(root / "data", 16, seed=3, size=INPUT_PX)
    return make_clipseg_folder(root / "clipseg-small"), root / "data"


def _cfg(folder, data, out, **kw) -> TrainConfig:
    return TrainConfig(data=str(data), out=str(out), model="clipseg", checkpoint=str(folder), workers=0,
                       device="cpu", lr=1e-3, warmup_steps=1, **kw)


def _weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_decoder_fine_tuning_writes_a_folder_segment_loads(setup, tmp_path, offline):
    folder, data = setup
    losses = []
    state = train(_cfg(folder, data, tmp_path / "run", max_steps=6, batch_size=4, val_limit=8),
                  on_step=lambda pace: losses.append(pace["loss"]))
    assert state.step == 6 and losses[-1] < losses[0]
    before, after = _weights(folder), _weights(tmp_path / "run" / "last")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("decoder.") for k in changed)  # CLIP's towers as published
    assert sum(k.startswith("decoder.") for k in changed) >= 0.5 * sum(k.startswith("decoder.") for k in before)
    # The folder loads as the published one does, and is what was trained.
    model = load_model(str(tmp_path / "run" / "last"), device="cpu")
    assert model.name == "clipseg" and model.tile_size == INPUT_PX
    assert torch.equal(model.net.decoder.transposed_convolution.weight, after["decoder.transposed_convolution.weight"])
    # The best weights carry the calibration fitted on the val split at the end.
    best = load_model(str(tmp_path / "run" / "best"), device="cpu")
    assert best.calibration.calibrated_scores and "val split" in best.calibration.source


def test_whole_model_on_request(setup, tmp_path, offline):
    folder, data = setup
    train(_cfg(folder, data, tmp_path / "run", max_steps=2, batch_size=4, train_all=True, calibrate=False))
    before, after = _weights(folder), _weights(tmp_path / "run" / "last")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("clip.vision_model.") for k in changed) and any(k.startswith("clip.text_model.")
                                                                          for k in changed)


def test_two_processes_under_torchrun_take_the_steps_of_one(setup, tmp_path, offline):
    """torchrun, two CPU processes (gloo), batch 2 each: the steps of one process with batch 4."""
    folder, data = setup
    args = ["train", "--model", "clipseg", "--init", str(folder), "--data", str(data), "--max-steps", "3",
            "--lr", "1e-3", "--warmup", "1", "--workers", "0", "--device", "cpu", "--no-calibrate", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "-m", "georefseg.cli", *args, "--batch-size", "2", "-o", str(tmp_path / "ddp")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run([sys.executable, "-m", "georefseg.cli", *args, "--batch-size", "4",
                          "-o", str(tmp_path / "one")], capture_output=True, text=True, env=env, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    ddp, single, start = _weights(tmp_path / "ddp" / "last"), _weights(tmp_path / "one" / "last"), _weights(folder)
    moved = np.concatenate([(single[k] - start[k]).abs().flatten().numpy() for k in single if k.startswith("decoder.")])
    diff = np.concatenate([(ddp[k] - single[k]).abs().flatten().numpy() for k in single])
    assert moved.max() > 1e-3  # it trained
    assert np.quantile(diff, 0.999) < 1e-5 and diff.max() < 2 * 3 * 1e-3, (np.quantile(diff, 0.999), diff.max())
