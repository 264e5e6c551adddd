"""The tiny model: shapes, presence head, any tile size, and speed-independent behaviour."""

from __future__ import annotations

import torch

from georefseg.models.base import SegOutput
from georefseg.models.tiny import TEXT_PREFIX, TinyConfig, TinyRefSeg


def test_forward_shapes_and_presence():
    torch.manual_seed(0)
    model = TinyRefSeg().eval()
    text = model.encode_text(["the white storage tank", "the ship"])
    with torch.inference_mode():
        out = model.segment(torch.rand(2, 3, 128, 96), text)
    assert isinstance(out, SegOutput)
    assert out.logits.shape == (2, 1, 128, 96) and out.presence.shape == (2,)
    combined = out.referring_logits()
    # P(pixel) = P(pixel | present) · P(present) can never exceed either factor
    p, q = torch.sigmoid(out.logits), torch.sigmoid(out.presence)[:, None, None, None]
    assert torch.all(torch.sigmoid(combined) <= torch.minimum(p, q) + 1e-6)


def test_sizes_that_are_not_multiples_of_16():
    model = TinyRefSeg(TinyConfig(widths=[8, 16, 32, 48], blocks=[1, 1, 1, 1])).eval()
    with torch.inference_mode():
        out = model.segment(torch.rand(1, 3, 100, 70), model.encode_text(["a tank"]))
    assert out.logits.shape == (1, 1, 100, 70)


def test_text_changes_the_answer_and_training_step_learns():
    torch.manual_seed(0)
    model = TinyRefSeg(TinyConfig(widths=[8, 16, 32, 48], blocks=[1, 1, 1, 1]))
    images = torch.rand(2, 3, 64, 64)
    target = torch.zeros(2, 1, 64, 64)
    target[:, :, 10:30, 10:30] = 1
    text = model.encode_text(["the red building", "the red building"])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], 3e-3)
    losses = []
    for _ in range(25):
        out = model(images, text)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(out.logits, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    model.eval()
    with torch.inference_mode():
        a = model.segment(images[:1], model.encode_text(["the red building"])).logits
        b = model.segment(images[:1], model.encode_text(["a white plane at the bottom"])).logits
    assert not torch.allclose(a, b)


def test_text_encoder_is_frozen_and_not_part_of_own_weights():
    model = TinyRefSeg()
    own = [k for k in model.state_dict() if not k.startswith(TEXT_PREFIX)]
    assert all(not p.requires_grad for p in model.text_encoder.parameters())
    assert sum(model.state_dict()[k].numel() for k in own) < 4_000_000


def test_phrases_in_one_pass_equal_one_pass_each():
    """segment_phrases shares the text-free stem and first stage across phrases; the answer
    for each phrase must be what segment gives for it alone."""
    torch.manual_seed(1)
    model = TinyRefSeg(TinyConfig(widths=[8, 16, 32, 48], blocks=[1, 1, 1, 1])).eval()
    images = torch.rand(2, 3, 96, 96)
    phrases = ["the storage tank", "the river", "the largest white building"]
    with torch.no_grad():
        together = model.segment_phrases(images, model.encode_text(phrases))
        alone = [model.segment(images, model.encode_text([p]).repeat_to(2)).referring_logits() for p in phrases]
    assert together.shape == (2, 3, 96, 96)
    torch.testing.assert_close(together, torch.cat(alone, dim=1), rtol=0, atol=1e-5)
    assert (together[:, 0] - together[:, 1]).abs().max() > 1e-3  # the phrases do differ
