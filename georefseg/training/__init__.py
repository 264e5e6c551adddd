"""Training any backend that can be trained, with one loop.

Each trainable backend has a :class:`~georefseg.training.recipe.Recipe` (its own module here):
what it starts from, which parameters it trains in which optimiser groups, its learning-rate
schedule, its loss and how it writes weights the backend loads. :func:`train` is the one loop
over them: data, validation with the field's metrics, best and last weights, resumable
checkpoints, mixed precision on CUDA and DDP under ``torchrun``.
"""

from georefseg.training.config import TrainConfig
from georefseg.training.loop import TrainState, train
from georefseg.training.recipe import RECIPES, Recipe, recipe_for

__all__ = ["RECIPES", "Recipe", "TrainConfig", "TrainState", "recipe_for", "train"]
