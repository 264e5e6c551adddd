"""One referring sample (image, expression, mask) and the torch dataset that serves them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from georefseg.data.augment import dihedral, random_boxes
from georefseg.data.imageio import read_image, read_mask
from georefseg.errors import DatasetError

SPLITS = ("train", "val", "test")
# Training augmentations: a random flip or quarter turn that keeps direction words true, or the
# RMSIN authors' occlusion boxes on a fixed fifth of the samples.
AUGMENTATIONS = ("dihedral", "boxes")
BOXED_SHARE = 0.2


@dataclass
class RefSample:
    """An image–expression pair; ``mask`` is a mask file, a function that draws it, or None
    when the expression refers to nothing in the image."""

    id: str
    image: Path
    expression: str
    split: str
    mask: Path | Callable[[], np.ndarray] | None
    kinds: list[str] = field(default_factory=list)

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """Image (H×W×3 uint8) and target mask (H×W bool)."""
        image = read_image(self.image)
        if self.mask is None:
            target = np.zeros(image.shape[:2], bool)
        elif callable(self.mask):
            target = self.mask()
        else:
            target = read_mask(self.mask)
        if target.shape != image.shape[:2]:
            raise DatasetError(f"mask of sample {self.id} is {target.shape[1]}×{target.shape[0]} px but "
                               f"its image {self.image} is {image.shape[1]}×{image.shape[0]} px")
        return image, target


class ReferringDataset(Dataset):
    """Samples as tensors: image 3×S×S in [0, 1], mask 1×S×S in {0, 1}, the expression.

    ``augment`` is None or one of :data:`AUGMENTATIONS`; its draws depend on (seed, epoch,
    sample) only, so a resumed run sees the same images as an uninterrupted one.
    """

    def __init__(self, samples: Sequence[RefSample], size: int, augment: str | None = None, seed: int = 0):
        if not samples:
            raise DatasetError("the dataset split is empty")
        if augment not in (None, *AUGMENTATIONS):
            raise DatasetError(f"unknown {{param}} {augment!r}: use one of {', '.join(AUGMENTATIONS)}",
                               param="augment")
        self.samples, self.size, self.augment, self.seed = list(samples), size, augment, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        s = self.samples[i]
        image, mask = s.load()
        rng = np.random.default_rng([self.seed, self.epoch, i])
        k = int(rng.integers(8)) if self.augment == "dihedral" else 0
        # The boxed fifth is fixed for the run (the authors draw it once); the boxes move.
        if self.augment == "boxes" and np.random.default_rng([self.seed, i]).random() < BOXED_SHARE:
            image = random_boxes(image, rng)
        return to_item(image, mask, s.expression, s.id, self.size, k)


def to_item(image: np.ndarray, mask: np.ndarray, text: str, sample_id: str, size: int,
            k: int = 0) -> dict:
    """Tensors for one sample after the k-th dihedral transform, resized to size×size."""
    if k:
        image, mask, text = dihedral(image, mask, text, k)
    img = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0
    msk = torch.from_numpy(np.ascontiguousarray(mask)).float()[None]
    if img.shape[-2:] != (size, size):
        img = F.interpolate(img[None], size=(size, size), mode="bilinear",
                            align_corners=False, antialias=True)[0]
        msk = (F.interpolate(msk[None], size=(size, size), mode="bilinear",
                             align_corners=False)[0] >= 0.5).float()
    return {"image": img, "mask": msk, "expression": text, "present": float(mask.any()),
            "id": sample_id}


def collate(batch: list[dict]) -> dict:
    return {"image": torch.stack([b["image"] for b in batch]),
            "mask": torch.stack([b["mask"] for b in batch]),
            "present": torch.tensor([b["present"] for b in batch]),
            "expression": [b["expression"] for b in batch],
            "id": [b["id"] for b in batch]}


def object_words(expressions) -> set[str]:
    """The object words a set of training expressions names: each subject as the reader asks the
    model for it, without its article ("the white storage tanks" → "white storage tank"). What a
    model trained on them can know (:meth:`georefseg.models.card.ModelCard.unknown_word` reads
    the last word of each)."""
    from georefseg.expression import parse_expression

    words = set()
    for text in expressions:
        subject = parse_expression(text).subject
        words.add(" ".join(w for w in subject.split() if w not in ("the", "a", "an")))
    return {w for w in words if w}
