"""RMSIN's scale-interaction modules: the intra-scale various-receptive-field branch and the
cross-scale interaction module (CIM) that mixes the four backbone stages.

Attribute names (``brb_3x3``, ``csa1.m``, ``DWConv1`` …) and the order of every operation
follow the RMSIN authors' modules, so their checkpoints load key for key and give the same
numbers. Two of their reshapes reinterpret memory rather than transpose axes (marked below);
they are reproduced on purpose because the trained weights depend on them.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn


def _conv_bn(cin: int, cout: int, kernel: int, groups: int = 1) -> nn.Sequential:
    conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, groups=groups, bias=False)
    return nn.Sequential(OrderedDict(conv=conv, bn=nn.BatchNorm2d(cout)))


def _conv_bn_conv_bn(cin: int, cout: int) -> nn.Sequential:
    """1×1 conv, BN, 3×3 conv, BN in sequence (the authors' "3×3" branch)."""
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(cin, cout, 1, bias=False), bn1=nn.BatchNorm2d(cout),
        conv2=nn.Conv2d(cin, cout, 3, padding=1, bias=False), bn2=nn.BatchNorm2d(cout)))


class RepBlock(nn.Module):
    """Two rounds of (1×1 + 1×1→3×3 + identity-BN) branches; returns a sigmoid gate."""

    def __init__(self, channels: int = 1):
        super().__init__()
        self.brb_3x3 = _conv_bn_conv_bn(channels, channels)
        self.brb_1x1 = _conv_bn(channels, channels, 1)
        self.brb_identity = nn.BatchNorm2d(channels)
        self.brb_3x3_2 = _conv_bn_conv_bn(channels, channels)
        self.brb_1x1_2 = _conv_bn(channels, channels, 1)
        self.brb_identity_2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.brb_1x1(x) + self.brb_3x3(x) + self.brb_identity(x))
        return torch.sigmoid(self.brb_1x1_2(x) + self.brb_3x3_2(x) + self.brb_identity_2(x))


class VariousReceptive(nn.Module):
    """Intra-scale branch: a spatial gate computed from the channel-mean map rescales tokens."""

    def __init__(self):
        super().__init__()
        self.repblock = RepBlock(1)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """x: B×(H·W)×C → B×(H·W)×C."""
        b, n, c = x.shape
        # Tokens are in row-major (H, W) order, so this is a plain layout change.
        grid = x.view(b, h, w, c).permute(0, 3, 1, 2)
        gate = self.repblock(grid.mean(dim=1, keepdim=True))
        return (grid * gate).reshape(b, c, n).permute(0, 2, 1)


class Residual(nn.Module):
    """x + m(x); the wrapped module sits at ``.m`` as in the checkpoints."""

    def __init__(self, m: nn.Module):
        super().__init__()
        self.m = m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.m(x)


class LinearBN(nn.Sequential):
    """Bias-free linear layer followed by BatchNorm over all tokens (``c``, ``bn``)."""

    def __init__(self, cin: int, cout: int):
        super().__init__(OrderedDict(c=nn.Linear(cin, cout, bias=False), bn=nn.BatchNorm1d(cout)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.c(x)
        return self.bn(y.flatten(0, 1)).reshape_as(y)


def _hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    # Written as relu6(x + 3) / 6 rather than F.hardsigmoid to round exactly as the authors do.
    return F.relu6(x + 3) / 6


class ScaleAwareGate(nn.Module):
    """Fuses a stage map (local) with the CIM output (global) via a hard-sigmoid gate."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.local_embedding = nn.Conv2d(cin, cout, 1)
        self.bn1 = nn.BatchNorm2d(cout)
        self.global_embedding = nn.Conv2d(cin, cout, 1)
        self.bn2 = nn.BatchNorm2d(cout)
        self.global_act = nn.Conv2d(cin, cout, 1)
        self.bn3 = nn.BatchNorm2d(cout)

    def forward(self, local: torch.Tensor, glob: torch.Tensor) -> torch.Tensor:
        size = local.shape[-2:]
        feat = self.bn1(self.local_embedding(local))
        glob_feat = F.interpolate(self.bn2(self.global_embedding(glob)), size=size,
                                  mode="bilinear", align_corners=False)
        gate = F.interpolate(_hard_sigmoid(self.bn3(self.global_act(glob))), size=size,
                             mode="bilinear", align_corners=False)
        return feat * gate + glob_feat


class Attention(nn.Module):
    """Attention over the tokens of three scales of one map, plus a depthwise-conv value path.

    ``img_shape`` is the number of tokens of the full-resolution map (15² for 480-pixel
    inputs) and ``att_shape`` the number of tokens of all three scales (15² + 8² + 5²); both
    fix parameter shapes, so the model only runs at the input size it was built for.
    """

    def __init__(self, dim: int, img_shape: int, att_shape: int, key_dim: int = 32,
                 num_heads: int = 8, attn_ratio: int = 2):
        super().__init__()
        self.num_heads, self.key_dim, self.img_shape = num_heads, key_dim, img_shape
        self.scale = key_dim ** -0.5
        self.d = attn_ratio * key_dim
        self.dh = self.d * num_heads
        self.qkv = LinearBN(dim, self.dh + 2 * key_dim * num_heads)
        self.parallel_conv = nn.Sequential(
            nn.Hardswish(), nn.Conv2d(self.dh, self.dh, 3, padding=1, groups=self.dh))
        self.to_out = nn.Linear(self.dh, dim)
        self.proj = nn.Linear(att_shape, img_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: B×N×C with the full-resolution map's tokens first → B×img_shape×C."""
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, self.num_heads, -1).split(
            [self.key_dim, self.key_dim, self.d], dim=3)
        q, k, v = q.permute(0, 2, 1, 3), k.permute(0, 2, 1, 3), v.permute(0, 2, 1, 3)
        side = int(self.img_shape ** 0.5)
        # Memory reinterpretation (heads×tokens×d read as channels×side×side), as the authors do.
        v_img = v[:, :, :self.img_shape, :].reshape(b, self.dh, side, -1)
        v_conv = self.parallel_conv(v_img).flatten(2)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        # Memory reinterpretation again (tokens×heads×d read as channels×tokens).
        out = (attn @ v).transpose(1, 2).reshape(b, -1, n)
        out = self.proj(out) + v_conv
        return self.to_out(out.permute(0, 2, 1))


class CrossScaleAttention(nn.Module):
    """Attention across the map and its stride-2 and stride-3 depthwise-downsampled copies."""

    def __init__(self, dim: int, img_shape: int = 225, att_shape: int = 314):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(dim)
        self.DWConv1 = nn.Sequential(nn.Conv2d(dim, dim, 3, stride=2, padding=1, groups=dim),
                                     nn.BatchNorm2d(dim))
        self.DWConv2 = nn.Sequential(nn.Conv2d(dim, dim, 5, stride=3, padding=2, groups=dim),
                                     nn.BatchNorm2d(dim))
        self.attention = Attention(dim, img_shape, att_shape)
        self.bn4 = nn.BatchNorm2d(dim)
        self.activate = nn.Hardswish()
        self.conv = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x0 = self.bn1(x)
        scales = [x0, self.DWConv1(x0), self.DWConv2(x0)]
        tokens = torch.cat([s.reshape(b, c, -1) for s in scales], dim=2).permute(0, 2, 1)
        out = self.attention(tokens).permute(0, 2, 1).reshape(b, c, h, w)
        return self.conv(self.activate(self.bn4(out)))


class FeedForward(nn.Module):
    """BN → 1×1 expand → BN → grouped 3×3 → ReLU6 → 1×1 project."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(dim)
        self.conv1 = nn.Conv2d(dim, hidden, 1)
        self.bn2 = nn.BatchNorm2d(hidden)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, padding=1, groups=dim)
        self.conv3 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(F.relu6(self.conv2(self.bn2(self.conv1(self.bn1(x))))))


class IntraFeedForward(nn.Module):
    """A separate residual feed-forward for each stage's share of the reduced channels."""

    def __init__(self, channels: list[int], mlp_ratio: int = 2):
        super().__init__()
        self.channels = [c // 4 for c in channels]
        for i, c in enumerate(self.channels, start=1):
            self.add_module(f"ff{i}", Residual(FeedForward(c, mlp_ratio * c)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = x.split(self.channels, dim=1)
        return torch.cat([getattr(self, f"ff{i}")(p) for i, p in enumerate(parts, start=1)], 1)


class CIMBlock(nn.Module):
    """Cross-scale attention, per-stage feed-forward, cross-scale attention, feed-forward."""

    def __init__(self, dim: int, channels: list[int], mlp_ratio: int = 2):
        super().__init__()
        self.csa1 = Residual(CrossScaleAttention(dim))
        self.intra_ff = Residual(IntraFeedForward(channels, mlp_ratio))
        self.csa2 = Residual(CrossScaleAttention(dim))
        self.ff = Residual(FeedForward(dim, dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ff(self.csa2(self.intra_ff(self.csa1(x))))


class CIM(nn.Module):
    """Cross-scale interaction: pool all stages to the coarsest grid, mix them there, and
    gate each stage with its share of the result.

    ``channels`` are the stage widths. The authors' code fixes them to Swin-B's
    (128, 256, 512, 1024), the only variant it can run; passing the real widths gives the
    identical module for Swin-B and a working one for the other variants.
    """

    def __init__(self, channels: list[int], num_layers: int = 1):
        super().__init__()
        dim = sum(channels)
        self.channels = list(channels)
        self.down_channel = nn.Conv2d(dim, dim // 4, 1)
        self.up_channel = nn.Conv2d(dim // 4, dim, 1)
        self.block = nn.ModuleList(CIMBlock(dim // 4, self.channels) for _ in range(num_layers))
        self.bn = nn.BatchNorm2d(dim // 4)
        self.fusion = nn.ModuleList(ScaleAwareGate(c, c) for c in self.channels)

    def forward(self, stages: list[torch.Tensor]) -> list[torch.Tensor]:
        size = stages[-1].shape[-2:]
        x = torch.cat([F.adaptive_avg_pool2d(s, size) for s in stages], dim=1)
        x = self.down_channel(x)
        for block in self.block:
            x = block(x)
        shares = self.up_channel(self.bn(x)).split(self.channels, dim=1)
        return [gate(s, g) for gate, s, g in zip(self.fusion, stages, shares, strict=True)]
