"""Training-only code: recipes, data, losses and the loop. Inference never imports this package."""

from codec.train.recipe import Recipe, load_recipe
from codec.train.trainer import train

__all__ = ["Recipe", "load_recipe", "train"]
