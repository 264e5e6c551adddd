"""RMSIN (Liu et al., CVPR 2024): rotated multi-scale interaction network for referring
remote-sensing image segmentation, compatible with checkpoints from the authors' training code.

The module tree and parameter names are those of the authors' ``LAVTOne`` model:
``backbone`` (multi-modal Swin Transformer with PWAM fusion, language gates, the intra- and
cross-scale interaction modules), ``classifier`` (decoder with adaptive rotated convolutions)
and ``text_encoder`` (BERT-base without its pooler). ``load_rmsin`` reads the authors' ``.pth``
files (BERT inside ``model`` or as ``bert_model``) and georefseg's ``.safetensors`` conversion.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from georefseg.calibration import Calibration
from georefseg.errors import ModelError
from georefseg.models.base import Backend, ReferringSegmenter, SegOutput, TextBatch, load_state_strict
from georefseg.models.card import ModelCard
from georefseg.models.rmsin.backbone import WORD_DIM, MultiModalSwinTransformer
from georefseg.models.rmsin.checkpoint import TEXT_PREFIX, find_weights, read_rmsin_file, write_safetensors
from georefseg.models.rmsin.decoder import SimpleDecoding
from georefseg.models.text import MAX_TOKENS, tokenize

if TYPE_CHECKING:
    from transformers import BertModel

# swin_type → (embed dim, depths, attention heads), as the authors' segmentation.py defines them.
SWIN_VARIANTS: dict[str, tuple[int, tuple[int, ...], tuple[int, ...]]] = {
    "tiny": (96, (2, 2, 6, 2), (3, 6, 12, 24)),
    "small": (96, (2, 2, 18, 2), (3, 6, 12, 24)),
    "base": (128, (2, 2, 18, 2), (4, 8, 16, 32)),
    "large": (192, (2, 2, 18, 2), (6, 12, 24, 48)),
}
IMAGE_SIZE = 480  # the cross-scale attention's parameter shapes fix the input to 480×480
MIN_OVERLAP = 96  # context is global (CIM, instance norm); three stride-32 cells each side
OUTPUT_STRIDE = 4  # the decoder predicts at 1/4 of the input, then upsamples
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# bert-base-uncased, written out so that nothing is fetched from a model hub.
BERT_BASE = dict(vocab_size=30522, hidden_size=WORD_DIM, num_hidden_layers=12,
                 num_attention_heads=12, intermediate_size=3072, hidden_act="gelu",
                 hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
                 max_position_embeddings=512, type_vocab_size=2, initializer_range=0.02,
                 layer_norm_eps=1e-12, pad_token_id=0)
# train.py's default --pretrained_swin_weights: its file name sets the window size in training.
DEFAULT_SWIN_WEIGHTS = "./pretrained_weights/swin_base_patch4_window12_384_22k.pth"


@dataclass(frozen=True)
class RMSINConfig:
    """The architecture choices of an RMSIN run (the authors' command-line options)."""

    swin_type: str = "base"
    window_size: int = 12
    mha: tuple[int, int, int, int] = (1, 1, 1, 1)  # PWAM heads per stage
    fusion_drop: float = 0.0
    bert: dict = field(default_factory=dict)  # BERT config values that differ from BERT-base's

    def __post_init__(self) -> None:
        if self.swin_type not in SWIN_VARIANTS:
            raise ModelError(f"unknown RMSIN swin_type {self.swin_type!r}: use one of "
                             f"{', '.join(SWIN_VARIANTS)}")
        object.__setattr__(self, "mha", tuple(int(h) for h in self.mha))
        dims = [self.embed_dim * 2 ** i for i in range(4)]
        if len(self.mha) != 4 or any(h < 1 or d % h for h, d in zip(self.mha, dims, strict=True)):
            raise ModelError(f"RMSIN mha {self.mha} must be four head counts dividing the stage "
                             f"widths {dims}")
        if self.window_size < 1:
            raise ModelError(f"RMSIN window size must be positive, got {self.window_size}")
        unknown = set(self.bert) - set(BERT_BASE)
        if unknown or self.bert.get("hidden_size", WORD_DIM) != WORD_DIM:
            raise ModelError(f"RMSIN's text encoder must be a BERT with {WORD_DIM}-wide words (its fusion "
                             f"modules take {WORD_DIM}); got {self.bert}")

    @property
    def embed_dim(self) -> int:
        return SWIN_VARIANTS[self.swin_type][0]

    @classmethod
    def from_args(cls, args: argparse.Namespace | dict[str, Any] | None) -> RMSINConfig:
        """The config the authors' code builds from ``args`` (their defaults where absent)."""
        args = vars(args) if isinstance(args, argparse.Namespace) else dict(args or {})
        # Their rule: window 12 if --window12 or if the Swin weights file name says window12.
        swin_file = str(args.get("pretrained_swin_weights", DEFAULT_SWIN_WEIGHTS) or "")
        window = 12 if args.get("window12") or "window12" in swin_file else 7
        mha = str(args.get("mha") or "")
        try:
            heads = tuple(int(h) for h in mha.split("-")) if mha else (1, 1, 1, 1)
        except ValueError:
            raise ModelError(f"checkpoint args.mha={mha!r} is not of the form a-b-c-d") from None
        # bert_config: written by georefseg's training when its BERT is not BERT-base.
        return cls(str(args.get("swin_type", "base")), window, heads,
                   float(args.get("fusion_drop") or 0.0), dict(args.get("bert_config") or {}))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RMSINConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mha": list(self.mha)}


def bert_model(overrides: dict | None = None) -> BertModel:
    """An untrained BERT without pooler: BERT-base (uncased dimensions) unless ``overrides``
    say otherwise, built from a local config."""
    from transformers import BertConfig, BertModel

    return BertModel(BertConfig(**{**BERT_BASE, **(overrides or {})}), add_pooling_layer=False)


def bert_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    """The BertModel weights of a local Hugging Face folder (config + weights); never
    downloads. Weights the folder lacks are an error, not a random initialisation."""
    from transformers import BertModel

    if not Path(folder).is_dir():
        raise ModelError(f"BERT folder {folder} does not exist")
    try:
        bert, info = BertModel.from_pretrained(str(folder), local_files_only=True,
                                               add_pooling_layer=False, output_loading_info=True)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load BERT from {folder}: {str(exc).splitlines()[0]}") from exc
    if info["missing_keys"]:
        missing = info["missing_keys"]
        raise ModelError(f"{folder} lacks {len(missing)} BERT weights ({', '.join(missing[:4])}): "
                         "give the folder of a complete BERT-base model")
    return bert.state_dict()


def tokenize_rmsin(texts: list[str]) -> TextBatch:
    """Token ids as the authors' dataset makes them: ``[CLS] … [SEP]`` cut to the first 20
    (so a long expression loses its ``[SEP]``), then zero-padded."""
    full = tokenize(texts, max_tokens=512)
    return TextBatch(full.input_ids[:, :MAX_TOKENS], full.attention_mask[:, :MAX_TOKENS])


class RMSIN(ReferringSegmenter):
    """RMSIN with its BERT text encoder; ``forward`` is the authors' ``LAVTOne.forward``."""

    name = "rmsin"

    def __init__(self, config: RMSINConfig | None = None, card: ModelCard | None = None):
        super().__init__()
        self.config = config = config or RMSINConfig()
        self.card = card or read_card(None)
        embed, depths, heads = SWIN_VARIANTS[config.swin_type]
        self.backbone = MultiModalSwinTransformer(
            embed, list(depths), list(heads), config.window_size, list(config.mha),
            fusion_drop=config.fusion_drop)
        self.classifier = SimpleDecoding(8 * embed)
        self.text_encoder = bert_model(config.bert)
        # Not persistent: the authors' state dict has no such entries.
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor, input_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> torch.Tensor:
        """ImageNet-normalised B×3×480×480 images, B×N ids and mask → B×2×480×480 logits
        (background, target)."""
        if tuple(image.shape[-2:]) != (IMAGE_SIZE, IMAGE_SIZE):
            raise ModelError(f"RMSIN takes {IMAGE_SIZE}×{IMAGE_SIZE} images, got "
                             f"{tuple(image.shape[-2:])}: use segment(), which resizes")
        words = self.text_encoder(input_ids, attention_mask=attention_mask)[0].permute(0, 2, 1)
        word_mask = attention_mask.unsqueeze(-1)
        c1, c2, c3, c4 = self.backbone(image, words, word_mask)
        logits = self.classifier(c4, c3, c2, c1)
        return F.interpolate(logits, size=image.shape[-2:], mode="bilinear", align_corners=True)

    def encode_text(self, texts: list[str]) -> TextBatch:
        return tokenize_rmsin(texts).to(self.device)

    def segment(self, images: torch.Tensor, text: TextBatch) -> SegOutput:
        """images: B×3×H×W in [0, 1], any size; resized to 480×480 (antialiased bilinear, like
        the authors' PIL resize) and back. Logits are target minus background."""
        size = tuple(images.shape[-2:])
        x = _resize(images, (IMAGE_SIZE, IMAGE_SIZE))
        text = text.repeat_to(len(x))
        logits = self((x - self.mean) / self.std, text.input_ids, text.attention_mask)
        return SegOutput(_resize(logits[:, 1:2] - logits[:, 0:1], size))


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == size:
        return x
    # float32: antialiased resizing has no bfloat16 kernel on the CPU (autocast gives bf16)
    return F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False,
                         antialias=True)


def load_rmsin(checkpoint: str | Path, bert_dir: str | Path | None = None, card: ModelCard | None = None) -> RMSIN:
    """An RMSIN in eval mode from the authors' ``.pth`` or a georefseg ``.safetensors`` file.

    Every tensor must fit (strict names and shapes) or a ModelError lists what does not.
    BERT comes from the file (``text_encoder.*`` in ``model``, or ``bert_model``); ``bert_dir``
    (a local Hugging Face BERT-base folder) is used only when the file holds no BERT weights.
    """
    loaded = read_rmsin_file(checkpoint)
    config = (RMSINConfig.from_dict(loaded.config) if loaded.config is not None
              else RMSINConfig.from_args(loaded.args))
    state, source = loaded.state, str(checkpoint)
    if not loaded.has_bert:
        if bert_dir is None:
            raise ModelError(f"{checkpoint} holds no BERT weights (no 'bert_model' and no "
                             "text_encoder.* entries): pass bert_dir, a local folder with the "
                             "BERT-base model it was trained with")
        state = {**state, **{TEXT_PREFIX + k: v for k, v in bert_weights(bert_dir).items()}}
        source = f"{checkpoint} with the BERT of {bert_dir}"
    model = RMSIN(config, card or read_card(Path(checkpoint)))
    load_state_strict(model, state, source)
    return model.eval()


def save_rmsin_safetensors(model: RMSIN, path: str | Path) -> None:
    """Write ``model`` (BERT included) as safetensors that :func:`load_rmsin` reads back."""
    write_safetensors(model.state_dict(), model.config.to_dict(), path)


def read_card(path: Path | None) -> ModelCard:
    """RMSIN's card: its architecture fixes the input to 480 px whatever the weights."""
    return ModelCard("rmsin", path, IMAGE_SIZE, MIN_OVERLAP, OUTPUT_STRIDE, calibration=Calibration.beside(path))


def build(card: ModelCard) -> RMSIN:
    if card.weights is None:
        raise ModelError("the rmsin model needs weights: pass {param}, a .pth written by the RMSIN authors' "
                         "train.py (or the folder it wrote), or its .safetensors conversion", param="checkpoint")
    return load_rmsin(card.weights, card=card)


BACKEND = Backend(
    name="rmsin",
    summary="RMSIN (CVPR 2024): multi-modal Swin-B + BERT-base, 480×480 input",
    needs="weights: a .pth written by the authors' train.py (or its output folder), or its .safetensors conversion",
    find=find_weights, card=read_card, build=build)
