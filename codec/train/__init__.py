"""Training-only code: recipes, data, losses and the loop. Inference never imports this package."""

from codec.train.recipe import Recipe, load_recipe
from codec.train.trainer import train


def train_any(recipe, resume: bool = False, console=None):
    """Train what the recipe describes: a codec, or an entropy model (``entropy`` section)."""
    from codec.train.entropy_trainer import EntropyRecipe, train_entropy

    if isinstance(recipe, EntropyRecipe):
        return train_entropy(recipe, resume, console)
    return train(recipe, resume, console)


__all__ = ["Recipe", "load_recipe", "train", "train_any"]
