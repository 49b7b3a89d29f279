"""A run's resolved recipe, kept beside its checkpoint as ``resolved_recipe.yaml``: the values
it trains with (its recipe and ``-o`` overrides together, which ``--resume`` does not take from
the checkpoint), and a recipe to resume it with from any folder."""

import os
from pathlib import Path

import yaml

from codec.atomic import same_file, write_atomically

RUN_RECIPE = "resolved_recipe.yaml"
_FIRST_LINE = "# The values this run trains with"
# values that may be paths relative to the current folder: made absolute where they name something
_PATH_KEYS = (("run", "out_dir"), ("run", "init_from"), ("data", "train_dir"), ("data", "dev_dir"),
              ("data", "noise_dir"), ("data", "codec_model"))


def is_run_recipe(path: Path) -> bool:
    """Whether ``path`` is a resolved recipe that ``write_run_recipe`` wrote."""
    try:
        with path.open("rb") as file:
            return file.read(len(_FIRST_LINE)) == _FIRST_LINE.encode()
    except OSError:
        return False


def write_run_recipe(out_dir: Path, values: dict, source: str, console) -> None:
    """Write ``values`` (a recipe's ``to_dict()``, as ``load_recipe`` reads it back) to
    ``out_dir/resolved_recipe.yaml``, its relative paths that name something made absolute;
    ``source`` names where they came from (`` (recipe FILE)`` or ""). A file of that name that
    this did not write (the user's own) is left as it is, with a warning on ``console``.

    Raises:
        CodecError: if the file cannot be written.
    """
    path = out_dir / RUN_RECIPE
    if os.path.lexists(path) and not is_run_recipe(path):
        console.print(f"warning: {path} is not one codec train wrote; it is left as it is, and this run's "
                      f"resolved recipe is not kept")
        return
    if source.startswith(" (recipe ") and same_file(source[len(" (recipe "):-1], path):
        source = _earlier_source(path)   # resumed from this file: it keeps naming the recipe the run began with
    values = {section: dict(keys) if isinstance(keys, dict) else keys for section, keys in values.items()}
    for section, key in _PATH_KEYS:
        value = values.get(section, {}).get(key)
        if isinstance(value, str) and not os.path.isabs(value) and os.path.exists(value):
            values[section][key] = os.path.abspath(value)
    header = (f"{_FIRST_LINE}, as resolved at its latest start{source}, overrides included\n"
              f"# (written by codec train at each start; relative paths that named something are absolute).\n"
              f"# Resume the run with them:\n"
              f"#     codec train {path.absolute()} --resume\n")
    text = header + yaml.safe_dump(values, sort_keys=False, allow_unicode=True)
    write_atomically(path, lambda tmp: tmp.write_text(text))


def _earlier_source(path: Path) -> str:
    """The `` (recipe FILE)`` that ``path``'s header names ("" if none)."""
    try:
        first = path.read_text().partition("\n")[0]
    except (OSError, UnicodeDecodeError):
        return ""
    start, end = first.find(" (recipe "), first.rfind("), overrides included")
    return first[start:end + 1] if 0 <= start < end else ""
