"""Finding an RSRefSeg 2 installation and reading its checkpoint in every published layout."""

import argparse

import pytest
import torch

from georefseg.errors import ModelError
from georefseg.models.registry import resolve
from georefseg.models.rsrefseg2.checkpoint import checkpoint_state, locate, lora_delta, merged_state
from tests.models.rsrefseg2 import weights
from tests.models.rsrefseg2.installation import (
    layout,
    write_checkpoint,
    write_installation,
    write_sam,
    write_siglip,
)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The merged weights of the whole-model, mmengine-wrapped checkpoint."""
    folder = write_installation(tmp_path_factory.mktemp("full"))
    return merged_state(locate(folder))


def test_every_layout_gives_the_same_weights(reference, tmp_path):
    """Trained parts only with DDP's prefix, a bare whole-model state dict, the .pth given
    itself, SigLIP in a hub cache and SAM as a --local-dir download: one set of weights."""
    only = tmp_path / "only"
    write_installation(only, trained_only=True, wrapped=False, prefix="module.")
    bare = tmp_path / "bare"
    write_sam(bare, hub=False)
    write_siglip(bare, hub=True)
    write_checkpoint(bare / "RSRefSeg2" / "rrsisd.pth", wrapped=False)
    for parts in (locate(only), locate(only / "rrsisd.pth"), locate(bare)):
        state = merged_state(parts)
        assert state.keys() == reference.keys()
        assert all(torch.equal(state[k], reference[k]) for k in state)


def test_lora_is_merged_into_the_weights(reference):
    """W + B·A·α/r (α = r = 16) for a Linear and for a 1×1 convolution of SAM's neck."""
    for ours, theirs, base in (
            ("vision.encoder.layers.0.self_attn.q_proj", "clip_vision_encoder.base_model.model.model.encoder.layers.0."
             "self_attn.q_proj", "siglip:vision_model.encoder.layers.0.self_attn.q_proj.weight"),
            ("sam.image_encoder.neck.convs.0.conv", "backbone.model.image_encoder.base_model.model.neck.convs.0.conv",
             "sam:image_encoder.neck.convs.0.conv.weight")):
        shapes = layout()["model"]
        a = weights.tensor(f"rsrefseg2:{theirs}.lora_A.default.weight", shapes[f"{theirs}.lora_A.default.weight"])
        b = weights.tensor(f"rsrefseg2:{theirs}.lora_B.default.weight", shapes[f"{theirs}.lora_B.default.weight"])
        w = weights.tensor(base, shapes[f"{theirs}.base_layer.weight"])
        expected = w + (b.flatten(1) @ a.flatten(1)).reshape(w.shape)
        assert torch.allclose(reference[f"{ours}.weight"], expected, atol=1e-6)
        assert not torch.allclose(reference[f"{ours}.weight"], w, atol=1e-4)  # the update is not zero
    assert lora_delta(torch.ones(2, 3), torch.ones(4, 2), torch.Size([4, 3])).eq(16 / 2 * 2).all()


def test_a_missing_part_is_named_with_its_download(tmp_path):
    write_sam(tmp_path)
    with pytest.raises(ModelError) as err:
        resolve("rsrefseg2", tmp_path)
    message = str(err.value)
    assert "is not a complete RSRefSeg 2 folder" in message
    assert "huggingface-cli download KyanChen/RSRefSeg2" in message
    assert "huggingface-cli download google/siglip2-so400m-patch16-512" in message and "SAM 2.1 (" not in message
    # recognised by its contents alone, too
    with pytest.raises(ModelError, match="it lacks the RSRefSeg 2 checkpoint"):
        resolve(tmp_path)


def test_several_checkpoints_must_be_chosen(tmp_path):
    write_installation(tmp_path)
    write_checkpoint(tmp_path / "refsegrs.pth")
    with pytest.raises(ModelError, match=r"several RSRefSeg 2 checkpoints \(refsegrs.pth, rrsisd.pth\): give "
                                         "checkpoint the one"):
        resolve("rsrefseg2", tmp_path)
    backend, found = resolve("rsrefseg2", tmp_path / "refsegrs.pth")
    assert backend.name == "rsrefseg2" and found == tmp_path / "refsegrs.pth"


def test_loading_is_strict(tmp_path):
    from georefseg.models.registry import load_model

    folder = write_installation(tmp_path / "extra")
    state = torch.load(folder / "rrsisd.pth", weights_only=True)
    state["state_dict"]["prompter.extra_queries"] = torch.zeros(3)
    torch.save(state, folder / "rrsisd.pth")
    with pytest.raises(ModelError, match=r"does not fit the rsrefseg2 model: 1 unexpected: prompter.extra_queries"):
        load_model("rsrefseg2", folder, device="cpu")
    del state["state_dict"]["prompter.extra_queries"]
    del state["state_dict"]["prompter.sparse_prompt_mlp.layers.0.bias"]
    torch.save(state, folder / "rrsisd.pth")
    with pytest.raises(ModelError, match=r"1 missing: prompter.sparse_prompt_mlp.layers.0.bias"):
        load_model("rsrefseg2", folder, device="cpu")


def test_a_checkpoint_with_python_objects_is_refused(tmp_path):
    path = tmp_path / "rrsisd.pth"
    torch.save({"state_dict": {"prompter.img_pe": torch.zeros(1)}, "meta": argparse.Namespace(epoch=1)}, path)
    with pytest.raises(ModelError, match="argparse.Namespace.*refusing to unpickle.*re-save its 'state_dict'"):
        checkpoint_state(path)
