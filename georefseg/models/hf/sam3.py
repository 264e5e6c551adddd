"""SAM 3 (Meta, 2025; promptable concept segmentation) from a local Hugging Face folder.

``--model sam3 --checkpoint DIR`` (or ``--model DIR``): DIR holds the model's Hugging Face
files — ``config.json`` (model_type ``sam3``), the weights, the tokenizer and the processor
config — as ``save_pretrained`` writes them or a hub-cache snapshot; the published weights are
``facebook/sam3``. Loaded with transformers offline (``local_files_only``), never fetched.

A short noun phrase in, every matching instance out: per tile the model gives query masks,
query scores and a presence score. As transformers' own post-processing does, an instance's
score is sigmoid(query logit) × sigmoid(presence logit), instances above ``threshold`` are
kept and their masks, resized bilinearly to the tile, are cut at 0.5; the engine keeps them as
instances (:meth:`SAM3Segmenter.predict`), and the per-pixel map it blends is, at each pixel,
the highest instance score times that instance's mask probability. SAM 3's image processor
needs torchvision, which does not import beside the CPU torch wheel, so its preprocessing is
written out here from the processor config: resize to its size (1008 px for the published
weights; bilinear, antialiased), rescale by 1/255, normalise with its mean and std. The image
encoder runs once per tile for all phrases, the text encoder once per run.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from georefseg.calibration import Calibration
from georefseg.errors import ModelError
from georefseg.models.base import Backend, Instances, Prediction, ReferringSegmenter, SegOutput, TextBatch
from georefseg.models.card import ModelCard
from georefseg.models.hf.folder import PROCESSOR_CONFIGS, find_folder, input_size, processor_config
from georefseg.models.text import offline

KIND = "sam3"
NEEDS = {"the tokenizer": ("tokenizer.json", "vocab.json"), "the processor config": PROCESSOR_CONFIGS}
INPUT_PX = 1008  # the published processor's input side
THRESHOLD = 0.3  # transformers' default instance score cut-off for SAM 3
OUTPUT_STRIDE = 4  # masks come from the FPN's finest level: ~4 input pixels per cell


def processor_settings(folder: Path | None) -> dict:
    """Resize, rescale and normalisation of the processor config (published defaults else)."""
    data = processor_config(folder)
    settings = {"rescale_factor": 1 / 255, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}
    settings.update({k: data[k] for k in settings if k in data})
    return {**settings, "size": input_size(data, INPUT_PX)}


class SAM3Segmenter(ReferringSegmenter):
    """A SAM 3 model and its tokenizer, run tile by tile (see the module docstring)."""

    name = KIND

    def __init__(self, model, tokenizer, settings: dict, card: ModelCard):
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        super().__init__()
        self._text_output = BaseModelOutputWithPooling  # how the network takes precomputed text features
        self.net, self.tokenizer, self.card = model, tokenizer, card
        self.input_px = settings["size"]
        self.rescale = float(settings["rescale_factor"])
        self.register_buffer("mean", torch.tensor(settings["image_mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(settings["image_std"]).view(1, 3, 1, 1), persistent=False)

    def encode_text(self, texts: list[str]) -> TextBatch:
        """Token ids and the text encoder's projected features (B×N×D), once per run."""
        enc = self.tokenizer(list(texts), padding=True, return_tensors="pt")
        with torch.inference_mode():
            feats = self.net.get_text_features(input_ids=enc["input_ids"].to(self.device),
                                               attention_mask=enc["attention_mask"].to(self.device),
                                               return_dict=True).pooler_output
        return TextBatch(enc["input_ids"], enc["attention_mask"], feats)

    def pixel_values(self, images: torch.Tensor) -> torch.Tensor:
        """The processor config's preprocessing of B×3×H×W images in [0, 1] (8-bit levels)."""
        x = (images.float().clamp(0, 1) * 255).round()
        x = F.interpolate(x, size=(self.input_px, self.input_px), mode="bilinear", align_corners=False,
                          antialias=True)
        return (x * self.rescale - self.mean) / self.std

    def _instances(self, vision, text: TextBatch, size: tuple[int, int],
                   threshold: float) -> tuple[list[Instances], torch.Tensor]:
        out = self.net(vision_embeds=vision, text_embeds=self._text_output(pooler_output=text.features),
                       attention_mask=text.attention_mask.to(self.device))
        scores = out.pred_logits.sigmoid()
        if out.presence_logits is not None:
            scores = scores * out.presence_logits.sigmoid()
        masks = F.interpolate(out.pred_masks.float().sigmoid(), size=size, mode="bilinear", align_corners=False)
        keep = scores > threshold
        found = [Instances(masks[b][keep[b]] > 0.5, scores[b][keep[b]]) for b in range(len(scores))]
        # The per-pixel map: the best instance at each pixel, its score times its mask probability.
        dense = (masks * (scores * keep)[:, :, None, None]).amax(dim=1, keepdim=True) if masks.shape[1] else \
            masks.new_zeros(len(scores), 1, *size)
        p = dense.clamp(1e-6, 1 - 1e-6)
        return found, torch.log(p) - torch.log1p(-p)

    def predict(self, images: torch.Tensor, phrases: TextBatch, threshold: float | None = None) -> Prediction:
        """Instances whose score exceeds ``threshold`` (default: the card's, transformers' 0.3) and
        per-pixel log-odds of every phrase; the image encoder once per tile."""
        threshold = self.card.threshold if threshold is None else threshold
        vision = self.net.get_vision_features(pixel_values=self.pixel_values(images))
        logits, per_phrase = [], []
        for k in range(len(phrases)):
            found, dense = self._instances(vision, phrases.select(slice(k, k + 1)).repeat_to(len(images)),
                                           images.shape[-2:], threshold)
            per_phrase.append(found)
            logits.append(dense)
        return Prediction(torch.cat(logits, dim=1), [list(row) for row in zip(*per_phrase, strict=True)])

    def segment_phrases(self, images: torch.Tensor, phrases: TextBatch) -> torch.Tensor:
        return self.predict(images, phrases).logits

    def segment(self, images: torch.Tensor, text: TextBatch) -> SegOutput:
        vision = self.net.get_vision_features(pixel_values=self.pixel_values(images))
        return SegOutput(self._instances(vision, text, images.shape[-2:], self.card.threshold)[1])


def read_card(path: Path | None) -> ModelCard:
    """(tile, overlap) from the processor's input size, a quarter of it overlapping; instances kept."""
    size = processor_settings(path)["size"]
    return ModelCard(KIND, path, size, size // 4, OUTPUT_STRIDE, threshold=THRESHOLD, instances=True,
                     calibration=Calibration.beside(path))


def find_weights(path: Path) -> Path | None:
    """A SAM 3 model folder (or hub-cache snapshot) at ``path``; None if it is not one."""
    return find_folder(path, KIND, NEEDS)


def build(card: ModelCard) -> SAM3Segmenter:
    """SAM 3 from a local folder, offline."""
    path = card.weights
    if path is None:
        raise ModelError("sam3 needs {param} DIR: a local folder with the model's Hugging Face files "
                         "(download facebook/sam3 once; see the README, \"Real imagery\")", param="checkpoint")
    offline()
    # transformers' SAM 3 classes import in seconds: only when this backend is used.
    from transformers import AutoTokenizer, Sam3Model

    model = Sam3Model.from_pretrained(str(path), local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    return SAM3Segmenter(model, tokenizer, processor_settings(path), card)


BACKEND = Backend(
    name=KIND,
    summary="SAM 3 (2025): promptable concept segmentation; a short noun phrase in, every matching instance "
            "out, with scores and a presence score",
    needs="--checkpoint DIR: a local Hugging Face folder of facebook/sam3 (config.json, model.safetensors, "
          "tokenizer, processor_config.json)",
    find=find_weights, card=read_card, build=build)
