"""The parts of SAM 2.1 that RSRefSeg 2 keeps: the Hiera image encoder with its FPN neck, the
prompt encoder, the mask decoder and ``no_mem_embed``.

Module and parameter names follow Meta's ``sam2`` package (``image_encoder.trunk.blocks.0.attn.qkv``,
``sam_mask_decoder.transformer.layers.0.self_attn.q_proj`` …) so that a SAM 2.1 checkpoint
(``sam2.1_hiera_large.pt``, ``{"model": state_dict}``) loads key for key. Written from the
published architecture (sam2 1.1.0); the computation is theirs at inference: the mask decoder
falls back from the single-mask token to the best of the three multimask tokens when the single
mask is unstable (``dynamic_multimask_via_stability``, δ = 0.05, threshold 0.98), as their
``build_sam2`` configures it for evaluation. Memory modules (video tracking) are not built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

IMAGE_PX = 1024  # SAM 2's input side
PROMPT_DIM = 256  # its prompt and mask-decoder width
BACKBONE_STRIDE = 16  # input pixels per cell of the image embedding (64×64 at 1024 px)
MASK_STRIDE = 4  # input pixels per cell of the predicted mask (256×256 at 1024 px)
STABILITY_DELTA, STABILITY_THRESHOLD = 0.05, 0.98
# What a SAM 2 checkpoint holds beyond these parts (video memory): dropped, as RSRefSeg 2 drops it.
UNUSED_PREFIXES = ("memory_attention.", "memory_encoder.", "mask_downsample.", "obj_ptr_proj.",
                   "obj_ptr_tpos_proj.", "maskmem_tpos_enc", "no_mem_pos_enc", "no_obj_ptr",
                   "no_obj_embed_spatial")


@dataclass(frozen=True)
class HieraConfig:
    """One Hiera trunk as Meta's sam2.1 configs define it."""

    name: str
    embed_dim: int
    num_heads: int
    stages: tuple[int, int, int, int]
    global_att_blocks: tuple[int, int, int]
    window_spec: tuple[int, int, int, int]
    pos_embed_size: tuple[int, int]

    @property
    def channels(self) -> list[int]:
        """Channels of the four stages' outputs, deepest first (the neck's ``backbone_channel_list``)."""
        return [self.embed_dim * 2 ** i for i in range(3, -1, -1)]


HIERA = {c.name: c for c in (
    HieraConfig("tiny", 96, 1, (1, 2, 7, 2), (5, 7, 9), (8, 4, 14, 7), (7, 7)),
    HieraConfig("small", 96, 1, (1, 2, 11, 2), (7, 10, 13), (8, 4, 14, 7), (7, 7)),
    HieraConfig("base_plus", 112, 2, (2, 3, 16, 3), (12, 16, 20), (8, 4, 14, 7), (14, 14)),
    HieraConfig("large", 144, 2, (2, 6, 36, 4), (23, 33, 43), (8, 4, 16, 8), (7, 7)),
)}


def hiera_of(state: dict[str, torch.Tensor]) -> HieraConfig | None:
    """The Hiera variant whose width and depth a SAM 2 state dict has (None: none of them)."""
    width = state.get("image_encoder.trunk.patch_embed.proj.weight")
    if width is None:
        return None
    depth = len({k.split(".")[3] for k in state if k.startswith("image_encoder.trunk.blocks.")})
    for config in HIERA.values():
        if config.embed_dim == width.shape[0] and sum(config.stages) == depth:
            return config
    return None


class MLP(nn.Module):
    """``num_layers`` linear layers with ``activation`` between them (sam2's MLP)."""

    def __init__(self, dim_in: int, hidden: int, dim_out: int, num_layers: int,
                 activation: type[nn.Module] = nn.ReLU, sigmoid_output: bool = False):
        super().__init__()
        dims = [dim_in] + [hidden] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:] + [dim_out], strict=True))
        self.act = activation()
        self.sigmoid_output = sigmoid_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else self.act(layer(x))
        return torch.sigmoid(x) if self.sigmoid_output else x


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of a B×C×H×W map, ε = 1e-6."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        return self.weight[:, None, None] * ((x - u) / torch.sqrt(s + self.eps)) + self.bias[:, None, None]


# --- Hiera trunk -------------------------------------------------------------------------------

def _windows(x: torch.Tensor, size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """B×H×W×C → (B·n)×size×size×C windows (zero-padded to a multiple of ``size``)."""
    b, h, w, c = x.shape
    ph, pw = (size - h % size) % size, (size - w % size) % size
    if ph or pw:
        x = F.pad(x, (0, 0, 0, pw, 0, ph))
    hp, wp = h + ph, w + pw
    x = x.view(b, hp // size, size, wp // size, size, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, size, size, c), (hp, wp)


def _unwindow(x: torch.Tensor, size: int, padded: tuple[int, int], hw: tuple[int, int]) -> torch.Tensor:
    hp, wp = padded
    b = x.shape[0] // (hp * wp // size // size)
    x = x.reshape(b, hp // size, wp // size, size, size, -1).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
    return x[:, :hw[0], :hw[1], :]


class MultiScaleAttention(nn.Module):
    def __init__(self, dim: int, dim_out: int, num_heads: int, q_pool: nn.Module | None):
        super().__init__()
        self.num_heads, self.q_pool = num_heads, q_pool
        self.qkv = nn.Linear(dim, dim_out * 3)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        q, k, v = torch.unbind(self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1), 2)
        if self.q_pool is not None:
            q = self.q_pool(q.reshape(b, h, w, -1).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
            h, w = q.shape[1:3]
            q = q.reshape(b, h * w, self.num_heads, -1)
        x = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.proj(x.transpose(1, 2).reshape(b, h, w, -1))


class MultiScaleBlock(nn.Module):
    def __init__(self, dim: int, dim_out: int, num_heads: int, q_stride: int | None, window_size: int):
        super().__init__()
        self.dim, self.dim_out, self.window_size, self.q_stride = dim, dim_out, window_size, q_stride
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.pool = nn.MaxPool2d(q_stride, q_stride) if q_stride else None
        self.attn = MultiScaleAttention(dim, dim_out, num_heads, self.pool)
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = MLP(dim_out, dim_out * 4, dim_out, 2, activation=nn.GELU)
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.dim != self.dim_out:
            shortcut = self.pool(self.proj(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        size = self.window_size
        hw = x.shape[1:3]
        if size > 0:
            x, padded = _windows(x, size)
        x = self.attn(x)
        if self.q_stride:
            size = self.window_size // self.q_stride
            hw = shortcut.shape[1:3]
            padded = (hw[0] + (size - hw[0] % size) % size, hw[1] + (size - hw[1] % size) % size)
        if self.window_size > 0:
            x = _unwindow(x, size, padded, hw)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=7, stride=4, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class Hiera(nn.Module):
    """The hierarchical ViT trunk: four stages at strides 4, 8, 16, 32 (Ryali et al., 2023)."""

    def __init__(self, config: HieraConfig):
        super().__init__()
        self.stage_ends = [sum(config.stages[:i]) - 1 for i in range(1, 5)]
        pool_blocks = [end + 1 for end in self.stage_ends[:-1]]
        self.patch_embed = PatchEmbed(config.embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, config.embed_dim, *config.pos_embed_size))
        self.pos_embed_window = nn.Parameter(torch.zeros(1, config.embed_dim, config.window_spec[0],
                                                         config.window_spec[0]))
        self.blocks = nn.ModuleList()
        dim, heads, stage = config.embed_dim, config.num_heads, 0
        for i in range(sum(config.stages)):
            # The window is the stage's before the stage advances: the first block of a stage
            # (the one that pools) still attends in its predecessor's windows, as in sam2.
            dim_out = dim
            window = 0 if i in config.global_att_blocks else config.window_spec[stage]
            if i - 1 in self.stage_ends:
                dim_out, heads, stage = dim * 2, heads * 2, stage + 1
            self.blocks.append(MultiScaleBlock(dim, dim_out, heads, 2 if i in pool_blocks else None, window))
            dim = dim_out

    def _pos_embed(self, hw: tuple[int, int]) -> torch.Tensor:
        pos = F.interpolate(self.pos_embed, size=hw, mode="bicubic")
        pos = pos + self.pos_embed_window.tile([a // b for a, b in zip(pos.shape, self.pos_embed_window.shape,
                                                                          strict=True)])
        return pos.permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed(x)
        x = x + self._pos_embed(x.shape[1:3])
        outputs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.stage_ends:
                outputs.append(x.permute(0, 3, 1, 2))
        return outputs


def sine_position_encoding(channels: int, h: int, w: int, device: torch.device) -> torch.Tensor:
    """The normalised sine encoding of an h×w grid, channels×h×w (sam2's PositionEmbeddingSine,
    temperature 10 000, scale 2π)."""
    half = channels // 2
    eps, scale = 1e-6, 2 * math.pi
    y = torch.arange(1, h + 1, dtype=torch.float32, device=device).view(-1, 1).repeat(1, w)
    x = torch.arange(1, w + 1, dtype=torch.float32, device=device).view(1, -1).repeat(h, 1)
    y = y / (y[-1:, :] + eps) * scale
    x = x / (x[:, -1:] + eps) * scale
    dim_t = torch.arange(half, dtype=torch.float32, device=device)
    dim_t = 10000 ** (2 * (dim_t // 2) / half)
    px, py = x[:, :, None] / dim_t, y[:, :, None] / dim_t
    px = torch.stack((px[:, :, 0::2].sin(), px[:, :, 1::2].cos()), dim=3).flatten(2)
    py = torch.stack((py[:, :, 0::2].sin(), py[:, :, 1::2].cos()), dim=3).flatten(2)
    return torch.cat((py, px), dim=2).permute(2, 0, 1)


class FpnNeck(nn.Module):
    """1×1 lateral convolutions to 256 channels, nearest-neighbour top-down fusion on the two
    coarsest levels (``fpn_top_down_levels`` [2, 3]) as in every sam2.1 config."""

    def __init__(self, channels: list[int], d_model: int = PROMPT_DIM):
        super().__init__()
        self.convs = nn.ModuleList()
        for dim in channels:
            conv = nn.Sequential()
            conv.add_module("conv", nn.Conv2d(dim, d_model, kernel_size=1))
            self.convs.append(conv)
        self.top_down_levels = (2, 3)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        out: list[torch.Tensor] = [None] * len(self.convs)  # type: ignore[list-item]
        prev = None
        n = len(self.convs) - 1
        for i in range(n, -1, -1):
            lateral = self.convs[n - i](xs[i])
            if i in self.top_down_levels and prev is not None:
                prev = lateral + F.interpolate(prev.to(lateral.dtype), scale_factor=2.0, mode="nearest")
            else:
                prev = lateral
            out[i] = prev
        return out


class ImageEncoder(nn.Module):
    def __init__(self, config: HieraConfig):
        super().__init__()
        self.trunk = Hiera(config)
        self.neck = FpnNeck(config.channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The three finest FPN levels (strides 4, 8, 16; ``scalp`` 1 drops stride 32)."""
        return self.neck(self.trunk(x))[:3]


# --- prompt encoder and mask decoder -----------------------------------------------------------

class PositionEmbeddingRandom(nn.Module):
    def __init__(self, num_pos_feats: int):
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn((2, num_pos_feats)))

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        h, w = size
        matrix = self.positional_encoding_gaussian_matrix
        grid = torch.ones((h, w), device=matrix.device, dtype=torch.float32)
        y = (grid.cumsum(dim=0) - 0.5) / h
        x = (grid.cumsum(dim=1) - 0.5) / w
        coords = (2 * torch.stack([x, y], dim=-1) - 1) @ matrix.to(torch.float32)
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1).to(matrix.dtype).permute(2, 0, 1)


class PromptEncoder(nn.Module):
    """SAM's prompt encoder; RSRefSeg 2 gives it a dense mask prompt only (its sparse prompts
    come from the prompter), but the point embeddings are part of the weights."""

    def __init__(self, embed_dim: int = PROMPT_DIM, mask_in_chans: int = 16):
        super().__init__()
        side = IMAGE_PX // BACKBONE_STRIDE
        self.image_embedding_size = (side, side)
        self.mask_input_size = (4 * side, 4 * side)
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2), LayerNorm2d(mask_in_chans // 4), nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2), LayerNorm2d(mask_in_chans),
            nn.GELU(), nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1))
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def dense_pe(self) -> torch.Tensor:
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def embed_mask(self, masks: torch.Tensor) -> torch.Tensor:
        """The dense embedding of B×1×256×256 mask logits (B×256×64×64)."""
        return self.mask_downscaling(masks)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, downsample_rate: int = 1):
        super().__init__()
        self.num_heads = num_heads
        inner = dim // downsample_rate
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(dim, inner), nn.Linear(dim, inner), nn.Linear(dim, inner)
        self.out_proj = nn.Linear(inner, dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        out = F.scaled_dot_product_attention(self._heads(self.q_proj(q)), self._heads(self.k_proj(k)),
                                             self._heads(self.v_proj(v)))
        b, h, n, c = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * c))


class TwoWayAttentionBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_dim: int, skip_first_layer_pe: bool):
        super().__init__()
        self.self_attn = Attention(dim, num_heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = Attention(dim, num_heads, downsample_rate=2)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_dim, dim, 2)
        self.norm3 = nn.LayerNorm(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = Attention(dim, num_heads, downsample_rate=2)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(self, queries, keys, query_pe, key_pe):
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)
        queries = self.norm2(queries + self.cross_attn_token_to_image(queries + query_pe, keys + key_pe, keys))
        queries = self.norm3(queries + self.mlp(queries))
        keys = self.norm4(keys + self.cross_attn_image_to_token(keys + key_pe, queries + query_pe, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    def __init__(self, depth: int = 2, dim: int = PROMPT_DIM, num_heads: int = 8, mlp_dim: int = 2048):
        super().__init__()
        self.layers = nn.ModuleList(TwoWayAttentionBlock(dim, num_heads, mlp_dim, i == 0) for i in range(depth))
        self.final_attn_token_to_image = Attention(dim, num_heads, downsample_rate=2)
        self.norm_final_attn = nn.LayerNorm(dim)

    def forward(self, image: torch.Tensor, image_pe: torch.Tensor, tokens: torch.Tensor):
        keys = image.flatten(2).permute(0, 2, 1)
        key_pe = image_pe.flatten(2).permute(0, 2, 1)
        queries = tokens
        for layer in self.layers:
            queries, keys = layer(queries, keys, tokens, key_pe)
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(queries + tokens, keys + key_pe, keys))
        return queries, keys


class MaskDecoder(nn.Module):
    """SAM 2's mask decoder with high-resolution features, object-score token and sigmoid IoU
    head (the sam2.1 configuration)."""

    def __init__(self, dim: int = PROMPT_DIM, num_multimask_outputs: int = 3):
        super().__init__()
        self.transformer = TwoWayTransformer(dim=dim)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, dim)
        self.obj_score_token = nn.Embedding(1, dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 4, kernel_size=2, stride=2), LayerNorm2d(dim // 4), nn.GELU(),
            nn.ConvTranspose2d(dim // 4, dim // 8, kernel_size=2, stride=2), nn.GELU())
        self.conv_s0 = nn.Conv2d(dim, dim // 8, kernel_size=1)
        self.conv_s1 = nn.Conv2d(dim, dim // 4, kernel_size=1)
        self.output_hypernetworks_mlps = nn.ModuleList(MLP(dim, dim, dim // 8, 3) for _ in range(self.num_mask_tokens))
        self.iou_prediction_head = MLP(dim, 256, self.num_mask_tokens, 3, sigmoid_output=True)
        self.pred_obj_score_head = MLP(dim, dim, 1, 3)

    def forward(self, image: torch.Tensor, image_pe: torch.Tensor, sparse: torch.Tensor, dense: torch.Tensor,
                high_res: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask logits (B×1×256×256) and their predicted IoU (B×1) for B prompts, one per image."""
        tokens = torch.cat([self.obj_score_token.weight, self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat((tokens.unsqueeze(0).expand(sparse.size(0), -1, -1), sparse), dim=1)
        src = image + dense
        pos = torch.repeat_interleave(image_pe, tokens.shape[0], dim=0)
        b, c, h, w = src.shape
        hs, src = self.transformer(src, pos, tokens)
        iou_out, mask_out = hs[:, 1, :], hs[:, 2:2 + self.num_mask_tokens, :]
        src = src.transpose(1, 2).reshape(b, c, h, w)
        dc1, ln1, act1, dc2, act2 = self.output_upscaling
        feat_s0, feat_s1 = high_res
        up = act1(ln1(dc1(src) + feat_s1))
        up = act2(dc2(up) + feat_s0)
        hyper = torch.stack([mlp(mask_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1)
        b, c, h, w = up.shape
        masks = (hyper @ up.view(b, c, h * w)).view(b, -1, h, w)
        return self._stable_single_mask(masks, self.iou_prediction_head(iou_out))

    @staticmethod
    def _stable_single_mask(masks: torch.Tensor, iou: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token 0's mask where it is stable (IoU of its > δ and > −δ areas ≥ 0.98), else the
        multimask token with the highest predicted IoU."""
        multi, multi_iou = masks[:, 1:], iou[:, 1:]
        best = torch.argmax(multi_iou, dim=-1)
        rows = torch.arange(multi_iou.size(0), device=iou.device)
        best_mask, best_iou = multi[rows, best].unsqueeze(1), multi_iou[rows, best].unsqueeze(1)
        single, single_iou = masks[:, 0:1], iou[:, 0:1]
        flat = single.flatten(-2)
        inter = torch.sum(flat > STABILITY_DELTA, dim=-1).float()
        union = torch.sum(flat > -STABILITY_DELTA, dim=-1).float()
        stable = torch.where(union > 0, inter / union, 1.0) >= STABILITY_THRESHOLD
        mask = torch.where(stable[..., None, None].expand_as(single), single, best_mask)
        return mask, torch.where(stable.expand_as(single_iou), single_iou, best_iou)


class SAM2(nn.Module):
    """What RSRefSeg 2 keeps of SAM 2.1, with Meta's parameter names."""

    def __init__(self, config: HieraConfig):
        super().__init__()
        self.config = config
        self.image_encoder = ImageEncoder(config)
        self.sam_prompt_encoder = PromptEncoder()
        self.sam_mask_decoder = MaskDecoder()
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, PROMPT_DIM))

    def encode_image(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The image embedding (B×256×64×64, with ``no_mem_embed`` added) and the two
        high-resolution maps the decoder reads, from ImageNet-normalised B×3×1024×1024 input."""
        fpn = self.image_encoder(images)
        high_res = [self.sam_mask_decoder.conv_s0(fpn[0]), self.sam_mask_decoder.conv_s1(fpn[1])]
        return fpn[2] + self.no_mem_embed.view(1, -1, 1, 1), high_res

    def decode(self, embedding: torch.Tensor, high_res: list[torch.Tensor], sparse: torch.Tensor,
               dense_mask: torch.Tensor) -> torch.Tensor:
        """Mask logits (B×1×256×256) from the sparse prompts (B×N×256) and a dense mask prompt
        (B×1×256×256)."""
        dense = self.sam_prompt_encoder.embed_mask(dense_mask)
        masks, _ = self.sam_mask_decoder(embedding, self.sam_prompt_encoder.dense_pe(), sparse, dense, high_res)
        return masks
