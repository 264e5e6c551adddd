"""The settings of one training run."""

from __future__ import annotations

from dataclasses import dataclass, field, fields


@dataclass
class TrainConfig:
    """One training run. Fields left ``None`` take the recipe's value (its authors' choice).

    Sizes are in pixels; ``batch_size`` is per process (under ``torchrun`` the global batch is
    ``batch_size`` × processes, as in the RMSIN authors' DDP training).
    """

    data: str
    out: str
    model: str = "tiny"
    checkpoint: str | None = None  # weights to start from: tiny/rmsin weights, a CLIPSeg folder
    swin: str | None = None  # rmsin: the Swin-B ImageNet-22k file to start from
    bert: str | None = None  # rmsin: a local BERT-base folder
    epochs: int | None = None
    max_steps: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    warmup_steps: int | None = None
    size: int | None = None
    shuffle: bool = True
    augment: bool = True
    dropout: bool = True  # False: dropout and drop path off, for exact comparisons
    train_all: bool = False  # clipseg: the whole model, not only its decoder
    amp: bool = True  # bf16 autocast, on CUDA only
    val_every: int | None = None  # None: after every epoch
    val_limit: int = 600
    checkpoint_every: int = 200
    workers: int = 2
    seed: int = 0
    device: str = "auto"
    val_data: str | None = None  # validation folder when training on a synthetic stream
    calibrate: bool = True  # fit the score calibration on the validation split at the end
    arch: dict = field(default_factory=dict)  # architecture of a model built from scratch

    def resolved(self, defaults: dict) -> TrainConfig:
        """This config with a recipe's ``defaults`` where fields are None."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for key, value in defaults.items():
            if values.get(key) is None:
                values[key] = value
        return TrainConfig(**values)
