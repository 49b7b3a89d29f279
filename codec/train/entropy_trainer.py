"""Training the entropy model on the codes a frozen codec gives for a folder of audio.

Launch:
    codec train recipes/entropy_conv_16k.yaml            # codes the training set once, then trains
    codec train recipes/entropy_conv_16k.yaml --resume
    codec train recipes/entropy_conv_16k.yaml -o run.init_from=models/conv-16k   # continue from an entropy model

The codes (24 codebooks) are cached in ``run.out_dir/codes.npz`` (a file of that name that a run
did not write is refused, never read or replaced); each step trains on random crops with a random
number of codebooks from ``codebook_choices``, so one entropy model serves every bitrate. The
trained model lands in ``run.out_dir/model/`` (``entropy.safetensors`` and ``entropy_config.json``);
copy both beside the codec's ``config.json`` to use it (``codec.models.load_model`` loads them from
there), as the run's last line says. ``run.device`` trains on a GPU (``auto``: when there is one),
where the training set is coded on the GPU too. The run and optim keys that only codec training
uses are refused (``CODEC_ONLY_KEYS``).
"""

import dataclasses
import hashlib
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from codec.atomic import write_atomically
from codec.bitstream import MAX_CODEBOOK_SIZE
from codec.datasets import Skipped
from codec.entropy import EntropyModel, EntropyModelConfig, load_entropy_model, save_entropy_model
from codec.entropy.model import ENTROPY_CONFIG, ENTROPY_WEIGHTS, codes_fit
from codec.errors import CodecError, TrainingStopped
from codec.train import distributed
from codec.train.recipe import (
    OptimConfig,
    RunConfig,
    _coerce,
    check_counts,
    check_heads,
    check_name,
    check_section_keys,
    check_sections,
    data_named_by,
    expand_paths,
    model_named_by,
)
from codec.train.run_lock import run_folder_lock
from codec.train.run_recipe import write_run_recipe
from codec.train.stopping import ended_at, saving, signal_name, stop_after_step
from codec.train.trainer import (
    CHECKPOINT_FILE,
    MAX_NON_FINITE_IN_A_ROW,
    _check_resumed_recipe,
    _check_run_dir,
    _drop_unsaved_log_lines,
    _learning_rate,
    _save_checkpoint,
    _set_aside_earlier_log,
    from_recipe,
    print_recipe_notes,
    restore_checkpoint,
    restore_data_rng,
)


@dataclass
class EntropyDataConfig:
    train_dir: str = "../shared/data/speech/train"
    codec_model: str = "conv-16k"          # name or directory of the frozen codec
    segment_frames: int = 128
    codebook_choices: list[int] = field(default_factory=lambda: [3, 6, 12, 24])
    dev_dir: str | None = None             # held-out audio: bits per code at 12 codebooks at each checkpoint

    def __post_init__(self):
        expand_paths(self, "data", ("train_dir", "codec_model", "dev_dir"), optional=("dev_dir",))


@dataclass
class EntropyRecipe:
    entropy: EntropyModelConfig = field(default_factory=EntropyModelConfig)
    data: EntropyDataConfig = field(default_factory=EntropyDataConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3, warmup_steps=200, weight_decay=0.0))
    run: RunConfig = field(default_factory=lambda: RunConfig(out_dir="runs/entropy-conv-16k"))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def sections(cls) -> list[tuple[str, type]]:
        """The recipe's sections as ``(name, config class)``."""
        defaults = cls()
        return [(f.name, type(getattr(defaults, f.name))) for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: dict) -> "EntropyRecipe":
        defaults = cls()
        homes = cls.sections()
        sections = [name for name, _ in homes]
        check_sections(values, sections, "an entropy recipe")
        built = {}
        for name in sections:
            section = getattr(defaults, name)
            section_values = values.get(name) or {}
            if not isinstance(section_values, dict):
                raise CodecError(f"recipe section '{name}' must be a mapping of keys to values, got {section_values!r}")
            check_section_keys(name, section_values, type(section), sections=homes, unused=frozenset(CODEC_ONLY_KEYS))
            built[name] = dataclasses.replace(section, **_coerce(type(section), section_values, f"{name}."))
        _check_sizes(built["entropy"], built["data"])
        return cls(**built)


_NO_SUCH_VALUE = object()
# run and optim keys of codec training that entropy training has no use for: each with why, and the
# value that says what entropy training does anyway (which a recipe may give)
CODEC_ONLY_KEYS = {
    "run.precision": ("the entropy model trains in float32", "fp32"),
    "run.compile": ("the entropy model is not compiled", False),
    "run.init_fresh": ("run.init_from starts the whole entropy model from its weights", []),
    "run.tensorboard": ("entropy training logs to train.log only", False),
    "run.audio_every": ("entropy training writes no audio summaries", _NO_SUCH_VALUE),
    "optim.freeze": ("the whole entropy model trains", []),
    "optim.ema_decay": ("entropy training keeps no moving average of the weights", 0),
}


def recipe_values(recipe: EntropyRecipe) -> dict:
    """``recipe.to_dict()`` without the keys that only codec training uses (``CODEC_ONLY_KEYS``):
    what ``load_recipe`` reads back as this recipe."""
    values = recipe.to_dict()
    for key in CODEC_ONLY_KEYS:
        section, name = key.split(".")
        values[section].pop(name, None)
    return values


def refuse_codec_only_keys(values: dict) -> None:
    """Raises CodecError for a run or optim key of an entropy recipe (as read, before defaults)
    that only codec training uses, unless it says what entropy training does anyway (such as
    ``run.tensorboard: false``): the recipe would otherwise ask for what never happens."""
    for key, (why, agrees) in CODEC_ONLY_KEYS.items():
        section, name = key.split(".")
        given = values.get(section)
        if isinstance(given, dict) and name in given and not _agrees(given[name], agrees):
            raise CodecError(f"recipe value {key}={given[name]!r} is for codec training; an entropy recipe does "
                             f"not use it ({why}): remove it")


def _agrees(value, agrees) -> bool:
    if agrees is _NO_SUCH_VALUE:
        return False
    if isinstance(value, bool) or isinstance(agrees, bool):   # (False == 0 in Python)
        return value is agrees
    return value == agrees


def _check_sizes(entropy: EntropyModelConfig, data: EntropyDataConfig) -> None:
    """Raises CodecError, naming the recipe value, for a size the entropy model cannot have."""
    check_name(entropy.name, "entropy.name")
    check_counts(entropy, "entropy")
    check_counts(data, "data")
    check_heads([entropy.dim], entropy.heads, "entropy", "dim")
    if not 2 <= entropy.codebook_size <= MAX_CODEBOOK_SIZE:
        raise CodecError(f"recipe value entropy.codebook_size={entropy.codebook_size} must be from 2 to "
                         f"{MAX_CODEBOOK_SIZE}")
    if not data.codebook_choices or max(data.codebook_choices) > entropy.num_codebooks:
        raise CodecError(f"recipe value data.codebook_choices={data.codebook_choices} must list codebook counts "
                         f"from 1 to entropy.num_codebooks={entropy.num_codebooks}")


def _check_codec_fits(entropy: EntropyModelConfig, codec_model, codec_name: str) -> None:
    """Raises CodecError unless the entropy model can code every code of ``codec_model``
    (``codes_fit``, as ``codec.models.load_model`` checks a model folder's entropy model)."""
    if not codes_fit(entropy, codec_model):
        raise CodecError(f"recipe values entropy.num_codebooks={entropy.num_codebooks} and entropy.codebook_size="
                         f"{entropy.codebook_size} do not fit data.codec_model={codec_name}: it has "
                         f"{codec_model.num_codebooks} codebooks of {codec_model.codebook_size} codes")


class CodeCrops:
    """Random ``[B, K, segment_frames]`` crops of the codes of every training file."""

    def __init__(self, codes: list[np.ndarray], segment_frames: int, seed: int):
        self.codes = [c for c in codes if c.shape[-1] > 1]
        self.lengths = np.array([c.shape[-1] for c in self.codes], dtype=np.float64)
        self.segment = segment_frames
        self.rng = np.random.default_rng(seed)

    def batch(self, batch_size: int, num_codebooks: int) -> torch.Tensor:
        picks = self.rng.choice(len(self.codes), size=batch_size, p=self.lengths / self.lengths.sum())
        length = int(min(self.segment, self.lengths[picks].min()))
        rows = []
        for index in picks:
            codes = self.codes[index]
            start = self.rng.integers(0, codes.shape[-1] - length + 1)
            rows.append(codes[:num_codebooks, start:start + length])
        return torch.from_numpy(np.stack(rows).astype(np.int64))


def code_folder(recipe: EntropyRecipe, folder: Path, cache: Path, console: Console,
                device: torch.device = torch.device("cpu"), offline: bool | None = None,
                key: str = "data.train_dir") -> list[np.ndarray]:
    """Codes ``[24, F]`` (int16) of every audio file under ``folder`` (channel mean), cached in ``cache``.

    By default, on the CPU each file goes through ``codec.coding.encode_audio`` (what ``codec
    encode`` writes); on a GPU (or with ``offline``) through one offline ``encode`` of the whole
    file at the codec's sample rate, padded to whole frames: the same codes up to floating-point
    near-ties (tests). The cache is used only for the same codec weights and the same files (a
    changed ``data.codec_model`` or folder, on ``--resume`` too, codes the folder again); a file
    at ``cache`` that this function did not write is never read as codes nor replaced.

    Raises:
        CodecError: for a codec that does not fit the recipe, a folder without audio, or a file
            at ``cache`` that is not a cache of codes (naming it).
    """
    from codec.models import load_model
    from codec.train.data import find_audio_files

    with model_named_by("data.codec_model"):
        codec_model = load_model(recipe.data.codec_model)
    if codec_model.config.name != recipe.entropy.codec:
        raise CodecError(f"entropy.codec is '{recipe.entropy.codec}' but data.codec_model="
                         f"{recipe.data.codec_model} is the model '{codec_model.config.name}'")
    _check_codec_fits(recipe.entropy, codec_model, recipe.data.codec_model)
    kbps = max(codec_model.config.bitrates_kbps)
    coded = codec_model.codebooks_for_bitrate(kbps)   # the most codebooks a .codes file of it holds
    if max(recipe.data.codebook_choices) > coded:
        counts = sorted({codec_model.codebooks_for_bitrate(b) for b in codec_model.config.bitrates_kbps})
        raise CodecError(f"recipe value data.codebook_choices={recipe.data.codebook_choices} lists up to "
                         f"{max(recipe.data.codebook_choices)} codebooks, but data.codec_model="
                         f"{recipe.data.codec_model} codes at most {coded} (at its top bitrate, {kbps:g} kbps): "
                         f"list its bitrates' counts, data.codebook_choices={counts}")
    skipped = Skipped()
    with data_named_by(key, str(folder)):
        files = find_audio_files(folder, skipped)
    if skipped.summary():
        console.print(f"note: {key}: {skipped.summary()}", highlight=False)
    source = _codes_source(codec_model.weights_sha256, files)
    cached = read_codes_cache(cache)
    if cached is not None and cached[0] == source:
        return cached[1]
    if cached is not None:
        console.print(f"note: {cache} holds the codes of another codec or other files; coding {folder} again",
                      highlight=False)
    offline = device.type != "cpu" if offline is None else offline
    codec_model.to(device)
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # float32 codes, as on a CPU
    try:
        with data_named_by(key, str(folder)):
            codes = _code_files(codec_model, folder, files, kbps, offline, device, console)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    cache.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(cache, lambda tmp: np.savez(tmp, source=np.array(source),
                                                 **{f"c{i}": c for i, c in enumerate(codes)}))
    return codes


_SOURCE = re.compile(r"[0-9a-f]{64} [0-9a-f]{64}")   # what _codes_source gives


def read_codes_cache(cache: Path) -> tuple[str, list[np.ndarray]] | None:
    """The source (``_codes_source``) and codes of a cache that ``code_folder`` wrote, or None if
    there is no file at ``cache``.

    Raises:
        CodecError: naming ``cache`` if a file (or folder) is there that ``code_folder`` did not
            write: it is never read as codes (no pickled objects are loaded) nor overwritten.
    """
    if not os.path.lexists(cache):
        return None
    problem = "not a file" if not cache.is_file() else None
    if problem is None:
        try:
            with open(cache, "rb") as file:
                if file.read(4) != b"PK\x03\x04":   # (np.load would try what is not a zip archive as a pickle)
                    problem = "not an .npz archive"
        except OSError as error:
            problem = f"cannot be read: {error.strerror or error}"
    if problem is None:
        try:
            with np.load(cache, allow_pickle=False) as stored:
                names = sorted(stored.files)
                # (runs before 2026-12-04 wrote no source: their codes are coded again, as another codec's)
                source = stored["source"] if "source" in names else np.array("")
                codes = [stored[f"c{i}"] for i in range(len(names) - ("source" in names))]
                if not (sorted({*names, "source"}) == sorted(["source", *(f"c{i}" for i in range(len(codes)))])
                        and source.dtype.kind == "U" and source.shape == ()
                        and (_SOURCE.fullmatch(str(source)) or ("source" not in names and codes))
                        and all(c.dtype == np.int16 and c.ndim == 2 for c in codes)):
                    problem = "other arrays"
        except KeyError:
            problem = "other arrays"
        except Exception as error:   # pickled objects, a damaged archive: any foreign file
            problem = "pickled objects, which are not loaded" if "pickle" in str(error) else "not an .npz archive"
    if problem:
        raise CodecError(f"{cache}: not a cache of codes that entropy training wrote ({problem}); a run keeps the "
                         f"codes of its audio in this file, and does not replace one of yours: move it away, or "
                         f"set another run.out_dir")
    return str(source), codes


# how the audio becomes codes; a new one codes cached folders again (2: the GPU path high-passes, levels and
# fills the band as codec encode does, at the top bitrate's codebooks; its earlier caches hold other codes)
_CODING_VERSION = 2


def _codes_source(weights_sha256: str, files: list[Path]) -> str:
    """What the cached codes of a folder (or manifest) depend on: the codec's weights, how audio
    is coded (``_CODING_VERSION``), and each file's path and size."""
    listing = "\n".join([f"coding {_CODING_VERSION}", *(f"{path.resolve()}\t{path.stat().st_size}" for path in files)])
    return f"{weights_sha256} {hashlib.sha256(listing.encode()).hexdigest()}"


def _code_files(codec_model, folder: Path, files: list[Path], kbps: float, offline: bool, device: torch.device,
                console: Console) -> list[np.ndarray]:
    """Codes ``[24, F]`` (int16) of each of ``folder``'s ``files``: offline, or through ``encode_audio``.

    Raises:
        CodecError: naming ``folder`` if none of its files can be read.
    """
    from codec.audio import load_audio
    from codec.coding import encode_audio, model_input

    codes, start, unreadable = [], time.monotonic(), []
    num_codebooks = codec_model.codebooks_for_bitrate(kbps)   # (the low_* models: 12 of their 24)
    for number, path in enumerate(files, 1):
        try:
            audio, rate = load_audio(path)
        except CodecError as error:   # one bad file among thousands does not stop a run (as in codec training)
            unreadable.append(str(error))
            continue
        if not len(audio):   # (no frame to code: the network's encode refuses it)
            unreadable.append(f"{path}: holds no samples")
            continue
        if offline:
            wav = model_input(codec_model, audio.mean(axis=1, keepdims=True), rate)[:, 0].astype(np.float32)
            wav = np.pad(wav, (0, -len(wav) % codec_model.frame_size))  # whole frames, as encode_audio pads
            with torch.no_grad():
                item = codec_model.encode(torch.from_numpy(wav)[None, None].to(device), num_codebooks)[0].cpu().numpy()
        else:
            item = encode_audio(codec_model, audio.mean(axis=1, keepdims=True), rate, kbps).codes[0]
        codes.append(item.astype(np.int16))
        if number % 200 == 0:
            console.print(f"coded {number}/{len(files)} files ({time.monotonic() - start:.0f} s)")
    if unreadable and not codes:
        raise CodecError(f"{folder}: none of its {len(files)} audio files can be read; first: {unreadable[0]}")
    if unreadable:
        console.print(f"warning: {len(unreadable)} file(s) cannot be read and are left out, first: {unreadable[0]}",
                      highlight=False)
    return codes


@torch.no_grad()
def held_out_bits(model: EntropyModel, codes: list[np.ndarray], num_codebooks: int = 12) -> float:
    """Mean bits per code over whole held-out files (each in windows of the model's context)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    window = model.config.context_frames
    device = next(model.parameters()).device
    for item in codes:
        for start in range(0, item.shape[-1], window):
            piece = torch.from_numpy(item[None, :num_codebooks, start:start + window].astype(np.int64)).to(device)
            total += float(model.bits(piece)) * piece.numel()
            count += piece.numel()
    model.train(was_training)
    return total / max(count, 1)


def train_entropy(recipe: EntropyRecipe, resume: bool = False, console: Console | None = None) -> Path:
    """Train an entropy model; returns the run directory.

    Raises:
        CodecError: for a checkpoint conflict (as ``codec.train.train``), unusable data, a
            ``run.device`` that is not there, or a ``run.init_from`` without an entropy model of
            the recipe's configuration, or another run using ``run.out_dir``.
        TrainingStopped: after Ctrl-C (SIGINT) or SIGTERM, which stop the run after the step in
            progress, with a checkpoint and model saved.
    """
    with run_folder_lock(Path(recipe.run.out_dir)):
        return _train_entropy(recipe, resume, console)


def _train_entropy(recipe: EntropyRecipe, resume: bool, console: Console | None) -> Path:
    console = console or Console(stderr=True)
    run = recipe.run
    out_dir = Path(run.out_dir)
    checkpoint_path = out_dir / CHECKPOINT_FILE
    saved_state = _check_run_dir(checkpoint_path, resume, recipe)
    if run.threads:
        torch.set_num_threads(run.threads)
    torch.manual_seed(run.seed)
    try:
        device = distributed.device_for(run.device)
    except RuntimeError as error:
        raise CodecError(str(error)) from None
    initial = _initial_weights(run.init_from, recipe.entropy) if run.init_from and not resume else None

    def new_model() -> tuple[EntropyModel, torch.optim.Optimizer]:
        model = EntropyModel(recipe.entropy).to(device)
        return model, torch.optim.AdamW(model.parameters(), lr=recipe.optim.lr, betas=tuple(recipe.optim.betas),
                                        weight_decay=recipe.optim.weight_decay)

    step, previous_seconds = 0, 0.0
    if resume:   # before the audio is coded (minutes for a large set): a checkpoint that does not fit fails now
        model, optimizer = new_model()
        state = restore_checkpoint(checkpoint_path, model, optimizer, recipe, saved_state)
        step, previous_seconds = state["step"], state.get("train_seconds", 0.0)
        _check_resumed_recipe(state, recipe, checkpoint_path, console)
        if step >= run.max_steps:   # as the codec trainer: the checkpoint, model and log stay as they are
            console.print(f"the run is at step {step}, and run.max_steps={run.max_steps}: nothing to train; "
                          f"raise run.max_steps to go on")
            return out_dir / "model"
    if recipe.data.dev_dir:   # a wrong one fails now, not after the training set is coded
        from codec.train.data import find_audio_files

        with data_named_by("data.dev_dir", recipe.data.dev_dir):
            find_audio_files(Path(recipe.data.dev_dir))
    crops = CodeCrops([c.astype(np.int64) for c in code_folder(recipe, Path(recipe.data.train_dir),
                                                               out_dir / "codes.npz", console, device)],
                      recipe.data.segment_frames, run.seed)
    if not crops.codes:   # each file needs two frames: one to predict from, one to predict
        raise CodecError(f"data.train_dir={recipe.data.train_dir}: no file is longer than one code frame "
                         f"(the entropy model learns from files of two frames or more)")
    dev = code_folder(recipe, Path(recipe.data.dev_dir), out_dir / "dev_codes.npz", console, device,
                      key="data.dev_dir") \
        if recipe.data.dev_dir else None
    if resume:
        restore_data_rng(crops, state)
        torch.set_rng_state(state["torch_rng"])   # (as the checkpoint left it: loading the codec drew from it)
        _drop_unsaved_log_lines(out_dir, step)
    else:
        model, optimizer = new_model()
        if initial is not None:
            model.load_state_dict(initial.state_dict())
            console.print(f"init_from {run.init_from}: starting from its entropy model")
        _set_aside_earlier_log(out_dir, console)
    print_recipe_notes(recipe, console)
    write_run_recipe(out_dir, recipe_values(recipe), from_recipe(recipe), console)
    console.print(f"training {recipe.entropy.name}{from_recipe(recipe)}: "
                  f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M "
                  f"parameters, {int(crops.lengths.sum())} frames of codes, step {step}")
    start = last_log = last_checkpoint = time.monotonic()
    deadline = start + 60 * run.max_minutes if run.max_minutes else math.inf
    total, count = 0.0, 0
    model.train()
    streak = 0   # non-finite steps in a row

    def log_record(now: float) -> None:
        """The mean bits per code since the last record, and the rate, to train.log and the console."""
        nonlocal total, count, last_log
        record = {"step": step, "bits_per_code": round(total / count, 4),
                  "steps_per_s": round(count / (now - last_log), 3),  # count: steps since the last log
                  "total_min": round((previous_seconds + now - start) / 60, 2)}
        with open(out_dir / "train.log", "a") as log:
            log.write(json.dumps(record) + "\n")
        console.print(" ".join(f"{k}={v}" for k, v in record.items()), highlight=False)
        total, count, last_log = 0.0, 0, now

    with stop_after_step(console, checkpoint_path) as stop_requested:   # (to the end: a lost reader never stops a save)
        while step < run.max_steps and time.monotonic() < deadline and not stop_requested:
            for group in optimizer.param_groups:
                group["lr"] = _learning_rate(recipe, step)
            num_codebooks = int(crops.rng.choice(recipe.data.codebook_choices))
            loss = model.bits(crops.batch(run.batch_size, num_codebooks).to(device))
            optimizer.zero_grad(set_to_none=True)
            if not torch.isfinite(loss):
                streak += 1
                if streak >= MAX_NON_FINITE_IN_A_ROW:   # diverged: the last checkpoint is kept as it is
                    raise CodecError(f"training diverged at step {step}: {streak} steps in a row gave a non-finite "
                                     f"loss; lower optim.lr or raise optim.warmup_steps, then resume or start again")
                continue
            streak = 0
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.optim.grad_clip)
            optimizer.step()
            step += 1
            total, count = total + float(loss.detach()), count + 1
            now = time.monotonic()
            if step % run.log_every == 0:
                log_record(now)
            if now - last_checkpoint > 60 * run.checkpoint_minutes:
                with saving(out_dir / "model"):
                    _save_checkpoint(checkpoint_path, model, optimizer, step, previous_seconds + now - start,
                                     recipe, crops)
                    save_entropy_model(model, out_dir / "model")
                _log_held_out(out_dir, console, model, dev, step)
                last_checkpoint = now
        if count:   # the steps since the last record (a run shorter than run.log_every)
            log_record(time.monotonic())
        elapsed = previous_seconds + time.monotonic() - start
        with saving(out_dir / "model"):
            _save_checkpoint(checkpoint_path, model, optimizer, step, elapsed, recipe, crops)
            save_entropy_model(model, out_dir / "model")
        _log_held_out(out_dir, console, model, dev, step)
        if stop_requested:
            console.print(f"stopped by {signal_name(stop_requested[0])} after the step in progress; "
                          "continue with --resume")
        how = ended_at(step, run.max_steps, time.monotonic() >= deadline, bool(stop_requested))
        console.print(f"{how}; {how_to_use(recipe, out_dir / 'model')}", highlight=False)
    if stop_requested:
        raise TrainingStopped(stop_requested[0], str(checkpoint_path))
    return out_dir


def how_to_use(recipe: EntropyRecipe, model_dir: Path) -> str:
    """Where a run's entropy model is, and how a codec gets it: ``codec.models.load_model`` loads
    the entropy model whose two files lie beside the codec's ``config.json``."""
    from codec.models.loading import resolve_model_dir, shipped_models_dir

    try:
        folder = resolve_model_dir(recipe.data.codec_model)
    except CodecError:   # (moved away during the run)
        folder = None
    if folder is not None and folder.resolve().parent == shipped_models_dir().resolve():
        # a shipped model's folder is every user's: its entropy model (or none) is part of its files
        where = (f"into a copy of the codec's model folder ({folder}, data.codec_model; e.g. cp -r {folder} "
                 f"my-{folder.name}), beside its config.json")
    else:
        codec_dir = f"{folder} (data.codec_model)" if folder else f"data.codec_model={recipe.data.codec_model}"
        where = f"beside config.json in the codec's model folder, {codec_dir}, or in a copy of that folder"
    return (f"entropy model in {model_dir} ({ENTROPY_WEIGHTS}, {ENTROPY_CONFIG}): to range-code with it, copy "
            f"both files {where}, and give that folder to codec encode --model")


def _initial_weights(source: str, config: EntropyModelConfig) -> EntropyModel:
    """The entropy model of ``source`` (``run.init_from``: a run's ``model/`` folder, or a codec's
    name or folder with one beside its weights), to continue training from. Its 8-bit matrices
    start the float training again.

    Raises:
        CodecError: if there is none, or its configuration differs from the recipe's.
    """
    from codec.models.loading import resolve_model_dir

    with model_named_by("run.init_from"):
        directory = Path(source) if Path(source).is_dir() else resolve_model_dir(source)
    initial = load_entropy_model(directory)
    if initial is None:
        raise CodecError(f"run.init_from={directory}: no entropy model ({ENTROPY_WEIGHTS}) there")
    if initial.config != config:
        raise CodecError(f"run.init_from={directory}: its configuration differs from the recipe's entropy section")
    return initial


def _log_held_out(out_dir: Path, console: Console, model: EntropyModel, dev: list | None, step: int) -> None:
    if not dev:
        return
    record = {"step": step, "dev_bits_per_code_12": round(held_out_bits(model, dev), 4)}
    with open(out_dir / "train.log", "a") as log:
        log.write(json.dumps(record) + "\n")
    console.print(" ".join(f"{k}={v}" for k, v in record.items()), highlight=False)
