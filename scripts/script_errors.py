"""The scripts' entry point: a problem the user can fix is one line on stderr and exit code 1 (130
for Ctrl-C), as for the ``codec`` commands, not a traceback.

    from script_errors import run_main  # before torch: a Ctrl-C while it loads is one line too
    # isort: split
    import torch
    ...
    if __name__ == "__main__":
        run_main(main)
"""

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path


def _interrupt_as_one_line(kind, value, traceback) -> None:
    """``sys.excepthook``: a Ctrl-C that reaches the top level (one while the script still imports
    torch, before ``run_main`` runs) as one line; anything else as Python prints it."""
    if issubclass(kind, KeyboardInterrupt):
        print("error: interrupted", file=sys.stderr)
        return   # (Python still exits as killed by SIGINT: 130 in a shell)
    sys.__excepthook__(kind, value, traceback)


sys.excepthook = _interrupt_as_one_line


def run_main(main: Callable[[], int | None]) -> None:
    """Run ``main`` and exit with its return code; CodecError, OSError and Ctrl-C as one line."""
    # imported here, not above: importing this module stays quick (its hook is in place sooner), and
    # works before a script puts the repository on sys.path (scripts/gpu_session.py)
    from codec.errors import CodecError

    try:
        code = main()
    except CodecError as error:
        sys.exit(f"error: {error}")
    except OSError as error:   # a missing or unwritable file, a full disk
        where = f"{error.filename}: " if error.filename else ""
        sys.exit(f"error: {where}{error.strerror or error}")
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)


def first_paragraph(doc: str) -> str:
    """A script's docstring up to its first blank line, on one line: its --help description."""
    return " ".join(doc.split("\n\n")[0].split())


def new_folder_problem(folder: Path, what: str) -> str | None:
    """Why ``folder`` cannot take a new ``what`` (e.g. "averaged model"), or None: it must not be a
    file, lie under one, or hold anything yet (the scripts write config.json and more into it, and
    must not replace a user's files)."""
    if folder.exists() and not folder.is_dir():
        return f"{folder} is a file; give a new folder for the {what}"
    above = next((parent for parent in folder.parents if parent.exists()), None)
    if above is not None and not above.is_dir():
        return f"{folder} cannot be made: {above} is a file"
    if (folder / "model.safetensors").exists():
        return f"{folder} already holds a model; choose a new folder"
    if folder.is_dir() and (held := sorted(entry.name for entry in folder.iterdir())):
        shown = ", ".join(held[:3]) + (", ..." if len(held) > 3 else "")
        return f"{folder} is not empty (it holds {shown}); choose a new folder for the {what}"
    return None


def at_least(low: float, kind: type = float) -> Callable[[str], float]:
    """An argparse ``type``: a finite ``kind`` (float or int) of at least ``low``; anything else is
    the usual one-line usage error, not a traceback or an empty benchmark."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'a whole number' if kind is int else 'a number'}") \
                from None
        if not math.isfinite(value) or value < low:
            raise argparse.ArgumentTypeError(f"{text!r}: give {'a whole number' if kind is int else 'a number'} "
                                             f"of at least {low:g}")
        return value
    return parse
