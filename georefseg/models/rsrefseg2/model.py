"""RSRefSeg 2 (Chen et al., 2025; KyanChen/RSRefSeg2, Apache-2.0) as a georefseg backend.

SigLIP 2 (so400m, patch 16, 512 px) reads the sentence and the image; the cascaded prompter
turns its word and patch features into sparse and dense prompts; SAM 2.1 (Hiera-L, 1024 px)
cuts the mask. The computation is the authors' at test time (``encode_decode`` of their
``RefSegEncoderDecoder`` in eval mode):

* the image is resized keeping its ratio to a long side of 1024 px and zero-padded right and
  bottom to 1024² (their test pipeline and data preprocessor; values in [0, 1]);
* SigLIP sees it normalised with its processor's mean and std (0.5) and resized bilinearly to
  512²; SAM sees it ImageNet-normalised at 1024²;
* the sentence is tokenised by SigLIP's own tokenizer (``padding=True``, ``truncation=True``,
  ``max_length=128``); the pooled text is the head applied at the *last* position (padding,
  when a batch pads a shorter sentence, as theirs does);
* ``no_mem_embed`` is added to SAM's image embedding, the decoder reads SAM 2's two
  high-resolution maps, and falls back to the best multimask output when its single mask is
  unstable; the 256² mask logits are upsampled bilinearly to 1024².

:func:`reference_logits` is that computation for images already resized and padded, so its
output can be compared with the authors' own code (tests/models/rsrefseg2). Through the engine a
tile goes the same way and the logits are cut back to the tile; the image towers run once per
tile for all phrases, the text tower once per phrase per run, each phrase on its own (no
padding, so a phrase's mask never depends on the other phrases of the expression).

The model has no presence output: SAM 2's object-score head is there (it is in the weights) but
the authors neither train nor read it, so the engine judges presence from the calibrated mask
score, as for the other dense models.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from georefseg.calibration import Calibration
from georefseg.errors import ModelError
from georefseg.models.base import Backend, ReferringSegmenter, SegOutput, TextBatch, load_state_strict
from georefseg.models.card import ModelCard
from georefseg.models.hf.folder import input_size, processor_config
from georefseg.models.rsrefseg2.checkpoint import (
    Parts,
    is_rsrefseg2_file,
    locate,
    looks_like_installation,
    merged_state,
    siglip_config,
)
from georefseg.models.rsrefseg2.prompter import CascadedPrompter, PrompterConfig
from georefseg.models.rsrefseg2.sam2 import IMAGE_PX, MASK_STRIDE, SAM2, HieraConfig, hiera_of
from georefseg.models.text import offline

KIND = "rsrefseg2"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
MAX_TEXT_TOKENS = 128  # their tokenizer call's max_length
# A quarter of the tile each side: both towers attend globally, so no finite receptive field
# bounds the context a tile needs; a quarter keeps the blended centre away from every edge.
OVERLAP_PX = IMAGE_PX // 4


class RSRefSeg2(ReferringSegmenter):
    """SigLIP 2 towers, the cascaded prompter and SAM 2.1 with RSRefSeg 2's weights.

    Parameters
    ----------
    hiera, siglip, prompter
        The SAM 2.1 trunk, the SigLIP configuration (a transformers ``SiglipConfig``) and the
        prompter's widths.
    tokenizer
        SigLIP's tokenizer (from its folder).
    clip_px, clip_mean, clip_std
        SigLIP's input side (pixels) and normalisation, from its processor config.
    """

    name = KIND

    def __init__(self, hiera: HieraConfig, siglip, prompter: PrompterConfig, tokenizer, card: ModelCard,
                 clip_px: int = 512, clip_mean=(0.5, 0.5, 0.5), clip_std=(0.5, 0.5, 0.5)):
        super().__init__()
        from transformers import SiglipTextModel, SiglipVisionModel

        for tower in (siglip.vision_config, siglip.text_config):
            tower._attn_implementation = "sdpa"
        self.sam = SAM2(hiera)
        self.vision = SiglipVisionModel(siglip.vision_config)
        self.text = SiglipTextModel(siglip.text_config)
        self.logit_scale = nn.Parameter(torch.zeros(1))
        self.logit_bias = nn.Parameter(torch.zeros(1))
        self.prompter = CascadedPrompter(prompter)
        self.tokenizer, self.card = tokenizer, card
        self.clip_px, self.clip_mean, self.clip_std = clip_px, tuple(clip_mean), tuple(clip_std)

    # --- text -----------------------------------------------------------------------------

    def _tokens(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(list(texts), padding=True, truncation=True, max_length=MAX_TEXT_TOKENS,
                              return_tensors="pt")

    def _encode(self, tokens: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.text(input_ids=tokens["input_ids"].to(self.device),
                        attention_mask=tokens["attention_mask"].to(self.device))
        return out.last_hidden_state, out.pooler_output

    def encode_text(self, texts: list[str]) -> TextBatch:
        """Each text through the text tower on its own: word features (padded to the longest,
        ``attention_mask`` marking each text's own positions) and the pooled sentence."""
        rows = [self._tokens([t]) for t in texts]
        with torch.inference_mode():
            encoded = [self._encode(r) for r in rows]
        n = max(r["input_ids"].shape[1] for r in rows)
        ids = torch.zeros(len(rows), n, dtype=torch.long)
        mask = torch.zeros(len(rows), n, dtype=torch.long)
        words = encoded[0][0].new_zeros(len(rows), n, encoded[0][0].shape[-1])
        for i, (row, (feats, _)) in enumerate(zip(rows, encoded, strict=True)):
            k = row["input_ids"].shape[1]
            ids[i, :k], mask[i, :k], words[i, :k] = row["input_ids"][0], 1, feats[0]
        return TextBatch(ids, mask, words, torch.cat([p for _, p in encoded]))

    def encode_samples(self, texts: list[str]) -> TextBatch:
        """A dataset batch's texts as the authors' test loop encodes them: tokenised together
        and padded to the longest; the prompter then reads every position, padding included."""
        tokens = self._tokens(texts)
        with torch.inference_mode():
            words, pooled = self._encode(tokens)
        return TextBatch(tokens["input_ids"], torch.ones_like(tokens["attention_mask"]), words, pooled)

    # --- images ---------------------------------------------------------------------------

    def image_features(self, padded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """SigLIP's patch features and SAM's image embedding and high-resolution maps of
        B×3×1024×1024 images in [0, 1], resized and padded as the authors' pipeline does."""
        def normalise(x: torch.Tensor, mean, std) -> torch.Tensor:
            return (x - x.new_tensor(mean)[:, None, None]) / x.new_tensor(std)[:, None, None]

        clip_in = F.interpolate(normalise(padded, self.clip_mean, self.clip_std), size=(self.clip_px, self.clip_px),
                                mode="bilinear", align_corners=False)
        patches = self.vision(pixel_values=clip_in).last_hidden_state
        embedding, high_res = self.sam.encode_image(normalise(padded, IMAGENET_MEAN, IMAGENET_STD))
        return patches, embedding, high_res

    def decode(self, features, words: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
        """Logits at 1024² (B×1×1024×1024) from :meth:`image_features` and B rows of words and
        pooled sentences."""
        patches, embedding, high_res = features
        sparse, dense = self.prompter(patches, words, sentence, self.logit_scale, self.logit_bias,
                                      self.sam.sam_prompt_encoder.mask_input_size[0])
        masks = self.sam.decode(embedding, high_res, sparse, dense)
        return F.interpolate(masks, size=(IMAGE_PX, IMAGE_PX), mode="bilinear", align_corners=False)

    def _decode_rows(self, features, text: TextBatch) -> torch.Tensor:
        """:meth:`decode` for a TextBatch, each row reading its own positions."""
        lengths = text.attention_mask.sum(dim=1)
        words, pooled = text.features.to(self.device), text.pooled.to(self.device)
        if bool((lengths == lengths[0]).all()):
            return self.decode(features, words[:, :int(lengths[0])], pooled)
        rows = []
        for i, n in enumerate(lengths.tolist()):
            one = tuple(f[i:i + 1] for f in features[:2]) + ([h[i:i + 1] for h in features[2]],)
            rows.append(self.decode(one, words[i:i + 1, :n], pooled[i:i + 1]))
        return torch.cat(rows)

    @staticmethod
    def letterbox(images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """B×3×H×W images in [0, 1] resized keeping their ratio to a long side of 1024 px (as
        8-bit values, as their loader's cv2 resize leaves them) and zero-padded right and bottom
        to 1024²; and the resized (height, width) in pixels."""
        h, w = images.shape[-2:]
        scale = IMAGE_PX / max(h, w)
        size = (int(h * scale + 0.5), int(w * scale + 0.5))
        x = images
        if size != (h, w):
            x = F.interpolate(x * 255, size=size, mode="bilinear", align_corners=False).round().clamp(0, 255) / 255
        return F.pad(x, (0, IMAGE_PX - size[1], 0, IMAGE_PX - size[0])), size

    @staticmethod
    def unletterbox(logits: torch.Tensor, size: tuple[int, int], shape: tuple[int, int]) -> torch.Tensor:
        """Logits at 1024² cut to the resized image and resized back to the input's shape."""
        out = logits[..., :size[0], :size[1]]
        return out if tuple(out.shape[-2:]) == tuple(shape) else \
            F.interpolate(out, size=tuple(shape), mode="bilinear", align_corners=False)

    def segment(self, images: torch.Tensor, text: TextBatch) -> SegOutput:
        padded, size = self.letterbox(images.float())
        logits = self._decode_rows(self.image_features(padded), text)
        return SegOutput(self.unletterbox(logits, size, images.shape[-2:]))

    def segment_phrases(self, images: torch.Tensor, phrases: TextBatch) -> torch.Tensor:
        """Both image towers once per tile; prompter and mask decoder once per phrase."""
        padded, size = self.letterbox(images.float())
        features = self.image_features(padded)
        out = [self._decode_rows(features, phrases.select(slice(k, k + 1)).repeat_to(len(images)))
               for k in range(len(phrases))]
        return self.unletterbox(torch.cat(out, dim=1), size, images.shape[-2:])


@torch.inference_mode()
def reference_logits(model: RSRefSeg2, images: torch.Tensor, sentences: list[str]) -> torch.Tensor:
    """B×1×1024×1024 logits as the authors' ``encode_decode`` returns them.

    Parameters
    ----------
    model
        An RSRefSeg 2 model (:func:`georefseg.models.load_model`).
    images
        B×3×1024×1024 RGB in [0, 1], already resized keeping the ratio to a long side of 1024 px
        and zero-padded right and bottom (what their data preprocessor produces).
    sentences
        One per image, tokenised together by the model's own tokenizer as their batch is.
    """
    text = model.encode_samples(sentences)
    features = model.image_features(images.to(model.device, torch.float32))
    return model.decode(features, text.features.to(model.device), text.pooled.to(model.device))


# --- the backend ---------------------------------------------------------------------------

def find_weights(path: Path) -> Path | None:
    """An RSRefSeg 2 checkpoint file, or a folder holding any part of an installation; None
    when ``path`` is another model's. Raises ModelError naming what an installation lacks."""
    if not (is_rsrefseg2_file(path) if path.is_file() else looks_like_installation(path)):
        return None
    locate(path)
    return path


def read_card(path: Path | None) -> ModelCard:
    """Tile 1024 px (SAM's input), a quarter overlapping, output stride 4 (the mask decoder's
    256² grid); the calibration stored beside the checkpoint, if any."""
    if path is None:
        raise ModelError("rsrefseg2 needs {param} PATH: the folder holding the authors' checkpoint, "
                         "SAM 2.1 and SigLIP 2 (see the README, \"Real imagery\")", param="checkpoint")
    parts = locate(path)
    return ModelCard(KIND, path, IMAGE_PX, OVERLAP_PX, MASK_STRIDE, calibration=Calibration.beside(parts.checkpoint),
                     metrics=KIND)


def _materialise_buffers(model: nn.Module) -> None:
    """Buffers a state dict does not carry (transformers' ``position_ids``), built after a
    meta-device construction."""
    for name, buf in list(model.named_buffers()):
        if buf.is_meta:
            if not name.endswith("position_ids"):
                raise ModelError(f"the model's buffer {name} has no value: the weights do not fit this model")
            owner = model.get_submodule(name.rsplit(".", 1)[0])
            owner.register_buffer("position_ids", torch.arange(buf.shape[-1]).expand(buf.shape), persistent=False)


def _quietly(make, *args):
    """``make(*args)`` with transformers' warnings held back: its config classes warn about the
    token ids of the default sub-configs they build before reading the file's."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return make(*args)
    finally:
        hf_logging.set_verbosity(level)


def build_from(parts: Parts, card: ModelCard) -> RSRefSeg2:
    """The model of an installation's parts, weights merged and loaded strictly, eval mode."""
    offline()
    from transformers import AutoTokenizer, SiglipConfig

    state = merged_state(parts)
    hiera = hiera_of({k.removeprefix("sam."): v for k, v in state.items() if k.startswith("sam.image_encoder.trunk.")})
    if hiera is None:
        raise ModelError(f"{parts.sam} is not a SAM 2.1 Hiera checkpoint georefseg knows (tiny, small, base_plus, "
                         "large)")
    if "prompter.img_pe" not in state:
        raise ModelError(f"{parts.checkpoint} holds no prompter weights: it is not an RSRefSeg 2 checkpoint")
    settings = processor_config(parts.siglip)
    config = _quietly(SiglipConfig.from_dict, siglip_config(parts.siglip))
    tokenizer = AutoTokenizer.from_pretrained(str(parts.siglip), local_files_only=True)
    with torch.device("meta"):
        model = RSRefSeg2(hiera, config, PrompterConfig.of(state), tokenizer, card,
                          clip_px=input_size(settings, 512), clip_mean=settings.get("image_mean", (0.5,) * 3),
                          clip_std=settings.get("image_std", (0.5,) * 3))
    load_state_strict(model, state, str(parts.checkpoint), assign=True)
    _materialise_buffers(model)
    return model.eval()


def build(card: ModelCard) -> RSRefSeg2:
    return build_from(locate(card.weights), card)


BACKEND = Backend(
    name=KIND,
    summary="RSRefSeg 2 (2025): SigLIP 2 finds the referent, SAM 2.1 cuts it; trained on remote-sensing "
            "referring datasets (RefSegRS, RRSIS-D, RISBench); 1.36 G parameters, a GPU model",
    needs="--checkpoint PATH: a folder with the authors' .pth (KyanChen/RSRefSeg2), facebook/sam2.1-hiera-large "
          "and google/siglip2-so400m-patch16-512 (hub-cache or --local-dir folders)",
    find=find_weights, card=read_card, build=build)
