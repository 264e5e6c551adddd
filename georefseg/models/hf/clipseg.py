"""CLIPSeg (Lüddecke & Ecker, CVPR 2022) from a local Hugging Face folder: a dense text heat map.

``--model clipseg --checkpoint DIR`` (or ``--model DIR``): DIR holds the model's Hugging Face
files — ``config.json`` (model_type ``clipseg``), the weights, the CLIP tokenizer and the
processor config — as ``save_pretrained`` writes them or a hub-cache snapshot; the published
weights are ``CIDAS/clipseg-rd64-refined``. Loaded with transformers offline
(``local_files_only``), never fetched.

Each tile goes through the model's own image processor (its resize — 352 px for the published
weights —, rescale and normalisation) and tokenizer; the logits come back at the processor's
size and are resized to the tile. The CLIP vision encoder does not see the words (they enter
only the decoder, by FiLM), so it runs once per tile for all phrases; the text tower runs once
per run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from georefseg.calibration import Calibration
from georefseg.errors import ModelError
from georefseg.models.base import Backend, ReferringSegmenter, SegOutput, TextBatch
from georefseg.models.card import ModelCard
from georefseg.models.hf.folder import PROCESSOR_CONFIGS, find_folder, input_size, processor_config, vision_patch_size
from georefseg.models.text import offline

KIND = "clipseg"
NEEDS = {"the tokenizer": ("tokenizer.json", "vocab.json"), "the image processor config": PROCESSOR_CONFIGS}
PATCH = 16  # the published weights' ViT-B/16 patches: the decoder's grid
INPUT_PX = 352  # the published processor's input side


class CLIPSegSegmenter(ReferringSegmenter):
    """A CLIPSeg model and its processor, run tile by tile (see the module docstring)."""

    name = KIND

    def __init__(self, model, processor, card: ModelCard):
        super().__init__()
        self.net, self.processor, self.card = model, processor, card

    def encode_text(self, texts: list[str]) -> TextBatch:
        """Token ids and CLIP's text embedding (B×1×D), computed here once per run: the engine
        encodes a run's phrases once, so no tile pays for the text tower."""
        enc = self.processor.tokenizer(list(texts), padding=True, return_tensors="pt")
        with torch.inference_mode():
            cond = self.net.clip.get_text_features(enc["input_ids"].to(self.device),
                                                   attention_mask=enc["attention_mask"].to(self.device)).pooler_output
        return TextBatch(enc["input_ids"], enc["attention_mask"], cond[:, None, :])

    def pixel_values(self, images: torch.Tensor) -> torch.Tensor:
        """The processor's own preprocessing of B×3×H×W images in [0, 1] (as 8-bit RGB)."""
        rgb = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        out = self.processor.image_processor(images=list(np.ascontiguousarray(rgb)), return_tensors="pt")
        return out["pixel_values"].to(images.device)

    def activations(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        vision = self.net.clip.vision_model(pixel_values=pixel_values, output_hidden_states=True,
                                            interpolate_pos_encoding=True)
        return [vision.hidden_states[i + 1] for i in self.net.extract_layers]

    def decode(self, activations: list[torch.Tensor], text: TextBatch, size: tuple[int, int]) -> torch.Tensor:
        cond = text.features[:, 0].to(activations[0].dtype)
        logits = self.net.decoder(activations, cond).logits
        logits = logits.reshape(len(cond), 1, *logits.shape[-2:])
        return F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)

    def segment(self, images: torch.Tensor, text: TextBatch) -> SegOutput:
        return SegOutput(self.decode(self.activations(self.pixel_values(images)), text, images.shape[-2:]))

    def segment_phrases(self, images: torch.Tensor, phrases: TextBatch) -> torch.Tensor:
        """The vision encoder once per tile, the decoder once per phrase."""
        acts = self.activations(self.pixel_values(images))
        out = []
        for k in range(len(phrases)):
            text = phrases.select(slice(k, k + 1)).repeat_to(len(images))
            out.append(self.decode(acts, text, images.shape[-2:]))
        return torch.cat(out, dim=1)


def find_weights(path: Path) -> Path | None:
    """A CLIPSeg model folder (or hub-cache snapshot) at ``path``; None if it is not one."""
    return find_folder(path, KIND, NEEDS)


def read_card(path: Path | None) -> ModelCard:
    """(tile, overlap) from the processor's input size, a quarter of it overlapping (global
    attention: wide context); the output stride is the vision tower's patch."""
    size = input_size(processor_config(path), INPUT_PX)
    return ModelCard(KIND, path, size, size // 4, vision_patch_size(path, PATCH),
                     calibration=Calibration.beside(path))


def build(card: ModelCard) -> CLIPSegSegmenter:
    """CLIPSeg from a local folder, offline."""
    if card.weights is None:
        raise ModelError("clipseg needs {param} DIR: a local folder with the model's Hugging Face files "
                         "(download CIDAS/clipseg-rd64-refined once; see the README, \"Real imagery\")",
                         param="checkpoint")
    offline()
    # transformers' CLIPSeg classes import in seconds: only when this backend is used.
    from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

    model = CLIPSegForImageSegmentation.from_pretrained(str(card.weights), local_files_only=True).eval()
    processor = CLIPSegProcessor.from_pretrained(str(card.weights), local_files_only=True)
    return CLIPSegSegmenter(model, processor, card)


BACKEND = Backend(
    name=KIND,
    summary="CLIPSeg (CVPR 2022): CLIP ViT-B/16 with a light decoder; a coarse heat map for any phrase; "
            "small enough for a laptop CPU",
    needs="--checkpoint DIR: a local Hugging Face folder of CIDAS/clipseg-rd64-refined (config.json, "
          "model.safetensors, tokenizer, preprocessor_config.json)",
    find=find_weights, card=read_card, build=build)
