"""Test fixtures shared by the test modules: scenes written with rasterio, a colour model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio
import torch
import torch.nn.functional as F
from affine import Affine
from scipy import ndimage

from georefseg.models.base import Instances, Prediction, ReferringSegmenter, SegOutput, TextBatch
from georefseg.models.card import ModelCard

RED = (0.9, 0.1, 0.1)


class ColourModel(ReferringSegmenter):
    """A fully-convolutional fixture with fixed weights: high logits on pixels close to one
    colour, mixed with their 5×5 neighbourhood (receptive radius 2, so seams would show).
    The centre tap dominates, so the mask edge is exactly the object's edge. Never shipped;
    tests use it to check geometry exactly."""

    name = "colour-fixture"

    instances = False  # a dense map

    def __init__(self, colour: tuple[float, float, float] = RED, tile_size: int = 128, min_overlap: int = 32):
        super().__init__()
        self.card = ModelCard(self.name, None, tile_size, min_overlap, output_stride=1, instances=self.instances)
        self.register_buffer("colour", torch.tensor(colour).view(1, 3, 1, 1))
        kernel = torch.full((1, 1, 5, 5), 0.1 / 24)
        kernel[0, 0, 2, 2] = 0.9
        self.register_buffer("kernel", kernel)

    def encode_text(self, texts: list[str]) -> TextBatch:
        n = len(texts)
        return TextBatch(torch.zeros(n, 2, dtype=torch.long), torch.ones(n, 2, dtype=torch.long))

    def segment(self, images: torch.Tensor, text: TextBatch) -> SegOutput:
        closeness = 0.3 - (images - self.colour).abs().sum(1, keepdim=True)
        return SegOutput(F.conv2d(40 * closeness, self.kernel, padding=2))


class WordColourModel(ColourModel):
    """Like ColourModel, but the colour comes from the expression's first colour word
    ("the blue river" marks blue pixels; no colour word marks nothing), so scene-level
    grounding can be tested end to end with exact geometry."""

    name = "word-colour-fixture"
    COLOURS = {"red": RED, "blue": (0.1, 0.2, 0.9), "yellow": (0.9, 0.9, 0.1), "white": (0.95, 0.95, 0.95)}

    def __init__(self, tile_size: int = 128, min_overlap: int = 32):
        super().__init__(RED, tile_size, min_overlap)
        self.register_buffer("table", torch.tensor([(9.0, 9.0, 9.0), *self.COLOURS.values()]))

    def encode_text(self, texts: list[str]) -> TextBatch:
        names = list(self.COLOURS)
        ids = [next((1 + names.index(w) for w in t.lower().split() if w in names), 0) for t in texts]
        ids_t = torch.tensor(ids).view(-1, 1).repeat(1, 2)
        return TextBatch(ids_t, torch.ones_like(ids_t))

    def segment(self, images: torch.Tensor, text: TextBatch) -> SegOutput:
        colour = self.table[text.input_ids[:, 0]].view(-1, 3, 1, 1).to(images.dtype)
        closeness = 0.3 - (images - colour).abs().sum(1, keepdim=True)
        return SegOutput(F.conv2d(40 * closeness, self.kernel, padding=2))


class InstanceColourModel(WordColourModel):
    """Like WordColourModel, but it also tells objects apart, as an instance model (SAM 3) does:
    each connected region of one shade of its colour (red channel in steps of 16, so a few
    levels of noise do not matter) is an instance (score 0.9), so two touching roofs of
    different shades are two objects where the per-pixel map sees one. Like SAM 3, it keeps the
    instances whose score reaches ``threshold`` (default: its card's, 0.5)."""

    name = "instance-colour-fixture"
    instances = True

    def predict(self, images: torch.Tensor, phrases: TextBatch, threshold: float | None = None) -> Prediction:
        threshold = self.card.threshold if threshold is None else threshold
        logits = self.segment_phrases(images, phrases)
        instances = []
        for b in range(len(images)):
            shade = (images[b, 0] * 255).round().cpu().numpy().astype(int) // 16
            per_phrase = []
            for k in range(len(phrases)):
                on = (logits[b, k] > 0).cpu().numpy()
                masks = []
                for value in np.unique(shade[on]):
                    labels, n = ndimage.label(on & (shade == value))
                    masks += [labels == i for i in range(1, n + 1)]
                stack = np.array(masks, bool).reshape(-1, *on.shape)
                scores = torch.full((len(stack),), 0.9)
                keep = (scores >= threshold).numpy()
                per_phrase.append(Instances(torch.from_numpy(stack[keep]), scores[keep]))
            instances.append(per_phrase)
        return Prediction(logits, instances)


def write_scene(path: Path, image: np.ndarray, crs: str, transform: Affine, nodata=None,
                **profile) -> Path:
    """Write a C×H×W array as a GeoTIFF."""
    with rasterio.open(path, "w", driver=profile.pop("driver", "GTiff"), width=image.shape[2],
                       height=image.shape[1], count=image.shape[0], dtype=image.dtype, crs=crs,
                       transform=transform, nodata=nodata, **profile) as dst:
        dst.write(image)
    return path


def scene_with_square(height: int, width: int, box: tuple[int, int, int, int],
                      colour=(230, 25, 25), background=(90, 120, 80), dtype="uint8") -> np.ndarray:
    """A plain scene with one coloured rectangle at rows box[0]:box[1], cols box[2]:box[3]."""
    img = np.empty((3, height, width), dtype)
    for b in range(3):
        img[b] = background[b]
        img[b, box[0]:box[1], box[2]:box[3]] = colour[b]
    rng = np.random.default_rng(0)
    noise = rng.integers(-3, 4, img.shape)
    return np.clip(img.astype(int) + noise, 0, np.iinfo(dtype).max).astype(dtype)


WORDS = ["the", "red", "roof", "storage", "tank", "river", "building", "near", "ship"]


def clip_tokenizer(folder: Path):
    """A CLIP byte-pair tokenizer over WORDS, written into ``folder``: characters, then the
    merges that build each word (what CLIPSeg's and SAM 3's folders hold, in miniature)."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    chars = sorted(set("".join(WORDS)))
    for c in chars + [c + "</w>" for c in chars]:
        vocab[c] = len(vocab)
    merges = []
    for w in WORDS:
        toks = list(w[:-1]) + [w[-1] + "</w>"]
        while len(toks) > 1:
            if f"{toks[0]} {toks[1]}" not in merges:
                merges.append(f"{toks[0]} {toks[1]}")
            vocab.setdefault(toks[0] + toks[1], len(vocab))
            toks = [toks[0] + toks[1], *toks[2:]]
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
