"""Building blocks shared by the models: adaptive rotated convolution and pixel-word attention.

Attribute names follow the RMSIN authors' module tree (including their spelling
``rounting_func``) so that the same blocks load the authors' checkpoints key for key.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# Tap offsets (x, y) of a 3x3 kernel in row-major order, centre at (0, 0).
_TAP_Y, _TAP_X = torch.meshgrid(torch.arange(-1.0, 2.0), torch.arange(-1.0, 2.0), indexing="ij")
_TAPS = torch.stack([_TAP_X.reshape(-1), _TAP_Y.reshape(-1)], dim=-1)  # 9 x 2


def kernel_rotation_matrix(theta: torch.Tensor) -> torch.Tensor:
    """Matrices (..., 9, 9) that rotate flattened 3x3 kernels by ``theta`` radians.

    Each output tap p takes the kernel value at R(theta)·p, clamped to the 3x3 square and
    read by bilinear interpolation. Edge taps stay inside the square and are sampled
    bilinearly; corner taps slide along the border. Multiples of 90° are exact quarter turns,
    and for |theta| < 90° this is the interpolation RMSIN uses, so its weights behave the same.
    Differentiable in ``theta``.
    """
    taps = _TAPS.to(theta.device, theta.dtype)
    cos, sin = torch.cos(theta)[..., None], torch.sin(theta)[..., None]
    src_x = (cos * taps[:, 0] - sin * taps[:, 1]).clamp(-1.0, 1.0)  # (..., 9)
    src_y = (sin * taps[:, 0] + cos * taps[:, 1]).clamp(-1.0, 1.0)
    # Bilinear "hat" weight of every source tap for every sample point.
    wx = (1.0 - (src_x[..., :, None] - taps[:, 0]).abs()).clamp(min=0.0)  # (..., 9 out, 9 in)
    wy = (1.0 - (src_y[..., :, None] - taps[:, 1]).abs()).clamp(min=0.0)
    return wx * wy


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of a B×C×H×W map."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class RoutingFunction(nn.Module):
    """Predicts per-sample mixing weights and rotation angles for K kernels."""

    def __init__(self, in_channels: int, kernel_number: int, dropout: float = 0.2,
                 max_angle_deg: float = 40.0):
        super().__init__()
        self.kernel_number = kernel_number
        self.dwc = nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False)
        self.norm = ChannelLayerNorm(in_channels)
        self.dropout1 = nn.Dropout(dropout)
        self.fc_alpha = nn.Linear(in_channels, kernel_number, bias=True)
        self.dropout2 = nn.Dropout(dropout)
        self.fc_theta = nn.Linear(in_channels, kernel_number, bias=False)
        self.max_angle = math.radians(max_angle_deg)
        for weight in (self.dwc.weight, self.fc_alpha.weight, self.fc_theta.weight):
            nn.init.trunc_normal_(weight, std=0.02)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = F.relu(self.norm(self.dwc(x))).mean(dim=(2, 3))
        alphas = torch.sigmoid(self.fc_alpha(self.dropout1(pooled)))
        angles = F.softsign(self.fc_theta(self.dropout2(pooled))) * self.max_angle
        return alphas, angles


class AdaptiveRotatedConv2d(nn.Module):
    """3×3 convolution whose K kernels are rotated and mixed per sample (RMSIN's ARC)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_number: int = 1,
                 padding: int = 1, dilation: int = 1):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.padding, self.dilation = padding, dilation
        self.weight = nn.Parameter(torch.empty(kernel_number, out_channels, in_channels, 3, 3))
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        # Name kept from the authors' code: their checkpoints store it as `rounting_func.*`.
        self.rounting_func = RoutingFunction(in_channels, kernel_number)

    def mixed_kernels(self, alphas: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
        """Per-sample kernels (B, Cout, Cin, 3, 3): sum_k alpha_k · rotate(W_k, theta_k)."""
        rot = kernel_rotation_matrix(angles) * alphas[..., None, None]  # B, K, 9, 9
        flat = self.weight.flatten(3)  # K, Cout, Cin, 9
        mixed = torch.einsum("bkpq,koiq->boip", rot, flat)
        return mixed.reshape(-1, self.out_channels, self.in_channels, 3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        kernels = self.mixed_kernels(*self.rounting_func(x))
        # One grouped convolution applies every sample's own kernel.
        out = F.conv2d(x.reshape(1, b * c, h, w), kernels.reshape(-1, c, 3, 3),
                       padding=self.padding, dilation=self.dilation, groups=b)
        return out.reshape(b, self.out_channels, *out.shape[-2:])


class SpatialImageLanguageAttention(nn.Module):
    """Each pixel attends over the words; returns one language vector per pixel.

    ``query_norm`` is ``"instance"`` in RMSIN/LAVT (statistics over the whole image) and
    ``"none"`` for tile-wise models, whose output must not depend on what else is in the tile.
    """

    def __init__(self, v_in_channels: int, l_in_channels: int, key_channels: int,
                 value_channels: int, out_channels: int | None = None, num_heads: int = 1,
                 query_norm: str = "instance"):
        super().__init__()
        out_channels = out_channels or value_channels
        self.key_channels, self.value_channels, self.num_heads = key_channels, value_channels, num_heads

        def norm(ch: int) -> nn.Module:
            return nn.InstanceNorm1d(ch) if query_norm == "instance" else nn.Identity()

        self.f_key = nn.Sequential(nn.Conv1d(l_in_channels, key_channels, 1))
        self.f_query = nn.Sequential(nn.Conv1d(v_in_channels, key_channels, 1), norm(key_channels))
        self.f_value = nn.Sequential(nn.Conv1d(l_in_channels, value_channels, 1))
        self.W = nn.Sequential(nn.Conv1d(value_channels, out_channels, 1), norm(out_channels))

    def forward(self, x: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
        """x: B×HW×Cv; words: B×Cl×N; word_mask: B×N×1. Returns B×HW×Cout."""
        b, hw = x.shape[:2]
        heads = self.num_heads
        mask = word_mask.permute(0, 2, 1)  # B×1×N
        query = self.f_query(x.permute(0, 2, 1)).permute(0, 2, 1)
        query = query.reshape(b, hw, heads, -1).permute(0, 2, 1, 3)  # B×h×HW×d
        key = (self.f_key(words) * mask).reshape(b, heads, self.key_channels // heads, -1)
        value = (self.f_value(words) * mask).reshape(b, heads, self.value_channels // heads, -1)
        sim = torch.matmul(query, key) * self.key_channels ** -0.5
        # Padding words get a large negative score (the authors' additive form, kept for parity).
        sim = sim + (1e4 * mask.unsqueeze(1) - 1e4)
        out = torch.matmul(sim.softmax(dim=-1), value.transpose(2, 3))
        out = out.permute(0, 2, 1, 3).reshape(b, hw, self.value_channels)
        return self.W(out.permute(0, 2, 1)).permute(0, 2, 1)


class PWAM(nn.Module):
    """Pixel-word attention module (LAVT): visual features gated by per-pixel language."""

    def __init__(self, dim: int, v_in_channels: int, l_in_channels: int, key_channels: int,
                 value_channels: int, num_heads: int = 1, dropout: float = 0.0,
                 query_norm: str = "instance"):
        super().__init__()
        self.vis_project = nn.Sequential(nn.Conv1d(dim, dim, 1), nn.GELU(), nn.Dropout(dropout))
        self.image_lang_att = SpatialImageLanguageAttention(
            v_in_channels, l_in_channels, key_channels, value_channels,
            out_channels=value_channels, num_heads=num_heads, query_norm=query_norm)
        self.project_mm = nn.Sequential(nn.Conv1d(value_channels, value_channels, 1), nn.GELU(),
                                        nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
        """x: B×HW×C → B×HW×C multimodal features."""
        vis = self.vis_project(x.permute(0, 2, 1))
        lang = self.image_lang_att(x, words, word_mask).permute(0, 2, 1)
        return self.project_mm(vis * lang).permute(0, 2, 1)
