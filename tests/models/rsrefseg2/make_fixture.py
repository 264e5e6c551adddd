"""Build the RSRefSeg 2 parity fixture with the authors' code (run once, outside georefseg's env).

Environment (a scratch venv, offline): torch 2.13.0, transformers 4.53.1, peft 0.16.0, Meta's
sam2 1.1.0 (sdist, ``SAM2_BUILD_CUDA=0``), hydra-core, iopath, einops, tokenizers, pillow; and
the authors' model classes (KyanChen/RSRefSeg2, ``refseg/models/models.py``) importable from
``--authors`` as the module ``--module``. On the CPU in float32 their three ``sam2/`` files
differ from Meta's 1.1.0 only by a comment, a dtype cast to the lateral's dtype (not float32)
in the FPN neck and one in the random position encoding, so Meta's package is used as it is.

The configuration is the authors' ``rrsisd_infer.py`` made small: SAM 2.1 Hiera-T (Meta's
``sam2.1_hiera_t.yaml``) and a 64-wide, 2-layer SigLIP at 512 px, patch 16, with a small
byte-fallback BPE tokenizer of Gemma's kind (no BOS, EOS appended, ``<pad>`` 0, ``<eos>`` 1);
the prompter's attention and MLP 64 wide; LoRA r 16, α 16 on the authors' target modules.
Weights come from ``weights.tensor`` seeded by name (base models under their own names, what
training changes under the authors' state-dict names), LoRA B non-zero.

Writes into ``--out``: the SigLIP folder's small files (config, processor config, tokenizer),
``layout.json`` (every state-dict name and shape of SAM's file, SigLIP's file and the authors'
model; which of the model's tensors training changes; which base tensor each other one is) and
``expected.pt`` (token ids; the sampled logits of ``encode_decode``, the stability score of each
image's single mask, image 0's whole mask (logit > 0, bit-packed); the multimask fallback on
crafted logits).

    python tests/models/rsrefseg2/make_fixture.py --authors PATH --module authors_models \
        --out tests/models/rsrefseg2/fixture
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location("weights", HERE / "weights.py")
weights = importlib.util.module_from_spec(spec)
spec.loader.exec_module(weights)

SAM_ID, SAM_FILE = "facebook/sam2.1-hiera-tiny", "sam2.1_hiera_tiny.pt"
SAM_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"
WIDTH = 64
LORA = {  # rrsisd_infer.py's lora_cfg
    "backbone.model.image_encoder": dict(r=16, lora_alpha=16, lora_dropout=0.,
                                         target_modules=r"^(trunk\.blocks\.\d+\.attn\.(qkv|proj)|neck\.convs\.\d+\.conv)$"),
    "backbone.model.vision_encoder": dict(r=16, lora_alpha=16, lora_dropout=0.,
                                          target_modules=r"^(layers\.\d+\.attn\.(qkv|proj)|neck\.conv[12])$"),
    "clip_vision_encoder": dict(r=16, lora_alpha=16, lora_dropout=0., target_modules=(
        r"^(model\.head\.(attention\.out_proj|mlp\.fc[12])|model\.encoder\.layers\.\d+\.self_attn\."
        r"(k_proj|v_proj|q_proj|out_proj))$")),
    "clip_text_encoder": dict(r=16, lora_alpha=16, lora_dropout=0., target_modules=(
        r"^(model\.head|model\.encoder\.layers\.\d+\.self_attn\.(k_proj|v_proj|q_proj|out_proj))$")),
}
PROMPTER = dict(  # rrsisd_infer.py's prompter, 64 wide
    num_text_queries=3, text_query_config=dict(has_pe=True, init_type="textpool"),
    prompt_config=dict(has_pe=True, init_type="learnable"), text_feat_dim=WIDTH, two_queries_text_attn_depth=2,
    two_queries_text_attn_operation_order=[
        "self_attn_query_query1", "norm_query1_1", "self_attn_query_query2", "norm_query2_1",
        "cross_attn_query_text_query1_text", "norm_query1_2", "mlp_query1_2", "norm_query1_3",
        "cross_attn_query_text_query2_text", "norm_query2_2", "mlp_query2_2", "norm_query2_3",
        "cross_attn_query_query_query1_query2", "norm_query1_4", "mlp_query1_3", "norm_query1_5",
        "cross_attn_query_query_query2_query1", "norm_query2_4", "mlp_query2_3", "norm_query2_5"],
    imgpe_config=dict(type="learnable", size=512 // 16), queries1_to_img_attn_depth=2,
    queries1_to_img_attn_operation_order=["self_attn_text_text_1", "norm_text_1", "cross_attn_img_text_1",
                                          "norm_img_1", "mlp_img_1", "norm_img_2"],
    prompt_queries2_img_attn_depth=2, prompt_feat_dim=256,
    prompt_queries2_img_attn_operation_order=[
        "self_attn_text_1", "norm_text_1", "cross_attn_img_text_1", "norm_img_1", "mlp_img_1", "norm_img_2",
        "self_attn_prompt_1", "norm_prompt_1", "cross_attn_prompt_text_1", "norm_prompt_2", "mlp_prompt_2",
        "norm_prompt_3", "cross_attn_prompt_img_1", "norm_prompt_4", "mlp_prompt_3", "norm_prompt_5"],
    num_prompts=9, dense_prompt_config=dict(proj_from="text_pool", has_internal_proj=False,
                                            featmap_from="refined_clipfeat", has_internal_conv=True,
                                            up_strategy="preup"),
    img_feat_dim=WIDTH, num_heads=8, mlp_dim=WIDTH, internal_dim=WIDTH, is_residual=True)
CORPUS = ["the large storage tank near the river", "two ships", "the white building beside the road",
          "a harbour with boats", "all the aircraft on the apron", "the bridge over the canal",
          "green field north of the farm", "the roundabout", "tennis court", "parking lot full of cars"]


def make_tokenizer(folder: Path) -> None:
    """A byte-fallback BPE tokenizer of Gemma's kind: <pad> 0, <eos> 1, <bos> 2, <unk> 3, then
    the 256 byte tokens, then merges learnt from CORPUS; EOS appended, no BOS."""
    from tokenizers import Tokenizer, decoders, normalizers, processors
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer

    specials = ["<pad>", "<eos>", "<bos>", "<unk>"] + [f"<0x{i:02X}>" for i in range(256)]
    tok = Tokenizer(BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Replace(" ", "\u2581")
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.train_from_iterator(CORPUS * 20, BpeTrainer(vocab_size=420, special_tokens=specials, show_progress=False))
    tok.post_processor = processors.TemplateProcessing(single="$A <eos>", pair="$A <eos> $B <eos>",
                                                       special_tokens=[("<eos>", 1)])
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "GemmaTokenizer", "add_bos_token": False, "add_eos_token": True, "pad_token": "<pad>",
        "eos_token": "<eos>", "bos_token": "<bos>", "unk_token": "<unk>", "model_max_length": 64,
        "padding_side": "right"}, indent=1))
    (folder / "special_tokens_map.json").write_text(json.dumps(
        {"pad_token": "<pad>", "eos_token": "<eos>", "bos_token": "<bos>", "unk_token": "<unk>"}, indent=1))


def make_siglip(folder: Path) -> dict[str, list[int]]:
    """A small SigLIP folder as save_pretrained writes it; its state-dict names and shapes."""
    from transformers import AutoTokenizer, SiglipConfig, SiglipModel

    make_tokenizer(folder)
    vocab = len(AutoTokenizer.from_pretrained(str(folder)))
    config = SiglipConfig(
        text_config=dict(vocab_size=vocab, hidden_size=WIDTH, intermediate_size=2 * WIDTH, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=64, projection_size=WIDTH, pad_token_id=0,
                         eos_token_id=1, bos_token_id=2),
        vision_config=dict(hidden_size=WIDTH, intermediate_size=2 * WIDTH, num_hidden_layers=2, num_attention_heads=4,
                           image_size=512, patch_size=16))
    model = SiglipModel(config)
    state = {k: weights.tensor(f"siglip:{k}", v.shape) for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    model.save_pretrained(str(folder), safe_serialization=True)
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "SiglipImageProcessor", "processor_class": "SiglipProcessor", "do_resize": True,
        "size": {"height": 512, "width": 512}, "resample": 2, "do_rescale": True, "rescale_factor": 1 / 255,
        "do_normalize": True, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}, indent=1))
    return {k: list(v.shape) for k, v in state.items()}


def make_sam(cache: Path) -> dict[str, list[int]]:
    """SAM 2.1 Hiera-T with rule weights in a hub-cache layout; its state-dict names and shapes."""
    import sam2  # noqa: F401 - initialises hydra's config module
    from hydra import compose
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = compose(config_name=SAM_CONFIG)
    OmegaConf.resolve(cfg)
    model = instantiate(cfg.model, _recursive_=True)
    state = {k: weights.tensor(f"sam:{k}", v.shape) for k, v in model.state_dict().items()}
    snapshot = cache / f"models--{SAM_ID.replace('/', '--')}" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    torch.save({"model": state}, snapshot / SAM_FILE)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0" * 40)
    return {k: list(v.shape) for k, v in state.items()}


def digest(t: torch.Tensor) -> str:
    return hashlib.sha1(t.detach().contiguous().numpy().tobytes() + str(tuple(t.shape)).encode()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--authors", required=True, help="folder from which the authors' model module imports")
    parser.add_argument("--module", default="refseg.models.models")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    sys.path.insert(0, args.authors)
    authors = importlib.import_module(args.module)
    torch.set_grad_enabled(False)
    out = Path(args.out)
    work = Path(tempfile.mkdtemp())
    try:
        siglip_dir = work / "siglip2-so400m-patch16-512"
        siglip_keys = make_siglip(siglip_dir)
        sam_keys = make_sam(work / "cache")
        base = {}
        for k in sam_keys:
            base.setdefault(digest(weights.tensor(f"sam:{k}", sam_keys[k])), f"sam:{k}")
        for k in siglip_keys:
            base.setdefault(digest(weights.tensor(f"siglip:{k}", siglip_keys[k])), f"siglip:{k}")

        model = authors.RefSegEncoderDecoder(
            lora_cfg={k: dict(v) for k, v in LORA.items()},
            backbone=authors.RefSegSam(SAM_ID, with_dense_prompt=True, cache_dir=str(work / "cache")),
            clip_vision_encoder=authors.RefSegSiglipVisionModel(str(siglip_dir), input_size=None),
            clip_text_encoder=authors.RefSegSiglipTextModel(str(siglip_dir)),
            prompter=authors.CascadedPrompter(**PROMPTER),
            decode_head=authors.PseudoSegHead())
        trainable = {k for k, p in model.named_parameters() if p.requires_grad}
        state = model.state_dict()
        trained, frozen = [], {}
        for key, value in state.items():
            origin = None if key in trainable else base.get(digest(value))
            if origin is None:
                trained.append(key)
            else:
                frozen[key] = origin
        model.load_state_dict({**state, **{k: weights.tensor(f"rsrefseg2:{k}", state[k].shape) for k in trained}})
        model.eval()

        scores = []
        decoder = model.backbone.model.sam_mask_decoder
        stability = decoder._get_stability_scores
        decoder._get_stability_scores = lambda logits: scores.append(stability(logits)) or scores[-1]
        metas = [{"text": s, "img_shape": c, "pad_shape": (1024, 1024)}
                 for s, c in zip(weights.SENTENCES, weights.CONTENT, strict=True)]
        logits, tokens = model.encode_decode(weights.images(), metas)
        print("logits", tuple(logits.shape), "range", float(logits.min()), float(logits.max()),
              "stability", [s.tolist() for s in scores], "input_ids", tokens["input_ids"].tolist())

        # The decoder's fallback to its best multimask output, on crafted logits: image 0's
        # single mask hovers around 0 (unstable), image 1's is decisive (kept).
        g = torch.Generator().manual_seed(7)
        crafted = torch.randn(2, 4, 64, 64, generator=g) * torch.tensor([0.03, 4.0])[:, None, None, None]
        crafted_iou = torch.rand(2, 4, generator=g)
        fallback = decoder._dynamic_multimask_via_stability(crafted, crafted_iou)

        out.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(out / "siglip", ignore_errors=True)
        (out / "siglip").mkdir()
        for name in ("config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json",
                     "special_tokens_map.json"):
            shutil.copy(siglip_dir / name, out / "siglip" / name)
        (out / "layout.json").write_text(json.dumps({
            "sam": sam_keys, "siglip": siglip_keys, "model": {k: list(v.shape) for k, v in state.items()},
            "trained": trained, "frozen": frozen}, indent=0, sort_keys=True))
        torch.save({"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"],
                    "stability": torch.cat(scores), **weights.sample(logits), "crafted": crafted,
                    "crafted_iou": crafted_iou, "fallback": fallback[0], "fallback_iou": fallback[1],
                    "mask0": torch.from_numpy(np.packbits((logits[0, 0] > 0).numpy()))},
                   out / "expected.pt")
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
