"""Make tests/assets/rmsin/train_step.npz: three training steps of the RMSIN authors' own code.

Run outside this repository's environment, in a scratch venv with torch 2.13.0, einops,
filelock, tokenizers, tqdm, requests, regex and sacremoses, and a checkout of
github.com/Lsan2401/RMSIN (commit b4a9b27)::

    scratch-venv/bin/python tests/models/rmsin/make_train_fixture.py --authors PATH/TO/RMSIN

What runs is theirs: ``lib.segmentation.lavt_one`` (their model, BERT inside, SyncBatchNorm as
their ``main`` converts it), their ``train.criterion`` (``loss/loss.py``), the parameter groups,
AdamW and LambdaLR poly schedule executed from the text of their ``train.py`` ``main`` (the
lines from "parameters to optimize" to "housekeeping"), and their ``train.train_one_epoch``
over a loader of three identical batches. Stand-ins, for imports that cannot load here or are
not used: ``timm.models.layers`` (DropPath with timm's semantics, to_2tuple, trunc_normal_),
``mmcv``/``mmseg`` (only their pretrained-weights loader uses them; it is not called), ``wandb``,
``cv2``, ``torchvision`` (imported by their checkpoint loader) and their torchvision-based
``transforms`` (not called), and ``.cuda()`` /
``torch.cuda.synchronize`` / ``empty_cache`` as no-ops (CPU).

Configuration: Swin-T widths with window 12 (their cross-scale module given the real stage
widths, as in rmsin_reference.py), a 12-layer BERT with 768-wide words, a 256-wide
feed-forward and the first 6000 word pieces (their BertModel; the sentences' ids are below 6000),
weights from ``rmsin_reference.deterministic_state``; two
480×480 images, two sentences tokenised by their BertTokenizer with the bert-base-uncased
vocabulary; batch 2, lr 3e-5, weight decay 0.01, 10 epochs of 3 batches (the schedule spans
30 steps); dropout and drop path switched off (p = 0), float32, 2 threads.

Recorded: the three losses; each step's learning rate per group; which parameters are in no
group and which get no gradient; at the first step, each gradient's norm and its values at 64
fixed positions; after the third step, each tensor's values at those positions and the
largest change of each; the token ids.
"""

from __future__ import annotations

import argparse
import sys
import types
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[3]))
from tests.models.rmsin.rmsin_reference import deterministic_state  # noqa: E402

OUT = HERE.parents[2] / "assets" / "rmsin" / "train_step.npz"
SENTENCES = ["the white storage tank to the left of the large building near the river",
             "a small boat"]
EPOCHS, STEPS, SAMPLES_PER_TENSOR = 10, 3, 64
BERT = dict(vocab_size=6000, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=256)


def batch_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Two 480×480 RGB images (uint8) and their masks (0/1): smooth fields with a bright square
    and a disc, so that the masks are not trivial."""
    rng = np.random.Generator(np.random.PCG64(2401))
    yy, xx = np.mgrid[0:480, 0:480]
    images, masks = [], []
    for k in range(2):
        base = rng.random((3, 15, 15)).repeat(32, 1).repeat(32, 2) * 160
        noise = rng.random((3, 480, 480)) * 60
        square, disc = (abs(xx - 150) < 60) & (abs(yy - 300) < 45), (xx - 330) ** 2 + (yy - 140) ** 2 < 70 ** 2
        mask = square if k == 0 else disc
        img = base + noise + mask[None] * 40
        images.append(np.clip(img, 0, 255).astype(np.uint8).transpose(1, 2, 0))
        masks.append(mask.astype(np.uint8))
    return np.stack(images), np.stack(masks)


def positions(name: str, numel: int) -> np.ndarray:
    rng = np.random.Generator(np.random.PCG64(zlib.crc32(("sample:" + name).encode())))
    return np.sort(rng.choice(numel, size=min(SAMPLES_PER_TENSOR, numel), replace=False))


def stand_ins() -> None:
    def drop_path(x, drop_prob=0.0, training=False):  # timm's semantics
        if drop_prob == 0.0 or not training:
            return x
        keep = 1 - drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    class DropPath(nn.Module):
        def __init__(self, drop_prob=None):
            super().__init__()
            self.drop_prob = drop_prob

        def forward(self, x):
            return drop_path(x, self.drop_prob, self.training)

    layers = types.ModuleType("timm.models.layers")
    layers.DropPath, layers.trunc_normal_ = DropPath, nn.init.trunc_normal_
    layers.to_2tuple = lambda x: tuple(x) if isinstance(x, (tuple, list)) else (x, x)
    modules = {"timm": types.ModuleType("timm"), "timm.models": types.ModuleType("timm.models"),
               "timm.models.layers": layers}
    for name in ("mmcv", "mmcv.fileio", "mmcv.parallel", "mmcv.runner", "mmcv.utils", "mmseg", "mmseg.utils",
                 "wandb", "cv2", "transforms", "torchvision"):
        modules[name] = types.ModuleType(name)
    modules["mmcv.fileio"].FileClient = modules["mmcv.fileio"].load = None
    modules["mmcv.parallel"].is_module_wrapper = lambda m: False
    modules["mmcv.runner"].get_dist_info = lambda: (0, 1)
    modules["mmcv.utils"].mkdir_or_exist = lambda *a, **k: None
    modules["mmseg.utils"].get_root_logger = lambda *a, **k: None
    for fn in ("log", "init", "watch", "save"):
        setattr(modules["wandb"], fn, lambda *a, **k: None)
    sys.modules.update(modules)
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.cuda.synchronize = lambda *a, **k: None
    torch.cuda.empty_cache = lambda: None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--authors", required=True, type=Path, help="checkout of Lsan2401/RMSIN")
    parser.add_argument("--vocab", required=True, type=Path, help="bert-base-uncased vocab.txt")
    parser.add_argument("--work", default=Path("/tmp/rmsin-train-fixture"), type=Path)
    opts = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    stand_ins()
    sys.path.insert(0, str(opts.authors))
    sys.argv = [sys.argv[0]]  # their data module parses the command line at import
    import lib.cross_scale_interaction as csi
    from bert.modeling_bert import BertConfig, BertModel
    from bert.tokenization_bert import BertTokenizer

    # Their cross-scale module hard-codes Swin-B's stage widths: give it the real ones.
    widths = [96, 192, 384, 768]
    original = csi.CIM.__init__
    csi.CIM.__init__ = lambda self, dim, num_layers=1, channels=widths, downsample=1: original(
        self, dim, num_layers, channels, downsample)
    import train as authors_train
    from lib import segmentation

    bert_dir = opts.work / "bert"
    bert_dir.mkdir(parents=True, exist_ok=True)
    BertModel(BertConfig(**BERT)).save_pretrained(str(bert_dir))
    (bert_dir / "vocab.txt").write_bytes(opts.vocab.read_bytes())
    from args import get_parser

    args = get_parser().parse_args(["--swin_type", "tiny", "--window12", "--ck_bert", str(bert_dir),
                                    "--bert_tokenizer", str(bert_dir), "--epochs", str(EPOCHS), "-b", "2",
                                    "--pretrained_swin_weights", ""])
    authors_train.args = args
    model = segmentation.lavt_one(pretrained="", args=args)
    model.load_state_dict(deterministic_state(model.state_dict()), strict=True)
    model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # as their main() does
    off = 0
    for m in model.modules():
        if isinstance(m, nn.Dropout) or type(m).__name__ == "DropPath":
            if isinstance(m, nn.Dropout):
                m.p = 0.0
            else:
                m.drop_prob = 0.0
            off += 1
    print(f"stochastic layers switched off: {off}")

    tokenizer = BertTokenizer.from_pretrained(str(bert_dir))
    ids, att = np.zeros((2, 20), np.int64), np.zeros((2, 20), np.int64)
    for i, s in enumerate(SENTENCES):
        tok = tokenizer.encode(text=s, add_special_tokens=True)[:20]
        ids[i, :len(tok)], att[i, :len(tok)] = tok, 1
    images, masks = batch_arrays()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    image = torch.stack([(torch.from_numpy(im).permute(2, 0, 1).float() / 255 - mean) / std for im in images])
    batch = (image, torch.from_numpy(masks).long(), torch.from_numpy(ids)[:, None], torch.from_numpy(att)[:, None])
    data_loader = [batch] * STEPS

    # Their optimiser set-up, executed from their train.py's own text.
    source = (opts.authors / "train.py").read_text()
    block = source[source.index("    # parameters to optimize"):source.index("    # housekeeping")]
    scope = {"single_model": model, "args": args, "torch": torch, "data_loader": data_loader,
             "reduce": __import__("functools").reduce, "operator": __import__("operator")}
    exec(compile("\n".join(line[4:] for line in block.splitlines()), "train.py:main", "exec"), scope)
    optimizer, lr_scheduler = scope["optimizer"], scope["lr_scheduler"]

    names = {id(p): n for n, p in model.named_parameters()}
    in_groups = {id(p) for g in optimizer.param_groups for p in g["params"]}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    losses, lrs, first = [], [], {}

    def criterion(output, target):
        loss = authors_train.criterion(output, target)
        losses.append(loss.item())
        return loss

    step = optimizer.step

    def recording_step(*a, **k):
        lrs.append([g["lr"] for g in optimizer.param_groups])
        if not first:
            first.update({names[id(p)]: None if p.grad is None else p.grad.detach().clone()
                          for p in model.parameters()})
        return step(*a, **k)

    optimizer.step = recording_step
    authors_train.train_one_epoch(model, criterion, optimizer, data_loader, lr_scheduler, 0, 10, 0, None)

    out = {"losses": np.array(losses), "lrs": np.array(lrs), "input_ids": ids, "attention_mask": att,
           "group_sizes": np.array([len(g["params"]) for g in optimizer.param_groups])}
    no_group = sorted(n for n, p in model.named_parameters() if id(p) not in in_groups)
    no_grad = sorted(n for n, g in first.items() if g is None)
    out["not_in_optimizer"] = np.array(no_group)
    out["no_gradient"] = np.array(no_grad)
    for n, p in model.named_parameters():
        where = positions(n, p.numel())
        out[f"pos/{n}"] = where
        out[f"after/{n}"] = p.detach().flatten()[where].numpy()
        out[f"change/{n}"] = np.float32((p.detach() - before[n]).abs().max())
        g = first[n]
        if g is not None:
            out[f"grad/{n}"] = g.flatten()[where].numpy()
            out[f"gradnorm/{n}"] = np.float32(g.norm())
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **out)
    print(f"losses {losses}\nlrs {lrs[0]} … {lrs[-1]}\n{len(no_group)} not in the optimiser, "
          f"{len(no_grad)} without gradient\nwrote {OUT} ({OUT.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
