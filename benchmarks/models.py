"""Model benchmark: tiles/s and megapixels/s per model and device, parameters, peak memory.

    python benchmarks/models.py [--device cpu|cuda] [--models tiny,rmsin,clipseg,sam3,rsrefseg2] [--batches 1,4]

Weights are random (speed does not depend on them), in each model's published configuration
(CLIPSeg: CIDAS/clipseg-rd64-refined's, with its 352 px processor and a stand-in word-level
tokenizer, since the text side costs next to nothing per tile). On CUDA the engine's settings are used
(bf16 autocast, inference mode) and the largest batch that fits is searched for.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch

from georefseg.models.base import ReferringSegmenter
from georefseg.models.device import place


def stand_in_tokenizer():
    """A word-level tokenizer with CLIP's special-token ids: the text side costs next to nothing
    per tile, and the real vocabulary cannot be downloaded here."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = ["[UNK]", "the", "large", "storage", "tank", "near", "river"]
    vocab = {w: i for i, w in enumerate(words)} | {"<|startoftext|>": 49406, "<|endoftext|>": 49407}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>",
        special_tokens=[("<|startoftext|>", 49406), ("<|endoftext|>", 49407)])
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<|endoftext|>")


def build_clipseg() -> ReferringSegmenter:
    """CLIPSeg rd64-refined's architecture, random weights, its processor's preprocessing."""
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation, CLIPSegProcessor, ViTImageProcessorPil

    from georefseg.models.hf.clipseg import CLIPSegSegmenter, read_card

    config = CLIPSegConfig(use_complex_transposed_convolution=True)  # rd64-refined: reduce_dim 64, layers 3, 6, 9
    image = ViTImageProcessorPil(do_resize=True, size={"height": 352, "width": 352}, resample=2, do_rescale=True,
                                 rescale_factor=1 / 255, do_normalize=True, image_mean=[0.485, 0.456, 0.406],
                                 image_std=[0.229, 0.224, 0.225])
    return CLIPSegSegmenter(CLIPSegForImageSegmentation(config).eval(),
                            CLIPSegProcessor(image_processor=image, tokenizer=stand_in_tokenizer()), read_card(None))


def build_sam3() -> ReferringSegmenter:
    """SAM 3's published architecture (transformers' defaults: ViT-L/14 at 1008 px, 200 queries)."""
    from transformers import Sam3Config, Sam3Model

    from georefseg.models.hf.sam3 import SAM3Segmenter, processor_settings, read_card

    return SAM3Segmenter(Sam3Model(Sam3Config()).eval(), stand_in_tokenizer(), processor_settings(None),
                         read_card(None))


def build_rsrefseg2() -> ReferringSegmenter:
    """RSRefSeg 2's published configuration: SAM 2.1 Hiera-L, SigLIP 2 so400m/16 at 512 px
    (google/siglip2-so400m-patch16-512's config), the prompter of configs_RSRefSeg2/*_infer.py."""
    from transformers import SiglipConfig

    from georefseg.models.card import ModelCard
    from georefseg.models.rsrefseg2.model import IMAGE_PX, KIND, MASK_STRIDE, OVERLAP_PX, RSRefSeg2
    from georefseg.models.rsrefseg2.prompter import PrompterConfig
    from georefseg.models.rsrefseg2.sam2 import HIERA

    tower = {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27, "num_attention_heads": 16}
    config = SiglipConfig(text_config={**tower, "vocab_size": 256000, "max_position_embeddings": 64,
                                       "projection_size": 1152},
                          vision_config={**tower, "image_size": 512, "patch_size": 16})
    card = ModelCard(KIND, None, IMAGE_PX, OVERLAP_PX, MASK_STRIDE, metrics=KIND)
    return RSRefSeg2(HIERA["large"], config, PrompterConfig(text_dim=1152, image_dim=1152), stand_in_tokenizer(),
                     card).eval()


def build_tiny() -> ReferringSegmenter:
    from georefseg.models.tiny import TinyRefSeg

    return TinyRefSeg()


def build_rmsin() -> ReferringSegmenter:
    from georefseg.models.rmsin.model import RMSIN

    return RMSIN()


BUILDERS = {"tiny": build_tiny, "rmsin": build_rmsin, "clipseg": build_clipseg, "sam3": build_sam3,
            "rsrefseg2": build_rsrefseg2}


def own_parameters(model: ReferringSegmenter) -> tuple[int, int]:
    """(parameters of the image side and fusion, parameters of the text encoder)."""
    text = sum(p.numel() for n, p in model.named_parameters()
               if n.startswith(("text_encoder.", "net.clip.text_model.", "net.clip.text_projection",
                                "net.text_encoder.", "net.text_projection", "text.")))
    return sum(p.numel() for p in model.parameters()) - text, text


@torch.inference_mode()
def tiles_per_second(model: ReferringSegmenter, batch: int, device: torch.device, seconds: float) -> float:
    size = model.tile_size
    x = torch.rand(batch, 3, size, size, device=device)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    text = model.encode_text(["the large storage tank near the river"]).repeat_to(batch).to(device)
    amp = device.type == "cuda"

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            model.predict(x, text)  # what the engine calls: instances too, for models that give them

    step()  # warm-up
    if amp:
        torch.cuda.synchronize()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 2:
        step()
        n += 1
    if amp:
        torch.cuda.synchronize()
    return n * batch / (time.perf_counter() - t0)


def largest_batch(model: ReferringSegmenter, device: torch.device, start: int = 8, limit: int = 4096) -> int:
    ok, b = 0, start
    while b <= limit:
        try:
            tiles_per_second(model, b, device, 0.0)
            ok, b = b, b * 2
        except torch.OutOfMemoryError:
            break
        finally:
            torch.cuda.empty_cache()
    return ok


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--models", default="tiny,rmsin")
    ap.add_argument("--batches", default="1,4")
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    device = torch.device(args.device)
    rows = []
    for name in args.models.split(","):
        model = place(BUILDERS[name](), device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        image_params, text_params = own_parameters(model)
        for batch in (int(b) for b in args.batches.split(",")):
            tps = tiles_per_second(model, batch, device, args.seconds)
            row = {"model": name, "device": device.type, "threads": torch.get_num_threads(), "batch": batch,
                   "tile": model.tile_size, "tiles_per_s": round(tps, 3), "s_per_tile": round(1 / tps, 3),
                   "megapixels_per_s": round(tps * model.tile_size ** 2 / 1e6, 3),
                   "params_image_M": round(image_params / 1e6, 2), "params_text_M": round(text_params / 1e6, 2),
                   "peak_rss_MB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
            if device.type == "cuda":
                row["peak_gpu_MB"] = round(torch.cuda.max_memory_allocated() / 2**20)
            rows.append(row)
            print(json.dumps(row), flush=True)
        if device.type == "cuda":
            print(json.dumps({"model": name, "largest_batch_that_fits": largest_batch(model, device)}), flush=True)
        del model
    print("\n| model | device | batch | tile | s/tile | tiles/s | MP/s | params (image + text) | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['device']} ({r['threads']} threads) | {r['batch']} | {r['tile']} | "
              f"{r['s_per_tile']} | {r['tiles_per_s']} | {r['megapixels_per_s']} | "
              f"{r['params_image_M']} M + {r['params_text_M']} M | {r['peak_rss_MB']} |")


if __name__ == "__main__":
    main()
