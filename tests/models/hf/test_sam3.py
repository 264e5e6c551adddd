"""SAM 3 from a local Hugging Face folder: a small randomly initialised model of the real
architecture, saved with save_pretrained beside a tokenizer made here, loaded offline."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F
from affine import Affine
from shapely.geometry import box
from transformers import Sam3Config, Sam3Model

from georefseg.api import Segmenter, SegmentOptions
from georefseg.errors import ModelError
from georefseg.models import list_models, load_model
from georefseg.models.base import TextBatch
from georefseg.models.hf.sam3 import SAM3Segmenter
from georefseg.models.registry import read_card, resolve
from tests.fixtures import clip_tokenizer, write_scene

INPUT_PX = 112  # the processor's resize (1008 for the published weights)
QUERIES = 10


def make_sam3_folder(folder: Path) -> Path:
    folder.mkdir(parents=True)
    tok = clip_tokenizer(folder)
    tok.save_pretrained(folder)
    config = Sam3Config(
        vision_config={"backbone_config": {"model_type": "sam3_vit_model", "hidden_size": 32, "intermediate_size": 64,
                                           "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": INPUT_PX,
                                           "patch_size": 14, "window_size": 4, "global_attn_indexes": [1],
                                           "pretrain_image_size": 56},
                       "fpn_hidden_size": 32},
        text_config={"vocab_size": len(tok), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "projection_dim": 32, "bos_token_id": 0, "eos_token_id": 1,
                     "pad_token_id": 1},
        geometry_encoder_config={"hidden_size": 32, "num_layers": 1, "num_attention_heads": 2, "intermediate_size": 64},
        detr_encoder_config={"hidden_size": 32, "num_layers": 1, "num_attention_heads": 2, "intermediate_size": 64},
        detr_decoder_config={"hidden_size": 32, "num_layers": 1, "num_queries": QUERIES, "num_attention_heads": 2,
                             "intermediate_size": 64},
        mask_decoder_config={"hidden_size": 32, "num_attention_heads": 2})
    torch.manual_seed(0)
    Sam3Model(config).eval().save_pretrained(folder)
    (folder / "processor_config.json").write_text(json.dumps({
        "image_processor": {"do_normalize": True, "do_rescale": True, "do_resize": True,
                            "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
                            "image_processor_type": "Sam3ImageProcessor", "rescale_factor": 1 / 255,
                            "size": {"height": INPUT_PX, "width": INPUT_PX}},
        "processor_class": "Sam3Processor"}))
    return folder


@pytest.fixture(scope="module")
def sam3_dir(tmp_path_factory) -> Path:
    return make_sam3_folder(tmp_path_factory.mktemp("sam3") / "sam3-small")


def test_loads_offline_and_is_recognised_from_its_config(sam3_dir, tmp_path, offline):
    model = load_model("sam3", checkpoint=sam3_dir, device="cpu")
    assert isinstance(model, SAM3Segmenter) and model.tile_size == INPUT_PX and model.min_overlap == INPUT_PX // 4
    assert resolve(sam3_dir)[0].name == "sam3" and read_card("sam3", sam3_dir).tiling == (INPUT_PX, INPUT_PX // 4)
    snapshot = tmp_path / "models--facebook--sam3" / "snapshots" / "0123abc"
    shutil.copytree(sam3_dir, snapshot)
    assert resolve("sam3", snapshot.parents[1]) == (resolve("sam3", snapshot)[0], snapshot)
    assert "sam3" in [m["name"] for m in list_models()]


def test_a_tile_gives_what_the_model_and_its_post_processing_give(sam3_dir, offline):
    """One pass per tile for all phrases equals the model's own forward per phrase, scored and
    thresholded as transformers' post_process_instance_segmentation documents (query × presence
    sigmoid above the threshold; masks resized bilinearly to the tile and cut at 0.5)."""
    model = load_model("sam3", checkpoint=sam3_dir, device="cpu")
    rng = np.random.default_rng(1)
    tiles = torch.from_numpy(rng.integers(0, 256, (2, 3, 96, 80)).astype(np.float32) / 255)
    phrases = ["the red roof", "the storage tank"]
    net = Sam3Model.from_pretrained(str(sam3_dir), local_files_only=True).eval()
    x = F.interpolate((tiles * 255).round(), size=(INPUT_PX, INPUT_PX), mode="bilinear", align_corners=False,
                      antialias=True) / 255
    pixel_values = (x - 0.5) / 0.5  # the processor config's rescale and normalisation, written out
    reference = []
    for phrase in phrases:
        enc = model.tokenizer([phrase] * 2, padding=True, return_tensors="pt")
        with torch.inference_mode():
            out = net(pixel_values=pixel_values, input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        reference.append((out.pred_logits.sigmoid() * out.presence_logits.sigmoid(),
                          F.interpolate(out.pred_masks.sigmoid(), size=(96, 80), mode="bilinear", align_corners=False)))
    threshold = float(torch.cat([s.flatten() for s, _ in reference]).median())  # keep some, drop some
    model.card = replace(model.card, threshold=threshold)  # the default cut-off comes from the card
    with torch.inference_mode():
        pred = model.predict(tiles, model.encode_text(phrases))
    kept = 0
    for k, (scores, masks) in enumerate(reference):
        for b in range(2):
            keep = scores[b] > threshold
            ours = pred.instances[b][k]
            assert torch.allclose(ours.scores, scores[b][keep], atol=1e-5)
            assert torch.equal(ours.masks, masks[b][keep] > 0.5)
            kept += int(keep.sum())
        dense = (masks * (scores * (scores > threshold))[:, :, None, None]).amax(1).clamp(1e-6, 1 - 1e-6)
        assert torch.allclose(torch.sigmoid(pred.logits[:, k]), dense, atol=1e-5)
        with torch.inference_mode():
            alone = model.segment(tiles, model.encode_text([phrases[k]] * 2)).logits
        assert torch.allclose(alone[:, 0], pred.logits[:, k], atol=1e-5)
    assert 0 < kept < 2 * 2 * QUERIES


def test_segment_writes_each_instance_once_in_the_scene_crs(sam3_dir, tmp_path, offline):
    model = load_model("sam3", checkpoint=sam3_dir, device="cpu")
    model.card = replace(model.card, threshold=0.0)  # every query an instance: the plumbing, not the (random)
    # model, is tested
    img = np.random.default_rng(2).integers(0, 256, (3, 150, 200)).astype(np.uint8)
    transform = Affine(0.5, 0, 740000, 0, -0.5, 3740000)
    scene = write_scene(tmp_path / "utm.tif", img, "EPSG:32616", transform)
    with Segmenter(model, options=SegmentOptions(candidates=True, min_area_m2=0)) as seg:
        result = seg.run(scene, "the red roofs", tmp_path / "o.gpkg", prob=tmp_path / "p.tif")
    written = gpd.read_file(tmp_path / "o.gpkg")
    assert written.crs.to_epsg() == 32616 and len(written) == result.grounding["candidates"] > 0
    assert result.tiles == 6 and len(written) <= result.tiles * QUERIES  # each instance from one tile only
    frame = box(740000, 3739925, 740100, 3740000)
    assert all(frame.buffer(1e-6).contains(g) for g in written.geometry)
    with rasterio.open(tmp_path / "p.tif") as p:
        assert p.crs.to_epsg() == 32616 and p.shape == (150, 200) and p.transform == transform


def test_a_broken_or_foreign_folder_is_one_clear_error(sam3_dir, tmp_path, offline):
    broken = tmp_path / "broken"
    shutil.copytree(sam3_dir, broken)
    (broken / "processor_config.json").unlink()
    with pytest.raises(ModelError, match=r"is a sam3 folder but lacks the processor config"):
        resolve(broken)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="holds no sam3 weights: it is an empty folder"):
        resolve("sam3", tmp_path / "empty")
    with pytest.raises(ModelError, match="sam3 needs checkpoint DIR"):
        load_model("sam3")


def test_evaluate_runs_sam3_through_the_fields_metrics(sam3_dir, tmp_path, offline):
    from georefseg.data import open_dataset
    from georefseg.data.synth import write_synthetic_dataset
    from georefseg.evaluate import evaluate

    write_synthetic_dataset(tmp_path / "ds", 4, seed=3, size=128, workers=1)
    samples = list(open_dataset(tmp_path / "ds"))
    metrics = evaluate(load_model("sam3", checkpoint=sam3_dir, device="cpu"), samples, grounding=True)
    assert metrics["n_target"] + metrics["n_no_target"] == len(samples) > 0
    assert 0.0 <= metrics["mIoU"] <= 1.0 and metrics["presence_acc"] is not None


class KnownSam3:
    """Stands in for the network only, with outputs known from the image: each 4-connected
    region of one shade of red is a query (mask logit +8 inside, -8 outside; query and presence
    logits +4), the other queries say nothing (-8). Everything after the network — SAM 3's
    post-processing, instances, tiles, polygons — is the real code."""

    def __init__(self, queries: int = 6):
        self.queries = queries

    def get_vision_features(self, pixel_values):
        return pixel_values

    def __call__(self, vision_embeds, text_embeds, attention_mask):
        from scipy import ndimage

        x = vision_embeds * 0.5 + 0.5  # undo the normalisation: 0–1
        b, _, h, w = x.shape
        masks = torch.full((b, self.queries, h, w), -8.0)
        logits = torch.full((b, self.queries), -8.0)
        for i in range(b):
            red = (x[i, 0] > 0.6) & (x[i, 1] < 0.3)
            shade = (x[i, 0] * 255).round().int() // 16
            q = 0
            for value in torch.unique(shade[red]):
                labels, n = ndimage.label((red & (shade == value)).numpy())
                for j in range(1, n + 1):
                    masks[i, q][torch.from_numpy(labels == j)] = 8.0
                    logits[i, q] = 4.0
                    q += 1
        return SimpleNamespace(pred_logits=logits, pred_masks=masks, presence_logits=torch.full((b, 1), 4.0))


def test_known_instances_come_out_once_each_where_they_are(sam3_dir, tmp_path, offline):
    """Two touching roofs of different shades and one in the overlap of two tiles, through SAM 3's
    post-processing and the engine: three polygons, exactly where the roofs are, in the CRS."""
    real = load_model("sam3", checkpoint=sam3_dir, device="cpu")
    model = SAM3Segmenter(KnownSam3(), real.tokenizer, {"size": INPUT_PX, "rescale_factor": 1 / 255,
                                                        "image_mean": [0.5] * 3, "image_std": [0.5] * 3}, real.card)
    model.encode_text = lambda texts: TextBatch(torch.zeros(len(texts), 2, dtype=torch.long),
                                                torch.ones(len(texts), 2, dtype=torch.long),
                                                torch.zeros(len(texts), 2, 4))
    img = np.full((3, 150, 200), 90, np.uint8)
    roofs = {"A": ((100, 130, 10, 40), 250), "B": ((100, 130, 40, 70), 200), "C": ((10, 30, 86, 104), 250)}
    for (r0, r1, c0, c1), red in roofs.values():
        img[:, r0:r1, c0:c1] = np.array([red, 25, 25], np.uint8)[:, None, None]
    transform = Affine(0.5, 0, 740000, 0, -0.5, 3740000)
    scene = write_scene(tmp_path / "roofs.tif", img, "EPSG:32616", transform)
    with Segmenter(model, options=SegmentOptions(min_area_m2=0)) as seg:
        result = seg.run(scene, "the red roofs", tmp_path / "o.gpkg")
    written = gpd.read_file(tmp_path / "o.gpkg")
    assert result.tiles == 6 and written.crs.to_epsg() == 32616 and len(written) == 3
    for (r0, r1, c0, c1), _ in roofs.values():
        expected = box(740000 + 0.5 * c0, 3740000 - 0.5 * r1, 740000 + 0.5 * c1, 3740000 - 0.5 * r0)
        assert sum(g.symmetric_difference(expected).area < 1e-6 for g in written.geometry) == 1
    # evidence = the instance score (query × presence) × the support of its 4 × 4 px mask cells
    score, pixels = torch.sigmoid(torch.tensor(4.0)).item() ** 2, written["area_m2"] / 0.25
    assert written["evidence"].tolist() == pytest.approx(list(score * pixels / (pixels + 64)), abs=1e-4)
