"""RSRefSeg 2 against its authors' code, and through the engine.

The parity fixture (``fixture/``, made by ``make_fixture.py`` with the authors' model code,
transformers 4.53.1, peft 0.16.0 and Meta's sam2 1.1.0) holds their ``encode_decode`` logits for
two images — one letterboxed — and two sentences, the shorter padded in the batch as theirs is.
"""

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch
from affine import Affine

from georefseg import segment
from georefseg.data.samples import RefSample
from georefseg.evaluate import evaluate
from georefseg.metrics import DEFINITIONS
from georefseg.models.registry import load_model
from georefseg.models.rsrefseg2 import reference_logits
from georefseg.models.rsrefseg2.sam2 import MaskDecoder
from tests.fixtures import write_scene
from tests.models.rsrefseg2 import weights
from tests.models.rsrefseg2.installation import expected, write_installation

pytestmark = pytest.mark.slow  # each image costs SAM 2's encoder about 3 s on 2 cores


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = write_installation(tmp_path_factory.mktemp("rsrefseg2"))
    return load_model("rsrefseg2", folder, device="cpu")


def test_logits_match_the_authors_code(model):
    """Max |Δlogit| under 1e-4 in float32 on every sampled pixel, token ids equal."""
    fixture = expected()
    tokens = model.encode_samples(list(weights.SENTENCES))
    assert torch.equal(tokens.input_ids, fixture["input_ids"])
    assert fixture["input_ids"][1, -1] == 0  # "ships" is padded: pooled at a pad position
    logits = reference_logits(model, weights.images(), list(weights.SENTENCES))
    assert logits.shape == (2, 1, 1024, 1024)
    for name, got in weights.sample(logits).items():
        assert (got - fixture[name]).abs().max() < 1e-4, name
    assert fixture[name].abs().max() > 1  # logits of some size: the comparison means something


def test_the_unstable_single_mask_falls_back_as_sam2_does():
    """The decoder's fallback to the best multimask token (stability below 0.98), as Meta's
    ``_dynamic_multimask_via_stability`` computed it on the fixture's crafted logits."""
    fixture = expected()
    masks, iou = MaskDecoder._stable_single_mask(fixture["crafted"], fixture["crafted_iou"])
    assert torch.equal(masks, fixture["fallback"]) and torch.equal(iou, fixture["fallback_iou"])
    assert not torch.equal(masks[0, 0], fixture["crafted"][0, 0])  # image 0 fell back
    assert torch.equal(masks[1, 0], fixture["crafted"][1, 0])  # image 1 kept its single mask


def test_segment_runs_it_per_tile_in_the_scene_frame(model, tmp_path):
    """A 512×640 px UTM scene (one tile, reflect-padded to 1024 px as the engine reads small
    scenes): the probability COG on the scene's grid is the model's own output for the subject
    alone, so the anchor phrase run beside it changed nothing."""
    img = (weights.images()[0, :, :512, :640] * 255).round().to(torch.uint8).numpy()
    transform = Affine(0.5, 0, 500000, 0, -0.5, 4000000)
    scene = write_scene(tmp_path / "scene.tif", img, "EPSG:32633", transform)
    result = segment(scene, "the white tank near the ships", tmp_path / "o.gpkg", prob=tmp_path / "p.tif",
                     model=model, threshold=0.5)
    assert result.tiles == 1
    with rasterio.open(tmp_path / "p.tif") as src:
        assert src.crs.to_epsg() == 32633 and src.transform == transform and src.shape == (512, 640)
        written = src.read(1)
    padded = np.pad(img, ((0, 0), (0, 512), (0, 384)), mode="reflect")
    with torch.inference_mode():
        alone = model.segment(torch.from_numpy(padded)[None].float() / 255, model.encode_text(["the white tank"]))
    want = torch.sigmoid(alone.logits[0, 0, :512, :640]).numpy()
    assert np.abs(written - want).max() < 1e-5
    layer = gpd.read_file(tmp_path / "o.gpkg")
    assert layer.crs.to_epsg() == 32633
    assert layer.empty or (layer.total_bounds[[0, 2]].min() >= 500000 and layer.total_bounds[[1, 3]].max() <= 4000000)
    assert layer["area_m2"].sum() <= (want > 0.5).sum() * 0.25 + 1e-6


def test_evaluate_counts_as_the_authors(model, tmp_path):
    """evaluate on image 0 of the fixture (1024², so the letterbox is the identity): the
    longest sentence's mask is the authors' own (their batch pads only the shorter one), so a
    target holding half of it scores IoU 0.5, counted with their definitions."""
    from PIL import Image

    fixture = expected()
    theirs = np.unpackbits(fixture["mask0"].numpy()).reshape(1024, 1024).astype(bool)
    target = np.zeros_like(theirs)
    target.flat[np.flatnonzero(theirs)[::2]] = True  # every other pixel of their mask
    path = tmp_path / "image.png"
    Image.fromarray((weights.images()[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(path)
    samples = [RefSample("0", path, weights.SENTENCES[0], "test", lambda: target),
               RefSample("1", path, weights.SENTENCES[1], "test", None)]  # refers to nothing: scored apart
    metrics = evaluate(model, samples, batch_size=2)
    assert metrics["n_target"] == 1 and metrics["n_no_target"] == 1
    assert metrics["mIoU"] == pytest.approx(target.sum() / theirs.sum(), abs=1e-4)
    assert metrics["definition"] == DEFINITIONS["rsrefseg2"].source
