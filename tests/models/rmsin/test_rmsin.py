"""RMSIN: key-for-key compatibility with the authors' checkpoints, logit parity with their code
(reference in tests/assets/rmsin, described in rmsin_reference.py), safe loading and conversion."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from georefseg.errors import ModelError
from georefseg.models import load_model
from georefseg.models.rmsin.checkpoint import read_pth
from georefseg.models.rmsin.model import (
    RMSIN,
    RMSINConfig,
    load_rmsin,
    save_rmsin_safetensors,
    tokenize_rmsin,
)
from tests.models.rmsin.rmsin_reference import ASSETS, deterministic_state, normalise, sample_logits, weight_checksum


@pytest.fixture(scope="module")
def reference() -> tuple[dict, dict[str, np.ndarray]]:
    meta = json.loads((ASSETS / "reference.json").read_text())
    with np.load(ASSETS / "reference.npz") as npz:
        return meta, dict(npz)


@pytest.fixture(scope="module")
def inputs(reference) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    meta, arrays = reference
    return (normalise(arrays["image"]), torch.tensor([meta["input_ids"]]),
            torch.tensor([meta["attention_mask"]]))


@pytest.fixture(scope="module")
def tiny(reference) -> RMSIN:
    """The small variant with the deterministic weights the reference was computed with."""
    model = RMSIN(RMSINConfig.from_args(reference[0]["variants"]["tiny"]["args"]))
    model.load_state_dict(deterministic_state(model.state_dict()), strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def tiny_logits(tiny, inputs) -> torch.Tensor:
    with torch.no_grad():
        return tiny(*inputs)


def train_args(**overrides) -> argparse.Namespace:
    """The Namespace the authors' args.py parses for a training run (their defaults)."""
    args = dict(amsgrad=False, batch_size=8, bert_tokenizer="bert-base-uncased",
                ck_bert="bert-base-uncased", dataset="rrsisd", ddp_trained_weights=False,
                device="cuda:0", epochs=40, fusion_drop=0.0, img_size=480, local_rank=0, lr=3e-5,
                mha="", model="lavt_one", model_id="RMSIN", output_dir="./checkpoints/",
                pin_mem=False, pretrained_swin_weights="./pretrained_weights/"
                "swin_base_patch4_window12_384_22k.pth", print_freq=10,
                refer_data_root="./refer/data/", resume="", split="test", splitBy="unc",
                swin_type="base", weight_decay=1e-2, window12=False, workers=8)
    return argparse.Namespace(**{**args, **overrides})


def tiny_train_args() -> argparse.Namespace:
    return train_args(swin_type="tiny", mha="3-3-3-3",
                      pretrained_swin_weights="./pretrained_weights/swin_tiny_patch4_window7_224.pth")


def save_authors_checkpoint(path: Path, model: dict, bert: dict | None, args: argparse.Namespace
                            ) -> None:
    """torch.save the dict train.py writes, with a genuine AdamW and LambdaLR state after a step
    (over two small parameters: the file layout, not the optimizer's size, is under test)."""
    weights = [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(3))]
    optimizer = torch.optim.AdamW([{"params": weights[:1], "weight_decay": 0.0},
                                   {"params": weights[1:]}], lr=3e-5, weight_decay=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda x: (1 - x / 1000) ** 0.9)
    sum(w.sum() for w in weights).backward()
    optimizer.step()
    scheduler.step()
    ckpt = {"model": model, "optimizer": optimizer.state_dict(), "epoch": 7, "args": args,
            "lr_scheduler": scheduler.state_dict()}
    if bert is not None:
        ckpt["bert_model"] = bert
    torch.save(ckpt, path)


def split_bert(state: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    """(backbone + classifier, BERT without prefix): the --model lavt layout."""
    model = {k: v for k, v in state.items() if not k.startswith("text_encoder.")}
    bert = {k[len("text_encoder."):]: v for k, v in state.items() if k.startswith("text_encoder.")}
    return model, bert


def test_base_matches_authors_key_manifest():
    manifest = json.loads((ASSETS / "manifest_base.json").read_text())
    model = RMSIN(RMSINConfig.from_args(train_args()))
    assert model.config == RMSINConfig("base", 12, (1, 1, 1, 1), 0.0)
    ours, bert = split_bert({k: list(v.shape) for k, v in model.state_dict().items()})
    assert len(manifest["model"]) == 910 and len(manifest["text_encoder"]) == 197
    assert ours == manifest["model"]
    assert bert == manifest["text_encoder"]
    seg_params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("text_"))
    assert seg_params == 131_145_515


def test_tiny_logits_match_authors_code(reference, tiny, tiny_logits):
    meta, arrays = reference
    assert weight_checksum(tiny.state_dict()) == pytest.approx(
        meta["variants"]["tiny"]["checksum"], rel=1e-9), "the deterministic weights changed"
    assert tiny_logits.shape == (1, 2, 480, 480)
    # Our float32 against their float64: only float32 rounding remains (about 1e-5 here).
    np.testing.assert_allclose(sample_logits(tiny_logits), arrays["logits_tiny"], rtol=0, atol=2e-4)


def test_token_ids_match_authors_tokenisation(reference, tiny):
    meta, _ = reference
    probes = meta["token_probes"]
    assert tokenize_rmsin(list(probes)).input_ids.tolist() == list(probes.values())
    batch = tiny.encode_text([meta["expression"]])
    assert batch.input_ids[0].tolist() == meta["input_ids"]
    assert batch.attention_mask[0].tolist() == meta["attention_mask"]


def test_segment_resizes_and_returns_target_minus_background(reference, tiny, tiny_logits):
    meta, arrays = reference
    text = tiny.encode_text([meta["expression"]])
    images01 = torch.from_numpy(arrays["image"]).float()[None] / 255
    with torch.no_grad():
        same = tiny.segment(images01, text)
        other = tiny.segment(torch.rand(1, 3, 512, 512), text)
    assert same.presence is None
    torch.testing.assert_close(same.logits, tiny_logits[:, 1:] - tiny_logits[:, :1])
    assert other.logits.shape == (1, 1, 512, 512) and torch.isfinite(other.logits).all()


def test_loads_authors_checkpoint_strictly(tiny, tmp_path):
    model, bert = split_bert(tiny.state_dict())
    # train.py --model lavt: BERT saved separately, through its DDP wrapper ("module.").
    path = tmp_path / "model_best_RMSIN.pth"
    save_authors_checkpoint(path, model, {"module." + k: v for k, v in bert.items()},
                            tiny_train_args())
    loaded = load_rmsin(path)
    assert not loaded.training and loaded.config == tiny.config
    expected = tiny.state_dict()
    got = loaded.state_dict()
    assert got.keys() == expected.keys()
    assert all(torch.equal(got[k], expected[k]) for k in expected)


def test_both_authors_layouts_read_the_same(tmp_path):
    """--model lavt_one keeps BERT inside 'model' as text_encoder.*; --model lavt saves it as
    'bert_model' (DDP-prefixed). Both read as the same RMSIN state."""
    state = {"backbone.a": torch.ones(2), "text_encoder.embeddings.b": torch.zeros(3)}
    model, bert = split_bert(state)
    save_authors_checkpoint(tmp_path / "one.pth", state, None, tiny_train_args())
    ddp_bert = {"module." + k: v for k, v in bert.items()}
    save_authors_checkpoint(tmp_path / "two.pth", model, ddp_bert, tiny_train_args())
    one, two = read_pth(tmp_path / "one.pth"), read_pth(tmp_path / "two.pth")
    assert one.state.keys() == two.state.keys() == state.keys()
    assert one.args == vars(tiny_train_args())


def test_mismatched_checkpoint_names_the_keys(tiny, tmp_path):
    state = dict(tiny.state_dict())
    del state["classifier.conv1_1.bias"]
    state["backbone.layers.0.extra.weight"] = torch.zeros(3)
    state["backbone.norm3.weight"] = torch.ones(5)
    path = tmp_path / "bad.pth"
    save_authors_checkpoint(path, state, None, tiny_train_args())
    with pytest.raises(ModelError) as err:
        load_rmsin(path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    assert "1 missing: classifier.conv1_1.bias" in msg
    assert "1 unexpected: backbone.layers.0.extra.weight" in msg
    assert "1 of another shape: backbone.norm3.weight (5,)≠(768,)" in msg


def _touch(path: str) -> None:
    Path(path).touch()


class Payload:
    """Unpickling this would run code: a checkpoint must never be able to."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return _touch, (str(self.marker),)


def test_refuses_arbitrary_pickled_objects(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    torch.save({"model": {"backbone.a": torch.ones(1)}, "args": Payload(marker)}, path)
    with pytest.raises(ModelError, match="refusing to unpickle") as err:
        load_rmsin(path)
    assert "_touch" in str(err.value) and not marker.exists()


def test_damaged_files_are_clear_errors(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ModelError, match="damaged or not a file written by torch.save"):
        load_rmsin(junk)
    save_authors_checkpoint(tmp_path / "ok.pth", {"backbone.a": torch.ones(1)}, None, train_args())
    (tmp_path / "cut.pth").write_bytes((tmp_path / "ok.pth").read_bytes()[:500])
    with pytest.raises(ModelError, match="damaged"):
        load_rmsin(tmp_path / "cut.pth")
    (tmp_path / "cut.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(ModelError, match="not a readable safetensors file"):
        load_rmsin(tmp_path / "cut.safetensors")


def test_missing_bert_is_a_clear_error(tmp_path):
    path = tmp_path / "no_bert.pth"
    save_authors_checkpoint(path, {"backbone.a": torch.ones(1)}, None, tiny_train_args())
    with pytest.raises(ModelError, match="holds no BERT weights.*pass bert_dir"):
        load_rmsin(path)


@pytest.mark.slow
def test_bert_from_local_folder(tiny, tmp_path):
    model, _ = split_bert(tiny.state_dict())
    path = tmp_path / "no_bert.pth"
    save_authors_checkpoint(path, model, None, tiny_train_args())
    folder = tmp_path / "bert-base-uncased"
    tiny.text_encoder.save_pretrained(folder)
    loaded = load_rmsin(path, bert_dir=folder)
    assert all(torch.equal(v, tiny.state_dict()[k]) for k, v in loaded.state_dict().items())
    with pytest.raises(ModelError, match="does not exist"):
        load_rmsin(path, bert_dir=tmp_path / "nowhere")


@pytest.mark.slow
def test_safetensors_round_trip_gives_identical_logits(tiny, tiny_logits, inputs, tmp_path):
    path = tmp_path / "rmsin_tiny.safetensors"
    save_rmsin_safetensors(tiny, path)
    loaded = load_rmsin(path)
    assert loaded.config == tiny.config
    with torch.no_grad():
        logits = loaded(*inputs)
    assert torch.equal(logits, tiny_logits)


def test_forward_needs_480_pixels(tiny, inputs):
    _, ids, mask = inputs
    with pytest.raises(ModelError, match="480×480.*segment"):
        tiny(torch.zeros(1, 3, 512, 512), ids, mask)


def test_config_follows_authors_rules():
    # Training infers the window from the Swin weights' file name; --window12 forces it.
    assert RMSINConfig.from_args(train_args()).window_size == 12
    assert RMSINConfig.from_args(train_args(pretrained_swin_weights="")).window_size == 7
    assert RMSINConfig.from_args(train_args(pretrained_swin_weights="", window12=True)
                                 ).window_size == 12
    assert RMSINConfig.from_args(train_args(mha="4-4-4-4")).mha == (4, 4, 4, 4)
    assert RMSINConfig.from_args(None) == RMSINConfig()
    with pytest.raises(ModelError, match="swin_type"):
        RMSINConfig.from_args(train_args(swin_type="huge"))
    with pytest.raises(ModelError, match="mha"):
        RMSINConfig.from_args(train_args(mha="4-x"))


@pytest.mark.slow
def test_bert_pooler_keys_are_ignored(tiny, inputs, tmp_path):
    """The authors' test script loads bert_model strictly with BERT's pooler; RMSIN never uses
    the pooled output, so a file with pooler keys loads and gives the same logits."""
    model, bert = split_bert(tiny.state_dict())
    width = bert["embeddings.word_embeddings.weight"].shape[1]
    with_pooler = {**bert, "pooler.dense.weight": torch.randn(width, width), "pooler.dense.bias": torch.randn(width)}
    save_authors_checkpoint(tmp_path / "pooler.pth", model, with_pooler, tiny_train_args())
    save_authors_checkpoint(tmp_path / "plain.pth", model, bert, tiny_train_args())
    a, b = load_rmsin(tmp_path / "pooler.pth"), load_rmsin(tmp_path / "plain.pth")
    with torch.no_grad():
        assert torch.equal(a(*inputs), b(*inputs))


@pytest.mark.slow
def test_authors_output_folder_is_recognised(tiny, tmp_path):
    run = tmp_path / "checkpoints"  # train.py's --output_dir
    run.mkdir()
    save_authors_checkpoint(run / "model_best_RMSIN.pth", tiny.state_dict(), None, tiny_train_args())
    (run / "log.txt").write_text("epoch 7")
    by_folder = load_model(run, device="cpu")
    by_name = load_model("rmsin", checkpoint=run, device="cpu")
    assert by_folder.name == by_name.name == "rmsin" and by_folder.config == tiny.config
    assert all(torch.equal(v, by_name.state_dict()[k]) for k, v in by_folder.state_dict().items())


@pytest.mark.slow
def test_segment_sample_scene_with_authors_checkpoint(tiny, tmp_path, capsys):
    """`georefseg segment --model rmsin --checkpoint` on a 600 × 600 px cut of the README's scene,
    from a checkpoint written in the authors' layout (--model lavt_one: BERT inside 'model')."""
    import geopandas as gpd
    import rasterio
    from rasterio.windows import Window

    from georefseg import cli

    ckpt = tmp_path / "model_best_rrsisd.pth"
    save_authors_checkpoint(ckpt, tiny.state_dict(), None, tiny_train_args())
    sample = Path(__file__).resolve().parents[3] / "sample_data" / "scene.tif"
    scene = tmp_path / "cut.tif"
    with rasterio.open(sample) as src:
        window = Window(200, 300, 600, 600)
        profile = {**src.profile, "width": 600, "height": 600, "transform": src.window_transform(window)}
        with rasterio.open(scene, "w", **profile) as dst:
            dst.write(src.read(window=window))
    out, prob = tmp_path / "tanks.gpkg", tmp_path / "prob.tif"
    code = cli.run(["segment", str(scene), "the large storage tank near the river", "-o", str(out), "--prob",
                    str(prob), "--model", "rmsin", "--checkpoint", str(ckpt), "--device", "cpu", "--json"])
    assert code == 0, capsys.readouterr().err
    doc = json.loads(capsys.readouterr().out)
    assert doc["model"] == "rmsin" and doc["tiles"] == doc["windows_read"] == 4
    with rasterio.open(prob) as p, rasterio.open(scene) as s:
        assert p.transform == s.transform and p.shape == s.shape
        values = p.read(1)
    assert np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1
    gdf = gpd.read_file(out)
    assert gdf.crs.to_epsg() == 32633 and set(gdf["model"]) <= {"rmsin"} and len(gdf) == doc["feature_count"]
