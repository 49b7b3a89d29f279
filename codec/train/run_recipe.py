"""A run's resolved recipe, kept beside its checkpoint as ``resolved_recipe.yaml``: the values
it trains with (its recipe and ``-o`` overrides together, which ``--resume`` does not take from
the checkpoint), and a recipe to resume it with."""

from pathlib import Path

import yaml

from codec.atomic import write_atomically

RUN_RECIPE = "resolved_recipe.yaml"
_FIRST_LINE = "# The values this run trains with"


def write_run_recipe(out_dir: Path, values: dict, source: str) -> None:
    """Write ``values`` (a recipe's ``to_dict()``, as ``load_recipe`` reads it back) to
    ``out_dir/resolved_recipe.yaml``; ``source`` names where they came from (`` (recipe FILE)`` or
    ""). A file of that name that this did not write (the user's own) is left as it is.

    Raises:
        CodecError: if the file cannot be written.
    """
    path = out_dir / RUN_RECIPE
    try:
        with path.open("rb") as existing:
            if not existing.read(len(_FIRST_LINE)).startswith(_FIRST_LINE.encode()):
                return
    except FileNotFoundError:
        pass
    except OSError:   # a folder of that name, an unreadable file: not this function's to replace
        return
    header = (f"{_FIRST_LINE}, as resolved at its latest start{source}, overrides included\n"
              f"# (written by codec train at each start). Resume the run with them:\n"
              f"#     codec train {path} --resume\n"
              f"# from the folder it was started in: relative paths here are the current folder's.\n")
    text = header + yaml.safe_dump(values, sort_keys=False, allow_unicode=True)
    write_atomically(path, lambda tmp: tmp.write_text(text))
