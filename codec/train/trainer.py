"""The training loop: reconstruction losses (multi-resolution mel + STFT magnitude), then
optionally an adversarial stage (``gan.enabled``) with EnCodec's loss balancer.

Launch:
    codec train recipes/conv_16k.yaml                 # new run into run.out_dir
    codec train recipes/conv_16k.yaml --resume        # continue from run.out_dir/checkpoint.pt
    codec train recipes/tiny.yaml -o run.max_steps=20 # any recipe key can be overridden
    codec train recipes/conv_16k_gan.yaml             # GAN fine-tuning from the shipped weights
    torchrun --nproc_per_node 2 -m codec.train recipes/conv_16k.yaml   # data parallel (DDP)

Every checkpoint holds model, optimizer, step, wall time, RNG states, the resolved recipe and,
in the GAN stage, the discriminators and their optimizer; the run directory also gets
``model/`` (safetensors + config, loadable by ``codec --model``), ``train.log`` (one JSON line
per logging interval), ``resolved_recipe.yaml`` (``codec/train/run_recipe.py``) and
``tensorboard/``. Steps whose loss or gradient is not finite are
skipped and counted; gradients are clipped.
"""

import dataclasses
import json
import math
import os
import re
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from codec.atomic import write_atomically
from codec.datasets import Skipped
from codec.errors import CodecError, TrainingStopped
from codec.models import ConvCodec, build_model
from codec.models.loading import save_run_model, shipped_models_dir
from codec.quantization.vq import FactorizedVectorQuantizer, keep_bookkeeping_out_of_graphs, widen_lookup
from codec.train import distributed
from codec.train.data import Augmentation, RandomCropDataset
from codec.train.losses import (
    CompressedComplexSTFTLoss,
    MultiResolutionMelLoss,
    MultiResolutionSTFTLoss,
    PhaseDerivativeLoss,
)
from codec.train.monitor import Monitor
from codec.train.pesq_loss import PesqDisturbanceLoss
from codec.train.recipe import Recipe, data_named_by, model_named_by, reconstruction_weights
from codec.train.run_lock import run_folder_lock
from codec.train.run_recipe import write_run_recipe
from codec.train.stoi_loss import StoiLoss
from codec.train.stopping import ended_at, saving, signal_name, stop_after_step

CHECKPOINT_FILE = "checkpoint.pt"


def _loss_on_items(loss: torch.nn.Module, y_hat: torch.Tensor, y: torch.Tensor,
                   keep: torch.Tensor) -> torch.Tensor:
    """``loss`` over the batch items where ``keep`` ([B] bool) holds, scaled by their share of the
    batch, so each kept item weighs what it would in a whole-batch mean; 0 when none is kept
    (still a function of ``y_hat``, as the GAN stage's balancer differentiates every loss)."""
    if not bool(keep.any()):
        return 0.0 * y_hat.sum()
    return loss(y_hat[keep], y[keep]) * keep.float().mean()


def from_recipe(recipe) -> str:
    """`` (recipe FILE)`` for a recipe read from a file (``load_recipe``: a name may have found a
    file beside or a shipped one), else ""."""
    origins = getattr(recipe, "origins", None)
    return f" (recipe {origins.recipe})" if origins is not None else ""


def print_recipe_notes(recipe, console: Console) -> None:
    """What ``load_recipe`` changed in the recipe as read (such as a moved run's folder), as notes."""
    for note in getattr(getattr(recipe, "origins", None), "notes", []):
        console.print(f"note: {note}")


def _shipped_name_note(name: str, out_dir: Path) -> str | None:
    """For a model trained under a shipped model's name, from scratch or as a fine-tune: its .codes
    files name that model, and decoding them without --model finds the shipped weights, which
    refuse them (a model reads the codes of the weights it came from, not of those that came from it)."""
    if not (shipped_models_dir() / name / "config.json").is_file():
        return None
    return (f"model.name '{name}' is a shipped model's name too; this run's .codes files name it, so decode them "
            f"with --model {out_dir / 'model'}, or give the model a name of its own (-o model.name=...)")


def _duration(hours: float) -> str:
    """``2.64 h``, or seconds for a folder of a few clips (``0.00 h`` said nothing), to 0.01 s below
    10 s, as the warning for less audio than one crop gives them."""
    seconds = hours * 3600
    return f"{hours:.2f} h" if hours >= 0.1 else f"{seconds:.1f} s" if seconds >= 10 else f"{seconds:.2f} s"


def _learning_rate(recipe: Recipe, step: int) -> float:
    optim = recipe.optim
    if step < optim.warmup_steps:
        return optim.lr * (step + 1) / optim.warmup_steps
    return optim.lr * optim.lr_decay ** max(0, step - max(optim.warmup_steps, optim.decay_start))


def _working_directory() -> str | None:
    try:
        return os.getcwd()
    except FileNotFoundError:   # (deleted while the run went on: its relative paths name nothing now)
        return None


def _save_checkpoint(path: Path, model, optimizer, step: int, train_seconds: float, recipe, dataset,
                     extra: dict | None = None) -> None:
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "train_seconds": train_seconds,
        "recipe": recipe.to_dict(),
        "working_directory": _working_directory(),   # what the recipe's relative paths were relative to
        "torch_rng": torch.get_rng_state(),
        "data_rng": json.dumps(dataset.rng.bit_generator.state),
        **(extra or {}),
    }
    write_atomically(path, lambda tmp: torch.save(state, tmp))  # never a half-written checkpoint


def _kind(recipe: dict) -> str:
    if "entropy" in recipe:
        return "an entropy model"
    return f"a codec of architecture '{(recipe.get('model') or {}).get('architecture', 'conv')}'"


def _read_checkpoint(path: Path) -> dict:
    """The checkpoint's state dict, on the CPU (a GPU run's checkpoint resumes on any machine).

    Raises:
        CodecError: for a file that is not a checkpoint.
    """
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
        state["model"], state["optimizer"], state["torch_rng"]
    except Exception as error:  # a damaged or foreign file: pickle, zip and key errors alike
        # (the type only: torch's own message suggests weights_only=False, unsafe for a file of unknown origin)
        raise CodecError(f"{path}: not a readable checkpoint ({type(error).__name__}); it may be damaged or "
                         f"not a codec training checkpoint") from None
    return state


def check_resumable(path: Path, recipe) -> dict:
    """Before any data is prepared: the checkpoint at ``path`` trains the kind of model ``recipe``
    does (an entropy model or a codec, and the codec's architecture); the usual cause of a
    mismatch is the wrong recipe. Returns the checkpoint, for ``restore_checkpoint``.

    Raises:
        CodecError: for a file that is not a checkpoint, or another kind of model.
    """
    state = _read_checkpoint(path)
    saved, now = state.get("recipe", {}), recipe.to_dict()
    if saved and _kind(saved) != _kind(now):
        raise CodecError(f"{path}: the run trains {_kind(saved)}, and this recipe {_kind(now)}; resume with the "
                         f"run's recipe, or give this one another run.out_dir")
    return state


def restore_checkpoint(path: Path, model, optimizer, recipe=None, state: dict | None = None) -> dict:
    """Load model, optimizer and torch RNG states from the checkpoint at ``path`` (or from
    ``state``, the checkpoint read from it already); returns the checkpoint. The data's random
    crops are restored once the data is loaded (``restore_data_rng``): a checkpoint that does not
    fit fails here, before minutes of loading audio.

    Raises:
        CodecError: for a file that is not a checkpoint, or one whose model or optimizer does not
            fit (naming the recipe values that differ from ``recipe``'s, when given).
    """
    state = state if state is not None else _read_checkpoint(path)
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError):
        saved = state.get("recipe", {})
        changed = _changed_values(saved, recipe.to_dict() if recipe else {})
        needs = ("entropy section (another entropy model trains from the start, in another run.out_dir)"
                 if "entropy" in saved else f"model section and optim.freeze (to train from its weights "
                 f"instead, start a new run with run.init_from={path.parent / 'model'})")
        raise CodecError(f"{path}: its model or optimizer does not fit this recipe"
                         f"{' (changed: ' + ', '.join(changed) + ')' if changed else ''}; --resume needs the "
                         f"checkpoint's {needs}") from None
    torch.set_rng_state(state["torch_rng"])
    return state


def restore_data_rng(data, state: dict) -> None:
    """Continue ``data``'s random crops (``data.rng``) where the checkpoint ``state`` left them."""
    data.rng.bit_generator.state = json.loads(state["data_rng"])


# what a resumed run may change without notice: how long and where it runs, how it reports
RESUMABLE_RUN_KEYS = ("max_steps", "max_minutes", "threads", "log_every", "checkpoint_minutes", "audio_every",
                      "tensorboard", "device", "init_from", "init_fresh", "out_dir")


def _same_value(before, after, before_directory: str | None = None) -> bool:
    """Two spellings of one file or folder (relative and absolute, or a moved run's), or equal
    values that name none; a relative ``before`` is taken from ``before_directory`` (the run's
    working directory then), so that one spelling resumed from another folder is another folder."""
    if isinstance(before, str) and isinstance(after, str):
        then = os.path.join(before_directory or "", before)   # (an absolute path stays as it is)
        if os.path.exists(then) and os.path.exists(after):
            return os.path.samefile(then, after)
    return before == after


def _check_resumed_recipe(state: dict, recipe, checkpoint_path: Path, console: Console) -> None:
    """On ``--resume``, name the recipe values that differ from the ones the run last trained with
    (the checkpoint's resolved recipe): the recipe and ``-o`` given now are what the run goes on
    with, so a forgotten ``-o data.train_dir=...`` would silently change the data.

    Raises:
        CodecError: if the run keeps a weight average (``optim.ema_decay``) or discriminators
            (``gan.enabled``) and the recipe now turns them off, which would drop them from the
            checkpoint (and the average from the exported model).
    """
    saved, now = state.get("recipe", {}), recipe.to_dict()
    if "ema" in state and not recipe.optim.ema_decay:
        decay = saved.get("optim", {}).get("ema_decay")
        raise CodecError(f"{checkpoint_path}: the run keeps a moving average of its weights (optim.ema_decay="
                         f"{decay}), and this recipe turns it off, which would drop it; resume with "
                         f"-o optim.ema_decay={decay}")
    if "gan" in state and not recipe.gan.enabled:
        raise CodecError(f"{checkpoint_path}: the run trains with discriminators (gan.enabled=true), and this "
                         f"recipe turns the adversarial stage off, which would drop them and their optimizer; "
                         f"resume with -o gan.enabled=true, or start a new run from its model with run.init_from")
    changed = [f"{section}.{key}={before.get(key)!r} -> {after.get(key)!r}"
               for section in sorted(set(saved) | set(now))
               for before, after in [(saved.get(section, {}), now.get(section, {}))]
               for key in sorted(set(before) | set(after))
               if not _same_value(before.get(key), after.get(key), state.get("working_directory"))
               and not (section == "run" and key in RESUMABLE_RUN_KEYS)]
    if saved and changed:
        console.print(f"note: resuming with recipe values that differ from those the run last trained with "
                      f"({', '.join(changed)}); pass -o section.key=value to keep the earlier ones", highlight=False)
    before, after = saved.get("run", {}), now.get("run", {})
    unused = [f"run.{key}={after.get(key)!r}" for key in ("init_from", "init_fresh")
              if after.get(key) and not _same_value(before.get(key), after.get(key), state.get("working_directory"))]
    if saved and unused:   # (where the run started from is no value it goes on with)
        console.print(f"note: {' and '.join(unused)} unused: --resume goes on from the weights in {checkpoint_path}",
                      highlight=False)


def _restore_gan(gan, state: dict, recipe, checkpoint_path: Path) -> None:
    """Load the checkpoint's discriminators and their optimizer into ``gan``.

    Raises:
        CodecError: naming the gan values that differ from the checkpoint's, if they do not fit.
    """
    try:
        gan.load_state_dict(state["gan"])
    except (RuntimeError, ValueError, KeyError):
        changed = _changed_values(state.get("recipe", {}), recipe.to_dict(), (("gan", None),))
        raise CodecError(f"{checkpoint_path}: its discriminators do not fit this recipe"
                         f"{' (changed: ' + ', '.join(changed) + ')' if changed else ''}; --resume needs the "
                         f"checkpoint's gan section (periods, stft_windows, channels)") from None


MAX_NON_FINITE_IN_A_ROW = 100   # skipped steps in a row that mean the run has diverged, not hit a bad batch


_MODEL_SECTIONS = (("model", None), ("entropy", None), ("optim", ("freeze",)))


def _changed_values(before: dict, after: dict, sections=_MODEL_SECTIONS) -> list[str]:
    """``section.key=old -> new`` for the values of ``sections`` (each with its keys, None for all;
    by default the model values, a codec's or an entropy model's, and the frozen parts) that
    differ between two recipes."""
    changed = []
    for section, keys in sections:
        old, new = before.get(section, {}), after.get(section, {})
        for key in keys or sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                changed.append(f"{section}.{key}={old.get(key)!r} -> {new.get(key)!r}")
    return changed


# model settings that act before the network when coding (codec encode, eval, the API, ONNX), not in training
INPUT_PREPROCESSING = ("input_level_dbfs", "input_highpass_hz")


def _load_initial_weights(model: ConvCodec, initial: ConvCodec, source: str, console: Console,
                          fresh: list[str] = ()) -> None:
    """Start ``model`` from ``initial``'s weights (``run.init_from``).

    The configs may differ in what keeps every tensor's shape (e.g. the name, the bitrates, or
    ``masked_quantizers``): a quantizer whose channel slice changed starts its codebook afresh from
    the data (data-driven initialisation), keeping the pre-trained projections. Parts the source
    lacks (a global code) and the parts named in ``fresh`` (``run.init_fresh``, e.g. an output
    head of another shape) start from their initialisation. Quantizers whose lookup space is wider
    here (a larger ``codebook_dim``) are widened so that they still choose the same codes
    (``widen_lookup``): the model starts out coding and decoding as ``initial`` does.

    Raises:
        CodecError: if a tensor's shape differs outside ``fresh`` (a different architecture).
    """
    architectures = [getattr(m.config, "architecture", "conv") for m in (initial, model)]
    if architectures[0] != architectures[1]:
        raise CodecError(f"run.init_from={source}: is a model of architecture '{architectures[0]}', and the "
                         f"recipe's model section is '{architectures[1]}'; start from a model of the same "
                         f"architecture (run.init_from continues training), or from scratch (run.init_from=null)")
    target = model.state_dict()
    _named_parts(model, fresh, "run.init_fresh")
    # quantizers whose lookup space grew (model.codebook_dim) are widened after loading, keeping their codes
    widened = {name: layer for name, layer in _widened_quantizers(model, initial).items()
               if not f"{name}.".startswith(tuple(f"{part}." for part in fresh))}
    widened_prefixes = tuple(f"{name}." for name in widened)
    prefixes = tuple(f"{name}." for name in fresh) + widened_prefixes
    source_state = {k: v for k, v in initial.state_dict().items() if not k.startswith(prefixes)}
    # parts this model has none of (a TiCodec's global code or FiLM, into a plain model): left out
    left_out = sorted({k.split(".")[0] for k in source_state} - {k.split(".")[0] for k in target})
    source_state = {k: v for k, v in source_state.items() if k.split(".")[0] not in left_out}
    extra = sorted(set(source_state) - set(target), key=_in_number_order)
    reshaped = [k for k, v in source_state.items() if k in target and target[k].shape != v.shape]
    if extra or reshaped:
        example = (f"{reshaped[0]} is {list(source_state[reshaped[0]].shape)} there, "
                   f"{list(target[reshaped[0]].shape)} here" if reshaped else f"{extra[0]} is not in this model")
        misfits = sorted({k.split(".")[0] for k in (*reshaped, *extra)})
        if set(misfits) >= {k.split(".")[0] for k in source_state}:   # init_fresh would keep nothing
            differences = [f"{f.name}={getattr(initial.config, f.name)!r} there, {getattr(model.config, f.name)!r} "
                           f"here" for f in dataclasses.fields(initial.config)
                           if f.name != "name" and getattr(initial.config, f.name) != getattr(model.config, f.name)]
            raise CodecError(f"run.init_from={source}: none of its parts fits the recipe's model section "
                             f"({'; '.join(differences[:4]) or example}); give the model section its sizes, or "
                             f"start from scratch (run.init_from=null)")
        raise CodecError(f"run.init_from={source}: its weights do not fit the recipe's model section ({example}); "
                         f"list the parts that should start from scratch in run.init_fresh: "
                         f"[{', '.join(misfits)}]")
    # e.g. a global code, or more codebooks: named down to the module that owns the new weights
    new_parts = sorted({k.rsplit(".", 1)[0] for k in set(target) - set(source_state)
                        if not k.startswith(widened_prefixes)}, key=_in_number_order)
    device = next(model.parameters()).device
    model.load_state_dict({k: v.to(device) for k, v in source_state.items()}, strict=not (new_parts or widened))
    for name, narrow in widened.items():
        widen_lookup(narrow.to(device), model.get_submodule(name))
    # quantizers paired by name (ESC: scale and position in it); codebooks the source lacks (more
    # of them at a scale) start from the data by themselves
    old_layers = {name: layer for name, layer in initial.quantizer.named_modules() if hasattr(layer, "channel_mask")}
    resliced = [name for name, layer in model.quantizer.named_modules() if name in old_layers
                and not torch.equal(layer.channel_mask.cpu(), old_layers[name].channel_mask.cpu())]
    for name in resliced:
        layer = model.quantizer.get_submodule(name)
        layer.initialized.fill_(False)
        layer.usage.fill_(1.0)
    differences = [f.name for f in dataclasses.fields(initial.config)
                   if getattr(initial.config, f.name) != getattr(model.config, f.name)]
    notes = ([f"config differs in {', '.join(differences)}"] if differences else []) \
        + ([f"{len(widened)} quantizers' lookups widened to {model.config.codebook_dim} dimensions, "
            f"choosing the same codes"] if widened else []) \
        + ([f"quantizers re-initialised from data: {_first_few(resliced)}"] if resliced else []) \
        + ([f"new parts start from scratch: {_first_few(new_parts)}"] if new_parts else []) \
        + ([f"its {', '.join(left_out)} left out (this model has none)"] if left_out else [])
    console.print(f"init_from {source}: starting from its weights{'; ' if notes else ''}" + "; ".join(notes),
                  highlight=False)
    preprocessing = [f"model.{name}={getattr(initial.config, name)!r}" for name in INPUT_PREPROCESSING
                     if getattr(initial.config, name, None) is not None and getattr(model.config, name, None) is None]
    if preprocessing:   # inference-only settings: easy to lose in a recipe of one's own
        them = "them" if len(preprocessing) > 1 else "it"
        console.print(f"warning: init_from {source} has {' and '.join(preprocessing)}, which this recipe's model "
                      f"lacks: the model this run writes will code the same audio without {them}, into other "
                      f"codes; add {' '.join(f'-o {item}' for item in preprocessing)} to keep {them}", highlight=False)


def _in_number_order(name: str) -> list:
    """A sort key that puts ``layers.8`` before ``layers.10``."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name)]


def _first_few(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _widened_quantizers(model: torch.nn.Module, initial: torch.nn.Module) -> dict[str, FactorizedVectorQuantizer]:
    """``initial``'s quantizers (by name) whose counterparts in ``model`` differ only in a wider
    lookup space (the same number of entries, the same latent)."""
    wide = {name: layer for name, layer in model.named_modules() if isinstance(layer, FactorizedVectorQuantizer)}
    return {name: layer for name, layer in initial.named_modules()
            if isinstance(layer, FactorizedVectorQuantizer) and name in wide
            and wide[name].codebook.shape[1] > layer.codebook.shape[1]
            and wide[name].codebook_size == layer.codebook_size
            and wide[name].in_proj.in_features == layer.in_proj.in_features}


def _frozen_modules(model: torch.nn.Module, names: list[str]) -> list[torch.nn.Module]:
    """Stop training the named parts of ``model`` (top-level, or dotted paths such as
    ``decoder.1``); returns them.

    Raises:
        CodecError: for a name that is not a part of the model, or if nothing would be left to train.
    """
    parts = _named_parts(model, names, "optim.freeze")
    for part in parts:
        part.requires_grad_(False)
    if not any(p.requires_grad for p in model.parameters()):
        raise CodecError("optim.freeze leaves nothing to train")
    return parts


def _named_parts(model: torch.nn.Module, names: list[str], option: str) -> list[torch.nn.Module]:
    """The modules of ``model`` at ``names`` (top-level, or dotted paths such as ``decoder.1``).

    Raises:
        CodecError: naming ``option`` and every name that is not a module of the model.
    """
    modules = dict(model.named_modules())
    unknown = [repr(name) for name in names if not name or name not in modules]
    if unknown:
        top = ", ".join(name for name, _ in model.named_children())
        raise CodecError(f"{option}: {', '.join(unknown)} not in the model (name modules, such as "
                         f"decoder.1, not parameters); its parts are {top}")
    return [modules[name] for name in names]


def _code_source(init_from: str, resume: bool, console: Console) -> ConvCodec | None:
    """The model ``run.init_from`` names (with ``model_dir``, the folder it was loaded from): the
    weights a new run starts from, and on resume the model whose codes a run with a frozen
    encoder and quantizer keeps making. On resume it may be gone (None, with a note).

    Raises:
        CodecError: for a new run, if it cannot be loaded (naming ``run.init_from``).
    """
    from codec.models import load_model
    from codec.models.loading import resolve_model_dir

    try:
        with model_named_by("run.init_from"):
            source = load_model(init_from)
            source.model_dir = resolve_model_dir(init_from)
    except CodecError as error:
        if not resume:
            raise
        console.print(f"note: {error}; the run's model will not read its .codes files", highlight=False)
        return None
    return source


def _check_run_dir(checkpoint_path: Path, resume: bool, recipe) -> dict | None:
    """Raises CodecError unless the run folder suits a new run (or, with ``resume``, holds a
    checkpoint of the recipe's kind, which is returned)."""
    if checkpoint_path.parent.exists() and not checkpoint_path.parent.is_dir():
        raise CodecError(f"run.out_dir={checkpoint_path.parent} is a file, not a folder")
    if checkpoint_path.exists() and not resume:
        raise CodecError(f"{checkpoint_path} exists: pass --resume to continue that run, or set another run.out_dir")
    model_dir = checkpoint_path.parent / "model"
    trained = sorted(model_dir.glob("*.safetensors"))
    if trained and not resume:   # a finished run whose checkpoint was cleaned away: its model is kept
        raise CodecError(f"run.out_dir={checkpoint_path.parent} holds a trained model ({trained[0]}) and no "
                         f"checkpoint: set another run.out_dir, or move that model away first")
    if not resume and (model_dir.is_file() or (model_dir.is_dir() and any(model_dir.iterdir()))):
        raise CodecError(f"run.out_dir={checkpoint_path.parent}: {model_dir} exists and is not empty, and a "
                         f"run writes its model there: set another run.out_dir, or move it away first")
    if resume and not checkpoint_path.exists():
        raise CodecError(f"--resume: no checkpoint at {checkpoint_path}")
    return check_resumable(checkpoint_path, recipe) if resume else None


def _drop_unsaved_log_lines(out_dir: Path, step: int) -> None:
    """On resume, leave out of ``train.log`` the records of steps after the checkpoint's ``step``
    (a run killed between checkpoints logged steps it then trains again)."""
    log = out_dir / "train.log"
    if not log.is_file():
        return
    lines = log.read_text(errors="replace").splitlines(keepends=True)

    def saved(line: str) -> bool:
        try:
            return json.loads(line).get("step", 0) <= step
        except (ValueError, AttributeError, TypeError):   # not a record of ours: kept
            return True

    kept = [line for line in lines if saved(line)]
    if len(kept) < len(lines):
        write_atomically(log, lambda tmp: tmp.write_text("".join(kept)))


def _run_among_data(out_dir: Path, train_dir: str) -> list[str]:
    """A warning if the run's folder is the training folder or inside it (``codec encode`` refuses
    the like): the run's files then sit among the user's audio."""
    data = Path(train_dir)
    if not data.is_dir() or not out_dir.resolve().is_relative_to(data.resolve()):
        return []
    return [f"run.out_dir {out_dir} is inside data.train_dir {data}: the run's checkpoint, model and logs are "
            f"written among the training audio; a run folder outside it keeps them apart"]


def _is_run_log(path: Path) -> bool:
    """Whether ``path`` is a run's ``train.log``: empty, or its first line a logged step (JSON)."""
    try:
        with path.open() as file:
            first = file.readline(100_000)
        return not first or isinstance(json.loads(first).get("step"), int)
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return False


def _set_aside_earlier_log(out_dir: Path, console: Console) -> None:
    """A fresh run in the folder of one that stopped before its first checkpoint starts its own
    ``train.log`` and ``tensorboard/``; the earlier ones are kept as ``train.log.1`` and
    ``tensorboard.1`` (or the next number free for both), so that neither mixes two runs' steps."""
    earlier = [out_dir / name for name in ("train.log", "tensorboard") if os.path.lexists(out_dir / name)]
    if not earlier:
        return
    log, board = out_dir / "train.log", out_dir / "tensorboard"
    if os.path.lexists(log) and not log.is_file():
        raise CodecError(f"{log} is not a file: move it away or set another run.out_dir")
    if os.path.lexists(log) and not _is_run_log(log):   # (a user's own file: not set aside as a run's)
        raise CodecError(f"{log} is not a training log (its first line is no logged step): move it away or set "
                         f"another run.out_dir")
    if os.path.lexists(board) and not board.is_dir():
        raise CodecError(f"{board} is not a folder (a run writes its TensorBoard logs there): move it away or set "
                         f"another run.out_dir")
    number = 1
    while any(os.path.lexists(f"{path}.{number}") for path in (log, out_dir / "tensorboard")):
        number += 1
    kept = []
    for path in earlier:
        try:
            path.rename(f"{path}.{number}")
        except OSError as error:
            raise CodecError(f"cannot keep the earlier run's {path} as {path.name}.{number} ({error.strerror}): "
                             f"move it away or set another run.out_dir") from None
        kept.append(f"{path.name} as {path.name}.{number}")
    console.print(f"note: {out_dir} held an earlier run's logs (no checkpoint); kept {' and '.join(kept)}")


def train(recipe: Recipe, resume: bool = False, console: Console | None = None) -> ConvCodec:
    """Train the codec a recipe describes; returns the trained model.

    Under torchrun (``WORLD_SIZE`` > 1) every process trains a DDP replica on its own crops;
    rank 0 logs and writes checkpoints (``codec.train.distributed``).

    Raises:
        CodecError: if the run directory already has a checkpoint and ``resume`` is false, or
            ``resume`` is true and there is none, or the data folder has no audio, or
            ``run.init_from`` names weights of another configuration, or the checkpoint does not
            fit the recipe, or the run diverges (MAX_NON_FINITE_IN_A_ROW non-finite steps in a row),
            or the recipe turns off the resumed run's weight average (``optim.ema_decay``), or
            another run is using ``run.out_dir`` (``codec.train.run_lock``).
        TrainingStopped: after Ctrl-C (SIGINT) or SIGTERM, which stop the run after the step in
            progress, with a checkpoint and model saved.
    """
    with run_folder_lock(Path(recipe.run.out_dir)):
        return _train(recipe, resume, console)


def _train(recipe: Recipe, resume: bool, console: Console | None) -> ConvCodec:
    console = console or Console(stderr=True)
    run, loss_cfg = recipe.run, recipe.loss
    out_dir = Path(run.out_dir)
    checkpoint_path = out_dir / CHECKPOINT_FILE
    saved_state = _check_run_dir(checkpoint_path, resume, recipe)
    if run.init_fresh and not run.init_from:
        raise CodecError("run.init_fresh names parts to start from scratch instead of run.init_from's weights, "
                         "but run.init_from is not set")
    if recipe.optim.freeze and not run.init_from:   # frozen at their random start, they would learn nothing
        raise CodecError(f"recipe value optim.freeze={recipe.optim.freeze} keeps parts at run.init_from's weights, "
                         f"but run.init_from is not set (they would stay at their random start)")
    if run.threads:
        torch.set_num_threads(run.threads)
    rank, world_size = distributed.setup()
    main_process = rank == 0
    try:
        device = distributed.device_for(run.device)
    except RuntimeError as error:
        raise CodecError(str(error)) from None
    torch.manual_seed(run.seed)  # the same initial weights on every rank

    try:   # (before any data is read: the model's own rules on how its sizes fit together)
        model = build_model(recipe.model).to(device)
    except CodecError as error:   # its keys as the recipe names them, so the error names where each was set
        keys = "|".join(sorted((f.name for f in dataclasses.fields(recipe.model)), key=len, reverse=True))
        named = re.sub(r"(?<![\w.])(" + keys + r")=", r"model.\1=", str(error))
        raise CodecError(f"recipe model section: {named}") from None
    problem = model.bitrate_problem()
    if problem:   # (named with every value it follows from: the error then names where each was set)
        deciding = ", ".join(f"model.{key}={getattr(recipe.model, key)}" for key in model.rate_keys)
        raise CodecError(f"recipe value model.bitrates_kbps={recipe.model.bitrates_kbps} at {deciding}: {problem}")
    frozen = _frozen_modules(model, recipe.optim.freeze)
    if loss_cfg.quantizer_warmup_steps and not hasattr(model, "bypass_quantizer"):
        raise CodecError(f"loss.quantizer_warmup_steps: {type(model).__name__} has no quantizer warm-up "
                         f"(the ESC codec has)")
    trainable = [p for p in model.parameters() if p.requires_grad]
    # (buffers, such as codebook usage, are not averaged: the average keeps the live model's)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(recipe.optim.ema_decay)) \
        if recipe.optim.ema_decay else None
    optimizer = torch.optim.AdamW(trainable, lr=recipe.optim.lr, betas=tuple(recipe.optim.betas),
                                  weight_decay=recipe.optim.weight_decay)
    sample_rate = recipe.model.sample_rate
    segment = int(recipe.data.segment_seconds * sample_rate) // model.frame_size * model.frame_size
    # how data.segment_seconds becomes crops, for the errors below
    gives = (f"data.segment_seconds={recipe.data.segment_seconds} gives {segment} samples (whole code frames of "
             f"{model.frame_size} samples)")
    in_use = {f"loss.{name}": windows for name, windows in loss_cfg.windows_in_use().items()}
    if recipe.gan.enabled:   # the STFT discriminators' windows
        in_use["gan.stft_windows"] = recipe.gan.stft_windows
    for key, windows in in_use.items():
        if max(windows) // 2 >= segment:  # the STFTs pad each end by half a window, by reflection
            least = (max(windows) // 2 // model.frame_size + 1) * model.frame_size
            raise CodecError(f"recipe value {key}={windows}: a {max(windows)}-sample window needs crops "
                             f"longer than {max(windows) // 2} samples, and {gives}; give data.segment_seconds >= "
                             f"{least / sample_rate:g}")
    if loss_cfg.stoi_weight > 0:
        try:
            stoi_loss = StoiLoss(sample_rate).to(device)
        except ValueError as error:
            raise CodecError(f"recipe value loss.stoi_weight={loss_cfg.stoi_weight}: {error}") from None
        if segment < stoi_loss.min_samples(sample_rate):
            raise CodecError(f"recipe value loss.stoi_weight={loss_cfg.stoi_weight}: the STOI loss needs crops of "
                             f"at least {stoi_loss.min_samples(sample_rate)} samples (30 of its frames), and {gives}")
    try:
        mel_loss = MultiResolutionMelLoss(sample_rate, loss_cfg.mel_windows, loss_cfg.mel_bins).to(device)
    except ValueError as error:
        raise CodecError(f"recipe value loss.mel_bins={loss_cfg.mel_bins}: {error}") from None
    # (before the data loads, which takes minutes for a large set: a wrong init_from fails now)
    source = _code_source(run.init_from, resume, console) if run.init_from else None
    if source is not None and not resume:
        # continue training across machines from shipped weights (a fresh optimizer state)
        _load_initial_weights(model, source, run.init_from, console, run.init_fresh)
    device_ids = [device.index] if device.type == "cuda" else None
    wrap = (lambda m: torch.nn.parallel.DistributedDataParallel(m, device_ids=device_ids)) if world_size > 1 \
        else (lambda m: m)
    gan = None
    if recipe.gan.enabled:
        from codec.train.gan import GanStage

        gan = GanStage(recipe.gan, loss_cfg, wrap, device)

    step, previous_seconds = 0, 0.0
    if resume:   # (before the data loads too: a checkpoint that does not fit the recipe fails now)
        state = restore_checkpoint(checkpoint_path, model, optimizer, recipe, saved_state)
        step, previous_seconds = state["step"], state.get("train_seconds", 0.0)
        _check_resumed_recipe(state, recipe, checkpoint_path, console)
        if gan is not None and "gan" in state:
            _restore_gan(gan, state, recipe, checkpoint_path)
        if ema is not None and "ema" in state:   # (a checkpoint without one: it starts from these weights)
            ema.load_state_dict(state["ema"])
        if step >= run.max_steps:   # the checkpoint and model stay as they are (with the recipe they record)
            console.print(f"the run is at step {step}, and run.max_steps={run.max_steps}: nothing to train; "
                          f"raise run.max_steps to go on")
            return ema.module if ema is not None and ema.n_averaged > 0 else model
    data = recipe.data
    noise_unreadable: list[str] = []
    noise_skipped = Skipped()
    with data_named_by("data.noise_dir", data.noise_dir or ""):
        noise = RandomCropDataset.noise_from(Path(data.noise_dir), sample_rate, noise_unreadable, noise_skipped) \
            if data.noise_dir else None
    augmentation = Augmentation(
        noise,
        data.noise_probability, tuple(data.noise_snr_db), data.eq_probability, data.eq_gain_db,
        data.shelf_probability, data.shelf_gain_db, data.speed_probability, tuple(data.speed_range),
        data.tone_probability, tuple(data.tone_level_db))
    with data_named_by("data.train_dir", data.train_dir, "to train on your own audio, give its folder (or a manifest "
                       "of its files) with -o data.train_dir=PATH"):
        dataset = RandomCropDataset(Path(data.train_dir), sample_rate, segment, tuple(data.level_db),
                                    seed=run.seed + rank, augmentation=augmentation)
    if resume and world_size == 1:
        restore_data_rng(dataset, state)
    out_dir.mkdir(parents=True, exist_ok=True)
    if main_process and not resume:
        _set_aside_earlier_log(out_dir, console)
    elif main_process:
        _drop_unsaved_log_lines(out_dir, step)
    # (resumed: TensorBoard hides the steps logged after the checkpoint's, as train.log leaves them out;
    # the checkpoint's own step was logged before it was saved, and stays)
    monitor = Monitor(out_dir, console, run.tensorboard, enabled=main_process,
                      purge_step=step + 1 if resume else None)
    if main_process:
        print_recipe_notes(recipe, console)
        write_run_recipe(out_dir, recipe.to_dict(), from_recipe(recipe), console)
        console.print(f"training {recipe.model.name}{from_recipe(recipe)}: "
                      f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M "
                      f"parameters, {_duration(dataset.hours)} of audio, step {step}, {torch.get_num_threads()} "
                      f"threads x {world_size} processes{', GAN stage' if gan else ''}, out {out_dir}")
        if noise_unreadable:
            console.print(f"warning: {len(noise_unreadable)} noise file(s) cannot be read and are left out, "
                          f"first: {noise_unreadable[0]}")
        for note in dataset.notes() + ([f"noise: {noise_skipped.summary()}"] if noise_skipped.summary() else []):
            console.print(f"note: {note}", highlight=False)
        for warning in dataset.warnings() + _run_among_data(out_dir, data.train_dir):
            console.print(f"warning: {warning}")
        if note := _shipped_name_note(recipe.model.name, out_dir):
            console.print(f"note: {note}", highlight=False)
    replica = wrap(model)
    if run.compile:
        keep_bookkeeping_out_of_graphs()
        replica = torch.compile(replica)
    stft_loss = MultiResolutionSTFTLoss(loss_cfg.stft_windows).to(device)
    if loss_cfg.complex_weight > 0:
        complex_loss = CompressedComplexSTFTLoss(loss_cfg.complex_windows, loss_cfg.complex_power,
                                                 loss_cfg.complex_share).to(device)
    if loss_cfg.phase_weight > 0:
        phase_loss = PhaseDerivativeLoss(loss_cfg.phase_windows, loss_cfg.phase_terms,
                                         loss_cfg.phase_power).to(device)
    if loss_cfg.pesq_weight > 0:
        pesq_loss = PesqDisturbanceLoss(sample_rate).to(device)
    weights = reconstruction_weights(loss_cfg)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=run.precision == "bf16")
    choices = torch.tensor(loss_cfg.codebook_choices)
    probs = torch.tensor(loss_cfg.codebook_probs, dtype=torch.float)
    model.train()
    for module in frozen:  # eval mode: no data init or dead-code re-seeding in a frozen quantizer
        module.eval()
    for module in model.modules():
        if isinstance(module, FactorizedVectorQuantizer):
            module.gradient = loss_cfg.vq_gradient

    def checkpoint(now: float) -> None:
        extra = {**({"gan": gan.state_dict()} if gan else {}), **({"ema": ema.state_dict()} if ema else {})}
        with saving(out_dir / "model"):   # (a second Ctrl-C in between says the model can be older)
            _save_checkpoint(checkpoint_path, model, optimizer, step, previous_seconds + now - start_time, recipe,
                             dataset, extra)
            # a decoder fine-tuned on frozen codes reads its source's files and its earlier checkpoints'
            save_run_model(exported(), out_dir / "model", source)

    def exported() -> torch.nn.Module:
        """The weights a run's user gets: the moving average where there is one."""
        if ema is None:
            return model
        if ema.n_averaged == 0:   # no step yet: the live weights
            ema.update_parameters(model)
        return ema.module

    start_time = last_checkpoint = last_log = time.monotonic()
    first_step, last_log_step, skipped, sums, counts = step, step, 0, {}, {}
    deadline = start_time + 60 * run.max_minutes if run.max_minutes else math.inf
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]:.3f}  {task.fields[rate]:.2f} steps/s"), TimeRemainingColumn()]
    streak = 0   # non-finite steps in a row

    def log_scalars(now: float) -> None:
        """The mean losses since the last record, the rate and the learning rate, to train.log and TensorBoard."""
        nonlocal sums, counts, last_log, last_log_step
        record = {"step": step, **{k: round(v / counts[k], 4) for k, v in sums.items()},
                  "steps_per_s": round((step - last_log_step) / (now - last_log), 3),
                  "lr": float(f"{optimizer.param_groups[0]['lr']:.4g}"), "skipped": skipped,
                  "elapsed_min": round((now - start_time) / 60, 2),
                  "total_min": round((previous_seconds + now - start_time) / 60, 2)}
        monitor.scalars(step, record, model.quantizer.perplexities())
        sums, counts, last_log, last_log_step = {}, {}, now, step

    with stop_after_step(console, checkpoint_path) as stop_requested:   # (to the end: a lost reader never stops a save)
        with Progress(*columns, console=console, transient=True, disable=not main_process) as progress:
            task = progress.add_task("train", total=run.max_steps, completed=step, loss=math.nan, rate=0.0)
            while not distributed.any_true(step >= run.max_steps or time.monotonic() >= deadline
                                           or bool(stop_requested)):
                for group in optimizer.param_groups:
                    group["lr"] = _learning_rate(recipe, step)
                if hasattr(model, "bypass_quantizer"):
                    model.bypass_quantizer = step < loss_cfg.quantizer_warmup_steps
                wav = dataset.batch(run.batch_size).to(device)
                num_codebooks = choices[torch.multinomial(probs, run.batch_size, replacement=True)].to(device)
                with autocast:
                    output = replica(wav, num_codebooks)
                y_hat = output.audio.float()  # losses in float32: STFTs of bf16 lose the quiet parts
                parts = {"mel": mel_loss(y_hat, wav), "stft": stft_loss(y_hat, wav)}
                if loss_cfg.complex_weight > 0:
                    enough_bits = num_codebooks >= loss_cfg.complex_min_codebooks
                    parts["complex"] = _loss_on_items(complex_loss, y_hat, wav, enough_bits)
                if loss_cfg.phase_weight > 0:
                    parts["phase"] = phase_loss(y_hat, wav)
                if loss_cfg.pesq_weight > 0:
                    parts["pesq"] = pesq_loss(y_hat, wav)
                if loss_cfg.stoi_weight > 0:
                    parts["stoi"] = stoi_loss(y_hat, wav)
                adversarial = gan is not None and step >= recipe.gan.discriminator_warmup_steps
                if gan is not None:
                    parts["discriminator"] = torch.tensor(gan.discriminator_step(wav, y_hat))
                if adversarial:
                    parts.update(gan.generator_losses(wav, y_hat))
                quantizer_loss = (loss_cfg.commitment_weight * output.quantized.commitment_loss
                                  + loss_cfg.codebook_weight * output.quantized.codebook_loss)
                if loss_cfg.latent_weight > 0 and output.quantized.latent_loss is not None:
                    quantizer_loss = quantizer_loss + loss_cfg.latent_weight * output.quantized.latent_loss
                if output.consistency is not None:  # TiCodec: a latent-side loss, like the commitment
                    quantizer_loss = quantizer_loss + loss_cfg.consistency_weight * output.consistency
                audio_losses = {k: v for k, v in parts.items() if k != "discriminator"}
                if not adversarial:
                    loss = sum(weights[name] * value for name, value in audio_losses.items()) + quantizer_loss
                else:  # the GAN stage weights them (or its balancer); the plain sum is logged and checked
                    loss = sum(audio_losses.values()) + quantizer_loss
                optimizer.zero_grad(set_to_none=True)
                finite = not distributed.any_true(not torch.isfinite(loss))  # every rank skips together
                if finite:
                    if adversarial:  # one backward pass: the balanced audio gradient plus the quantizer's
                        outputs, gradients = [y_hat], [gan.audio_gradient(audio_losses, y_hat)]
                        if quantizer_loss.requires_grad:  # not with a frozen encoder and quantizer
                            outputs.append(quantizer_loss)
                            gradients.append(None)
                        torch.autograd.backward(outputs, gradients)
                    else:
                        loss.backward()
                    grad_norm = torch.nn.utils.clip_grad_norm_(trainable, recipe.optim.grad_clip)
                    finite = bool(torch.isfinite(grad_norm))
                if not finite:
                    skipped, streak = skipped + 1, streak + 1
                    if streak >= MAX_NON_FINITE_IN_A_ROW:
                        break
                    continue
                optimizer.step()
                if ema is not None:
                    ema.update_parameters(model)
                step, streak = step + 1, 0
                parts.update(commitment=output.quantized.commitment_loss, codebook=output.quantized.codebook_loss,
                             loss=loss)
                if output.quantized.latent_loss is not None:
                    parts["latent"] = output.quantized.latent_loss
                if output.consistency is not None:
                    parts["consistency"] = output.consistency
                parts = {k: v.float() for k, v in parts.items()}
                for name, value in parts.items():   # per-name counts: GAN losses start after a warm-up
                    sums[name] = sums.get(name, 0.0) + float(value.detach())
                    counts[name] = counts.get(name, 0) + 1

                now = time.monotonic()
                progress.update(task, completed=step, loss=float(loss.detach()),
                                rate=(step - first_step) / (now - start_time))
                if step % run.log_every == 0:
                    log_scalars(now)
                if step % run.audio_every == 0:
                    monitor.audio(step, wav.cpu(), y_hat.cpu(), sample_rate,
                                  [layer.usage.cpu() for layer in model.quantizer.layers])
                if now - last_checkpoint > 60 * run.checkpoint_minutes and main_process:
                    checkpoint(now)
                    last_checkpoint = now
        if streak >= MAX_NON_FINITE_IN_A_ROW:  # diverged: the last checkpoint (from before) is kept as it is
            monitor.close()
            kept = f"{checkpoint_path} is kept as it was" if checkpoint_path.exists() else "no checkpoint was saved"
            then = "then resume from it" if checkpoint_path.exists() else "then start the run again"
            raise CodecError(f"training diverged at step {step}: {streak} steps in a row gave a non-finite loss or "
                             f"gradient (learning rate {optimizer.param_groups[0]['lr']:g}); {kept}: lower optim.lr or "
                             f"raise optim.warmup_steps, {then}")
        if counts and step > last_log_step:   # the steps since the last record (a run shorter than run.log_every)
            log_scalars(time.monotonic())
        if main_process:
            checkpoint(time.monotonic())
            if stop_requested:
                console.print(f"stopped by {signal_name(stop_requested[0])} after the step in progress; "
                              "continue with --resume")
            how = ended_at(step, run.max_steps, time.monotonic() >= deadline, bool(stop_requested))
            console.print(f"{how}, {skipped} non-finite steps skipped; "
                          f"checkpoint {checkpoint_path}, model {out_dir / 'model'}")
            if step < loss_cfg.quantizer_warmup_steps and hasattr(model, "bypass_quantizer"):
                console.print(f"warning: the run stopped within its quantizer warm-up (loss.quantizer_warmup_steps="
                              f"{loss_cfg.quantizer_warmup_steps}): its codebooks are not trained yet, so the model "
                              f"codes poorly; continue with --resume")
        monitor.close()
        distributed.barrier()
    if stop_requested:
        raise TrainingStopped(stop_requested[0], str(checkpoint_path))
    return exported()
