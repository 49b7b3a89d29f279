"""Saving and loading codecs: ``model.safetensors`` + ``config.json`` in one directory.

Shipped models live in the repository's ``models/<name>/``; ``load_model("esc-16k-small")`` finds
them by name, and models installed in ``$CODEC_MODELS_DIR/<name>/`` too (before the shipped
ones); ``load_model("path/to/dir")`` loads any saved model. No pickle anywhere.

``.codes`` files name the weights that wrote them (a prefix of their SHA-256). A model whose
decoder was retrained while its encoder and quantizer stayed fixed makes the same codes, so it
also reads the files of its predecessors: ``ship_model`` lists their prefixes in
``compatible_weights.json`` beside the weights.
"""

import hashlib
import json
import os
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from codec.atomic import write_atomically
from codec.eight_bit import from_8_bits, to_8_bits
from codec.errors import CodecError, ModelNotFoundError, nearest_name
from codec.models.conv_codec import ConvCodec
from codec.models.registry import build_model, config_from_dict

DEFAULT_MODEL = "esc-16k-small"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
COMPATIBLE_FILE = "compatible_weights.json"   # earlier weights whose .codes files this model reads


def shipped_folder(name: str) -> Path:
    """A folder that ships with the package (``models``, ``recipes``): the repository's own in a
    source checkout (and an editable install), else where a wheel installed it
    (``<prefix>/share/codec/<name>``, from ``data-files`` in pyproject.toml; the prefix is a few
    folders above the package, as for a virtual environment, ``pip install --prefix`` or ``--user``)."""
    package = Path(__file__).resolve().parents[1]
    if (package.parent / "pyproject.toml").is_file() and (package.parent / name).is_dir():
        return package.parent / name
    for prefix in list(package.parents)[:5]:
        if (prefix / "share" / "codec" / name).is_dir():
            return prefix / "share" / "codec" / name
    return package.parent / name   # (none: lookups by name find nothing shipped)


def shipped_models_dir() -> Path:
    """The models that ship with the package (``shipped_folder``)."""
    return shipped_folder("models")


def models_dir() -> Path:
    """Where models are installed: ``$CODEC_MODELS_DIR``, or (unset or empty) the repository's ``models/``."""
    return Path(os.environ.get("CODEC_MODELS_DIR") or shipped_models_dir())


def model_search_path() -> list[Path]:
    """Folders where model names are looked up, first match wins: ``models_dir()``, then the
    shipped models (so installing models elsewhere never hides the default one)."""
    return list(dict.fromkeys([models_dir(), shipped_models_dir()]))


def available_models() -> list[Path]:
    """Model directories found by name, one per name (the first on the search path), sorted by name."""
    found: dict[str, Path] = {}
    for folder in model_search_path():
        for candidate in sorted(folder.glob("*")):
            if (candidate / CONFIG_FILE).is_file():
                found.setdefault(candidate.name, candidate)
    return [found[name] for name in sorted(found)]


def models_with_entropy() -> list[str]:
    """Names of the models found by name that have an entropy model beside their weights."""
    from codec.entropy.model import has_entropy_model

    return [folder.name for folder in available_models() if has_entropy_model(folder)]


def resolve_model_dir(name_or_path: str | Path | None) -> Path:
    """A model directory from a path, or a model's name: the folder of that name on the search
    path, or else an installed model saved under another folder name whose config has that name
    (the name ``.codes`` files and ``codec info`` show).

    Raises:
        ModelNotFoundError: if neither a directory with a config nor a model of that name exists.
    """
    if isinstance(name_or_path, str) and not name_or_path.strip():   # `--model ''` (an unset variable)
        raise ModelNotFoundError(f"the model name {name_or_path!r} is empty; give a model's name or folder "
                                 f"{names_hint()}")
    name_or_path = name_or_path or DEFAULT_MODEL
    found = _model_dir_named(name_or_path) or next(iter(_folders_whose_config_is_named(str(name_or_path))), None)
    if found is not None:
        return found
    candidate = Path(name_or_path)
    if candidate.is_dir():
        inside = candidate / "model"   # a training run's folder: its model is one level down
        hint = f"; its trained model is {inside}" if (inside / CONFIG_FILE).is_file() else ""
        if (candidate / "codec.json").is_file():
            hint = ("; it is an ONNX export (codec export), which onnxruntime runs through codec.onnx.runtime: "
                    "give the model directory it was exported from")
        elif codes := next(iter(sorted(candidate.glob("*.codes"))), None):   # codec info on a batch's output
            hint = f"; it holds .codes files (codec info and codec decode take one, such as {codes})"
        elif (candidate / "entropy_config.json").is_file():   # an entropy model's run writes its model alone
            hint = ("; it holds an entropy model (entropy_config.json), which a codec uses from its own model "
                    "directory: copy entropy.safetensors and entropy_config.json beside the codec's config.json, "
                    "and give that directory")
        raise ModelNotFoundError(f"{candidate}: not a model directory (it has no {CONFIG_FILE}), and no "
                                 f"shipped model has that name{hint}", is_folder=True)
    if candidate.is_file():   # a checkpoint or weights file, not the folder holding a whole model
        model_dir = next((folder for folder in (candidate.parent, candidate.parent / "model")
                          if (folder / CONFIG_FILE).is_file()), None)
        hint = f"; give the model directory {model_dir}" if model_dir else \
            f"; give a model directory (one holding {CONFIG_FILE} and the weights)"
        raise ModelNotFoundError(f"{candidate}: is a file, not a model directory{hint}", is_folder=True)
    if len(candidate.parts) > 1:   # a path, not a name: say what is missing
        run_started = candidate.name == "model" and (candidate.parent / "train.log").is_file()
        later = " yet (a training run writes it at its first checkpoint, or when it stops)" if run_started else ""
        raise ModelNotFoundError(f"{candidate}: no such model directory{later}", is_folder=True)
    raise ModelNotFoundError(f"model '{name_or_path}' not found: not a model directory, and no shipped "
                             f"or installed model has that name {names_hint(str(name_or_path))}")


def check_weights_there(model_dir: Path) -> None:
    """Raises CodecError where a model directory has its config but not its weights file."""
    if not (model_dir / WEIGHTS_FILE).is_file():
        raise CodecError(f"{model_dir}: has {CONFIG_FILE} but no {WEIGHTS_FILE} (the weights); a model directory "
                         f"holds both")


def names_hint(asked: str | None = None) -> str:
    """"(by name: NAMES)": the models a name can choose, for messages; led by the one nearest to
    the name ``asked`` (case aside), if one is near."""
    names = [p.name for p in available_models()]
    # (at difflib's default cutoff, 0.6, tiny-16k "meant" conv-16k)
    near = nearest_name(asked, names, cutoff=0.8) if asked else None
    meant = f"did you mean {near}? " if near else ""
    installed = os.environ.get("CODEC_MODELS_DIR")
    missing = f"; CODEC_MODELS_DIR={installed}: no such folder" if installed and not Path(installed).is_dir() else ""
    return f"({meant}by name: {', '.join(names) or 'none'}{missing})"


def _model_dir_named(name_or_path: str | Path) -> Path | None:
    """The directory at that path, or the folder of that name on the search path (None if neither)."""
    candidate = Path(name_or_path)
    if (candidate / CONFIG_FILE).is_file():
        return candidate
    return _search_path_dir(str(name_or_path))


def _search_path_dir(name: str) -> Path | None:
    """The folder of that name on the search path (shipped and installed models), or None."""
    return next(iter(_search_path_dirs(name)), None)


def _search_path_dirs(name: str) -> list[Path]:
    """Every folder of that name on the search path, first match first (an installed model of a
    shipped model's folder name, then the shipped one)."""
    return [folder / name for folder in model_search_path() if (folder / name / CONFIG_FILE).is_file()]


def _folders_whose_config_is_named(name: str) -> list[Path]:
    return [folder for folder in available_models() if _config_name(folder) == name]


def is_plain_name(name: str) -> bool:
    """Whether ``name`` can name a model (or an entropy model) in ``.codes`` files and by ``--model``:
    not empty, not ``.`` or ``..``, no path separator or control character, and short enough to be
    a folder's name (at most 255 characters)."""
    return (bool(name) and len(name) <= 255 and name not in (".", "..")
            and not any(char in "/\\" or char < " " or char == "\x7f" for char in name))


def model_dir_for_codes(name: str, weights: str, entropy: tuple[str, str] | None = None) -> Path:
    """The model directory that decodes a file made by model ``name`` (its config's name) with
    weights whose SHA-256 starts with ``weights``: of the folders of that name (installed, then
    shipped) and the installed models saved under other folder names whose config has that name
    (fine-tunes), the first whose weights match (or list ``weights`` as readable), and of those,
    for an entropy-coded file (``entropy``: the entropy model's name and weights prefix), the first
    that holds that entropy model; if none does, the first of them (its load then says what differs).

    The name is looked up among the shipped and installed models only, never as a path: a file
    does not choose a folder (``../x``) or a folder in the working directory to load code from.

    Raises:
        ModelNotFoundError: as ``resolve_model_dir`` for ``name``, if no folder has such a config,
            or if ``name`` is not a plain name.
    """
    if not is_plain_name(name):
        shown = repr(name) if len(name) <= 80 else repr(name[:60]) + f"... ({len(name)} characters)"
        raise ModelNotFoundError(f"the file names its model {shown}, which is not a model's name")
    candidates = list(dict.fromkeys([*_search_path_dirs(name), *_folders_whose_config_is_named(name)]))
    if not candidates:
        raise ModelNotFoundError(f"model '{name}' not found: no shipped or installed model has that name "
                                 f"{names_hint(name)}")
    readers = [folder for folder in candidates if _reads_weights(folder, weights)] or candidates
    # a folder whose entropy model is another codec's does not load: one that does goes first
    readers = sorted(readers, key=lambda folder: not _entropy_model_fits_name(folder, name))
    return next((folder for folder in readers if entropy and holds_entropy_model(folder, *entropy)), readers[0])


def _entropy_model_fits_name(folder: Path, codec_name: str) -> bool:
    """Whether ``folder`` has no entropy model, or one trained for codec ``codec_name``."""
    from codec.entropy.model import ENTROPY_CONFIG, ENTROPY_WEIGHTS

    if not (folder / ENTROPY_WEIGHTS).is_file():
        return True
    try:
        return json.loads((folder / ENTROPY_CONFIG).read_text()).get("codec") == codec_name
    except (OSError, ValueError, AttributeError):
        return False


def holds_entropy_model(folder: Path, name: str, weights: str) -> bool:
    """Whether ``folder`` holds entropy model ``name`` with weights whose SHA-256 starts with ``weights``."""
    from codec.entropy.model import ENTROPY_CONFIG, ENTROPY_WEIGHTS

    try:
        named = json.loads((folder / ENTROPY_CONFIG).read_text()).get("name")
        return named == name and hashlib.sha256((folder / ENTROPY_WEIGHTS).read_bytes()).hexdigest().startswith(weights)
    except (OSError, ValueError, AttributeError):   # none, or unreadable: not this one
        return False


def _reads_weights(folder: Path, weights: str) -> bool:
    """Whether the model in ``folder`` decodes codes of weights starting with ``weights``."""
    try:
        return bool(weights) and (weights_hash(folder).startswith(weights) or weights in _readable_prefixes(folder))
    except OSError:   # no weights file: load_model says why, if it is chosen
        return False


def _config_name(folder: Path) -> str | None:
    try:
        return json.loads((folder / CONFIG_FILE).read_text()).get("name")
    except (OSError, ValueError, AttributeError):   # unreadable: load_model says why, if it is chosen
        return None


def _readable_prefixes(folder: Path) -> list[str]:
    try:
        return _compatible_weights(folder)
    except CodecError:
        return []


def weights_hash(model_dir: Path) -> str:
    """SHA-256 of the weights file, hex (identifies the exact weights in ``.codes`` files)."""
    return hashlib.sha256((Path(model_dir) / WEIGHTS_FILE).read_bytes()).hexdigest()


def load_model(name_or_path: str | Path | None = None, int8: bool = False) -> ConvCodec:
    """Load a codec in eval mode, with ``weights_sha256`` set to its weights' hash and
    ``entropy_model`` to the entropy model stored beside it (None if there is none). ``int8``:
    its linear layers compute in int8, for faster CPU inference (``codec/int8.py``).

    Raises:
        CodecError: if the model is not found or its files are unreadable or inconsistent, or
            if ``int8`` and this PyTorch cannot compute in int8.
    """
    model_dir = resolve_model_dir(name_or_path)
    check_weights_there(model_dir)
    try:
        model = build_model(config_from_dict(json.loads((model_dir / CONFIG_FILE).read_text())))
        # bytes read by Python, not a path for safetensors: it takes a path only as UTF-8 text
        state = from_8_bits(load((model_dir / WEIGHTS_FILE).read_bytes()))
    except (OSError, ValueError, TypeError, AttributeError, RuntimeError, SafetensorError) as error:
        # SafetensorError: cut or foreign weights
        raise CodecError(f"{model_dir}: cannot load model ({error})".splitlines()[0]) from None
    problem = _state_mismatch(model.state_dict(), state)
    if problem:
        raise CodecError(f"{model_dir}: {CONFIG_FILE} does not match {WEIGHTS_FILE} ({problem}); "
                         f"use the {CONFIG_FILE} that was saved with these weights")
    model.load_state_dict(state)
    from codec.entropy.model import codes_fit, load_entropy_model  # the optional entropy model lives beside the weights

    # kept out of the codec's submodules: its weights are not the codec's (state_dict, parameters)
    entropy_model = load_entropy_model(model_dir)
    if entropy_model is not None and (entropy_model.config.codec != model.config.name
                                      or not codes_fit(entropy_model.config, model)):
        raise CodecError(f"{model_dir}: its entropy model '{entropy_model.config.name}' was trained on the codes "
                         f"of '{entropy_model.config.codec}' ({entropy_model.config.num_codebooks} codebooks of "
                         f"{entropy_model.config.codebook_size}), not on this model's; remove entropy.safetensors "
                         f"and entropy_config.json there to use the codec without it")
    model.__dict__["entropy_model"] = entropy_model
    model.weights_sha256 = weights_hash(model_dir)
    model.readable_weights = _compatible_weights(model_dir)
    model.model_dir = model_dir   # (named in messages about what the folder lacks)
    model.eval()
    if int8:
        from codec.int8 import quantize_linear_layers

        quantize_linear_layers(model)
    return model


def _compatible_weights(model_dir: Path) -> list[str]:
    """The weight-hash prefixes listed in ``compatible_weights.json`` (none if there is no such file).

    Raises:
        CodecError: if the file is there but not ``{"weights": [8-digit lowercase hex prefixes]}``.
    """
    path = model_dir / COMPATIBLE_FILE
    if not path.is_file():
        return []
    try:
        prefixes = json.loads(path.read_text())["weights"]
        if not isinstance(prefixes, list) or not all(isinstance(p, str) and re.fullmatch(r"[0-9a-f]{8}", p)
                                                     for p in prefixes):
            raise ValueError("not a list of 8-digit lowercase hex prefixes")
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as error:  # RuntimeError: too deeply nested
        raise CodecError(f"{path}: unreadable ({error}); expected {{\"weights\": [8-digit hex prefixes]}}") from None
    return prefixes


def makes_same_codes(a: ConvCodec, b: ConvCodec) -> bool:
    """Whether two codecs turn audio into the same codes: the same family, and equal
    configuration and weights apart from what only decoding uses (``code_identity``; for ESC
    that is the finest decoder stage and the head, as the encoder runs the coarser stages)."""
    if type(a) is not type(b):
        return False
    (config_a, state_a), (config_b, state_b) = a.code_identity(), b.code_identity()
    return config_a == config_b and state_a.keys() == state_b.keys() and all(
        state_a[k].shape == state_b[k].shape and torch.equal(state_a[k].cpu(), state_b[k].cpu()) for k in state_a)


def _state_mismatch(expected: dict, found: dict) -> str | None:
    """The first difference between a model's parameters and a weights file, in words."""
    missing = sorted(expected.keys() - found.keys())
    unexpected = sorted(found.keys() - expected.keys())
    if missing:
        return f"{len(missing)} tensors missing from the weights, e.g. {missing[0]}"
    if unexpected:
        return f"{len(unexpected)} unexpected tensors in the weights, e.g. {unexpected[0]}"
    for key in expected:
        if expected[key].shape != found[key].shape:
            return f"{key} has shape {list(found[key].shape)} in the weights, {list(expected[key].shape)} in the config"
    return None


def save_model(model: ConvCodec, model_dir: Path | str, dtype: torch.dtype = torch.float32,
               eight_bit_decoder: bool = False) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``model_dir`` (created if needed).

    ``dtype=torch.float16`` halves the file for shipping; floating-point weights are stored in
    that dtype and loaded back into the model's float32 parameters. ``eight_bit_decoder=True``
    stores the matrices that only decoding uses (``decoder_only_weights``) in 8 bits, one scale
    per output channel (``codec.eight_bit``): the codes stay exactly those of the 16-bit model,
    only the decoded audio moves.
    """
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    state = _stored_state(model, dtype, eight_bit_decoder)
    # (bytes written by Python: safetensors' save_file makes the file readable by its owner alone)
    write_atomically(model_dir / WEIGHTS_FILE, lambda tmp: tmp.write_bytes(save(state)))
    config = json.dumps(model.config.to_dict(), indent=2) + "\n"
    write_atomically(model_dir / CONFIG_FILE, lambda tmp: tmp.write_text(config))
    return model_dir


def _stored_state(model: ConvCodec, dtype: torch.dtype, eight_bit_decoder: bool) -> dict[str, torch.Tensor]:
    """The tensors ``save_model`` writes (see there)."""
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}

    def eight_bit_dims(name: str, tensor: torch.Tensor) -> tuple[int, ...] | None:
        matrix = tensor.dim() >= 2 and tensor.is_floating_point()
        decoder_only = eight_bit_decoder and name.startswith(model.decoder_only_weights)
        return tuple(range(1, tensor.dim())) if decoder_only and matrix else None

    stored = to_8_bits(state, eight_bit_dims)
    return {k: v.to(dtype) if k in state and v.is_floating_point() else v for k, v in stored.items()}


def ship_model(model: ConvCodec, model_dir: Path | str, dtype: torch.dtype = torch.float16,
               eight_bit_decoder: bool = False) -> list[str]:
    """Save ``model`` over the one in ``model_dir`` (``save_model``, 16-bit by default). If the
    model there makes the same codes (``makes_same_codes``: only the decoder changed), the new
    weights keep reading its ``.codes`` files and those it read: their hash prefixes go into
    ``compatible_weights.json``; otherwise (or when the model there cannot be loaded) that file
    is removed. The list is written before the weights, so an interrupted save never leaves
    new codes beside an old list. Returns the prefixes listed.
    """
    model_dir = Path(model_dir)
    listed: list[str] = []
    try:
        previous = load_model(model_dir) if (model_dir / WEIGHTS_FILE).is_file() else None
    except CodecError:
        previous = None                          # a damaged folder is replaced, not read
    if previous is not None:
        stored = build_model(model.config)       # the new weights as they will be stored
        stored.load_state_dict(from_8_bits(_stored_state(model, dtype, eight_bit_decoder)))
        if makes_same_codes(previous, stored):
            listed = _weights_read_by(previous)
    _write_compatible(model_dir, listed)
    save_model(model, model_dir, dtype, eight_bit_decoder)
    own = weights_hash(model_dir)[:8]
    if own in listed:                            # shipped the same weights again
        listed.remove(own)
        _write_compatible(model_dir, listed)
    return listed


def inherit_code_readers(model_dir: Path | str, model: ConvCodec, source: ConvCodec, source_dir: Path,
                         previous: ConvCodec | None = None) -> list[str]:
    """After ``save_model(model, model_dir)`` of a run that started from ``source`` (loaded from
    ``source_dir``): if ``model`` makes the same codes (``makes_same_codes``: a decoder fine-tuned
    with the encoder and quantizer frozen), it reads the ``.codes`` files of ``source`` and those
    ``source`` reads (``compatible_weights.json``), and ``source``'s entropy model codes its codes
    as well (copied beside, unless an entropy model is there already). ``previous``: the model
    saved in ``model_dir`` before (a run's earlier checkpoint) if it makes the same codes: its files
    are read as well. A copy of ``source``'s entropy model is removed once the codes differ; any
    other entropy model in ``model_dir`` is the user's, and stays. Returns the prefixes listed.
    """
    from codec.entropy.model import ENTROPY_CONFIG, ENTROPY_WEIGHTS

    model_dir, source_dir = Path(model_dir), Path(source_dir)
    same = makes_same_codes(source, model)
    readers = [*(_weights_read_by(source) if same else []), *(_weights_read_by(previous) if previous else [])]
    own = weights_hash(model_dir)[:8]
    listed = [prefix for prefix in dict.fromkeys(readers) if prefix != own]
    _write_compatible(model_dir, listed)
    names = (ENTROPY_WEIGHTS, ENTROPY_CONFIG)   # the weights first: never a config without them
    source_has_one = all((source_dir / name).is_file() for name in names)
    here = [name for name in names if (model_dir / name).is_file()]
    if same and source_has_one and not here:
        for name in names:
            data = (source_dir / name).read_bytes()
            write_atomically(model_dir / name, lambda tmp, data=data: tmp.write_bytes(data))
    elif not same and source_has_one and all(_same_bytes(model_dir / n, source_dir / n) for n in here):
        for name in here:
            (model_dir / name).unlink()
    return listed


def save_run_model(model: ConvCodec, model_dir: Path | str, source: ConvCodec | None = None) -> list[str]:
    """``save_model`` for a training run's checkpoint, over the run's previous save: a decoder
    fine-tune keeps reading the ``.codes`` files of its earlier checkpoints (and, with ``source``,
    its ``run.init_from`` model, which has ``model_dir`` set: ``inherit_code_readers``). Returns
    the prefixes listed in ``compatible_weights.json``.
    """
    model_dir = Path(model_dir)
    try:
        previous = load_model(model_dir) if (model_dir / WEIGHTS_FILE).is_file() else None
    except CodecError:
        previous = None   # a damaged folder is replaced, not read
    if previous is not None and not makes_same_codes(previous, model):
        previous = None
    save_model(model, model_dir)
    if source is not None:
        return inherit_code_readers(model_dir, model, source, source.model_dir, previous)
    own = weights_hash(model_dir)[:8]
    listed = [prefix for prefix in (_weights_read_by(previous) if previous else []) if prefix != own]
    _write_compatible(model_dir, listed)
    return listed


def _same_bytes(first: Path, second: Path) -> bool:
    return first.read_bytes() == second.read_bytes()


def _weights_read_by(model: ConvCodec) -> list[str]:
    """The weight-hash prefixes whose ``.codes`` files ``model`` reads: its own, and those it lists."""
    return list(dict.fromkeys([model.weights_sha256[:8], *model.readable_weights]))


def _write_compatible(model_dir: Path, prefixes: list[str]) -> None:
    """Write ``compatible_weights.json`` (or remove it, for no prefixes)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    if prefixes:
        text = json.dumps({"weights": prefixes}, indent=2) + "\n"
        write_atomically(model_dir / COMPATIBLE_FILE, lambda tmp: tmp.write_text(text))
    else:
        (model_dir / COMPATIBLE_FILE).unlink(missing_ok=True)
