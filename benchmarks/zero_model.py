"""A model that costs nothing: the engine's own ceiling (read, normalise, blend, write the
probability COG, vectorise, ground, write the layer) when a GPU makes the model free.

Its output is one constant tensor made once per batch shape, so a run's time is all engine.
The logits say "nothing here" except on a fixed square of every tile, so vectorising and
grounding have a few candidates to work on, as in a real run.
"""

from __future__ import annotations

import torch

from georefseg.models.base import ReferringSegmenter, SegOutput, TextBatch
from georefseg.models.card import ModelCard


class ZeroCost(ReferringSegmenter):
    name = "zero"

    def __init__(self, tile: int = 512, overlap: int = 64):
        super().__init__()
        self.card = ModelCard("zero", None, tile, overlap, 4)
        self._out: torch.Tensor | None = None

    def encode_text(self, texts: list[str]) -> TextBatch:
        n = len(texts)
        return TextBatch(torch.zeros(n, 1, dtype=torch.long), torch.ones(n, 1, dtype=torch.long))

    def _logits(self, b: int, k: int, h: int, w: int) -> torch.Tensor:
        if self._out is None or self._out.shape[0] < b or self._out.shape[-2:] != (h, w):
            out = torch.full((b, 1, h, w), -6.0)
            out[:, :, h // 3:h // 3 + 40, w // 3:w // 3 + 40] = 6.0  # one 40 px object per tile
            self._out = out
        return self._out[:b].expand(-1, k, -1, -1)

    def segment(self, images: torch.Tensor, text: TextBatch) -> SegOutput:
        return SegOutput(self._logits(images.shape[0], 1, *images.shape[-2:]))

    def segment_phrases(self, images: torch.Tensor, phrases: TextBatch) -> torch.Tensor:
        return self._logits(images.shape[0], len(phrases), *images.shape[-2:])
