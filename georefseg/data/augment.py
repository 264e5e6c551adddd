"""Geometric augmentation that keeps direction words true.

Overhead images have no natural "up", so flips and quarter turns are fair augmentations,
but "the tank on the left" is no longer on the left after a horizontal flip. The words are
rewritten with the image; turns that swap the axes are only used when the expression
has no direction words at all.
"""

from __future__ import annotations

import re

import numpy as np

_H_SWAP = {"left": "right", "right": "left", "leftmost": "rightmost", "rightmost": "leftmost",
           "west": "east", "east": "west", "western": "eastern", "eastern": "western",
           "westernmost": "easternmost", "easternmost": "westernmost"}
_V_SWAP = {"top": "bottom", "bottom": "top", "upper": "lower", "lower": "upper",
           "topmost": "bottommost", "bottommost": "topmost", "above": "below", "below": "above",
           "north": "south", "south": "north", "northern": "southern", "southern": "northern",
           "northernmost": "southernmost", "southernmost": "northernmost"}
_DIRECTION_WORDS = set(_H_SWAP) | set(_V_SWAP)
_WORD = re.compile(r"[a-z]+")


def has_direction_words(text: str) -> bool:
    return any(w in _DIRECTION_WORDS for w in _WORD.findall(text.lower()))


def _swap(text: str, table: dict[str, str]) -> str:
    return _WORD.sub(lambda m: table.get(m.group(0), m.group(0)), text.lower())


def dihedral(image: np.ndarray, mask: np.ndarray, text: str, k: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Apply the k-th of the 8 flips/quarter turns (0 = identity) to image (H×W×C), mask, text.

    k in 0..3: no flip / horizontal / vertical / both (a half turn); words are swapped.
    k in 4..7: the same after a transpose, which only happens without direction words
    (otherwise k is reduced to k - 4).
    """
    if k >= 4:
        if has_direction_words(text):
            k -= 4
        else:
            image, mask = image.transpose(1, 0, 2), mask.T
            k -= 4
    if k & 1:
        image, mask, text = image[:, ::-1], mask[:, ::-1], _swap(text, _H_SWAP)
    if k & 2:
        image, mask, text = image[::-1], mask[::-1], _swap(text, _V_SWAP)
    return image, mask, text


def random_boxes(image: np.ndarray, rng: np.random.Generator, count: tuple[int, int] = (20, 60),
                 side: int = 32) -> np.ndarray:
    """``image`` (H×W×C) with 20–60 black squares of 32 px at random places: the occlusion the
    RMSIN authors' training applies to a fifth of its samples (their ``add_random_boxes``)."""
    out = image.copy()
    h, w = out.shape[:2]
    for _ in range(int(rng.integers(count[0], count[1] + 1))):
        y, x = int(rng.integers(0, max(h - side, 0) + 1)), int(rng.integers(0, max(w - side, 0) + 1))
        out[y:y + side, x:x + side] = 0
    return out
