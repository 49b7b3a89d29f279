"""Training-only code: recipes, data, losses and the loop. Inference never imports this package."""

from codec.errors import CodecError
from codec.train.recipe import Recipe, load_recipe
from codec.train.trainer import train


def train_any(recipe, resume: bool = False, console=None):
    """Train what the recipe describes: a codec, or an entropy model (``entropy`` section).

    Raises:
        CodecError: as ``train`` or ``train_entropy`` do; one about a recipe value (such as
            ``recipe value run.out_dir=...``) is led by where that value was set, for a recipe
            from ``load_recipe`` (the recipe file, one it inherits, or the ``-o`` override).
    """
    from codec.train.entropy_trainer import EntropyRecipe, train_entropy

    try:
        if isinstance(recipe, EntropyRecipe):
            return train_entropy(recipe, resume, console)
        return train(recipe, resume, console)
    except CodecError as error:
        origins = getattr(recipe, "origins", None)
        located = origins.locate_training_error(str(error)) if origins is not None else str(error)
        if located == str(error):
            raise
        raise CodecError(located) from None


__all__ = ["Recipe", "load_recipe", "train", "train_any"]
