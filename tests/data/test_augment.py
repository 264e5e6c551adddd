"""Flips and turns keep direction words true."""

from __future__ import annotations

import numpy as np

from georefseg.data.augment import dihedral, has_direction_words


def _scene():
    img = np.zeros((8, 10, 3), np.uint8)
    mask = np.zeros((8, 10), bool)
    mask[1:3, 0:2] = True  # upper left
    img[mask] = 255
    return img, mask


def test_horizontal_flip_swaps_left_and_right():
    img, mask = _scene()
    im2, m2, text = dihedral(img, mask, "the tank in the upper left, left of the road", 1)
    assert text == "the tank in the upper right, right of the road"
    assert m2[1:3, 8:10].all() and np.array_equal(im2[..., 0] > 0, m2)


def test_vertical_flip_swaps_top_and_bottom():
    img, mask = _scene()
    _, m2, text = dihedral(img, mask, "the topmost ship above the bridge", 2)
    assert text == "the bottommost ship below the bridge"
    assert m2[5:7, 0:2].all()


def test_transpose_only_without_direction_words():
    img, mask = _scene()
    im2, m2, text = dihedral(img, mask, "the large white tank", 4)
    assert m2.shape == (10, 8) and im2.shape == (10, 8, 3) and text == "the large white tank"
    im3, m3, text = dihedral(img, mask, "the tank on the left", 5)
    assert m3.shape == (8, 10) and text == "the tank on the right"  # turned into a plain flip
    assert has_direction_words("north of the lake") and not has_direction_words("the largest ship")
