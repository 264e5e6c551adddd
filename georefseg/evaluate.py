"""Score a model on a dataset split with the field's metrics."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from rasterio.features import rasterize

from georefseg.calibration import Calibration
from georefseg.data.samples import RefSample
from georefseg.expression import parse_expression
from georefseg.grounding import Grounding, ground
from georefseg.metrics import MetricAccumulator
from georefseg.models.base import ReferringSegmenter
from georefseg.vectorize import candidates_from_array


@torch.inference_mode()
def _probabilities(model: ReferringSegmenter, images: torch.Tensor, texts: list[str]) -> np.ndarray:
    """P(referent) per pixel (B×H×W) for images B×3×H×W in [0, 1], one text each."""
    logits = model.segment(images.to(model.device), model.encode_samples(texts)).referring_logits()
    return torch.sigmoid(logits[:, 0].float()).cpu().numpy()


def predict(model: ReferringSegmenter, images: torch.Tensor, texts: list[str]) -> np.ndarray:
    """Boolean masks (B×H×W): pixels where P(referent) ≥ 0.5, the model alone."""
    return _probabilities(model, images, texts) >= 0.5


def groundings(model: ReferringSegmenter, images: torch.Tensor, texts: list[str],
               calibration: Calibration | None = None) -> list[Grounding]:
    """How ``segment`` grounds each text on its chip: the expression read
    (:func:`~georefseg.expression.parse_expression`), its words judged over the chip's
    candidates by :func:`~georefseg.grounding.ground` (pixel coordinates), with ``calibration``
    (default: the model's own)."""
    queries = [parse_expression(t) for t in texts]
    jobs = [(i, phrase) for i, q in enumerate(queries) for phrase in q.phrases()]
    probs = _probabilities(model, images[[i for i, _ in jobs]], [p for _, p in jobs])
    per_sample: dict[int, dict[str, np.ndarray]] = {}
    for (i, phrase), prob in zip(jobs, probs, strict=True):
        per_sample.setdefault(i, {})[phrase] = prob
    h, w = images.shape[-2:]
    out = []
    for i, q in enumerate(queries):
        found = {phrase: candidates_from_array(prob) for phrase, prob in per_sample[i].items()}
        out.append(ground(found[q.subject], q, found, size=(w, h), min_object_px=model.min_object_px,
                          calibration=model.calibration if calibration is None else calibration))
    return out


def predict_grounded(model: ReferringSegmenter, images: torch.Tensor, texts: list[str]) -> np.ndarray:
    """Boolean masks as ``segment`` chooses them (see :func:`groundings`): the referent, all of
    them for a plural, or nothing when the model's calibrated score is below its cut-off."""
    h, w = images.shape[-2:]
    masks = np.zeros((len(texts), h, w), bool)
    for i, result in enumerate(groundings(model, images, texts)):
        chosen = [(g.candidate.geometry, 1) for g, keep in zip(result.ranked, result.selected, strict=True) if keep]
        if chosen:
            masks[i] = rasterize(chosen, out_shape=(h, w)).astype(bool)
    return masks


def batches(samples: Sequence[RefSample], batch_size: int):
    """(images B×3×H×W in [0, 1], targets B×H×W bool, samples) of at most ``batch_size``
    samples whose images have one size, in the samples' order."""
    pending: list[tuple[np.ndarray, np.ndarray, RefSample]] = []

    def flush():
        images = torch.from_numpy(np.stack([p[0] for p in pending])).permute(0, 3, 1, 2).float() / 255
        return images, np.stack([p[1] for p in pending]), [p[2] for p in pending]

    for sample in samples:
        image, target = sample.load()
        if pending and (len(pending) == batch_size or image.shape != pending[0][0].shape):
            yield flush()
            pending = []
        pending.append((image, target, sample))
    if pending:
        yield flush()


def evaluate(model: ReferringSegmenter, samples: Sequence[RefSample], batch_size: int = 8,
             progress: Callable[[int], None] | None = None, grounding: bool = False) -> dict:
    """Metrics over ``samples`` at their own resolution (images of one size are batched).

    ``grounding`` scores what ``segment`` would choose (model plus scene-level grounding)
    instead of the model's mask alone, which is what the field's papers report.
    """
    acc = MetricAccumulator(definition=model.card.metrics)
    model.eval()
    for images, targets, chunk in batches(samples, batch_size):
        texts = [s.expression for s in chunk]
        preds = predict_grounded(model, images, texts) if grounding else predict(model, images, texts)
        for pred, target, sample in zip(preds, targets, chunk, strict=True):
            acc.add(pred, target, sample.kinds)
        if progress:
            progress(len(chunk))
    return acc.result()
