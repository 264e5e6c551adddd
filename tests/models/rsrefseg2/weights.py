"""Deterministic random weights and inputs for the RSRefSeg 2 parity fixture.

Every tensor is drawn from a generator seeded by its name, so the fixture script (run once in
the authors' environment) and the tests (run here) build the same weights from the same names
without shipping them. Pure torch: the fixture script imports this file by path.
"""

from __future__ import annotations

import math
import zlib

import torch

SENTENCES = ("the château's white tank by the river bank", "ships")
# (height, width) of each image's content inside its 1024² input: the second is letterboxed.
CONTENT = ((1024, 1024), (768, 1024))


def tensor(seed: str, shape) -> torch.Tensor:
    """A float32 tensor (long for BatchNorm's counter) for the parameter or buffer ``seed``
    names: norm scales near 1, biases and 1-D parameters near 0, running variances in
    [0.5, 1.5], weights scaled by 1/√fan-in, LoRA's B ten times smaller."""
    g = torch.Generator().manual_seed(zlib.crc32(seed.encode()))
    shape = tuple(shape)
    leaf = seed.rsplit(".", 1)[-1]
    if leaf == "num_batches_tracked":
        return torch.tensor(0)
    if leaf == "running_var":
        return 0.5 + torch.rand(shape, generator=g)
    if len(shape) <= 1:
        values = 0.1 * torch.randn(shape, generator=g)
        return values + 1 if leaf == "weight" else values
    scale = 1 / math.sqrt(math.prod(shape[1:]))
    if "lora_B" in seed:
        scale *= 0.1
    return scale * torch.randn(shape, generator=g)


def images() -> torch.Tensor:
    """2×3×1024×1024 RGB in [0, 1] in 1/255 steps, each content zero-padded right and bottom."""
    g = torch.Generator().manual_seed(2025)
    out = torch.zeros(len(CONTENT), 3, 1024, 1024)
    for i, (h, w) in enumerate(CONTENT):
        coarse = torch.rand(1, 3, 24, 24, generator=g)
        fine = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
        out[i, :, :h, :w] = (fine.clamp(0, 1) * 255).round()[0] / 255
    return out


def sample(logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """The parts of B×1×1024×1024 logits the fixture keeps: a 256² lattice (every 4th pixel,
    offset 1), the first 8 rows whole and a 64² block at the centre."""
    return {"lattice": logits[:, 0, 1::4, 1::4].clone(), "rows": logits[:, 0, :8, :].clone(),
            "centre": logits[:, 0, 480:544, 480:544].clone()}
