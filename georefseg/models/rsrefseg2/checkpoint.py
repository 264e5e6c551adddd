"""Finding and reading the three parts of an RSRefSeg 2 installation, without building the model.

A user fills one folder once, on a connected machine:

* the authors' checkpoint (``*.pth``, from ``KyanChen/RSRefSeg2``, one per dataset);
* SAM 2.1 (``facebook/sam2.1-hiera-large``: ``sam2.1_hiera_large.pt``);
* SigLIP 2 (``google/siglip2-so400m-patch16-512``: ``config.json``, ``model.safetensors``, the
  tokenizer and the processor config).

Each base model may be a Hugging Face hub-cache folder (``models--facebook--sam2.1-hiera-large/``,
as ``--cache-dir`` writes it) or a ``--local-dir`` download (``sam2.1-hiera-large/``). The
checkpoint may be the folder's only ``.pth``, sit in either kind of folder, or be given itself
with the base models beside it.

The checkpoint may hold the whole model or only what training changed, wrapped in
``{'state_dict': …}`` (mmengine) or not, with or without DDP's ``module.`` prefix, with peft's
names (``…base_layer.weight``, ``…lora_A.default.weight``): :func:`merged_state` reads all of
these into one state dict in :class:`~georefseg.models.rsrefseg2.model.RSRefSeg2`'s names, LoRA
merged into the weights (W + B·A·α/r, α = 16 as in every config of the authors), base models
filling what the checkpoint leaves out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from georefseg.errors import ModelError
from georefseg.models.rsrefseg2.sam2 import UNUSED_PREFIXES
from georefseg.models.torchfile import TORCH_SUFFIXES, pickled_strings, unpickle

LORA_ALPHA = 16  # lora_alpha of every target in configs_RSRefSeg2/*.py
SIGNATURES = ("prompter.", "module.prompter.")  # every RSRefSeg 2 state dict has its prompter
CHECKPOINT_REPO, SAM_REPO, SIGLIP_REPO = "KyanChen/RSRefSeg2", "facebook/sam2.1-hiera-large", \
    "google/siglip2-so400m-patch16-512"
# Where each part may lie in the folder: a --local-dir download, or a hub cache (--cache-dir).
SAM_FILES = ("sam2.1-hiera-*/sam2.1_hiera_*.pt", "models--facebook--sam2.1-hiera-*/snapshots/*/sam2.1_hiera_*.pt",
             "sam2.1_hiera_*.pt")
SIGLIP_CONFIGS = ("siglip2-*/config.json", "models--google--siglip2-*/snapshots/*/config.json")
CHECKPOINTS = ("*.pth", "RSRefSeg2/**/*.pth", "models--KyanChen--RSRefSeg2/snapshots/*/**/*.pth")
# The authors' module names (after peft's wrappers are taken out) → ours.
PREFIXES = (("backbone.model.", "sam."), ("clip_vision_encoder.model.", "vision."),
            ("clip_text_encoder.model.", "text."), ("clip_text_encoder.logit_", "logit_"),
            ("prompter.", "prompter."))
# Parameters of the authors' training losses (their PseudoSegHead): in full checkpoints, unused
# by inference.
TRAINING_ONLY = "decode_head."


def _download(repo: str, what: str = "") -> str:
    return f"huggingface-cli download {repo} {what}--local-dir PATH/{repo.split('/')[1]}"


@dataclass(frozen=True)
class Parts:
    """The three files and folders of one installation."""

    checkpoint: Path
    sam: Path  # the SAM 2.1 .pt
    siglip: Path  # the SigLIP 2 folder (config.json, weights, tokenizer, processor config)


def is_rsrefseg2_file(path: Path) -> bool:
    """Whether a torch.save file holds RSRefSeg 2 weights, from its pickle's names alone."""
    if path.suffix not in TORCH_SUFFIXES or not path.is_file():
        return False
    strings = pickled_strings(path)
    return strings is not None and any(s.startswith(SIGNATURES) for s in strings)


def _glob(folder: Path, patterns: tuple[str, ...]) -> list[Path]:
    found: list[Path] = []
    for pattern in patterns:
        found += [p for p in sorted(folder.glob(pattern)) if p not in found]
    return found


def looks_like_installation(folder: Path) -> bool:
    """Whether a folder holds any part of an installation (then its missing parts are errors)."""
    return folder.is_dir() and bool(_glob(folder, SAM_FILES) or _glob(folder, SIGLIP_CONFIGS)
                                    or any(is_rsrefseg2_file(p) for p in _glob(folder, CHECKPOINTS)))


def locate(path: Path) -> Parts:
    """The parts at ``path`` (a folder, or the checkpoint with the base models beside it).

    Raises ModelError naming the part that is missing or ambiguous and the command that fetches it.
    """
    folder = path.parent if path.is_file() else path
    checkpoints = [path] if path.is_file() else [p for p in _glob(folder, CHECKPOINTS) if is_rsrefseg2_file(p)]
    problems = []
    if not checkpoints:
        problems.append(f"the RSRefSeg 2 checkpoint (a .pth: {_download(CHECKPOINT_REPO)})")
    elif len(checkpoints) > 1:
        names = ", ".join(str(p.relative_to(folder)) for p in checkpoints)
        raise ModelError(f"{folder} holds several RSRefSeg 2 checkpoints ({names}): give {{param}} the one "
                         "trained on the data closest to yours", param="checkpoint")
    sams = _glob(folder, SAM_FILES)
    if not sams:
        problems.append(f"SAM 2.1 ({_download(SAM_REPO, 'sam2.1_hiera_large.pt ')})")
    siglips = _glob(folder, SIGLIP_CONFIGS)
    if not siglips:
        problems.append(f"SigLIP 2 ({_download(SIGLIP_REPO)})")
    if problems:
        raise ModelError(f"{folder} is not a complete RSRefSeg 2 folder: it lacks " + "; and ".join(problems)
                         + ". Fetch each once on a connected machine (see the README, \"Real imagery\")")
    for name, found in (("SAM 2.1 checkpoints", sams), ("SigLIP 2 folders", siglips)):
        if len({p.parent.name if "snapshots" not in p.parts else p.parts[-4] for p in found}) > 1:
            raise ModelError(f"{folder} holds several {name} ({', '.join(str(p.relative_to(folder)) for p in found)}): "
                             "keep the one the checkpoint was trained with (SAM 2.1 Hiera-L, SigLIP 2 so400m/16 "
                             "at 512 px)")
    siglip = siglips[-1].parent
    missing = [what for what, names in (("its weights", ("model.safetensors", "model.safetensors.index.json")),
                                        ("its tokenizer", ("tokenizer.json", "tokenizer.model")))
               if not any((siglip / n).is_file() for n in names)]
    if missing:
        raise ModelError(f"{siglip} lacks {' and '.join(missing)}: download the whole folder again "
                         f"({_download(SIGLIP_REPO)})")
    return Parts(checkpoints[0], sams[-1], siglip)


def siglip_config(folder: Path) -> dict:
    """The SigLIP folder's ``config.json``."""
    try:
        return json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{folder / 'config.json'} is not readable JSON ({exc}): download the folder again") from exc


def sam_state(path: Path) -> dict[str, torch.Tensor]:
    """SAM 2.1's weights (``{"model": state_dict}``), without its video-memory modules, in our names."""
    data = unpickle(path, "SAM 2", "its 'model' state dict")
    state = data.get("model") if isinstance(data, dict) else None
    if not isinstance(state, dict):
        raise ModelError(f"{path} is not a SAM 2 checkpoint: expected {{'model': state_dict}} as Meta publishes it")
    return {f"sam.{k}": v for k, v in state.items() if not k.startswith(UNUSED_PREFIXES)}


def siglip_state(folder: Path) -> dict[str, torch.Tensor]:
    """SigLIP's weights (both towers, logit scale and bias) in our names."""
    from safetensors import safe_open

    index = folder / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file() \
        else ["model.safetensors"]
    out = {}
    for name in files:
        with safe_open(str(folder / name), "pt") as fh:
            for key in fh.keys():  # noqa: SIM118 - safe_open handles have no __iter__
                if key.endswith("position_ids"):  # a buffer older files store; rebuilt, not loaded
                    continue
                ours = key.replace("vision_model.", "vision.", 1).replace("text_model.", "text.", 1)
                out[ours] = fh.get_tensor(key)
    return out


def _canonical(key: str) -> str:
    """An authors' key without DDP's and peft's wrappers, in our names; a key under no known
    prefix is returned as it is, for the strict load to report as unexpected."""
    key = key.removeprefix("module.").replace("base_model.model.", "").replace(".base_layer.", ".")
    for theirs, ours in PREFIXES:
        if key.startswith(theirs):
            return ours + key[len(theirs):]
    return key


def checkpoint_state(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """The checkpoint's tensors in our names, and its LoRA pairs by the module they adapt
    (``vision.encoder.layers.0.self_attn.q_proj`` → (A, B))."""
    data = unpickle(path, "RSRefSeg 2", "its 'state_dict'")
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ModelError(f"{path} is not an RSRefSeg 2 checkpoint: expected a state dict, or {{'state_dict': …}} "
                         "as mmengine writes it")
    state, lora_a, lora_b = {}, {}, {}
    for key, value in data.items():
        key = _canonical(key)
        if key.startswith(TRAINING_ONLY):
            continue
        for part, into in ((".lora_A.", lora_a), (".lora_B.", lora_b)):
            if part in key:
                into[key.split(part)[0]] = value
                break
        else:
            state[key] = value
    unpaired = sorted(set(lora_a) ^ set(lora_b))
    if unpaired:
        raise ModelError(f"{path} has LoRA halves without their pair ({', '.join(unpaired[:4])}): the file is damaged")
    return state, {k: (lora_a[k], lora_b[k]) for k in lora_a}


def lora_delta(a: torch.Tensor, b: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """peft's merged update B·A·α/r for a Linear (A r×in, B out×r) or Conv2d (A r×in×k×k,
    B out×r×1×1) of weight ``shape``."""
    scale = LORA_ALPHA / a.shape[0]
    a, b = a.float(), b.float()
    # A convolution's update is B's 1×1 kernel applied to A's kernels.
    delta = b @ a if a.dim() == 2 else torch.nn.functional.conv2d(a.permute(1, 0, 2, 3), b).permute(1, 0, 2, 3)
    if delta.shape != shape:
        raise ModelError(f"a LoRA update of shape {tuple(delta.shape)} does not fit its weight {tuple(shape)}")
    return delta * scale


def merged_state(parts: Parts) -> dict[str, torch.Tensor]:
    """The whole model's float32 state dict: base models, then the checkpoint over them, then
    its LoRA updates merged in. Keys the model does not have are left for the caller's strict
    load to report."""
    state = {**sam_state(parts.sam), **siglip_state(parts.siglip)}
    trained, lora = checkpoint_state(parts.checkpoint)
    state.update(trained)
    for module, (a, b) in lora.items():
        weight = state.get(f"{module}.weight")
        if weight is None:
            raise ModelError(f"{parts.checkpoint} adapts {module}, which the model does not have: "
                             "the checkpoint was not written for RSRefSeg 2's configuration")
        state[f"{module}.weight"] = weight.float() + lora_delta(a, b, weight.shape)
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
