"""Swin Transformer parts (shifted-window attention), as the RMSIN/LAVT backbone uses them.

Module and parameter names follow the Swin reference layout (``patch_embed.proj``,
``blocks.N.attn.qkv``, ``relative_position_bias_table`` …) so that checkpoints written by
the Swin, LAVT and RMSIN training code load key for key.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DropPath(nn.Module):
    """Stochastic depth: drops a whole residual branch per sample while training."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), device=x.device) >= self.p
        return x * keep.to(x.dtype) / (1.0 - self.p)


class Mlp(nn.Module):
    """The two-layer GELU feed-forward of a transformer block."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def window_partition(x: torch.Tensor, size: int) -> torch.Tensor:
    """B×H×W×C → (B·nW)×size×size×C, windows in row-major order."""
    b, h, w, c = x.shape
    x = x.view(b, h // size, size, w // size, size, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, size, size, c)


def window_reverse(windows: torch.Tensor, size: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B·nW)×size×size×C → B×H×W×C."""
    c = windows.shape[-1]
    x = windows.view(-1, h // size, w // size, size, size, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


def relative_position_index(size: int) -> torch.Tensor:
    """(size²×size²) index into the (2·size−1)² bias table for every query/key pair."""
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    coords = torch.stack([ys.flatten(), xs.flatten()])  # 2×N
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (size - 1)  # N×N×2
    return rel[..., 0] * (2 * size - 1) + rel[..., 1]


def shifted_window_mask(height: int, width: int, size: int, shift: int,
                        device: torch.device) -> torch.Tensor:
    """Additive mask (nW×N×N, 0 or −100) that stops shifted windows mixing wrapped regions.

    ``height``/``width`` are already padded to multiples of ``size``.
    """
    region = torch.zeros(1, height, width, 1, device=device)
    bands = (slice(0, -size), slice(-size, -shift), slice(-shift, None))
    label = 0
    for hs in bands:
        for ws in bands:
            region[:, hs, ws, :] = label
            label += 1
    labels = window_partition(region, size).view(-1, size * size)
    diff = labels.unsqueeze(1) - labels.unsqueeze(2)
    return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside a window, with a learned relative position bias."""

    def __init__(self, dim: int, window_size: int, num_heads: int):
        super().__init__()
        self.window_size, self.num_heads = window_size, num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size - 1) ** 2, num_heads))
        # Persistent, as in the reference code: checkpoints carry it.
        self.register_buffer("relative_position_index", relative_position_index(window_size))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B·nW)×N×C; mask: nW×N×N additive, or None for unshifted windows."""
        bw, n, c = x.shape
        qkv = self.qkv(x).reshape(bw, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        attn = attn + bias.view(n, n, -1).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(bw // nw, nw, self.num_heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.num_heads, n, n)
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(bw, n, c)
        return self.proj(x)


class SwinTransformerBlock(nn.Module):
    """(Shifted-)window attention and MLP, each with a pre-norm residual."""

    def __init__(self, dim: int, num_heads: int, window_size: int, shift_size: int,
                 drop_path: float = 0.0, mlp_ratio: float = 4.0):
        super().__init__()
        self.window_size, self.shift_size = window_size, shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, h: int, w: int, mask: torch.Tensor) -> torch.Tensor:
        """x: B×(H·W)×C; ``mask`` is used only by shifted blocks."""
        b, _, c = x.shape
        size, shift = self.window_size, self.shift_size
        y = self.norm1(x).view(b, h, w, c)
        pad_r, pad_b = (-w) % size, (-h) % size
        y = F.pad(y, (0, 0, 0, pad_r, 0, pad_b))
        hp, wp = y.shape[1:3]
        if shift:
            y = torch.roll(y, shifts=(-shift, -shift), dims=(1, 2))
        windows = window_partition(y, size).view(-1, size * size, c)
        windows = self.attn(windows, mask if shift else None)
        y = window_reverse(windows.view(-1, size, size, c), size, hp, wp)
        if shift:
            y = torch.roll(y, shifts=(shift, shift), dims=(1, 2))
        y = y[:, :h, :w, :].reshape(b, h * w, c)
        x = x + self.drop_path(y)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """Halves the resolution: 2×2 neighbours concatenated (4C), normalised, projected to 2C."""

    def __init__(self, dim: int):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, _, c = x.shape
        x = x.view(b, h, w, c)
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        # Order (even row, even col), (odd, even), (even, odd), (odd, odd): the weights expect it.
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x.view(b, -1, 4 * c)))


class PatchEmbed(nn.Module):
    """Non-overlapping patch projection (stride = patch size) followed by LayerNorm."""

    def __init__(self, patch_size: int = 4, in_chans: int = 3, embed_dim: int = 96):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B×3×H×W → B×C×H/p×W/p (sides padded up to a multiple of p)."""
        p = self.patch_size
        x = F.pad(x, (0, (-x.shape[-1]) % p, 0, (-x.shape[-2]) % p))
        x = self.proj(x)
        b, c, hh, ww = x.shape
        return self.norm(x.flatten(2).transpose(1, 2)).transpose(1, 2).view(b, c, hh, ww)
