"""RMSIN's decoder ("SimpleDecoding"): top-down fusion of the four stage maps, with an
adaptive rotated convolution in every fusion step. Names match the authors' module."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from georefseg.models.layers import AdaptiveRotatedConv2d


class SimpleDecoding(nn.Module):
    """Stage 4+3, then +2, then +1: each step concat → 3×3 conv-BN-ReLU → ARC-BN-ReLU.

    Returns 2-channel (background, target) logits at stride 4.
    """

    def __init__(self, c4_dims: int, factor: int = 2):
        super().__init__()
        hidden = c4_dims // factor
        # Input widths of the three steps: stage 4 + stage 3, then running map + stage 2, + stage 1.
        widths = (c4_dims + c4_dims // factor, hidden + c4_dims // factor ** 2,
                  hidden + c4_dims // factor ** 3)
        for step, skip in zip(("4", "3", "2"), widths, strict=True):
            self.add_module(f"conv1_{step}", nn.Conv2d(skip, hidden, 3, padding=1, bias=False))
            self.add_module(f"conv2_{step}", AdaptiveRotatedConv2d(hidden, hidden, kernel_number=1))
            self.add_module(f"bn1_{step}", nn.BatchNorm2d(hidden))
            self.add_module(f"bn2_{step}", nn.BatchNorm2d(hidden))
        self.conv1_1 = nn.Conv2d(hidden, 2, 1)

    def _step(self, step: str, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] < skip.shape[-2] or x.shape[-1] < skip.shape[-1]:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        x = torch.cat([x, skip], dim=1)
        x = F.relu(getattr(self, f"bn1_{step}")(getattr(self, f"conv1_{step}")(x)))
        return F.relu(getattr(self, f"bn2_{step}")(getattr(self, f"conv2_{step}")(x)))

    def forward(self, c4: torch.Tensor, c3: torch.Tensor, c2: torch.Tensor,
                c1: torch.Tensor) -> torch.Tensor:
        x = self._step("4", c4, c3)
        x = self._step("3", x, c2)
        return self.conv1_1(self._step("2", x, c1))
