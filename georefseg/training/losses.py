"""The losses the recipes train with."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 − Dice of sigmoid(logits) against a {0, 1} target, smoothed by 1, averaged over the batch."""
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    return (1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)).mean()


def referring_loss(logits: torch.Tensor, presence: torch.Tensor, masks: torch.Tensor,
                   present: torch.Tensor) -> torch.Tensor:
    """tiny's loss: mask BCE + Dice on samples with a referent, presence BCE (×0.5) on all."""
    loss = 0.5 * F.binary_cross_entropy_with_logits(presence, present)
    has = present > 0.5
    if has.any():
        lg, mk = logits[has], masks[has]
        loss = loss + F.binary_cross_entropy_with_logits(lg, mk) + dice_loss(lg, mk)
    return loss


RMSIN_CLASS_WEIGHTS = (0.9, 1.1)  # background, target: the authors' cross-entropy weights
RMSIN_DICE_SHARE = 0.1


def rmsin_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The RMSIN authors' loss (``loss/loss.py``) on B×2×H×W logits and a B×H×W {0, 1} target:
    0.9 · class-weighted cross-entropy + 0.1 · Dice, the Dice term over softmax probabilities of
    both classes, smoothed by 1e-6 and *summed* over samples and classes (not averaged)."""
    weight = torch.tensor(RMSIN_CLASS_WEIGHTS, device=logits.device, dtype=logits.dtype)
    ce = F.cross_entropy(logits, target, weight=weight)
    probs = F.softmax(logits, dim=1)
    onehot = torch.stack([(target == c).to(probs.dtype) for c in range(logits.shape[1])], dim=1)
    inter = (probs * onehot).sum(dim=(2, 3))
    union = (probs + onehot).sum(dim=(2, 3))
    dice = (1 - (2 * inter + 1e-6) / (union + 1e-6)).sum()
    return (1 - RMSIN_DICE_SHARE) * ce + RMSIN_DICE_SHARE * dice
