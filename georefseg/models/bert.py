"""A BERT encoder and WordPiece tokenizer read from a local folder, without transformers.

The shipped model's text side (all-MiniLM-L6-v2, a 6-layer BERT) is small, but importing
transformers to run it cost every CLI call about 1.5 s before the first tile. This module is the
same computation — post-norm BERT layers with exact GELU, absolute positions, token types 0 —
with transformers' parameter names, so ``model.safetensors`` loads key for key; the tokenizer
is the folder's own ``tokenizer.json`` through the ``tokenizers`` library (which transformers
itself uses for BERT). Tested to give transformers' ids and features.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from georefseg.errors import ModelError


@dataclass(frozen=True)
class BertConfig:
    """The fields of a BERT ``config.json`` the encoder needs (widths in channels)."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12

    @classmethod
    def read(cls, folder: Path) -> BertConfig:
        try:
            data = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError) as exc:
            raise ModelError(f"{folder / 'config.json'} is not readable JSON ({exc})") from exc
        if data.get("model_type") != "bert" or data.get("hidden_act", "gelu") != "gelu" \
                or data.get("position_embedding_type", "absolute") != "absolute":
            raise ModelError(f"{folder} is not a BERT encoder with GELU and absolute positions")
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


class Embeddings(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.word_embeddings(ids) + self.position_embeddings(positions)[None] + self.token_type_embeddings.weight[0]
        return self.LayerNorm(x)


class SelfAttention(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.heads = c.num_attention_heads
        self.query = nn.Linear(c.hidden_size, c.hidden_size)
        self.key = nn.Linear(c.hidden_size, c.hidden_size)
        self.value = nn.Linear(c.hidden_size, c.hidden_size)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.heads, d // self.heads).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // self.heads) + bias
        return (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, d)


class Dense(nn.Module):
    """A linear layer, then LayerNorm of it plus the residual (BERT's ``…output`` blocks)."""

    def __init__(self, dim_in: int, dim: int, eps: float):
        super().__init__()
        self.dense = nn.Linear(dim_in, dim)
        self.LayerNorm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class Attention(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.self = SelfAttention(c)
        self.output = Dense(c.hidden_size, c.hidden_size, c.layer_norm_eps)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x, bias), x)


class Intermediate(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))


class Layer(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.attention = Attention(c)
        self.intermediate = Intermediate(c)
        self.output = Dense(c.intermediate_size, c.hidden_size, c.layer_norm_eps)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = self.attention(x, bias)
        return self.output(self.intermediate(x), x)


class Encoder(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList(Layer(c) for _ in range(c.num_hidden_layers))


class BertEncoder(nn.Module):
    """Token ids (B×N) and attention mask → word features (B×N×hidden), the last layer's."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.encoder = Encoder(config)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.embeddings(input_ids)
        # Masked keys get the dtype's most negative value, as transformers' eager attention does.
        bias = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
        for layer in self.encoder.layer:
            x = layer(x, bias)
        return x

    @classmethod
    def from_folder(cls, folder: Path) -> BertEncoder:
        """The encoder of a BERT folder (``config.json``, ``model.safetensors``); the pooler and
        any head in the file are not part of it."""
        from safetensors.torch import load_file

        model = cls(BertConfig.read(folder))
        path = folder / "model.safetensors"
        if not path.is_file():
            raise ModelError(f"{folder} has no model.safetensors")
        state = {k.removeprefix("bert."): v for k, v in load_file(str(path)).items()}
        state = {k: v for k, v in state.items() if not k.startswith("pooler.") and not k.endswith("position_ids")}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ModelError(f"{path} does not fit a BERT encoder: {len(missing)} missing ({', '.join(missing[:3])}), "
                             f"{len(unexpected)} unexpected ({', '.join(unexpected[:3])})")
        return model.eval()


class WordPiece:
    """A folder's BERT tokenizer: ``[CLS] … [SEP]`` ids, truncated and zero-padded to a length."""

    def __init__(self, folder: Path):
        from tokenizers import Tokenizer
        from tokenizers.implementations import BertWordPieceTokenizer

        if (folder / "tokenizer.json").is_file():
            self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        elif (folder / "vocab.txt").is_file():
            self.tokenizer = BertWordPieceTokenizer(str(folder / "vocab.txt"), lowercase=_lowercase(folder))._tokenizer
        else:
            raise ModelError(f"{folder} has no tokenizer (tokenizer.json or vocab.txt)")
        self.pad_id = self.tokenizer.token_to_id("[PAD]") or 0

    def __call__(self, texts: list[str], length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Ids and attention mask, B×``length`` (long)."""
        self.tokenizer.enable_truncation(length)
        self.tokenizer.enable_padding(length=length, pad_id=self.pad_id, pad_token="[PAD]")
        encoded = self.tokenizer.encode_batch(list(texts))
        return (torch.tensor([e.ids for e in encoded], dtype=torch.long),
                torch.tensor([e.attention_mask for e in encoded], dtype=torch.long))


def _lowercase(folder: Path) -> bool:
    try:
        return bool(json.loads((folder / "tokenizer_config.json").read_text()).get("do_lower_case", True))
    except (OSError, ValueError):
        return True
