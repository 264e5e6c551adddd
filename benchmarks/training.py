"""What a training step costs, and proof that the loop learns.

    python benchmarks/training.py [--steps 2] [--learn-steps 150]

1. Seconds per step on this machine for RMSIN (Swin-B + BERT-base, the authors' recipe: 480 px,
   batch 2) and CLIPSeg (the published rd64 architecture: 352 px, batch 8; decoder only, and
   the whole model), randomly initialised (no pretrained weights reach this machine: the cost of
   a step does not depend on the values), float32, all cores; peak RSS. On CUDA also steps/s and
   peak GPU memory, bf16 autocast.
2. A small random CLIPSeg (tests' configuration) fine-tuned, whole, on a synthetic dataset
   (seed 21: neither the tests' nor the shipped model's): validation mIoU before and after.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from georefseg.data import open_dataset  # noqa: E402
from georefseg.data.imageio import write_png  # noqa: E402
from georefseg.data.native import NativeWriter  # noqa: E402
from georefseg.data.synth import write_synthetic_dataset  # noqa: E402
from georefseg.evaluate import evaluate  # noqa: E402
from georefseg.models import load_model  # noqa: E402
from georefseg.training import TrainConfig, train  # noqa: E402


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def _dataset(root: Path, n: int, size: int) -> Path:
    import numpy as np

    writer = NativeWriter(root, {"source": "benchmark"})
    rng = np.random.default_rng(0)
    for i in range(n):
        image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        mask = np.zeros((size, size), np.uint8)
        mask[size // 4: size // 2, size // 4: size // 2] = 255
        write_png(writer.root / "images" / f"{i}.png", image)
        write_png(writer.root / "masks" / f"{i}.png", mask)
        writer.add({"id": str(i), "image": f"images/{i}.png", "mask": f"masks/{i}.png",
                    "expression": "the large white storage tank near the river", "split": "train", "kinds": []})
    writer.close()
    return root


def _timed(cfg: TrainConfig) -> dict:
    times = []
    last = [time.perf_counter()]

    def step(pace):
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now

    t0 = time.perf_counter()
    train(cfg, on_step=step)
    steady = times[1:] or times
    return {"s_per_step": round(sum(steady) / len(steady), 2), "first_step_s": round(times[0], 2),
            "run_s": round(time.perf_counter() - t0, 1), "peak_rss_gb": round(_rss_gb(), 2)}


def rmsin_init(tmp: Path) -> Path:
    from georefseg.models.rmsin.model import RMSIN, RMSINConfig
    from georefseg.training.rmsin import AUTHORS_ARGS

    model = RMSIN(RMSINConfig())
    args = argparse.Namespace(**{**AUTHORS_ARGS, "window12": True})
    torch.save({"model": model.state_dict(), "args": args}, tmp / "rmsin_random.pth")
    return tmp / "rmsin_random.pth"


def clipseg_folder(tmp: Path, small: bool) -> Path:
    """A CLIPSeg folder, randomly initialised: the published rd64 architecture (352 px), or a
    small one (128 px, 8-px patches: a 16 × 16 decoder grid) for the learning run."""
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation

    from tests.models.hf.test_clipseg import make_clipseg_folder

    folder = make_clipseg_folder(tmp / ("clipseg-small" if small else "clipseg-rd64"))
    vocab = json.loads((folder / "config.json").read_text())["text_config"]["vocab_size"]
    if small:
        config = CLIPSegConfig(
            text_config={"vocab_size": vocab, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                         "num_attention_heads": 2, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1},
            vision_config={"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4,
                           "num_attention_heads": 2, "image_size": 128, "patch_size": 8},
            projection_dim=32, extract_layers=[2, 3, 4], reduce_dim=32, decoder_num_attention_heads=2,
            decoder_intermediate_size=64)
        side = 128
    else:
        config = CLIPSegConfig(extract_layers=[3, 6, 9], reduce_dim=64)  # the published architecture
        config.text_config.vocab_size = vocab
        side = 352
    torch.manual_seed(0)
    CLIPSegForImageSegmentation(config).save_pretrained(folder)
    prep = json.loads((folder / "preprocessor_config.json").read_text())
    prep["size"] = {"height": side, "width": side}
    (folder / "preprocessor_config.json").write_text(json.dumps(prep))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--learn-steps", type=int, default=150)
    parser.add_argument("--only", choices=["rmsin", "clipseg", "learn"], default=None)
    opts = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if opts.only in (None, "rmsin"):
            data = _dataset(tmp / "d480", 4, 480)
            rows["rmsin (Swin-B + BERT-base, 480 px, batch 2)"] = _timed(TrainConfig(
                data=str(data), out=str(tmp / "r"), model="rmsin", checkpoint=str(rmsin_init(tmp)),
                max_steps=opts.steps, batch_size=2, workers=0, calibrate=False, device=device, augment=False))
        if opts.only in (None, "clipseg"):
            data = _dataset(tmp / "d352", 16, 352)
            folder = clipseg_folder(tmp, small=False)
            for whole in (False, True):
                rows[f"clipseg rd64 ({'whole model' if whole else 'decoder'}, 352 px, batch 8)"] = _timed(TrainConfig(
                    data=str(data), out=str(tmp / f"c{whole}"), model="clipseg", checkpoint=str(folder),
                    max_steps=opts.steps, batch_size=8, workers=0, calibrate=False, device=device, train_all=whole))
        if opts.only in (None, "learn"):
            data = tmp / "synth"
            write_synthetic_dataset(data, 300, seed=21, size=128)
            folder = clipseg_folder(tmp, small=True)
            val = [s for s in open_dataset(data) if s.split == "val"]
            before = evaluate(load_model("clipseg", folder, device="cpu"), val)
            train(TrainConfig(data=str(data), out=str(tmp / "learn"), model="clipseg", checkpoint=str(folder),
                              max_steps=opts.learn_steps, batch_size=16, lr=1e-3, warmup_steps=10, train_all=True,
                              workers=0, calibrate=False, device=device, val_every=10_000))
            after = evaluate(load_model("clipseg", tmp / "learn" / "last", device="cpu"), val)
            rows["learning (small clipseg, synthetic seed 21, val split)"] = {
                "val_samples": len(val), "steps": opts.learn_steps,
                "mIoU_before": round(before["mIoU"], 3), "mIoU_after": round(after["mIoU"], 3),
                "oIoU_before": round(before["oIoU"], 3), "oIoU_after": round(after["oIoU"], 3)}
    print(json.dumps({"device": device, "threads": torch.get_num_threads(), **rows}, indent=1))


if __name__ == "__main__":
    main()
