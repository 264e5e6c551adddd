"""RMSIN's image backbone: a Swin Transformer whose every stage is fused with the words.

Each stage runs its Swin blocks, then adds two gated residuals: pixel-word attention (PWAM,
from LAVT) and the intra-scale various-receptive-field branch. The stage outputs (the PWAM
features, normalised) go through the cross-scale interaction module. Names match the
authors' ``MultiModalSwinTransformer`` so their checkpoints load key for key.
"""

from __future__ import annotations

import torch
from torch import nn

from georefseg.models.layers import PWAM
from georefseg.models.rmsin.interaction import CIM, VariousReceptive
from georefseg.models.rmsin.swin import (
    PatchEmbed,
    PatchMerging,
    SwinTransformerBlock,
    shifted_window_mask,
)

WORD_DIM = 768  # BERT-base hidden size: the fusion modules' language input width


def _gate(dim: int) -> nn.Sequential:
    """tanh(W2·relu(W1·x)): a per-channel gate in (−1, 1)."""
    return nn.Sequential(nn.Linear(dim, dim, bias=False), nn.ReLU(),
                         nn.Linear(dim, dim, bias=False), nn.Tanh())


class MMBasicLayer(nn.Module):
    """One backbone stage: Swin blocks, gated language and receptive-field residuals, and
    patch merging to the next stage."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int,
                 drop_path: list[float], downsample: bool, num_heads_fusion: int = 1,
                 fusion_drop: float = 0.0):
        super().__init__()
        self.window_size = window_size
        self.shift_size = window_size // 2
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(dim, num_heads, window_size, 0 if i % 2 == 0 else self.shift_size,
                                 drop_path[i])
            for i in range(depth))
        self.fusion = PWAM(dim, dim, WORD_DIM, dim, dim, num_heads=num_heads_fusion,
                           dropout=fusion_drop)
        self.res_gate = _gate(dim)
        self.visual_residual = VariousReceptive()
        self.visual_gate = _gate(dim)
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: torch.Tensor, h: int, w: int, words: torch.Tensor,
                word_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        """x: B×(H·W)×C. Returns (stage output B×(H·W)×C, next-stage input, its H, its W)."""
        size = self.window_size
        mask = shifted_window_mask(-(-h // size) * size, -(-w // size) * size, size,
                                   self.shift_size, x.device)
        for block in self.blocks:
            x = block(x, h, w, mask)
        visual = self.visual_residual(x, h, w)
        lang = self.fusion(x, words, word_mask)
        x = x + self.res_gate(lang) * lang + self.visual_gate(visual) * visual
        if self.downsample is None:
            return lang, x, h, w
        return lang, self.downsample(x, h, w), (h + 1) // 2, (w + 1) // 2


class MultiModalSwinTransformer(nn.Module):
    """Patch embedding, four language-fused stages, per-stage LayerNorm, then the CIM.

    ``forward(image, words, word_mask)`` returns the four stage maps (strides 4 to 32).
    """

    def __init__(self, embed_dim: int, depths: list[int], num_heads: list[int],
                 window_size: int, num_heads_fusion: list[int], fusion_drop: float = 0.0,
                 drop_path_rate: float = 0.3, patch_size: int = 4):
        super().__init__()
        self.patch_embed = PatchEmbed(patch_size, 3, embed_dim)
        self.num_features = [embed_dim * 2 ** i for i in range(len(depths))]
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()  # stochastic depth decay
        starts = [sum(depths[:i]) for i in range(len(depths))]
        self.layers = nn.ModuleList(
            MMBasicLayer(dim, depth, heads, window_size, rates[start:start + depth],
                         downsample=i < len(depths) - 1, num_heads_fusion=fusion_heads,
                         fusion_drop=fusion_drop)
            for i, (dim, depth, heads, fusion_heads, start) in enumerate(
                zip(self.num_features, depths, num_heads, num_heads_fusion, starts, strict=True)))
        for i, dim in enumerate(self.num_features):
            self.add_module(f"norm{i}", nn.LayerNorm(dim))
        self.cim = CIM(self.num_features)

    def forward(self, image: torch.Tensor, words: torch.Tensor,
                word_mask: torch.Tensor) -> list[torch.Tensor]:
        """image: B×3×H×W; words: B×768×N; word_mask: B×N×1 → four B×Ci×Hi×Wi maps."""
        x = self.patch_embed(image)
        h, w = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)
        outs = []
        for i, layer in enumerate(self.layers):
            out, x, next_h, next_w = layer(x, h, w, words, word_mask)
            out = getattr(self, f"norm{i}")(out)
            outs.append(out.view(-1, h, w, self.num_features[i]).permute(0, 3, 1, 2).contiguous())
            h, w = next_h, next_w
        return self.cim(outs)
