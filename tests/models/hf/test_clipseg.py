"""CLIPSeg from a local Hugging Face folder: a small randomly initialised model of the real
architecture, saved with save_pretrained beside a tokenizer made here, loaded offline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from affine import Affine
from transformers import CLIPSegConfig, CLIPSegForImageSegmentation, CLIPSegProcessor, ViTImageProcessorPil

from georefseg.api import segment
from georefseg.errors import ModelError
from georefseg.models import list_models, load_model
from georefseg.models.hf.clipseg import CLIPSegSegmenter
from georefseg.models.registry import read_card, resolve
from tests.fixtures import clip_tokenizer, write_scene

INPUT_PX = 64  # the processor's resize (352 for the published weights)


def make_clipseg_folder(folder: Path, bias: float | None = None) -> Path:
    """save_pretrained of a small CLIPSeg; ``bias`` fixes every output logit to that value."""
    folder.mkdir(parents=True)
    tok = clip_tokenizer(folder)
    config = CLIPSegConfig(
        text_config={"vocab_size": len(tok), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "max_position_embeddings": 77, "bos_token_id": 0,
                     "eos_token_id": 1, "pad_token_id": 1},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 2,
                       "image_size": INPUT_PX, "patch_size": 16},
        projection_dim=16, extract_layers=[1, 2], reduce_dim=16, decoder_num_attention_heads=2,
        decoder_intermediate_size=32)
    torch.manual_seed(0)
    model = CLIPSegForImageSegmentation(config).eval()
    if bias is not None:  # known output through the real model: the last layer gives `bias` everywhere
        with torch.no_grad():
            model.decoder.transposed_convolution.weight.zero_()
            model.decoder.transposed_convolution.bias.fill_(bias)
    model.save_pretrained(folder)
    processor = ViTImageProcessorPil(size={"height": INPUT_PX, "width": INPUT_PX})
    CLIPSegProcessor(image_processor=processor, tokenizer=tok).save_pretrained(folder)
    # the processor config as the published folder has it (transformers' older file name and keys)
    (folder / "processor_config.json").unlink()
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "do_normalize": True, "do_rescale": True, "do_resize": True, "feature_extractor_type": "ViTImageProcessor",
        "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225], "processor_class": "CLIPSegProcessor",
        "resample": 2, "rescale_factor": 1 / 255, "size": {"height": INPUT_PX, "width": INPUT_PX}}))
    return folder


@pytest.fixture(scope="module")
def clipseg_dir(tmp_path_factory) -> Path:
    return make_clipseg_folder(tmp_path_factory.mktemp("clipseg") / "clipseg-small")


def test_loads_offline_from_a_folder_or_a_hub_snapshot(clipseg_dir, tmp_path, offline):
    model = load_model("clipseg", checkpoint=clipseg_dir, device="cpu")
    assert isinstance(model, CLIPSegSegmenter) and model.tile_size == INPUT_PX and model.min_overlap == 16
    assert resolve(clipseg_dir)[0].name == "clipseg"  # --model DIR: recognised from config.json
    snapshot = tmp_path / "models--CIDAS--clipseg-rd64-refined" / "snapshots" / "abc123"
    shutil.copytree(clipseg_dir, snapshot)
    backend, folder = resolve("clipseg", snapshot.parents[1])
    assert backend.name == "clipseg" and folder == snapshot
    assert read_card("clipseg", clipseg_dir).tiling == (INPUT_PX, INPUT_PX // 4)
    assert "clipseg" in [m["name"] for m in list_models()]
    assert model.min_object_px == (2 * 16) ** 2  # two decoder cells across


def test_a_tile_gives_what_transformers_own_pipeline_gives(clipseg_dir, offline):
    """The adapter's preprocessing, phrases in one pass and resize back to the tile equal
    transformers' processor + model, phrase by phrase, resized the same way."""
    model = load_model("clipseg", checkpoint=clipseg_dir, device="cpu")
    rng = np.random.default_rng(0)
    tiles = rng.integers(0, 256, (2, 96, 80, 3), dtype=np.uint8)  # tiles need not be the input size
    images = torch.from_numpy(tiles).permute(0, 3, 1, 2).float() / 255
    phrases = ["the red roof", "the storage tank near the river"]
    with torch.inference_mode():
        ours = model.segment_phrases(images, model.encode_text(phrases))
    net = CLIPSegForImageSegmentation.from_pretrained(str(clipseg_dir), local_files_only=True).eval()
    processor = CLIPSegProcessor.from_pretrained(str(clipseg_dir), local_files_only=True)
    for k, phrase in enumerate(phrases):
        inputs = processor(text=[phrase] * 2, images=list(tiles), return_tensors="pt", padding=True)
        with torch.inference_mode():
            logits = net(**inputs).logits.reshape(2, 1, INPUT_PX, INPUT_PX)
        expected = F.interpolate(logits, size=(96, 80), mode="bilinear", align_corners=False)
        assert torch.allclose(ours[:, k:k + 1], expected, atol=1e-5)
        with torch.inference_mode():
            alone = model.segment(images, model.encode_text([phrase] * 2)).logits
        assert torch.allclose(alone, expected, atol=1e-5)
    assert ours.shape == (2, 2, 96, 80)


def test_segment_puts_polygons_where_the_model_says_in_the_scene_crs(tmp_path, offline):
    """A CLIPSeg whose last layer says "yes" everywhere, on a UTM scene whose west half is
    nodata: the one polygon is the east half, to the metre, in the scene's CRS."""
    folder = make_clipseg_folder(tmp_path / "always", bias=8.0)
    img = np.full((3, 150, 200), 120, np.uint8)
    img[:, :, :80] = 0  # nodata
    scene = write_scene(tmp_path / "utm.tif", img, "EPSG:32616", Affine(0.5, 0, 740000, 0, -0.5, 3740000), nodata=0)
    result = segment(scene, "the red roof", tmp_path / "o.gpkg", model="clipseg", checkpoint=folder, device="cpu")
    written = gpd.read_file(tmp_path / "o.gpkg")
    assert written.crs.to_epsg() == 32616 and len(written) == 1
    assert written.total_bounds == pytest.approx([740040.0, 3739925.0, 740100.0, 3740000.0])
    assert written["area_m2"].iloc[0] == pytest.approx(120 * 150 * 0.25)
    assert result.model == "clipseg" and result.tiles > 1  # 64 px tiles with 16 px overlap


def test_a_broken_or_foreign_folder_is_one_clear_error(clipseg_dir, tmp_path, offline):
    broken = tmp_path / "broken"
    shutil.copytree(clipseg_dir, broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(ModelError, match=r"is a clipseg folder but lacks the weights \(model.safetensors or"):
        resolve("clipseg", broken)
    other = tmp_path / "bert"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelError, match="holds no clipseg weights: .*model_type 'bert'"):
        resolve("clipseg", other)
    with pytest.raises(ModelError, match="clipseg needs checkpoint DIR"):
        load_model("clipseg")


def test_evaluate_scores_clipseg_with_the_fields_metrics(clipseg_dir, tmp_path, capsys, offline):
    from georefseg import cli

    assert cli.run(["dataset", "synth", "-o", str(tmp_path / "ds"), "--n", "10", "--size", "128", "--workers", "1",
                    "--quiet"]) == 0
    metrics_file = tmp_path / "m.json"
    code = cli.run(["evaluate", "--data", str(tmp_path / "ds"), "--split", "all", "--model", "clipseg",
                    "--checkpoint", str(clipseg_dir), "--device", "cpu", "--json", str(metrics_file), "--quiet"])
    assert code == 0, capsys.readouterr().err
    metrics = json.loads(metrics_file.read_text())
    assert metrics["model"] == str(clipseg_dir) and metrics["n_target"] + metrics["n_no_target"] >= 10
    assert 0.0 <= metrics["mIoU"] <= 1.0 and {"oIoU", "prec@0.5", "prec@0.9"} <= set(metrics)
    assert "mIoU" in capsys.readouterr().out
