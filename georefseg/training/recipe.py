"""What a trainable backend declares, and the table of them.

A :class:`Recipe` is a backend's training as its authors (or we, for ``tiny``) define it: the
model it starts from, its optimiser groups, its learning-rate schedule, its loss, its
augmentation and how it writes weights its backend loads. :func:`georefseg.training.train`
runs any of them; nothing in the loop knows a model by name.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from georefseg.errors import ModelError

if TYPE_CHECKING:
    from georefseg.models.base import ReferringSegmenter
    from georefseg.training.config import TrainConfig

# Backend name → the module of its recipe (imported when that backend is trained).
RECIPES: dict[str, str] = {
    "tiny": "georefseg.training.tiny",
    "rmsin": "georefseg.training.rmsin",
    "clipseg": "georefseg.training.clipseg",
}
# Backends the registry knows but no recipe trains yet, and why.
NOT_TRAINABLE = {
    "sam3": "SAM 3 has no recipe yet: its detector and mask heads would need a presence-aware loss",
    "rsrefseg2": "RSRefSeg 2 has no recipe yet: its LoRA adapters on SigLIP and SAM 2.1 would be the trained part",
}


def recipe_for(backend: str) -> Recipe:
    """The recipe of a backend by name; a ModelError naming ``model`` for one without."""
    if backend in RECIPES:
        return importlib.import_module(RECIPES[backend]).RECIPE
    why = NOT_TRAINABLE.get(backend, f"no backend is called {backend!r}")
    raise ModelError(f"{{param}} {backend!r} cannot be trained: {why}. Trainable: {', '.join(RECIPES)}",
                     param="model")


def warmup_cosine(warmup: int) -> Callable[[int, int], float]:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    def factor(step: int, total: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1 + math.cos(math.pi * t))
    return factor


def poly(power: float = 0.9) -> Callable[[int, int], float]:
    """(1 − step/total)^power from the first step: the schedule of LAVT and RMSIN."""
    return lambda step, total: max(0.0, 1 - step / total) ** power


class Recipe:
    """How one backend trains. Subclasses set the class attributes and implement the methods.

    Attributes
    ----------
    backend
        The registry name of the backend whose weights :meth:`export` writes.
    defaults
        The recipe's values of :class:`~georefseg.training.config.TrainConfig` fields the user
        left unset (learning rate, batch size, epochs, input side in pixels, …).
    augment
        The dataset augmentation (see :data:`georefseg.data.samples.AUGMENTATIONS`), or None.
    best_metric
        The validation metric that picks the best weights (the authors' choice).
    clip_grad
        Gradient-norm clip, or None.
    """

    backend: str
    defaults: dict[str, Any] = {}
    augment: str | None = None
    best_metric: str = "mIoU"
    clip_grad: float | None = None

    def build(self, cfg: TrainConfig) -> ReferringSegmenter:  # pragma: no cover - interface
        """The model to train, initialised as the recipe says, on the CPU."""
        raise NotImplementedError

    def parameter_groups(self, model: ReferringSegmenter, cfg: TrainConfig) -> list[dict]:  # pragma: no cover
        """AdamW parameter groups (each a dict with ``name`` and ``params``, optionally
        ``weight_decay``); parameters in no group are not trained."""
        raise NotImplementedError

    def schedule(self, cfg: TrainConfig) -> Callable[[int, int], float]:
        """The learning-rate factor as a function of (step, total steps)."""
        return warmup_cosine(cfg.warmup_steps)

    def objective(self, model: ReferringSegmenter) -> nn.Module:  # pragma: no cover - interface
        """A module around ``model`` whose ``forward(batch)`` returns the scalar loss of a
        collated batch (what DDP wraps)."""
        raise NotImplementedError

    def export_path(self, out: Path, tag: str) -> Path:  # pragma: no cover - interface
        """Where :meth:`export` writes the ``tag`` (``best`` or ``last``) weights of a run in
        ``out``: the path ``segment --model`` and ``--checkpoint`` take."""
        raise NotImplementedError

    def export(self, model: ReferringSegmenter, out: Path, tag: str, info: dict) -> Path:  # pragma: no cover
        """Write ``model`` at :meth:`export_path` as weights its backend loads; ``info`` is
        the run's record (recipe, step, validation metrics). Returns the path."""
        raise NotImplementedError


def decay_split(named: list[tuple[str, nn.Parameter]], no_decay: Callable[[str, nn.Parameter], bool],
                weight_decay: float) -> list[dict]:
    """Two AdamW groups of trainable parameters: with ``weight_decay`` and without it."""
    named = [(n, p) for n, p in named if p.requires_grad]
    return [{"name": "decay", "params": [p for n, p in named if not no_decay(n, p)], "weight_decay": weight_decay},
            {"name": "no_decay", "params": [p for n, p in named if no_decay(n, p)], "weight_decay": 0.0}]


def switch_off_stochastic_layers(model: nn.Module) -> None:
    """Dropout and drop-path probabilities set to 0 (for exact comparisons)."""
    for module in model.modules():
        if isinstance(module, nn.Dropout) or type(module).__name__ == "DropPath":
            module.p = 0.0
        elif isinstance(getattr(module, "dropout", None), float):  # transformers' CLIP attention
            module.dropout = 0.0
