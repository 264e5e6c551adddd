"""RSRefSeg 2's cascaded prompter: from SigLIP's word and patch features to SAM's prompts.

As the authors' inference configs (``configs_RSRefSeg2/*_infer.py``) build their
``CascadedPrompter``: three text queries pooled from the words, two blocks in which the two query
sets attend to themselves, to the words and to each other; two blocks in which the first set
refines the patch features; two blocks in which the second set, the refined patches and nine
learnt prompts attend to one another; the prompts pass an MLP into SAM's sparse prompts, and the
dense prompt is the similarity of the refined patch map (through two 3×3 convolutions, upsampled
to SAM's 256² mask grid) with SigLIP's pooled sentence, scaled by SigLIP's logit scale and bias.

Each block runs a list of named operations in order (``self_attn_query_query1``,
``norm_query1_1`` …), as theirs do; the names are also the parameter names, so the authors'
weights load key for key. Attention and MLP widths are read from the weights' shapes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

HEADS = 8  # every RSRefSeg 2 config; not recoverable from the weights' shapes
TEXT_QUERIES = 3

QUERY_OPS = ("self_attn_query_query1", "norm_query1_1", "self_attn_query_query2", "norm_query2_1",
             "cross_attn_query_text_query1_text", "norm_query1_2", "mlp_query1_2", "norm_query1_3",
             "cross_attn_query_text_query2_text", "norm_query2_2", "mlp_query2_2", "norm_query2_3",
             "cross_attn_query_query_query1_query2", "norm_query1_4", "mlp_query1_3", "norm_query1_5",
             "cross_attn_query_query_query2_query1", "norm_query2_4", "mlp_query2_3", "norm_query2_5")
IMAGE_OPS = ("self_attn_text_text_1", "norm_text_1", "cross_attn_img_text_1", "norm_img_1", "mlp_img_1",
             "norm_img_2")
PROMPT_OPS = ("self_attn_text_1", "norm_text_1", "cross_attn_img_text_1", "norm_img_1", "mlp_img_1", "norm_img_2",
              "self_attn_prompt_1", "norm_prompt_1", "cross_attn_prompt_text_1", "norm_prompt_2", "mlp_prompt_2",
              "norm_prompt_3", "cross_attn_prompt_img_1", "norm_prompt_4", "mlp_prompt_3", "norm_prompt_5")


@dataclass(frozen=True)
class PrompterConfig:
    """Widths of one prompter: SigLIP's text and image features, SAM's prompts, and the blocks'
    attention (``internal``) and MLP widths, all in channels; ``grid`` is the side of its learnt
    image position embedding, in patches; ``prompts`` the number of sparse prompts."""

    text_dim: int
    image_dim: int
    prompt_dim: int = 256
    internal: int = 512
    mlp: int = 512
    grid: int = 32
    prompts: int = 9

    @classmethod
    def of(cls, state: dict[str, torch.Tensor], prefix: str = "prompter.") -> PrompterConfig:
        """The configuration whose shapes a state dict's prompter weights have."""
        q = state[f"{prefix}two_queries_text_attn_layers.0.self_attn_query_query1.q_proj.weight"]
        mlp = state[f"{prefix}two_queries_text_attn_layers.0.mlp_query1_2.layers.0.weight"]
        img_pe, prompts = state[f"{prefix}img_pe"], state[f"{prefix}prompt_embedding"]
        return cls(text_dim=q.shape[1], image_dim=img_pe.shape[1], prompt_dim=prompts.shape[1], internal=q.shape[0],
                   mlp=mlp.shape[0], grid=img_pe.shape[2], prompts=prompts.shape[0])


class Attention(nn.Module):
    """Multi-head attention through an ``internal``-wide space; keys and values may be narrower
    or wider than the queries (``kv_dim``)."""

    def __init__(self, dim: int, internal: int, kv_dim: int | None = None):
        super().__init__()
        kv_dim = kv_dim or dim
        self.q_proj, self.k_proj = nn.Linear(dim, internal), nn.Linear(kv_dim, internal)
        self.v_proj, self.out_proj = nn.Linear(kv_dim, internal), nn.Linear(internal, dim)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        def heads(x: torch.Tensor) -> torch.Tensor:
            b, n, c = x.shape
            return x.reshape(b, n, HEADS, c // HEADS).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(self.q_proj(q)), heads(self.k_proj(k)), heads(self.v_proj(v)))
        b, h, n, c = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * c))


class MLP(nn.Module):
    """Two linear layers with GELU between."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(dim, hidden), nn.Linear(hidden, dim)])
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers[1](self.act(self.layers[0](x)))


def _updates_first(name: str) -> bool:
    """Whether an operation of :data:`QUERY_OPS` updates the first query set:
    ``cross_attn_query_query_query2_query1`` updates the second, which attends to the first."""
    if name.startswith("cross_attn_query_query_"):
        return name.endswith("query1_query2")
    return "query1" in name


def _residual(name: str, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    # Norms replace their input; attentions and MLPs add to it.
    return out if "norm" in name else x + out


class TwoQueryBlock(nn.Module):
    """Two query sets, each attending to itself, to the words and to the other set."""

    def __init__(self, config: PrompterConfig):
        super().__init__()
        d = config.text_dim
        for name in QUERY_OPS:
            if "attn" in name:
                setattr(self, name, Attention(d, config.internal))
            elif "mlp" in name:
                setattr(self, name, MLP(d, config.mlp))
            else:
                setattr(self, name, nn.LayerNorm(d))

    def forward(self, q1, q2, words, pe1, pe2):
        for name in QUERY_OPS:
            op, first = getattr(self, name), _updates_first(name)
            if name == "cross_attn_query_query_query1_query2":
                out = op(q1 + pe1, q2 + pe2, q2)
            elif name == "cross_attn_query_query_query2_query1":
                out = op(q2 + pe2, q1 + pe1, q1)
            elif name.startswith("self_attn"):
                q, pe = (q1, pe1) if first else (q2, pe2)
                out = op(q + pe, q + pe, q)
            elif name.startswith("cross_attn_query_text"):
                out = op((q1 + pe1) if first else (q2 + pe2), words, words)
            else:
                out = op(q1 if first else q2)
            if first:
                q1 = _residual(name, q1, out)
            else:
                q2 = _residual(name, q2, out)
        return q1, q2


class CrossBlock(nn.Module):
    """Words, image patches and (in the second stage) prompts attending to one another, in
    the order of ``ops``; each operation updates the stream its name starts from."""

    def __init__(self, config: PrompterConfig, ops: tuple[str, ...]):
        super().__init__()
        self.ops = ops
        dims = {"text": config.text_dim, "img": config.image_dim, "prompt": config.prompt_dim}
        for name in ops:
            stream = self._stream(name)
            if name.startswith("self_attn"):
                setattr(self, name, Attention(dims[stream], config.internal))
            elif name.startswith("cross_attn"):
                source = name.split("_")[3]
                setattr(self, name, Attention(dims[stream], config.internal, kv_dim=dims[source]))
            elif name.startswith("mlp"):
                setattr(self, name, MLP(dims[stream], config.mlp))
            else:
                setattr(self, name, nn.LayerNorm(dims[stream]))

    @staticmethod
    def _stream(name: str) -> str:
        """The stream an operation updates: ``cross_attn_img_text_1`` updates the image."""
        return name.split("_")[2] if "attn" in name else name.split("_")[1]

    def forward(self, words, image, prompts, image_pe, word_pe, prompt_pe):
        streams = {"text": words, "img": image, "prompt": prompts}
        pes = {"text": word_pe, "img": image_pe, "prompt": prompt_pe}
        for name in self.ops:
            stream, op = self._stream(name), getattr(self, name)
            x = streams[stream]
            if name.startswith("self_attn"):
                q = x if pes[stream] is None else x + pes[stream]
                out = op(q, q, x)
            elif name.startswith("cross_attn"):
                source = streams[name.split("_")[3]]
                source_pe = pes[name.split("_")[3]]
                q = x if pes[stream] is None else x + pes[stream]
                k = source if source_pe is None else source + source_pe
                out = op(q, k, source)
            else:
                out = op(x)
            streams[stream] = _residual(name, x, out)
        return streams["text"], streams["img"], streams["prompt"]


class CascadedPrompter(nn.Module):
    """See the module docstring; parameter names are the authors'."""

    def __init__(self, config: PrompterConfig):
        super().__init__()
        self.config = config
        d = config.text_dim
        self.text_query_pe_embedding1 = nn.Parameter(torch.zeros(TEXT_QUERIES, d))
        self.text_query_pe_embedding2 = nn.Parameter(torch.zeros(TEXT_QUERIES, d))
        self.two_queries_text_attn_layers = nn.ModuleList(TwoQueryBlock(config) for _ in range(2))
        self.img_pe = nn.Parameter(torch.zeros(1, config.image_dim, config.grid, config.grid))
        self.queries1_to_img_attn_layers = nn.ModuleList(CrossBlock(config, IMAGE_OPS) for _ in range(2))
        self.prompt_queries2_img_attn_layers = nn.ModuleList(CrossBlock(config, PROMPT_OPS) for _ in range(2))
        self.prompt_pe_embedding = nn.Parameter(torch.zeros(config.prompts, config.prompt_dim))
        self.prompt_embedding = nn.Parameter(torch.zeros(config.prompts, config.prompt_dim))
        self.sparse_prompt_mlp = MLP(config.prompt_dim, config.mlp)
        c = config.image_dim
        self.dense_prompt_conv = nn.Sequential(nn.Conv2d(c, c // 2, 3, padding=1), nn.BatchNorm2d(c // 2), nn.GELU(),
                                               nn.Conv2d(c // 2, c, 3, padding=1))

    def forward(self, patches: torch.Tensor, words: torch.Tensor, sentence: torch.Tensor,
                logit_scale: torch.Tensor, logit_bias: torch.Tensor,
                mask_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Sparse prompts (B×9×256) and the dense mask prompt (B×1×mask_size²).

        patches: SigLIP's last hidden state (B×P×C, P a square number); words: its text tower's
        last hidden state (B×N×D, every position, padding included, as the authors feed it);
        sentence: the pooled text (B×C).
        """
        b = patches.shape[0]
        side = int(math.sqrt(patches.shape[1]))
        pe1 = self.text_query_pe_embedding1.expand(b, -1, -1)
        pe2 = self.text_query_pe_embedding2.expand(b, -1, -1)
        q1 = q2 = F.adaptive_avg_pool1d(words.permute(0, 2, 1), TEXT_QUERIES).permute(0, 2, 1)
        for layer in self.two_queries_text_attn_layers:
            q1, q2 = layer(q1, q2, words, pe1, pe2)
        img_pe = self.img_pe
        if img_pe.shape[2] != side:
            img_pe = F.interpolate(img_pe, size=(side, side), mode="bicubic", align_corners=True)
        img_pe = img_pe.flatten(2).transpose(1, 2)
        image = patches
        for layer in self.queries1_to_img_attn_layers:
            q1, image, _ = layer(q1, image, None, img_pe, pe1, None)
        prompt = self.prompt_embedding.expand(b, -1, -1)
        prompt_pe = self.prompt_pe_embedding.expand(b, -1, -1)
        for layer in self.prompt_queries2_img_attn_layers:
            q2, image, prompt = layer(q2, image, prompt, img_pe, pe2, prompt_pe)
        sparse = self.sparse_prompt_mlp(prompt)
        grid = image.transpose(1, 2).reshape(b, -1, side, side)
        grid = F.interpolate(self.dense_prompt_conv(grid), size=(mask_size, mask_size), mode="bilinear",
                             align_corners=True)
        grid = grid / grid.norm(p=2, dim=1, keepdim=True)
        sentence = sentence / sentence.norm(p=2, dim=1, keepdim=True)
        dense = torch.einsum("bchw,bc->bhw", grid, sentence).unsqueeze(1)
        return sparse, dense * logit_scale.exp() + logit_bias
