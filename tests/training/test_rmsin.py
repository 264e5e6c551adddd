"""RMSIN's recipe against its authors' training code, and its weights in their layout.

tests/assets/rmsin/train_step.npz holds three steps of the authors' own ``train.py`` code on a
fixed batch from fixed weights (tests/models/rmsin/make_train_fixture.py made it); here
``georefseg.training.train`` takes the same three steps from an ``--init`` checkpoint in the
authors' layout, on the same two samples written as a georefseg dataset.
"""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from georefseg.data.imageio import write_png
from georefseg.data.native import NativeWriter
from georefseg.errors import ModelError
from georefseg.models import load_model
from georefseg.models.rmsin.model import RMSIN, RMSINConfig
from georefseg.training import TrainConfig, train
from georefseg.training.rmsin import AUTHORS_ARGS, RMSINObjective, load_swin
from tests.models.rmsin.make_train_fixture import BERT, EPOCHS, OUT, SENTENCES, STEPS, batch_arrays
from tests.models.rmsin.rmsin_reference import deterministic_state

BERT_OVERRIDES = {k: v for k, v in BERT.items() if k in ("intermediate_size", "vocab_size")}


@pytest.fixture(scope="module")
def reference():
    with np.load(OUT) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def start(tmp_path_factory):
    """The fixture's dataset (two 480² samples) and its initial weights as an authors' checkpoint."""
    root = tmp_path_factory.mktemp("rmsin")
    images, masks = batch_arrays()
    writer = NativeWriter(root / "data", {"source": "the RMSIN training fixture"})
    for i, (image, mask, text) in enumerate(zip(images, masks, SENTENCES, strict=True)):
        write_png(writer.root / "images" / f"{i}.png", image)
        write_png(writer.root / "masks" / f"{i}.png", mask * 255)
        writer.add({"id": str(i), "image": f"images/{i}.png", "mask": f"masks/{i}.png", "expression": text,
                    "split": "train", "kinds": [], "category": None})
    writer.close()
    model = RMSIN(RMSINConfig("tiny", 12, bert=BERT_OVERRIDES))
    init = deterministic_state(model.state_dict())
    args = argparse.Namespace(**{**AUTHORS_ARGS, "swin_type": "tiny", "window12": True,
                                 "bert_config": BERT_OVERRIDES, "pretrained_swin_weights": ""})
    torch.save({"model": init, "args": args}, root / "init.pth")
    return root, init


def test_three_steps_match_the_authors(reference, start, tmp_path):
    root, init = start
    losses, lrs, first_grads, names = [], [], {}, {}

    def seen(module, args, output):  # the objective the loop runs: the model's parameter names
        if isinstance(module, RMSINObjective) and not names:
            names.update({id(p): n for n, p in module.model.named_parameters()})

    def stepping(optimizer, args, kwargs):
        lrs.append([g["lr"] for g in optimizer.param_groups])
        if not first_grads:
            first_grads.update({names[id(p)]: p.grad.detach().clone() for g in optimizer.param_groups
                                for p in g["params"] if p.grad is not None})
            first_grads["_in_groups"] = {names[id(p)] for g in optimizer.param_groups for p in g["params"]}

    hooks = [torch.nn.modules.module.register_module_forward_hook(seen),
             register_optimizer_step_pre_hook(stepping)]
    try:
        cfg = TrainConfig(data=str(root / "data"), out=str(tmp_path / "run"), model="rmsin",
                          checkpoint=str(root / "init.pth"), batch_size=2, epochs=STEPS * EPOCHS, max_steps=STEPS,
                          shuffle=False, augment=False, dropout=False, workers=0, calibrate=False, device="cpu")
        state = train(cfg, on_step=lambda pace: losses.append(pace["loss"]))
    finally:
        for h in hooks:
            h.remove()
    assert state.step == STEPS

    # Losses and learning rates.
    np.testing.assert_allclose(losses[0], reference["losses"][0], rtol=1e-6)
    np.testing.assert_allclose(losses, reference["losses"], rtol=1e-4)
    assert np.array_equal(np.array(lrs), reference["lrs"])

    # What is trained, and what is not.
    everything = set(init)
    in_groups = first_grads.pop("_in_groups")
    params = {n for n in names.values()}
    assert sorted(params - in_groups) == sorted(reference["not_in_optimizer"].tolist())
    no_grad = {n for n in params if n not in first_grads and n in in_groups}
    assert no_grad <= set(reference["no_gradient"].tolist())

    # First-step gradients, tensor by tensor: norms, and values at 64 fixed places. float32
    # backward through 12 BERT layers, 12 Swin blocks and batch norms differs from run to run
    # at ~1e-4 (this implementation with 1 thread against itself with 2 differs as much).
    biggest = max(float(reference[f"gradnorm/{n}"]) for n in first_grads)
    norm_err, value_err = [], []
    for n, grad in first_grads.items():
        theirs_norm = float(reference[f"gradnorm/{n}"])
        if theirs_norm < 1e-4 * biggest:
            continue  # vanishing: rounding decides its digits
        norm_err.append(abs(float(grad.norm()) - theirs_norm) / theirs_norm)
        ours, theirs = grad.flatten()[reference[f"pos/{n}"]].numpy(), reference[f"grad/{n}"]
        value_err.append(np.linalg.norm(ours - theirs) / max(np.linalg.norm(theirs), 1e-30))
    assert len(norm_err) > 400
    assert np.median(norm_err) < 2e-4 and np.quantile(norm_err, 0.9) < 1e-3 and max(norm_err) < 3e-2
    assert np.median(value_err) < 2e-3 and np.quantile(value_err, 0.9) < 5e-3
    print(f"gradients: {len(norm_err)} tensors, norm rel. error median {np.median(norm_err):.1e} "
          f"90% {np.quantile(norm_err, 0.9):.1e} max {max(norm_err):.1e}; values median {np.median(value_err):.1e}")

    # The weights after three steps, in the authors' layout.
    with torch.serialization.safe_globals([argparse.Namespace]):  # `args`, as their test.py reads it
        saved = torch.load(tmp_path / "run" / "model_last_RMSIN.pth", weights_only=True)
    assert set(saved) == {"model", "epoch", "args"} and set(vars(saved["args"])) >= set(AUTHORS_ARGS)
    after = saved["model"]
    assert set(after) == everything
    diffs = []
    for n in params:
        ours = after[n].flatten()[reference[f"pos/{n}"]].numpy()
        diffs.append(np.abs(ours - reference[f"after/{n}"]))
        if n in reference["not_in_optimizer"].tolist():
            assert torch.equal(after[n], init[n]), n  # never changes: bit for bit
    diffs = np.concatenate(diffs)
    # Every weight within 2e-4; nearly all far closer (the largest possible move is 3 · lr = 9e-5): AdamW
    # turns rounding-level gradients into ±lr steps, lr = 3e-5, so a few differ by up to 2·lr per step.
    assert diffs.max() <= 2e-4 and np.quantile(diffs, 0.99) <= 3e-5 and np.median(diffs) <= 3e-6
    print(f"weights after {STEPS} steps: max |Δ| {diffs.max():.1e}, 99% ≤ {np.quantile(diffs, 0.99):.1e}, "
          f"median {np.median(diffs):.1e}")
    # The result is an RMSIN checkpoint the engine loads.
    assert load_model("rmsin", tmp_path / "run" / "model_last_RMSIN.pth", device="cpu").config.swin_type == "tiny"


def test_swin_file_loads_as_the_authors_load_it(tmp_path):
    """A Swin classification checkpoint (head, final norm, window-7 tables) into the backbone."""
    model = RMSIN(RMSINConfig("tiny", 12, bert=BERT_OVERRIDES))
    own = model.backbone.state_dict()
    table = "layers.0.blocks.0.attn.relative_position_bias_table"
    swin = {k: torch.full_like(v, 0.5) for k, v in own.items() if k.startswith(("patch_embed.", "layers.0.blocks.0."))}
    swin[table] = torch.arange(13 * 13 * 3, dtype=torch.float32).reshape(169, 3)  # window 7: 13² rows
    swin["head.weight"] = torch.zeros(21841, 768)
    torch.save({"model": swin}, tmp_path / "swin_tiny_patch4_window7_224_22k.pth")
    counts = load_swin(model.backbone, tmp_path / "swin_tiny_patch4_window7_224_22k.pth")
    assert counts["loaded"] == len(swin) - 1 and counts["in_file"] == len(swin)
    after = model.backbone.state_dict()
    assert torch.equal(after["patch_embed.proj.weight"], torch.full_like(own["patch_embed.proj.weight"], 0.5))
    assert after[table].shape == (23 * 23, 3)  # resized bicubically to window 12's table
    grid = swin[table].permute(1, 0).reshape(1, 3, 13, 13)
    expected = torch.nn.functional.interpolate(grid, size=(23, 23), mode="bicubic").reshape(3, -1).permute(1, 0)
    assert torch.equal(after[table], expected)
    torch.save({"model": {"head.weight": torch.zeros(3, 3)}}, tmp_path / "other.pth")
    with pytest.raises(ModelError, match="none of its 1 tensors fits"):
        load_swin(model.backbone, tmp_path / "other.pth")


def test_starting_point_is_required(start, tmp_path):
    root, _ = start
    with pytest.raises(ModelError, match="needs swin"):
        train(TrainConfig(data=str(root / "data"), out=str(tmp_path / "o"), model="rmsin", workers=0))


def test_built_from_the_swin_file_and_a_bert_folder(tmp_path):
    """The authors' starting point: the Swin file into the backbone, BERT from its folder."""
    from transformers import BertConfig, BertModel

    from georefseg.models.rmsin.model import BERT_BASE
    from georefseg.training.rmsin import RECIPE

    bert = BertModel(BertConfig(**{**BERT_BASE, **BERT_OVERRIDES}), add_pooling_layer=True)
    bert.save_pretrained(tmp_path / "bert")
    backbone = RMSIN(RMSINConfig("tiny", 12, bert=BERT_OVERRIDES)).backbone.state_dict()
    swin = {"patch_embed.proj.weight": torch.full_like(backbone["patch_embed.proj.weight"], 0.25)}
    torch.save({"model": swin}, tmp_path / "swin_tiny_patch4_window12_384_22k.pth")
    model = RECIPE.build(TrainConfig(data="unused", out="unused", model="rmsin", size=480, arch={"swin_type": "tiny"},
                                     swin=str(tmp_path / "swin_tiny_patch4_window12_384_22k.pth"),
                                     bert=str(tmp_path / "bert")))
    assert model.training and model.config.window_size == 12 and model.config.bert == BERT_OVERRIDES
    assert torch.equal(model.backbone.patch_embed.proj.weight, swin["patch_embed.proj.weight"])
    ours = model.text_encoder.state_dict()
    assert all(torch.equal(ours[k], v) for k, v in bert.state_dict().items() if not k.startswith("pooler."))
