"""The backend table: models by name, by file or by folder; refusing what does not fit."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from georefseg.errors import ModelError, WeightsNotFoundError
from georefseg.expression import parse_expression
from georefseg.models import list_models, load_model
from georefseg.models.device import resolve_device
from georefseg.models.registry import BACKENDS, read_card


def test_weights_file_round_trip(tiny_weights):
    model = load_model(str(tiny_weights), device="cpu")
    assert model.name == "tiny" and not model.training
    assert model.config.widths == [8, 16, 32, 48] and model.tile_size == 256
    again = load_model("tiny", checkpoint=tiny_weights, device="cpu")
    for (k, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), k


def test_tiling_comes_from_the_weights(tiny_weights):
    assert read_card(tiny_weights).tiling == (256, 32)  # the file's own config, not the class default
    assert read_card("tiny", tiny_weights).tiling == (256, 32)
    assert read_card("tiny").tiling == (512, 64)  # the shipped weights
    assert read_card("rmsin", None).tiling == (480, 96)


def test_a_folder_is_recognised_by_its_contents(tiny_weights, tmp_path):
    run = tmp_path / "runs" / "mine"  # what `georefseg train -o runs/mine` leaves
    run.mkdir(parents=True)
    shutil.copy(tiny_weights, run / "best.safetensors")
    (run / "last.pt").write_bytes(b"resumable state")
    model = load_model(run, device="cpu")
    assert model.name == "tiny" and model.tile_size == 256
    assert load_model("tiny", checkpoint=run, device="cpu").config.widths == [8, 16, 32, 48]


def test_list_models_is_the_table():
    listed = list_models()
    assert [m["name"] for m in listed] == list(BACKENDS) == ["tiny", "rmsin", "clipseg", "sam3", "rsrefseg2"]
    assert all(m["summary"] and m["needs"] for m in listed)


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


def test_unknown_and_unrecognisable_are_clear_errors(tmp_path):
    with pytest.raises(ModelError, match="unknown model 'nope': known models are tiny .*; rmsin") as err:
        load_model("nope")
    assert err.value.param == "model"
    with pytest.raises(ModelError, match="needs weights: pass checkpoint") as err:
        load_model("rmsin")
    with pytest.raises(WeightsNotFoundError, match="checkpoint /no/such/file.safetensors does not exist") as err:
        load_model("tiny", checkpoint="/no/such/file.safetensors")
    assert isinstance(err.value, FileNotFoundError) and isinstance(err.value, ValueError)
    assert err.value.render("--checkpoint").startswith("--checkpoint /no/such")
    with pytest.raises(FileNotFoundError):
        load_model("weights/missing.pth")
    # something that exists but is nobody's weights: say what it holds and what is known
    folder = tmp_path / "other"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert"}')
    (folder / "vocab.txt").write_text("[PAD]")
    with pytest.raises(ModelError, match=r"config.json, vocab.txt \(config.json says model_type 'bert'\)"
                                         r".*Known models: tiny"):
        load_model(folder)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(ModelError, match="is not weights any known model reads: it is a .pth file of 16 bytes"):
        load_model(junk)
    with pytest.raises(ModelError, match="holds no rmsin weights"):
        load_model("rmsin", checkpoint=junk)


def test_tiny_weights_are_not_taken_for_rmsin(tiny_weights):
    with pytest.raises(ModelError, match="holds no rmsin weights: it is a safetensors file of model 'tiny'"):
        load_model("rmsin", checkpoint=tiny_weights)


def test_devices():
    with pytest.raises(ModelError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_the_shipped_card_knows_what_tiny_was_trained_on():
    card = read_card("tiny")
    assert {"storage tank", "ship", "river"} <= set(card.vocabulary)
    assert card.unknown_word("the white storage tank") is None
    assert card.unknown_word(parse_expression("the oil tanks near the river").subject) is None  # as the reader asks
    assert card.unknown_word("the purple elephant") == "elephant" and card.unknown_word("the --help") == "help"
    assert card.unknown_word("油罐") == "油罐"  # nothing the reader can read as English is known
    assert read_card("rmsin").vocabulary is None  # an open vocabulary: its own scores decide
