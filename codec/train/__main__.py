"""``python -m codec.train RECIPE [--resume] [-o section.key=value ...]``: the entry point for
torchrun (``torchrun --nproc_per_node N -m codec.train RECIPE``); same as ``codec train``."""

import argparse

from codec.errors import CodecError
from codec.train import load_recipe, train_any
from codec.train.distributed import cleanup

parser = argparse.ArgumentParser(prog="python -m codec.train", description=__doc__)
parser.add_argument("recipe")
parser.add_argument("--resume", action="store_true")
parser.add_argument("-o", "--override", action="append", default=[])
arguments = parser.parse_args()
try:
    train_any(load_recipe(arguments.recipe, arguments.override), resume=arguments.resume)
except CodecError as error:
    raise SystemExit(f"error: {error}") from None
finally:
    cleanup()
