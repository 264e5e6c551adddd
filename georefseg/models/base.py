"""The interface every referring segmenter offers the engine, and the types it exchanges.

Imports no model: the registry imports the models, the models import this module and
:mod:`georefseg.models.card` (what the engine knows of their weights).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from georefseg.calibration import Calibration
from georefseg.errors import ModelError
from georefseg.models.card import ModelCard

# Metadata keys of the safetensors files georefseg writes: which backend, and its config.
META_MODEL, META_CONFIG = "georefseg.model", "georefseg.config"


@dataclass
class TextBatch:
    """Tokenised (and possibly encoded) expressions, one row per image in the batch."""

    input_ids: torch.Tensor  # B×N token ids
    attention_mask: torch.Tensor  # B×N, 1 on real tokens
    features: torch.Tensor | None = None  # B×N×D word features, when encoded outside the model
    pooled: torch.Tensor | None = None  # B×D sentence features, for models that pool them outside

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def _map(self, fn) -> TextBatch:
        return TextBatch(*(None if t is None else fn(t) for t in
                           (self.input_ids, self.attention_mask, self.features, self.pooled)))

    def to(self, device: torch.device | str) -> TextBatch:
        return self._map(lambda t: t.to(device))

    def repeat_to(self, n: int) -> TextBatch:
        """The single expression of a 1-row batch repeated for n tiles."""
        if len(self) == n:
            return self
        if len(self) != 1:
            raise ValueError(f"cannot repeat a text batch of {len(self)} rows to {n}")
        return self._map(lambda t: t.expand(n, *t.shape[1:]))

    def select(self, index: torch.Tensor | slice) -> TextBatch:
        return self._map(lambda t: t[index])


@dataclass
class SegOutput:
    """Per-pixel target logits (B×1×H×W) and per-image presence logits (B) when the model has them."""

    logits: torch.Tensor
    presence: torch.Tensor | None = None

    def referring_logits(self) -> torch.Tensor:
        """Log-odds that a pixel belongs to the referent: P(pixel | present) · P(present).

        Computed in log space so that confident values stay finite in float32.
        """
        if self.presence is None:
            return self.logits
        log_p = F.logsigmoid(self.logits) + F.logsigmoid(self.presence)[:, None, None, None]
        # logit(p) = log p - log(1 - p); log1p(-exp(log p)) is stable for log p < 0.
        log_p = log_p.clamp(max=-1e-7)
        return log_p - torch.log1p(-torch.exp(log_p))


@dataclass
class Instances:
    """The objects a model tells apart for one image and phrase: N masks (N×H×W bool, at the
    image's size) and their scores (N, 0–1)."""

    masks: torch.Tensor
    scores: torch.Tensor


@dataclass
class Prediction:
    """What a model gives for a batch: referring log-odds of every phrase (B×K×H×W) and, for
    models that separate objects (instance segmentation), ``instances[b][k]``."""

    logits: torch.Tensor
    instances: list[list[Instances]] | None = None


class ReferringSegmenter(nn.Module):
    """Base class of the models the engine can run tile by tile.

    Subclasses set ``name`` and, in ``__init__``, ``card``: the
    :class:`~georefseg.models.card.ModelCard` of their weights, the one place their tile
    size, overlap, output stride, cut-off and calibration are declared; they implement
    ``encode_text`` and ``segment``.
    """

    name: str = "base"
    in_channels: int = 3
    card: ModelCard

    @property
    def tile_size(self) -> int:
        """Preferred input side in pixels."""
        return self.card.tile_size

    @property
    def min_overlap(self) -> int:
        """Pixels of context each side needs for seam-free tiles."""
        return self.card.min_overlap

    @property
    def output_stride(self) -> int:
        """Input pixels per cell of the finest map the model predicts before upsampling."""
        return self.card.output_stride

    @property
    def calibration(self) -> Calibration:
        """Its weights' score calibration."""
        return self.card.calibration

    @property
    def min_object_px(self) -> int:
        """The smallest object the model can draw, in pixels: see :func:`~georefseg.models.card.min_object_px`."""
        return self.card.min_object_px

    def encode_text(self, texts: list[str]) -> TextBatch:  # pragma: no cover - interface
        raise NotImplementedError

    def encode_samples(self, texts: list[str]) -> TextBatch:
        """The texts of a batch of dataset samples, one per image, encoded as the model's
        authors encode a test batch (what :func:`georefseg.evaluate.evaluate` uses); by default
        as :meth:`encode_text`."""
        return self.encode_text(texts)

    def segment(self, images: torch.Tensor, text: TextBatch) -> SegOutput:  # pragma: no cover
        """images: B×C×H×W float in [0, 1] (scene-normalised); returns logits at H×W."""
        raise NotImplementedError

    def segment_phrases(self, images: torch.Tensor, phrases: TextBatch) -> torch.Tensor:
        """Referring log-odds (B×K×H×W) of each of the K phrases (rows of ``phrases``) on every
        image: what the engine asks of each batch of tiles.

        This default runs :meth:`segment` once per phrase. A model whose image encoding does
        not depend on the words, or whose first layers do not, overrides it to compute that
        part once for all phrases.
        """
        return torch.cat([self.segment(images, phrases.select(slice(k, k + 1)).repeat_to(len(images)))
                          .referring_logits() for k in range(len(phrases))], dim=1)

    def predict(self, images: torch.Tensor, phrases: TextBatch, threshold: float | None = None) -> Prediction:
        """What the engine asks of each batch of tiles: :meth:`segment_phrases`'s log-odds, and
        the model's own instances where it has them. A model that separates objects (two
        touching buildings as two; its card says ``instances``) overrides this to return those
        whose score reaches ``threshold`` (default: its card's); the engine then takes its
        objects from the instances and the per-pixel map from the log-odds. Dense models
        ignore ``threshold``: the engine cuts their blended map with it."""
        return Prediction(self.segment_phrases(images, phrases))

    @property
    def device(self) -> torch.device:
        tensor = next(self.parameters(), None)
        if tensor is None:
            tensor = next(self.buffers(), None)
        return tensor.device if tensor is not None else torch.device("cpu")

    def describe(self) -> dict:
        """A short, JSON-friendly description for outputs and `georefseg models`."""
        return {"name": self.name, "tile_size": self.tile_size, "min_overlap": self.min_overlap,
                "parameters": sum(p.numel() for p in self.parameters())}


@dataclass(frozen=True)
class Backend:
    """One model family in the registry: what it is, and how it finds, describes and builds weights.

    ``find(path)`` returns the weights this backend would load from ``path`` (a file, or a
    folder that holds them) or None when they are not its own; it reads headers only.
    ``card(weights)`` reads their :class:`ModelCard` (``None``: the backend's default weights,
    where it ships any), headers only. ``build(card)`` builds the model the card describes on
    the CPU in eval mode (a ModelError saying what to pass when the card has no weights and
    the family ships none).
    """

    name: str
    summary: str
    needs: str
    find: Callable[[Path], Path | None]
    card: Callable[[Path | None], ModelCard]
    build: Callable[[ModelCard], ReferringSegmenter]

    def load(self, weights: Path | None) -> ReferringSegmenter:
        """The model of ``weights`` (``None``: the default), carrying its card."""
        return self.build(self.card(weights))


def safetensors_metadata(path: Path) -> dict[str, str] | None:
    """The metadata of a safetensors file ({} when it has none), or None when it is not one."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as fh:
            return fh.metadata() or {}
    except Exception:  # safetensors raises its own error types, and OSError, for broken files
        return None


def saved_config(path: Path) -> dict:
    """The architecture georefseg stored beside the weights of a safetensors file ({} if none)."""
    meta = safetensors_metadata(path)
    if meta is None:
        raise ModelError(f"{path} is not a readable safetensors file")
    try:
        return json.loads(meta.get(META_CONFIG, "{}"))
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: its {META_CONFIG} metadata is not valid JSON ({exc})") from exc


def load_state_strict(module: nn.Module, state: dict[str, torch.Tensor], source: str,
                      skip_prefixes: tuple[str, ...] = (), assign: bool = False) -> None:
    """Load ``state`` into ``module`` only if every key and shape fits; else a ModelError that
    lists what is missing, unexpected or of the wrong shape (first few of each). ``assign``
    takes the tensors themselves (a module built on the meta device) instead of copying them."""
    expected = {k: v.shape for k, v in module.state_dict().items() if not k.startswith(skip_prefixes)}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)}≠{tuple(s)}" for k, s in expected.items()
             if k in state and state[k].shape != s]
    if missing or unexpected or wrong:
        def few(items: list[str]) -> str:
            return ", ".join(items[:4]) + (f" (+{len(items) - 4} more)" if len(items) > 4 else "")
        parts = [f"{len(missing)} missing: {few(missing)}" if missing else "",
                 f"{len(unexpected)} unexpected: {few(unexpected)}" if unexpected else "",
                 f"{len(wrong)} of another shape: {few(wrong)}" if wrong else ""]
        raise ModelError(f"{source} does not fit the {getattr(module, 'name', 'model')} model: "
                         + "; ".join(p for p in parts if p)
                         + ". Check that the checkpoint was written for this model.")
    module.load_state_dict(state, strict=False, assign=assign)
