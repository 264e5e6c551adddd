"""`tiny`: the compact default model, small enough for a laptop CPU.

A residual CNN encoder (strides 2–16), language fused at strides 4, 8 and 16 by pixel-word
attention with a language gate (as in LAVT), one global transformer layer at stride 16 that
lets every place see every other place and the words (relations, "largest", positions), a
top-down decoder with adaptive rotated convolutions, a mask head at input resolution and a
presence head that says whether the referent is in the tile at all.

Text comes from the frozen all-MiniLM-L6-v2 encoder (word features, 384-d).

Weights are safetensors files with the architecture in their metadata (:func:`save_tiny`);
the default ones ship in the package. :data:`BACKEND` is tiny's entry in the model registry.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from georefseg.atomic import atomic_path
from georefseg.calibration import Calibration
from georefseg.errors import ModelError
from georefseg.models.base import (
    META_CONFIG,
    META_MODEL,
    Backend,
    ReferringSegmenter,
    SegOutput,
    TextBatch,
    load_state_strict,
    safetensors_metadata,
    saved_config,
)
from georefseg.models.card import ModelCard, read_vocabulary
from georefseg.models.layers import PWAM, AdaptiveRotatedConv2d
from georefseg.models.text import MiniLMEncoder

TEXT_PREFIX = "text_encoder."  # the shared, frozen MiniLM: not part of tiny's own weights
DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "tiny.safetensors"
RUN_WEIGHTS = "best.safetensors"  # what `georefseg train` leaves in its output folder
OUTPUT_STRIDE = 2  # the mask head sees the stride-2 decoder stage


@dataclass
class TinyConfig:
    """Architecture of a tiny model; stored next to its weights."""

    widths: list[int] = field(default_factory=lambda: [24, 48, 96, 160])  # strides 2, 4, 8, 16
    blocks: list[int] = field(default_factory=lambda: [1, 2, 2, 2])
    text_dim: int = 128
    heads: int = 4
    arc_kernels: int = 2
    tile_size: int = 512
    min_overlap: int = 64

    def card(self, weights: Path | None = None) -> ModelCard:
        """The model card of weights of this architecture (calibration and vocabulary: the files
        beside them)."""
        return ModelCard("tiny", weights, self.tile_size, self.min_overlap, OUTPUT_STRIDE,
                         calibration=Calibration.beside(weights), vocabulary=read_vocabulary(weights))

    def to_dict(self) -> dict:
        return asdict(self)


def _conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class ResBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = _conv_bn(ch, ch)
        self.conv2 = nn.Sequential(nn.Conv2d(ch, ch, 3, 1, 1, bias=False), nn.BatchNorm2d(ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.conv2(self.conv1(x)))


class LanguageFusion(nn.Module):
    """Pixel-word attention, then a learned gate decides how much of it joins the features."""

    def __init__(self, ch: int, text_dim: int, heads: int):
        super().__init__()
        heads = heads if ch % heads == 0 else 1
        self.pwam = PWAM(ch, ch, text_dim, ch, ch, num_heads=heads, query_norm="none")
        self.gate = nn.Sequential(nn.Linear(ch, ch, bias=False), nn.ReLU(), nn.Linear(ch, ch, bias=False),
                                  nn.Tanh())

    def forward(self, x: torch.Tensor, words: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        flat = x.flatten(2).transpose(1, 2)  # B×HW×C
        fused = self.pwam(flat, words, mask)
        out = flat + self.gate(fused) * fused
        return out.transpose(1, 2).reshape(b, c, h, w)


def _coords(h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Normalised (x, y) in [-1, 1] of each cell centre: 2×H×W."""
    ys = (torch.arange(h, device=device, dtype=dtype) + 0.5) / h * 2 - 1
    xs = (torch.arange(w, device=device, dtype=dtype) + 0.5) / w * 2 - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy])


class GlobalReasoning(nn.Module):
    """One transformer layer over all stride-16 cells (with their positions) and the words."""

    def __init__(self, ch: int, text_dim: int, heads: int, freqs: int = 6):
        super().__init__()
        self.freqs = freqs
        self.pos = nn.Linear(4 * freqs, ch)
        self.words = nn.Linear(text_dim, ch)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(ch), nn.LayerNorm(ch), nn.LayerNorm(ch)
        self.self_attn = nn.MultiheadAttention(ch, heads, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(ch, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(ch, 2 * ch), nn.GELU(), nn.Linear(2 * ch, ch))

    def forward(self, x: torch.Tensor, words: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        xy = _coords(h, w, x.device, x.dtype).flatten(1).T  # HW×2
        bands = xy[:, :, None] * (math.pi * 2.0 ** torch.arange(self.freqs, device=x.device, dtype=x.dtype))
        pos = self.pos(torch.cat([bands.sin(), bands.cos()], dim=1).flatten(1))  # HW×C
        tokens = x.flatten(2).transpose(1, 2) + pos
        q = self.norm1(tokens)
        tokens = tokens + self.self_attn(q, q, q, need_weights=False)[0]
        kv = self.words(words.transpose(1, 2))  # B×N×C
        # The padding words as a per-head attention mask: what key_padding_mask becomes inside
        # torch, without its shape check, whose first call imports sympy (0.8 s of a CLI run).
        heads, cells = self.cross_attn.num_heads, tokens.shape[1]
        padding = ~mask[..., 0].bool()  # B×N, True on padding
        padding = padding[:, None, None, :].expand(b, heads, cells, -1).reshape(b * heads, cells, -1)
        tokens = tokens + self.cross_attn(self.norm2(tokens), kv, kv, attn_mask=padding, need_weights=False)[0]
        tokens = tokens + self.mlp(self.norm3(tokens))
        return tokens.transpose(1, 2).reshape(b, c, h, w)


class DecoderStage(nn.Module):
    """Upsample, join the skip features, mix with a plain and a rotated convolution."""

    def __init__(self, cin: int, cskip: int, cout: int, arc_kernels: int):
        super().__init__()
        self.conv = _conv_bn(cin + cskip, cout)
        self.arc = AdaptiveRotatedConv2d(cout, cout, kernel_number=arc_kernels)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        x = self.conv(torch.cat([x, skip], dim=1))
        return F.relu(self.bn(self.arc(x)))


class TinyRefSeg(ReferringSegmenter):
    """The default model (see module docstring)."""

    name = "tiny"

    def __init__(self, config: TinyConfig | None = None, text_encoder: MiniLMEncoder | None = None,
                 card: ModelCard | None = None):
        super().__init__()
        cfg = config or TinyConfig()
        self.config = cfg
        self.card = card or cfg.card()
        self.text_encoder = text_encoder or MiniLMEncoder()
        w, t = cfg.widths, cfg.text_dim
        self.word_proj = nn.Sequential(nn.Linear(MiniLMEncoder.dim, t), nn.LayerNorm(t))
        self.stem = nn.Sequential(_conv_bn(3, w[0], 2), *[ResBlock(w[0]) for _ in range(cfg.blocks[0])])
        self.stages = nn.ModuleList(
            nn.Sequential(_conv_bn(w[i - 1], w[i], 2), *[ResBlock(w[i]) for _ in range(cfg.blocks[i])])
            for i in range(1, 4))
        self.fusions = nn.ModuleList(LanguageFusion(w[i], t, cfg.heads) for i in range(1, 4))
        self.reason = GlobalReasoning(w[3], t, cfg.heads)
        self.up3 = DecoderStage(w[3], w[2], w[2], cfg.arc_kernels)
        self.up2 = DecoderStage(w[2], w[1], w[1], cfg.arc_kernels)
        self.up1 = DecoderStage(w[1], w[0], w[0], cfg.arc_kernels)
        self.mask_head = nn.Conv2d(w[0], 1, 1)
        self.presence_head = nn.Sequential(nn.Linear(2 * w[3] + t, w[3]), nn.ReLU(), nn.Linear(w[3], 1))

    def encode_text(self, texts: list[str]) -> TextBatch:
        return self.text_encoder.encode(texts)

    def forward(self, images: torch.Tensor, text: TextBatch) -> SegOutput:
        """images: B×3×H×W in [0, 1]; H and W multiples of 16 work best (others are padded)."""
        return self._decode(*self._see(images), text, images.shape[-2:])

    def segment_phrases(self, images: torch.Tensor, phrases: TextBatch) -> torch.Tensor:
        """The stem and the first stage (strides 2 and 4, before the first language fusion) see
        no words, so they run once for all phrases; the rest runs once per phrase."""
        seen, n = self._see(images), len(images)
        phrases = self._with_features(phrases)  # once, not once per phrase
        return torch.cat([self._decode(*seen, phrases.select(slice(k, k + 1)).repeat_to(n), images.shape[-2:])
                          .referring_logits() for k in range(len(phrases))], dim=1)

    def _with_features(self, text: TextBatch) -> TextBatch:
        if text.features is not None:
            return text
        return TextBatch(text.input_ids, text.attention_mask, self.text_encoder(text))

    def _see(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The text-free part: stride-2 features and stride-4 features before language joins."""
        h, w = images.shape[-2:]
        ph, pw = (-h) % 16, (-w) % 16
        x = (images - 0.5) / 0.25
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect")
        s2 = self.stem(x)
        return s2, self.stages[0](s2)

    def _decode(self, s2: torch.Tensor, s4: torch.Tensor, text: TextBatch, size: tuple[int, int]) -> SegOutput:
        h, w = size
        text = self._with_features(text)
        mask = text.attention_mask[..., None].to(s2.dtype)  # B×N×1
        words = self.word_proj(text.features.to(s2.dtype))  # B×N×T
        sentence = (words * mask).sum(1) / mask.sum(1).clamp(min=1)
        words = words.transpose(1, 2)  # B×T×N
        feats = [s2, self.fusions[0](s4, words, mask)]
        for stage, fusion in zip(self.stages[1:], self.fusions[1:], strict=True):
            feats.append(fusion(stage(feats[-1]), words, mask))
        s16 = self.reason(feats[3], words, mask)
        y = self.up1(self.up2(self.up3(s16, feats[2]), feats[1]), feats[0])
        logits = F.interpolate(self.mask_head(y), scale_factor=2, mode="bilinear", align_corners=False)
        pooled = torch.cat([s16.mean((2, 3)), s16.amax((2, 3)), sentence], dim=1)
        presence = self.presence_head(pooled)[:, 0]
        return SegOutput(logits[..., :h, :w], presence)

    def segment(self, images: torch.Tensor, text: TextBatch) -> SegOutput:
        return self(images, text)


# ----------------------------------------------------------------------------- weights


def save_tiny(model: TinyRefSeg, path: str | Path, extra: dict | None = None) -> None:
    """Write a tiny model's own weights (not the shared text encoder) as safetensors, with its
    config in the metadata so that the file alone rebuilds the model."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()
             if not k.startswith(TEXT_PREFIX)}
    meta = {META_MODEL: "tiny", META_CONFIG: json.dumps(model.config.to_dict())}
    if extra:
        meta["georefseg.extra"] = json.dumps(extra)
    with atomic_path(path) as part:
        save_file(state, str(part), metadata=meta)


def _is_tiny_file(path: Path) -> bool:
    return path.suffix == ".safetensors" and (safetensors_metadata(path) or {}).get(META_MODEL) == "tiny"


def find_weights(path: Path) -> Path | None:
    """A tiny weights file, or a folder holding one (a `georefseg train` run's best weights,
    else its only tiny file)."""
    if path.is_file():
        return path if _is_tiny_file(path) else None
    if (path / RUN_WEIGHTS).is_file():
        return path / RUN_WEIGHTS if _is_tiny_file(path / RUN_WEIGHTS) else None
    found = [p for p in sorted(path.glob("*.safetensors")) if _is_tiny_file(p)]
    return found[0] if len(found) == 1 else None


def read_card(path: Path | None) -> ModelCard:
    """The card of the tiny weights at ``path`` (default: the shipped ones), from the file's metadata."""
    path = path or DEFAULT_WEIGHTS
    if not path.is_file():
        raise ModelError(f"the default tiny weights are not installed ({path} is missing): reinstall "
                         "georefseg, or pass {param} with weights from `georefseg train`", param="checkpoint")
    return TinyConfig(**saved_config(path)).card(path)


def build(card: ModelCard) -> TinyRefSeg:
    """The tiny model a card describes, with the weights its file holds."""
    from safetensors.torch import load_file

    model = TinyRefSeg(TinyConfig(**saved_config(card.weights)), card=card)
    load_state_strict(model, load_file(str(card.weights)), str(card.weights), skip_prefixes=(TEXT_PREFIX,))
    return model.eval()


BACKEND = Backend(
    name="tiny",
    summary="compact CNN with pixel-word attention and rotated convolutions; runs on a laptop CPU; "
            "trained on synthetic scenes only (not for real imagery)",
    needs="nothing: its weights ship with georefseg (or weights from `georefseg train`)",
    find=find_weights, card=read_card, build=build)
