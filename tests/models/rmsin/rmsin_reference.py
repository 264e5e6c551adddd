"""Reference data for RMSIN parity: deterministic weights and inputs.

Deterministic weights depend only on each tensor's name and shape (a PCG64 stream seeded with
the CRC-32 of the name), never on module construction order, so any implementation with the
authors' state-dict names gets identical weights. The fixture in tests/assets/rmsin/ holds
what the RMSIN authors' own model code (github.com/Lsan2401/RMSIN, commit b4a9b27, run outside
this repository with stand-ins for its training-only imports) outputs for these weights and
inputs, computed in float64: the key manifest of their Swin-B model, the token ids of their
tokenisation, and their logits at every 8th pixel. Their code cannot run swin_type 'tiny' as
published (its cross-scale module is fixed to Swin-B widths); for the tiny reference their
cross-scale module was given the real stage widths, which for Swin-B is what it uses anyway.
Nothing of their code is in this repository.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import torch

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "rmsin"
EXPRESSION = "the white storage tank to the left of the large building near the river"
STRIDE = 8  # reference logits are kept at every 8th pixel of the 480×480 output
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)[:, None, None]
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)[:, None, None]


def deterministic_tensor(name: str, like: torch.Tensor) -> torch.Tensor:
    """A fixed, well-scaled value for the state-dict entry ``name`` (integers kept as given)."""
    if not like.is_floating_point():
        return like.clone()  # window index tables and BN counters: the module's own values
    shape = tuple(like.shape)
    rng = np.random.Generator(np.random.PCG64(zlib.crc32(name.encode())))
    s = 2.0 * rng.random(int(np.prod(shape)), dtype=np.float32) - 1.0  # uniform in [-1, 1)
    if name.endswith("running_var"):
        values = 1.0 + 0.5 * s
    elif name.endswith("running_mean"):
        values = 0.2 * s
    elif name.endswith("relative_position_bias_table"):
        values = 0.5 * s
    elif len(shape) == 1:  # norm scales and biases
        values = 1.0 + 0.2 * s if name.endswith("weight") else 0.05 * s
    else:  # variance-preserving uniform; the 5-D ARC weight is K kernels of Cout×Cin×3×3
        fan_in = int(np.prod(shape[2:] if len(shape) == 5 else shape[1:]))
        # BERT's layers get a quarter of that: a random 12-layer BERT at full scale maps all
        # words to nearly the same vector, which leaves pixel-word attention nothing to test.
        gain = 0.25 if name.startswith("text_encoder.encoder.") else 1.0
        values = s * np.float32(gain * np.sqrt(3.0 / fan_in))
    return torch.from_numpy(values.astype(np.float32).reshape(shape))


def deterministic_state(template: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Deterministic values for every entry of a state dict."""
    return {name: deterministic_tensor(name, t) for name, t in template.items()}


def weight_checksum(state: dict[str, torch.Tensor]) -> float:
    """Sum of |w| over the floating-point entries: guards the generator against drift."""
    return float(sum(t.double().abs().sum() for t in state.values() if t.is_floating_point()))


def reference_image() -> np.ndarray:
    """3×480×480 uint8: smooth shapes and noise drawn at 120×120, repeated 4×4 per pixel."""
    rng = np.random.Generator(np.random.PCG64(2024))
    yy, xx = np.mgrid[0:120, 0:120].astype(np.float32) / 119.0
    base = np.stack([0.3 + 0.4 * xx, 0.5 + 0.3 * np.sin(6 * yy), 0.4 + 0.3 * xx * yy])
    base[:, 30:60, 70:100] = np.array([0.9, 0.9, 0.85])[:, None, None]  # a bright "tank"
    base[:, 80:110, 10:50] = np.array([0.2, 0.25, 0.3])[:, None, None]  # a dark "building"
    img = np.clip(base + 0.08 * rng.standard_normal(base.shape), 0.0, 1.0)
    small = np.round(img * 255).astype(np.uint8)
    return small.repeat(4, axis=1).repeat(4, axis=2)


def normalise(image: np.ndarray) -> torch.Tensor:
    """uint8 3×H×W → ImageNet-normalised 1×3×H×W float32, as ToTensor + Normalize do."""
    x = image.astype(np.float32) / np.float32(255.0)
    return torch.from_numpy((x - MEAN) / STD)[None]


def sample_logits(logits: torch.Tensor) -> np.ndarray:
    """The every-8th-pixel grid of 1×2×480×480 logits (2×60×60)."""
    return logits[0, :, ::STRIDE, ::STRIDE].numpy()
