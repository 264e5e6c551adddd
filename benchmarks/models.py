"""Model benchmark: tiles/s and megapixels/s per model and device, parameters, peak memory.

    python benchmarks/models.py [--device cpu|cuda] [--models tiny,rmsin] [--batches 1,4]

Weights are random (speed does not depend on them). On CUDA the engine's settings are used
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


def build(name: str) -> ReferringSegmenter:
    if name == "tiny":
        from georefseg.models.tiny import TinyRefSeg

        return TinyRefSeg()
    from georefseg.models.rmsin import RMSIN

    return RMSIN()


def own_parameters(model: ReferringSegmenter) -> tuple[int, int]:
    """(parameters of the image side and fusion, parameters of the text encoder)."""
    text = sum(p.numel() for n, p in model.named_parameters() if n.startswith("text_encoder."))
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
            model.segment(x, text).referring_logits()

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
        model = place(build(name), device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        image_params, text_params = own_parameters(model)
        for batch in (int(b) for b in args.batches.split(",")):
            tps = tiles_per_second(model, batch, device, args.seconds)
            row = {"model": name, "device": device.type, "threads": torch.get_num_threads(), "batch": batch,
                   "tile": model.tile_size, "tiles_per_s": round(tps, 2),
                   "megapixels_per_s": round(tps * model.tile_size ** 2 / 1e6, 2),
                   "params_image_M": round(image_params / 1e6, 2), "params_text_M": round(text_params / 1e6, 2),
                   "peak_rss_MB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
            if device.type == "cuda":
                row["peak_gpu_MB"] = round(torch.cuda.max_memory_allocated() / 2**20)
            rows.append(row)
            print(json.dumps(row), flush=True)
        if device.type == "cuda":
            print(json.dumps({"model": name, "largest_batch_that_fits": largest_batch(model, device)}), flush=True)
        del model
    print("\n| model | device | batch | tile | tiles/s | MP/s | params (image + text) | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['device']} ({r['threads']} threads) | {r['batch']} | {r['tile']} | "
              f"{r['tiles_per_s']} | {r['megapixels_per_s']} | {r['params_image_M']} M + {r['params_text_M']} M | "
              f"{r['peak_rss_MB']} |")


if __name__ == "__main__":
    main()
