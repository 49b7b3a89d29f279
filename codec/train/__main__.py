"""``python -m codec.train RECIPE [--resume] [-o section.key=value ...]``: the entry point for
torchrun (``torchrun --nproc_per_node N -m codec.train RECIPE``); same as ``codec train``."""

import argparse
import os
import sys

from rich.console import Console

from codec.errors import CodecError, TrainingStopped, internal_error_message
from codec.train import load_recipe, train_any
from codec.train.distributed import cleanup
from codec.train.recipe import overridden_twice

parser = argparse.ArgumentParser(prog="python -m codec.train", description=__doc__)
parser.add_argument("recipe")
parser.add_argument("--resume", action="store_true")
parser.add_argument("-o", "--override", action="append", default=[])
arguments = parser.parse_args()
for line in overridden_twice(arguments.override) if os.environ.get("RANK", "0") in ("", "0") else []:
    print(f"warning: {line}", file=sys.stderr)   # (once, not once per process)
try:
    # as codec train's: log lines unwrapped (piped, rich would wrap them at 80 columns) and paths without markup
    console = Console(stderr=True, soft_wrap=True, highlight=False, markup=False)
    train_any(load_recipe(arguments.recipe, arguments.override), resume=arguments.resume, console=console)
except TrainingStopped as stopped:   # saved, but not finished
    raise SystemExit(128 + stopped.signum) from None
except CodecError as error:
    raise SystemExit(f"error: {error}") from None
except Exception as error:  # a bug, not the user's fault: one line unless debugging (as the CLI)
    if os.environ.get("CODEC_DEBUG"):
        raise
    raise SystemExit(f"error: {internal_error_message(error)}") from None
finally:
    cleanup()
