"""Loading models by name or file; refusing what does not fit."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from georefseg.errors import ModelError
from georefseg.models.registry import MODELS, load_model, resolve_device


def test_weights_file_round_trip(tiny_weights):
    model = load_model(str(tiny_weights), device="cpu")
    assert model.name == "tiny" and not model.training
    assert model.config.widths == [8, 16, 32, 48] and model.tile_size == 256
    again = load_model("tiny", checkpoint=tiny_weights, device="cpu")
    for (k, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), k


def test_mismatched_weights_name_the_keys(tiny_weights, tmp_path):
    state = load_file(str(tiny_weights))
    meta = __import__("safetensors").safe_open(str(tiny_weights), "pt").metadata()
    del state["mask_head.weight"]
    state["extra.weight"] = torch.zeros(1)
    state["presence_head.0.bias"] = torch.zeros(3)
    bad = tmp_path / "bad.safetensors"
    save_file(state, str(bad), metadata=meta)
    with pytest.raises(ModelError) as err:
        load_model(str(bad))
    msg = str(err.value)
    assert "1 missing: mask_head.weight" in msg and "1 unexpected: extra.weight" in msg
    assert "presence_head.0.bias (3,)≠(48,)" in msg


def test_clear_errors():
    with pytest.raises(ModelError, match="unknown model 'nope'"):
        load_model("nope")
    with pytest.raises(ModelError, match="needs weights"):
        load_model("rmsin")
    with pytest.raises(ModelError, match="does not exist"):
        load_model("tiny", checkpoint="/no/such/file.safetensors")
    with pytest.raises(ModelError, match="unknown device"):
        resolve_device("tpu")
    assert set(MODELS) == {"tiny", "rmsin"}


def test_cuda_request_without_gpu_is_explained():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ModelError, match="no CUDA GPU"):
        resolve_device("cuda")
