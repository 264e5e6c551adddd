"""Score a model on a dataset split with the field's metrics."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from georefseg.data.samples import RefSample
from georefseg.metrics import MetricAccumulator
from georefseg.models.base import ReferringSegmenter


@torch.inference_mode()
def predict(model: ReferringSegmenter, images: torch.Tensor, texts: list[str]) -> np.ndarray:
    """Boolean masks (B×H×W): pixels where P(referent) ≥ 0.5. images: B×3×H×W in [0, 1]."""
    text = model.encode_text(texts)
    logits = model.segment(images.to(model.device), text).referring_logits()
    return (logits[:, 0] > 0).cpu().numpy()


def evaluate(model: ReferringSegmenter, samples: Sequence[RefSample], batch_size: int = 8,
             progress: Callable[[int], None] | None = None) -> dict:
    """Metrics over ``samples`` at their own resolution (images of one size are batched)."""
    acc = MetricAccumulator()
    model.eval()
    pending: list[tuple[np.ndarray, np.ndarray, RefSample]] = []

    def flush() -> None:
        images = torch.from_numpy(np.stack([p[0] for p in pending])).permute(0, 3, 1, 2).float() / 255
        preds = predict(model, images, [p[2].expression for p in pending])
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
