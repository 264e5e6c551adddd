"""Score a model on a dataset split with the field's metrics."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from rasterio.features import rasterize

from georefseg.data.samples import RefSample
from georefseg.grounding import parse_expression, rank_candidates
from georefseg.metrics import MetricAccumulator
from georefseg.models.base import ReferringSegmenter
from georefseg.vectorize import candidates_from_array


@torch.inference_mode()
def _probabilities(model: ReferringSegmenter, images: torch.Tensor, texts: list[str]) -> np.ndarray:
    """P(referent) per pixel (B×H×W) for images B×3×H×W in [0, 1], one text each."""
    logits = model.segment(images.to(model.device), model.encode_text(texts)).referring_logits()
    return torch.sigmoid(logits[:, 0].float()).cpu().numpy()


def predict(model: ReferringSegmenter, images: torch.Tensor, texts: list[str]) -> np.ndarray:
    """Boolean masks (B×H×W): pixels where P(referent) ≥ 0.5, the model alone."""
    return _probabilities(model, images, texts) >= 0.5


def predict_grounded(model: ReferringSegmenter, images: torch.Tensor, texts: list[str]) -> np.ndarray:
    """Boolean masks as ``segment`` chooses them: scene-level words (size, position, relations)
    judged over the chip's candidates, and the rank-1 candidate kept.

    No score threshold: on the synthetic validation split one of 0.25 rejected more true
    referents than absent ones (mIoU 0.724 → 0.687, no-target accuracy unchanged)."""
    queries = [parse_expression(t) for t in texts]
    jobs = [(i, phrase) for i, q in enumerate(queries) for phrase in q.phrases()]
    probs = _probabilities(model, images[[i for i, _ in jobs]], [p for _, p in jobs])
    per_sample: dict[int, dict[str, np.ndarray]] = {}
    for (i, phrase), prob in zip(jobs, probs, strict=True):
        per_sample.setdefault(i, {})[phrase] = prob
    h, w = images.shape[-2:]
    masks = np.zeros((len(texts), h, w), bool)
    for i, q in enumerate(queries):
        maps = per_sample[i]
        if not q.scene_level:
            masks[i] = maps[q.text] >= 0.5
            continue
        found = {phrase: candidates_from_array(prob) for phrase, prob in maps.items()}
        ranked = rank_candidates(found[q.subject], q, found, size=(w, h), top=1)
        if ranked:
            masks[i] = rasterize([(ranked[0].candidate.geometry, 1)], out_shape=(h, w)).astype(bool)
    return masks


def evaluate(model: ReferringSegmenter, samples: Sequence[RefSample], batch_size: int = 8,
             progress: Callable[[int], None] | None = None, grounding: bool = False) -> dict:
    """Metrics over ``samples`` at their own resolution (images of one size are batched).

    ``grounding`` scores what ``segment`` would choose (model plus scene-level grounding)
    instead of the model's mask alone, which is what the field's papers report.
    """
    acc = MetricAccumulator()
    model.eval()
    pending: list[tuple[np.ndarray, np.ndarray, RefSample]] = []

    def flush() -> None:
        images = torch.from_numpy(np.stack([p[0] for p in pending])).permute(0, 3, 1, 2).float() / 255
        texts = [p[2].expression for p in pending]
        preds = predict_grounded(model, images, texts) if grounding else predict(model, images, texts)
        for pred, (_, target, sample) in zip(preds, pending, strict=True):
            acc.add(pred, target, sample.kinds)
        if progress:
            progress(len(pending))
        pending.clear()

    for sample in samples:
        image, target = sample.load()
        if pending and (len(pending) == batch_size or image.shape != pending[0][0].shape):
            flush()
        pending.append((image, target, sample))
    if pending:
        flush()
    return acc.result()
