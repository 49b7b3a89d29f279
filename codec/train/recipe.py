"""Training recipes: YAML files read top to bottom, a base plus small overlays.

A recipe may name another with ``inherit: other.yaml`` (relative to itself); its own keys are
merged over the inherited ones, section by section. The resolved recipe is a typed ``Recipe``
that round-trips to a plain dict, stored in every checkpoint.
"""

import contextlib
import dataclasses
import itertools
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from codec.bitstream import MAX_CODEBOOK_SIZE
from codec.errors import CodecError, ModelNotFoundError, nearest_name
from codec.models.conv_codec import ConvCodecConfig
from codec.models.esc_codec import EscCodecConfig
from codec.models.loading import is_plain_name, shipped_folder
from codec.models.registry import ARCHITECTURES, config_class
from codec.quantization.vq import GRADIENTS
from codec.threads import usable_cores
from codec.train.losses import check_phase_terms

SPEED_LIMITS = (0.5, 2.0)   # speed perturbation factors beyond these make speech no voice has
MAX_FILTER_GAIN_DB = 24.0   # the random EQ's and shelves' largest boost or cut


MAX_SEGMENT_SECONDS = 30.0
# Audio in one training batch (run.batch_size x data.segment_seconds): 1000 s filled 22 GB and was
# killed; the GPU recipes use 64 x 1 s.
MAX_BATCH_SECONDS = 600.0


@dataclass
class DataConfig:
    train_dir: str = "../shared/data/speech/train"   # a folder or a manifest (.tsv, .jsonl, wav.scp)
    segment_seconds: float = 0.8
    level_db: list[float] = field(default_factory=lambda: [-35.0, -15.0])   # RMS level of each crop, dBFS
    noise_dir: str | None = None          # a folder or manifest of noise to mix in
    noise_probability: float = 0.0
    noise_snr_db: list[float] = field(default_factory=lambda: [5.0, 30.0])
    eq_probability: float = 0.0           # chance of a random peaking EQ of up to ±eq_gain_db
    eq_gain_db: float = 6.0
    shelf_probability: float = 0.0        # chance of random low and high shelves of up to ±shelf_gain_db
    shelf_gain_db: float = 8.0
    speed_probability: float = 0.0        # chance of playing a crop faster or slower (pitch and tempo)
    speed_range: list[float] = field(default_factory=lambda: [0.9, 1.1])   # speed factors drawn from
    tone_probability: float = 0.0         # chance of synthetic tones over a crop (or, 70% of those, instead of it)
    tone_level_db: list[float] = field(default_factory=lambda: [-20.0, 10.0])   # the tones' RMS against the crop's

    def __post_init__(self):
        _check_range(self, "data", ("noise_probability", "eq_probability", "shelf_probability",
                                    "speed_probability", "tone_probability"), 0.0, 1.0)
        _check_not_negative(self, "data", ("eq_gain_db", "shelf_gain_db"))
        for name in ("eq_gain_db", "shelf_gain_db"):
            if getattr(self, name) > MAX_FILTER_GAIN_DB:
                raise CodecError(f"recipe value data.{name}={getattr(self, name)} must be at most "
                                 f"{MAX_FILTER_GAIN_DB:g} dB (more is no microphone's colouring)")
        _check_low_high(self, "data", "speed_range", f"with {SPEED_LIMITS[0]} <= low <= high <= {SPEED_LIMITS[1]}",
                        SPEED_LIMITS)
        _check_positive(self, "data", ("segment_seconds",))
        if self.segment_seconds > MAX_SEGMENT_SECONDS:   # (a batch of 1000 s crops filled 22 GB and was killed)
            raise CodecError(f"recipe value data.segment_seconds={self.segment_seconds} must be at most "
                             f"{MAX_SEGMENT_SECONDS:g} s (training crops are a few seconds)")
        for name in ("level_db", "noise_snr_db", "tone_level_db"):
            _check_low_high(self, "data", name, "in dB, low <= high")
        expand_paths(self, "data", ("train_dir", "noise_dir"), optional=("noise_dir",))
        if self.noise_probability > 0 and not self.noise_dir:
            raise CodecError(f"recipe value data.noise_probability={self.noise_probability} mixes in noise, but "
                             f"data.noise_dir is not set: give a folder or manifest of noise")
        if self.noise_dir and self.noise_probability == 0:   # (the noise would be read, and never used)
            raise CodecError(f"recipe value data.noise_dir={self.noise_dir} gives noise, but data.noise_probability "
                             f"is 0, which mixes in none: set data.noise_probability (such as 0.5), or leave "
                             f"data.noise_dir out")


@dataclass
class OptimConfig:
    lr: float = 8e-4
    betas: list[float] = field(default_factory=lambda: [0.8, 0.99])
    weight_decay: float = 0.01
    warmup_steps: int = 500
    lr_decay: float = 1.0            # multiplied into the learning rate every step after decay_start
    decay_start: int = 0             # step at which the exponential decay begins (after warmup)
    grad_clip: float = 5.0
    # model parts kept as they are, top-level or dotted (e.g. [stft, encoder, quantizer] to fine-tune
    # only the decoder: the codes, and so an entropy model trained on them, stay valid)
    freeze: list[str] = field(default_factory=list)
    # exponential moving average of the weights (Polyak & Juditsky 1992), updated every step with
    # this decay; 0 = off. When on, the exported model (run.out_dir/model) is the average.
    ema_decay: float = 0.0

    def __post_init__(self):
        _check_positive(self, "optim", ("lr", "grad_clip"))
        _check_not_negative(self, "optim", ("weight_decay", "warmup_steps", "decay_start"))
        _check_range(self, "optim", ("lr_decay",), 0.0, 1.0, low_open=True)
        if not 0 <= self.ema_decay < 1:
            raise CodecError(f"recipe value optim.ema_decay={self.ema_decay} must be in [0, 1) (0 = no average)")
        _check_betas(self.betas, "optim")


RECONSTRUCTION_LOSSES = ("mel", "stft", "complex", "phase", "pesq", "stoi")  # each weighed by a `<name>_weight` key


def _check_betas(betas: list[float], section: str) -> None:
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise CodecError(f"recipe value {section}.betas={betas} must be two numbers in [0, 1) (Adam's)")


def reconstruction_weights(config) -> dict[str, float]:
    """``{loss name: weight}`` for the reconstruction losses, from a LossConfig or GanConfig."""
    return {name: getattr(config, f"{name}_weight") for name in RECONSTRUCTION_LOSSES}


def _check_not_negative(config, section: str, names: tuple[str, ...]) -> None:
    for name in names:
        if not math.isfinite(getattr(config, name)) or getattr(config, name) < 0:
            raise CodecError(f"recipe value {section}.{name}={getattr(config, name)} must be a number >= 0")


def _check_low_high(config, section: str, name: str, rule: str,
                    limits: tuple[float, float] = (-math.inf, math.inf)) -> None:
    """A ``[low, high]`` pair of finite numbers, low <= high, both within ``limits``."""
    pair = getattr(config, name)
    if len(pair) != 2 or not all(map(math.isfinite, pair)) or not limits[0] <= pair[0] <= pair[1] <= limits[1]:
        raise CodecError(f"recipe value {section}.{name}={pair} must be [low, high] {rule}")


def _check_positive(config, section: str, names: tuple[str, ...]) -> None:
    for name in names:
        if not math.isfinite(getattr(config, name)) or getattr(config, name) <= 0:
            raise CodecError(f"recipe value {section}.{name}={getattr(config, name)} must be a finite number > 0")


def _check_range(config, section: str, names: tuple[str, ...], low: float, high: float,
                 low_open: bool = False) -> None:
    for name in names:
        value = getattr(config, name)
        if not (low < value <= high if low_open else low <= value <= high):
            raise CodecError(f"recipe value {section}.{name}={value} must be in {'(' if low_open else '['}"
                             f"{low:g}, {high:g}]")


@dataclass
class LossConfig:
    mel_weight: float = 15.0
    stft_weight: float = 1.0
    commitment_weight: float = 0.25
    codebook_weight: float = 1.0
    # share of each quantizer's input energy its active codebooks leave uncoded, in the latent's own
    # space (QuantizedResult.latent_loss; off at weight 0): factorized lookups otherwise never ask
    # the sum of the codebooks' outputs to approach the latent, so residuals need not shrink
    latent_weight: float = 0.0
    consistency_weight: float = 1.0   # TiCodec's global-code consistency (models with a global code)
    quantizer_warmup_steps: int = 0   # first steps without quantization (ESC codec), then codebooks start from data
    mel_windows: list[int] = field(default_factory=lambda: [64, 128, 256, 512, 1024, 2048])
    mel_bins: list[int] = field(default_factory=lambda: [8, 16, 32, 64, 128, 128])
    stft_windows: list[int] = field(default_factory=lambda: [256, 512, 1024])
    # phase-aware compressed complex STFT loss (off at weight 0); items coded with fewer than
    # complex_min_codebooks codebooks skip it: too few bits to carry the phase
    complex_weight: float = 0.0
    complex_windows: list[int] = field(default_factory=lambda: [512])
    complex_power: float = 0.3
    complex_share: float = 0.3
    complex_min_codebooks: int = 0
    # loss on the phase and its derivatives (codec/train/losses.py PhaseDerivativeLoss; off at
    # weight 0): terms from phase, group_delay, frequency; bins weigh |Y|^phase_power
    phase_weight: float = 0.0
    phase_windows: list[int] = field(default_factory=lambda: [640])
    phase_terms: list[str] = field(default_factory=lambda: ["group_delay", "frequency"])
    phase_power: float = 1.0
    # PESQ's perceptual disturbance (codec/train/pesq_loss.py PesqDisturbanceLoss; off at weight 0)
    pesq_weight: float = 0.0
    # STOI's envelope correlation, as 1 - d (codec/train/stoi_loss.py StoiLoss; off at weight 0)
    stoi_weight: float = 0.0
    # quantizer dropout: each item trains with one of these codebook counts
    codebook_choices: list[int] = field(default_factory=lambda: [3, 6, 12, 24])
    codebook_probs: list[float] = field(default_factory=lambda: [0.2, 0.25, 0.3, 0.25])
    # how the decoder's gradient crosses each codebook lookup to the encoder: "straight_through"
    # (copied) or "rotation" (the rotation trick; codec/quantization/vq.py)
    vq_gradient: str = "straight_through"

    WINDOW_LISTS = ("mel_windows", "stft_windows", "complex_windows", "phase_windows")

    def __post_init__(self):
        _check_not_negative(self, "loss", ("mel_weight", "stft_weight", "commitment_weight", "codebook_weight",
                                           "consistency_weight", "complex_weight", "phase_weight", "pesq_weight",
                                           "stoi_weight", "latent_weight",
                                           "complex_power", "phase_power"))
        for name in self.WINDOW_LISTS:
            windows = getattr(self, name)
            if not windows or min(windows) < 4:
                raise CodecError(f"recipe value loss.{name}={windows} must list one or more STFT window "
                                 f"lengths of at least 4 samples")
        if len(self.mel_bins) != len(self.mel_windows) or min(self.mel_bins) < 1:
            raise CodecError(f"recipe values loss.mel_bins={self.mel_bins} and loss.mel_windows="
                             f"{self.mel_windows} must be lists of the same length, of mel bands >= 1")
        try:
            check_phase_terms(self.phase_terms)
        except ValueError as error:
            raise CodecError(f"recipe value loss.phase_terms={self.phase_terms}: {error}") from None
        _check_not_negative(self, "loss", ("quantizer_warmup_steps", "complex_min_codebooks"))
        if not self.codebook_choices or min(self.codebook_choices) < 1 \
                or len(self.codebook_probs) != len(self.codebook_choices):
            raise CodecError(f"recipe values loss.codebook_choices={self.codebook_choices} and loss.codebook_probs="
                             f"{self.codebook_probs} must be lists of the same length, of codebook counts >= 1")
        if min(self.codebook_probs) < 0 or not math.isfinite(sum(self.codebook_probs)) or sum(self.codebook_probs) <= 0:
            raise CodecError(f"recipe value loss.codebook_probs={self.codebook_probs} must be weights >= 0, "
                             f"not all 0")
        if self.vq_gradient not in GRADIENTS:
            raise CodecError(f"recipe value loss.vq_gradient={self.vq_gradient!r} is not supported: use one of "
                             f"{', '.join(GRADIENTS)}")

    def windows_in_use(self) -> dict[str, list[int]]:
        """The STFT window lists of the losses that training computes, by recipe key: the mel and
        STFT losses always (they are logged at weight 0 too), the complex and phase losses above 0."""
        off = {"complex_windows": self.complex_weight == 0, "phase_windows": self.phase_weight == 0}
        return {name: getattr(self, name) for name in self.WINDOW_LISTS if not off.get(name)}


@dataclass
class GanConfig:
    """The adversarial fine-tuning stage (off by default: start it from a reconstruction-trained model)."""

    enabled: bool = False
    periods: list[int] = field(default_factory=lambda: [2, 3, 5, 7, 11])
    stft_windows: list[int] = field(default_factory=lambda: [1024, 512, 256])
    channels: int = 16
    lr: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.5, 0.9])
    balancer: bool = True             # weights below are shares of the gradient (EnCodec's balancer)
    mel_weight: float = 2.0
    stft_weight: float = 0.5
    adversarial_weight: float = 1.0
    feature_weight: float = 2.0
    complex_weight: float = 1.0       # used only when loss.complex_weight > 0
    phase_weight: float = 1.0         # used only when loss.phase_weight > 0
    pesq_weight: float = 1.0          # used only when loss.pesq_weight > 0
    stoi_weight: float = 1.0          # used only when loss.stoi_weight > 0
    # the stage's first steps train only the discriminators (the codec keeps its reconstruction
    # losses): a codec that follows an untrained critic loses what it had learnt
    discriminator_warmup_steps: int = 0

    def __post_init__(self):
        # a negative share would push the balancer against its loss
        _check_not_negative(self, "gan", ("mel_weight", "stft_weight", "adversarial_weight", "feature_weight",
                                          "complex_weight", "phase_weight", "pesq_weight", "stoi_weight",
                                          "discriminator_warmup_steps"))
        _check_positive(self, "gan", ("lr", "channels"))
        _check_betas(self.betas, "gan")
        if not self.periods or min(self.periods) < 1:
            raise CodecError(f"recipe value gan.periods={self.periods} must list one or more periods >= 1 (samples)")
        if not self.stft_windows or min(self.stft_windows) < 4:
            raise CodecError(f"recipe value gan.stft_windows={self.stft_windows} must list one or more STFT window "
                             f"lengths of at least 4 samples")


@dataclass
class RunConfig:
    out_dir: str = "runs/conv-16k"
    batch_size: int = 16
    max_steps: int = 1_000_000
    max_minutes: float | None = None
    log_every: int = 50
    checkpoint_minutes: float = 5.0
    seed: int = 0
    threads: int | None = None
    init_from: str | None = None     # start a new run from these weights (a model directory or name)
    init_fresh: list[str] = field(default_factory=list)  # parts that start from scratch instead (e.g. [head])
    tensorboard: bool = True         # scalars, audio, spectrograms, codebook usage in out_dir/tensorboard
    audio_every: int = 1000          # steps between audio and spectrogram summaries
    device: str = "auto"             # auto (CUDA when available), cpu, cuda
    precision: str = "fp32"          # fp32, or bf16 (autocast of the forward pass and losses)
    compile: bool = False            # torch.compile the model (on GPU)

    def __post_init__(self):
        for name, least in (("max_steps", 0), ("batch_size", 1), ("log_every", 1), ("audio_every", 1)):
            if getattr(self, name) < least:
                raise CodecError(f"recipe value run.{name}={getattr(self, name)} must be at least {least}")
        expand_paths(self, "run", ("out_dir", "init_from"), optional=("init_from",))
        timed = ("checkpoint_minutes",) if self.max_minutes is None else ("checkpoint_minutes", "max_minutes")
        _check_positive(self, "run", timed)
        if self.threads is not None and not 1 <= self.threads <= usable_cores():   # (more only compete for them)
            raise CodecError(f"recipe value run.threads={self.threads} must be 1 to {usable_cores()}, the CPU cores "
                             f"this process may use (or null: PyTorch's default)")
        if self.seed < 0:
            raise CodecError(f"recipe value run.seed={self.seed} must be at least 0")
        if self.device not in ("auto", "cpu", "cuda"):
            raise CodecError(f"recipe value run.device={self.device!r} is not supported; choose auto, cpu or cuda")
        if self.precision not in ("fp32", "bf16"):
            raise CodecError(f"recipe value run.precision={self.precision!r} is not supported; choose fp32 or bf16")


@dataclass
class Recipe:
    model: ConvCodecConfig | EscCodecConfig = field(default_factory=ConvCodecConfig)  # by model.architecture
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    gan: GanConfig = field(default_factory=GanConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Recipe":
        sections = {f.name: f.default_factory for f in dataclasses.fields(cls)}
        check_sections(values, list(sections), "a codec recipe")
        built = {}
        for name, section_cls in sections.items():
            section_values = values.get(name) or {}
            if not isinstance(section_values, dict):
                raise CodecError(f"recipe section '{name}' must be a mapping of keys to values, got {section_values!r}"
                                 f"{_section_hint(name)}")
            extra = ()
            if name == "model":
                section_cls, section_values = _model_class(section_values)
                extra = ("architecture",) if "architecture" not in {f.name for f in dataclasses.fields(section_cls)} \
                    else ()
            check_section_keys(name, section_values, section_cls, extra, _codec_recipe_sections())
            built[name] = section_cls(**_coerce(section_cls, section_values, f"{name}."))
        _check_model(built["model"], built["loss"])
        batch_seconds = built["run"].batch_size * built["data"].segment_seconds
        if batch_seconds > MAX_BATCH_SECONDS:
            raise CodecError(f"recipe values run.batch_size={built['run'].batch_size} and data.segment_seconds="
                             f"{built['data'].segment_seconds:g} make {batch_seconds:g} s of audio a step; at most "
                             f"{MAX_BATCH_SECONDS:g} s fits in memory (the GPU recipes use 64 x 1 s)")
        return cls(**built)


def _model_class(values: dict) -> tuple[type, dict]:
    """The config class ``model.architecture`` names, and the section's values for it (the conv
    codec's config has no ``architecture`` key: ``architecture: conv`` is its default, left out).

    Raises:
        CodecError: naming the recipe value and the architectures there are.
    """
    architecture = values.get("architecture", "conv")
    if not isinstance(architecture, str) or architecture not in ARCHITECTURES:
        raise CodecError(f"recipe value model.architecture={architecture!r} is not a codec architecture; choose "
                         f"{' or '.join(ARCHITECTURES)}")
    section_cls = config_class(values)
    own = {f.name for f in dataclasses.fields(section_cls)}
    unknown = [key for key in values if key not in own | {"architecture"}]
    theirs = [key for cls, _ in ARCHITECTURES.values() if cls is not section_cls
              for key in unknown if key in {f.name for f in dataclasses.fields(cls)}]
    # a recipe of one architecture switched to another (one or two stray keys get the plain error)
    if len(unknown) >= 3 and sorted(set(theirs)) == sorted(unknown):
        keys = [f"model.{key}" for key in unknown]
        if "architecture" not in values:   # (conv by default: the recipe left its architecture out)
            other = next(name for name in ARCHITECTURES if name != architecture)
            raise RecipeKeysError(f"the recipe's model section holds keys of the {other} architecture "
                                  f"({', '.join(keys)}) but no model.architecture, which is {architecture} by "
                                  f"default; add 'architecture: {other}' to it", keys)
        raise RecipeKeysError(f"recipe value model.architecture={architecture!r} does not fit this recipe's model "
                              f"section, which holds another architecture's keys ({', '.join(keys)}); train "
                              f"{ARCHITECTURE_EXAMPLES[architecture]}", ["model.architecture", *keys])
    if "architecture" not in own:
        values = {key: value for key, value in values.items() if key != "architecture"}
    return section_cls, values


# a shipped recipe of each architecture, to start from instead of switching one recipe's architecture
ARCHITECTURE_EXAMPLES = {"conv": "a conv recipe instead (inherit: conv_16k, or tiny for a quick test)",
                         "esc": "an ESC recipe instead (inherit: esc_16k_small, or esc_16k)"}


def check_sections(values: dict, sections: list[str], kind: str) -> None:
    """Raises CodecError for a section that ``kind`` of recipe does not have, with the one meant
    (a near spelling) and the sections it has."""
    unknown = [name for name in values if name not in sections]
    if unknown:
        hint = _did_you_mean(unknown[0], sections) or _section_hint(unknown[0], sections)
        raise UnknownKeyError(f"unknown recipe section '{unknown[0]}'{hint}; {kind} "
                              f"has the sections {', '.join(sections)}", [str(unknown[0])])


def check_section_keys(section: str, values: dict, section_cls, extra: tuple[str, ...] = (),
                       sections: list[tuple[str, type]] = (), unused: frozenset[str] = frozenset()) -> None:
    """Raises CodecError for the keys of ``values`` that recipe section ``section`` (a
    ``section_cls``, which also takes ``extra``) does not have, each with the key meant (the same
    key in another of the recipe's ``sections``, as ``(name, config class)`` pairs, or a near
    spelling), and the keys it has (less ``unused``, ``section.key`` names this kind of recipe
    has no use for)."""
    known = [f.name for f in dataclasses.fields(section_cls)] + list(extra)
    unknown = [key for key in values if key not in known]
    if unknown:
        known = [key for key in known if f"{section}.{key}" not in unused]
        others = [(name, cls) for name, cls in sections if name != section]
        hints = [KEY_HINTS.get(f"{section}.{key}") or _elsewhere(key, others)
                 or _did_you_mean(key, known, f"{section}.") for key in unknown]
        names = ", ".join(f"{section}.{key}{hint}" for key, hint in zip(unknown, hints, strict=True))
        raise UnknownKeyError(f"unknown key{'s' if len(unknown) > 1 else ''} in recipe section '{section}': {names}; "
                              f"its keys are {', '.join(known)}", [f"{section}.{key}" for key in unknown])


# keys a user may expect where they are not, with what to do instead
KEY_HINTS = {"data.dev_dir": " (an entropy-model recipe's key: codec training holds no files out; score the trained "
                             "model on files of your own with codec eval -m RUN/model FOLDER)"}


class RecipeKeysError(CodecError):
    """An error about the recipe sections or keys in ``keys`` (``section`` or ``section.key``),
    which ``RecipeOrigins.locate`` names the places of (the message may name others too)."""

    def __init__(self, message: str, keys: list[str]):
        super().__init__(message)
        self.keys = keys


class UnknownKeyError(RecipeKeysError):
    """A recipe section or key that is not there; ``keys``: the ones given, as the message also
    names keys that are there."""


def _codec_recipe_sections() -> list[tuple[str, type]]:
    """A codec recipe's sections as ``(name, config class)``; ``model`` once per architecture."""
    classes = [(f.name, f.default_factory) for f in dataclasses.fields(Recipe) if f.name != "model"]
    return classes + [("model", ConvCodecConfig), ("model", EscCodecConfig)]


def _recipe_sections(values: dict) -> list[tuple[str, type]]:
    """The sections of the kind of recipe ``values`` holds (an entropy recipe has an ``entropy``
    section), as ``(name, config class)``."""
    if "entropy" not in values:
        return _codec_recipe_sections()
    from codec.train.entropy_trainer import EntropyRecipe

    return EntropyRecipe.sections()


def _home_section(key, sections: list[tuple[str, type]]) -> str | None:
    """The first of ``sections`` (``(name, config class)`` pairs) that has the key ``key``."""
    return next((name for name, cls in sections if key in {f.name for f in dataclasses.fields(cls)}), None)


def _elsewhere(key, sections: list[tuple[str, type]]) -> str:
    """For a key given in the wrong section (``run.lr``): the key of that name in another of
    ``sections``, as a question (``model.channels`` may mean a width, not ``gan.channels``), or ""."""
    home = _home_section(key, sections)
    return f" (did you mean {home}.{key}?)" if home else ""


def _section_hint(key, sections: list[str] | None = None) -> str:
    """For a codec recipe's key written at the top level, where a section was expected: the
    section it belongs to (if one of ``sections``), as a hint for the error, or ""."""
    home = _home_section(key, _codec_recipe_sections())
    if home is None or (sections is not None and home not in sections):
        return ""
    return f" (did you mean {home}.{key}? put it under its section: '{home}:', then '  {key}: ...')"


def _did_you_mean(name, known: list[str], prefix: str = "") -> str:
    near = nearest_name(str(name), known)
    return f" (did you mean {prefix}{near}?)" if near else ""


# Whole-number sizes that may be 0 (a feature left out, a stage without blocks); every other one in
# a model or entropy-model section is at least 1.
COUNTS_THAT_MAY_BE_ZERO = frozenset({
    "masked_quantizers", "global_groups", "encoder_analysis_blocks", "encoder_code_rate_blocks",
    "decoder_code_rate_blocks", "decoder_analysis_blocks", "encoder_blocks", "decoder_blocks"})
MAX_WINDOW_SECONDS = 1.0   # no speech codec's STFT window or hop is longer (and it would fill memory)


def check_counts(config, section: str) -> None:
    """Every ``int`` (or ``list[int]``) field of ``config`` at least 1, or 0 for the names in
    ``COUNTS_THAT_MAY_BE_ZERO``.

    Raises:
        CodecError: naming the recipe value ``section.name``.
    """
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        if hints[f.name] not in (int, list[int]):
            continue
        value = getattr(config, f.name)
        least = 0 if f.name in COUNTS_THAT_MAY_BE_ZERO else 1
        if any(item < least for item in (value if isinstance(value, list) else [value])):
            every = ": every item" if isinstance(value, list) else ""
            raise CodecError(f"recipe value {section}.{f.name}={value}{every} must be at least {least}")


def check_name(name: str, key: str) -> None:
    """Raises CodecError unless ``name`` (recipe value ``key``) can name a model in .codes files and --model."""
    if not is_plain_name(name):
        raise CodecError(f"recipe value {key}={name!r} is not a model's name: give a plain name (not empty, "
                         f"no / or \\ or control characters, at most 255 characters), as .codes files and "
                         f"--model name a model")


def check_heads(dims: list[int], heads: int, section: str, dim_name: str) -> None:
    """Raises CodecError unless every width in ``dims`` splits into ``heads`` even head widths
    (rotary position embeddings rotate pairs of channels)."""
    odd = [dim for dim in dims if dim % (2 * heads)]
    if odd:
        raise CodecError(f"recipe values {section}.{dim_name}={dims if len(dims) > 1 else dims[0]} and "
                         f"{section}.heads={heads}: each width must be a multiple of 2 x heads (an even "
                         f"width per attention head)")


def _check_model(model, loss: LossConfig) -> None:
    """The model section's sizes, and the codebook counts that training draws against them.

    Raises:
        CodecError: naming the recipe value.
    """
    check_name(model.name, "model.name")
    if model.codebook_size < 2:
        raise CodecError(f"recipe value model.codebook_size={model.codebook_size} must be at least 2")
    _check_global_code(model)   # (before the counts: a global codebook of 0 or 1 entries gets one message)
    check_counts(model, "model")
    for name in ("codebook_size", "global_codebook_size"):
        value = getattr(model, name, None)
        if value is not None and value > MAX_CODEBOOK_SIZE:
            raise CodecError(f"recipe value model.{name}={value} must be at most {MAX_CODEBOOK_SIZE} "
                             f"(the .codes format's largest codebook)")
    longest = int(MAX_WINDOW_SECONDS * model.sample_rate)
    for name in ("analysis_n_fft", "n_fft", "synthesis_n_fft", "hop_length"):
        value = getattr(model, name, None)
        if value is not None and value > longest:
            raise CodecError(f"recipe value model.{name}={value} must be at most {longest} samples "
                             f"({MAX_WINDOW_SECONDS:g} s at model.sample_rate={model.sample_rate})")
    analysis = "analysis_n_fft" if hasattr(model, "analysis_n_fft") else "n_fft"
    if getattr(model, analysis) < model.hop_length:
        raise CodecError(f"recipe value model.{analysis}={getattr(model, analysis)} must be at least "
                         f"model.hop_length={model.hop_length} (the analysis window covers every sample)")
    if hasattr(model, "heads"):
        check_heads(model.dims, model.heads, "model", "dims")
    counted = "num_codebooks" if hasattr(model, "num_codebooks") else "codebooks_per_scale"
    total = getattr(model, "num_codebooks", None) or sum(getattr(model, "codebooks_per_scale", [0]))
    if total and max(loss.codebook_choices) > total:   # (both values named: the error says where each was set)
        raise CodecError(f"recipe value loss.codebook_choices={loss.codebook_choices} asks for more codebooks "
                         f"than the model has ({total}: model.{counted}={getattr(model, counted)})")


def _check_global_code(model) -> None:
    """The time-invariant code's values (TiCodec): only a conv codec has one, and its options
    apply only with ``global_groups``; each was taken and silently ignored where it could not apply.

    Raises:
        CodecError: naming the recipe value.
    """
    groups = getattr(model, "global_groups", 0)
    if not hasattr(model, "global_codebook_size"):   # ESC: the field is the sessions' interface
        if groups:
            raise CodecError(f"recipe value model.global_groups={groups}: an ESC model has no time-invariant "
                             f"global code (TiCodec); it is a conv codec's (model.architecture: conv)")
        return
    if model.global_film and not groups:
        raise CodecError("recipe value model.global_film=true conditions the decoder on the time-invariant global "
                         "code, which the model has only with model.global_groups above 0")
    if groups and model.global_codebook_size < 2:
        raise CodecError(f"recipe value model.global_codebook_size={model.global_codebook_size} must be at least 2")
    if groups and not model.global_seconds > 0:
        raise CodecError(f"recipe value model.global_seconds={model.global_seconds} must be above 0 (the seconds "
                         f"of a stream the global code summarises)")


def _coerce(section_cls, values: dict, section: str = "") -> dict:
    """Make YAML's ``1e-3`` (a string in YAML 1.1) and ``1`` floats where the field is a float,
    whole numbers in any notation (``1e3``, ``2000.0``) ints where it is an int, and check every
    value's type against the field's.

    Raises:
        CodecError: naming the key, the value and the type it needs.
    """
    hints = typing.get_type_hints(section_cls)
    coerced = dict(values)
    for key, value in values.items():
        allowed = typing.get_args(hints[key]) if typing.get_origin(hints[key]) in (typing.Union, types.UnionType) \
            else (hints[key],)
        if float in allowed and isinstance(value, (int, str)) and not isinstance(value, bool):
            try:
                coerced[key] = value = float(value)
            except ValueError:
                raise CodecError(f"recipe value {section}{key}={value!r} is not a number") from None
        if int in allowed and not {float, str} & set(allowed) and isinstance(value, (str, float)):
            coerced[key] = value = _whole_number(value)   # 1e3 (a string in YAML 1.1) or 2000.0 for an int
        if list[float] in allowed and isinstance(value, list):
            coerced[key] = value = [_float_item(item) for item in value]
        if not any(_is_instance(value, kind) for kind in allowed):
            names = " or ".join(_type_name(k) for k in allowed)
            lists = any(typing.get_origin(kind) is list for kind in allowed)
            items = [item for item in re.split(r"[,;\s]+", value.strip(" ()[]")) if item] \
                if lists and isinstance(value, str) else []
            brackets = f"; write a list in brackets: {section}{key}=[{', '.join(items)}]" if items else ""
            if value is None:   # (YAML reads "key:" and -o key= as null)
                raise CodecError(f"recipe value {section}{key} is empty; it must be {names}")
            raise CodecError(f"recipe value {section}{key}={value!r} must be {names}{brackets}")
    return coerced


def _whole_number(value):
    """``value`` as an int where it writes a whole number (``1e3``, ``2000.0``); otherwise as it is."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return int(value)   # exact, however large
    try:
        number = float(value)
    except ValueError:
        return value
    return int(number) if math.isfinite(number) and number == int(number) else value


def _float_item(item):
    """A list item as a float where it reads as one (YAML 1.1 reads ``1e-1`` as a string)."""
    if isinstance(item, str):
        try:
            return float(item)
        except ValueError:
            return item
    return item


def _type_name(kind) -> str:
    if kind is type(None):
        return "null"
    if typing.get_origin(kind) is list and typing.get_args(kind):
        item = typing.get_args(kind)[0]
        return "a list of numbers" if item is float else f"a list of {item.__name__}"
    return getattr(typing.get_origin(kind) or kind, "__name__", str(kind))


def _is_instance(value, kind) -> bool:
    if kind is type(None):
        return value is None
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:  # where a float is asked for, an int will do (YAML writes 1.0 as 1 too)
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if typing.get_origin(kind) is list and typing.get_args(kind):  # list[int]: every element an int
        return isinstance(value, list) and all(_is_instance(item, typing.get_args(kind)[0]) for item in value)
    return isinstance(value, typing.get_origin(kind) or kind)


def _read_yaml(path: Path, chain: tuple[Path, ...] = (), places: dict[str, str] | None = None) -> dict:
    """The recipe at ``path`` merged over what it inherits; ``chain``: the recipes that inherit it.
    ``places`` gets, for each ``section`` and ``section.key``, the file that set it last (for
    ``RecipeOrigins``).

    Raises:
        CodecError: naming the file (and the key) for a missing or unreadable file, invalid YAML, a
            key given twice in one mapping (YAML keeps only the last), or a wrong ``inherit``.
    """
    if path.is_dir():
        recipes = sorted(path.glob("*.yaml"))
        raise CodecError(f"{path}: is a folder, not a recipe file" + (_what_to_do_with(path) or (
            f" (e.g. {recipes[0]})" if recipes else "")))
    if path.exists() and not path.is_file():   # (read once, a pipe would be empty when a run reads it again)
        raise CodecError(f"{path}: is not a regular file (a pipe or device); write the recipe to a file and give that")
    if not path.is_file():
        asked = f" (inherited by {chain[-1]}: 'inherit' is relative to the recipe's folder, or names a " \
                f"shipped recipe)" if chain else _shipped_recipes_hint(path)
        raise CodecError(f"{path}: recipe not found{asked}")
    if path.name == "config.json" and (path.parent / "model.safetensors").is_file():   # (JSON reads as YAML)
        raise CodecError(f"{path}: a model's configuration, not a recipe{_what_to_do_with(path)}")
    if path.name == "entropy_config.json" and (path.parent / "entropy.safetensors").is_file():
        raise CodecError(f"{path}: an entropy model's configuration, not a recipe{_what_to_do_with(path)}")
    if path.resolve() in {p.resolve() for p in chain}:
        raise CodecError(f"{path}: inherits itself ({' -> '.join(map(str, (*chain, path)))})")
    try:
        text = path.read_text()
        _refuse_duplicate_keys(yaml.compose(text, Loader=yaml.SafeLoader), path)
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise CodecError(f"{path}: invalid YAML ({error})".replace("\n", " ")) from None
    except UnicodeDecodeError:
        raise CodecError(f"{path}: not a text file; a recipe is YAML (e.g. recipes/conv_16k.yaml)"
                         f"{_what_to_do_with(path)}") from None
    except OSError as error:
        raise CodecError(f"{path}: cannot read the recipe ({error.strerror or error})") from None
    if not isinstance(values, dict):
        raise CodecError(f"{path}: a recipe must be a mapping of sections")
    if not values and not chain:   # (it would train the built-in default model until stopped)
        raise CodecError(f"{path}: the recipe is empty; give it sections, or 'inherit: NAME' to build on a "
                         f"shipped recipe (such as inherit: tiny){_shipped_recipes_hint(path, near=False)}")
    parent = values.pop("inherit", None)
    if parent is not None and not isinstance(parent, str):
        raise CodecError(f"{path}: inherit: {parent!r} must name a recipe file (e.g. inherit: conv_16k.yaml)")
    merged = _read_yaml(find_recipe(path.parent / parent, parent, (*chain, path)), (*chain, path), places) \
        if parent is not None else {}
    if places is not None:
        place = f"{path} (inherited by {chain[-1]})" if chain else str(path)
        for section, section_values in values.items():
            places[str(section)] = place
            for key in section_values if isinstance(section_values, dict) else ():
                places[f"{section}.{key}"] = place
    if parent is None:
        return values
    for section, section_values in values.items():
        if not isinstance(section_values or {}, dict) or not isinstance(merged.get(section) or {}, dict):
            raise CodecError(f"{path}: recipe section '{section}' must be a mapping of keys to values"
                             f"{_section_hint(section)}")
        merged[section] = {**(merged.get(section) or {}), **(section_values or {})}
    return merged


def find_recipe(path: Path, written: str, inheriting: tuple[Path, ...] = ()) -> Path:
    """The recipe that ``path`` (as ``written`` by the user, or in ``inherit``) names: that file if
    it is there; for a bare name (no folder, not even ``./``), ``NAME.yaml`` beside it, then the
    shipped recipe of that name (``conv_16k`` or ``conv_16k.yaml``: ``shipped_folder("recipes")``),
    so a recipe trains, and inherits, by name wherever the package is installed; else ``path``
    (which the reader then reports missing, or a folder). A bare name skips the recipes
    ``inheriting`` it (``inherit: tiny`` in a ``tiny.yaml`` of your own means the shipped one).

    Raises:
        CodecError: for an empty name.
    """
    if not written.strip():
        raise CodecError("the recipe name is empty; give a recipe file or a shipped recipe's name "
                         "(such as tiny)")
    if "/" in written or os.sep in written or not path.name:   # a path, or "." (no name to look up)
        return path
    skipped = {p.resolve() for p in inheriting}
    beside = path.with_name(f"{path.name}.yaml") if path.suffix != ".yaml" else path
    for candidate in (path, beside):
        if candidate.is_file() and candidate.resolve() not in skipped:
            return candidate
    shipped = shipped_folder("recipes")
    for candidate in (shipped / written, shipped / f"{written}.yaml"):
        if candidate.is_file() and candidate.resolve() not in skipped:
            return candidate
    return path


def _what_to_do_with(path: Path) -> str:
    """For a RECIPE argument that is no recipe: the command a run's folder or checkpoint (resume)
    or audio (train on it) was most likely meant for, or "" for anything else."""
    from codec.audio import AUDIO_SUFFIXES
    from codec.train.run_recipe import RUN_RECIPE, is_run_recipe

    run = path if path.is_dir() else path.parent
    model = path if path.is_dir() else path.parent if path.name in ("config.json", "model.safetensors",
                                                                    "entropy_config.json") else None
    if model is not None and (model / "entropy.safetensors").is_file() and (model.parent / "checkpoint.pt").is_file():
        run, path = model.parent, model.parent   # an entropy run's model/: the run is what resumes
    elif model is not None and (model / "config.json").is_file() and (model / "model.safetensors").is_file():
        if (model.parent / "checkpoint.pt").is_file():   # a run's model/: the run is what resumes
            run, path = model.parent, model.parent
        else:
            return (f"; it is a trained model (codec encode --model {model} uses it); to train on from its "
                    f"weights, give a recipe of its architecture with -o run.init_from={model} (for the "
                    f"default model's: codec train esc_16k_small_finetune)")
    if (run / "checkpoint.pt").is_file() and (path.is_dir() or path.suffix == ".pt"):
        if is_run_recipe(run / RUN_RECIPE):   # written by codec train (not a user's file of that name)
            return f"; it is a training run's; to resume it with the values it trained with: codec train " \
                   f"{run / RUN_RECIPE} --resume"
        return (f"; it is a training run's; to resume it, give the recipe it was started with: codec train RECIPE "
                f"--resume -o run.out_dir={run}")
    try:
        audio = path.suffix.lower() in AUDIO_SUFFIXES if path.is_file() else \
            any(p.suffix.lower() in AUDIO_SUFFIXES for p in itertools.islice(path.rglob("*"), 1000))   # a look
    except OSError:   # an unreadable folder: no guess
        return ""
    if audio:
        return (f"; to train on {'its' if path.is_dir() else 'this'} audio, give it as the training data: "
                f"codec train tiny -o data.train_dir={path} (tiny: a small test model; conv_16k and "
                f"esc_16k_small_finetune: see the README)")
    return ""


def _shipped_recipes_hint(path: Path, near: bool = True) -> str:
    """For a recipe ``path`` that is not found: the shipped recipe of its name (given with a
    folder, as recipes/tiny.yaml outside the checkout) or, for a bare name, the nearest one (with
    ``near``), and some of the names (none where none ship)."""
    shipped = shipped_folder("recipes")
    names = sorted(p.stem for p in shipped.glob("*.yaml"))
    if not names:
        return ""
    stem = path.stem.lower()
    if near and stem in names and path.parent != Path("."):
        return f" (a shipped recipe has that name: codec train {stem})"
    close = nearest_name(stem, names) if near and path.parent == Path(".") else None
    meant = f"did you mean {close}? " if close else ""
    main = [name for name in ("conv_16k", "esc_16k_small", "entropy_conv_16k", "tiny") if name in names]
    return (f" ({meant}a shipped recipe can be named alone, such as {', '.join(main or names[:4])}: "
            f"{len(names)} in {shipped})")


def _refuse_duplicate_keys(node, path: Path, key_path: tuple[str, ...] = (), seen: set[int] | None = None) -> None:
    """Raises CodecError for a key written twice in one mapping of the YAML ``node`` (PyYAML keeps
    the last silently, so a second ``run:`` section would drop the first one's keys): naming the
    file, the lines and the key (``section.key``, or the section). Keys merged in with ``<<:``
    may be overridden, as YAML means them to be. A node an alias repeats is checked once (an
    anchor may even hold itself: ``seed: &a [*a]``)."""
    seen = set() if seen is None else seen
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            line = key_node.start_mark.line + 1
            if key is not None and key in lines:
                dotted = ".".join((*key_path, key))
                what = f"key {dotted}" if key_path else f"section '{key}'" if key != "inherit" else "key inherit"
                raise CodecError(f"{path}:{line}: {what} is given twice (also on line {lines[key]}); YAML would "
                                 f"keep only the last, silently: write it once")
            if key is not None:
                lines[key] = line
            _refuse_duplicate_keys(value_node, path, (*key_path, key if key is not None else "?"), seen)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _refuse_duplicate_keys(item, path, key_path, seen)


def _apply_override(values: dict, override: str, places: dict[str, str] | None = None) -> None:
    """Apply ``section.key=value`` (value parsed as YAML); ``places`` gets ``section.key``'s
    origin, the override (see ``RecipeOrigins``)."""
    section, name, raw = _override_parts(override)
    if section is None:
        key, _, value = override.partition("=")
        home = _home_section(key.strip(), _recipe_sections(values)) if "." not in key else None
        hint = f" (did you mean {home}.{key.strip()}={value}?)" if home else ""
        raise CodecError(f"override '{override}' must look like section.key=value{hint}")
    key = f"{section}.{name}"
    if not isinstance(values.get(section) or {}, dict):
        raise CodecError(f"override '{override}': recipe section '{section}' is not a mapping of keys to values")
    text = _text_fields(values, section)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as error:
        if name not in text:
            reason = str(getattr(error, "problem", None) or "invalid YAML")
            raise CodecError(f"override '{override}': the value is not valid YAML ({reason}); quote it, "
                             f"e.g. {key}='\"{raw}\"'") from None
        value = raw
    if name in text and value is None and not text[name] and raw.strip().lower() == "null":
        raise CodecError(f"override '{override}': {key} cannot be null, as in a recipe file; give a value (to mean "
                         f"text 'null', quote it: {key}='\"null\"')")
    if name in text and not isinstance(value, str) and not (value is None and text[name]):
        value = raw   # a name or path such as model.name=2024 or run.out_dir=~, not a number or bool
    values[section] = {**(values.get(section) or {}), name: value}
    if places is not None:
        places[f"{section}.{name}"] = f"override '{override}'"
        places.setdefault(section, f"override '{override}'")


def _override_parts(override: str) -> tuple[str | None, str | None, str]:
    """``section.key=value`` -> (section, key, value text); (None, None, text) where it has no such form.
    Spaces around the key are dropped ("run.max_steps = 10" as typed)."""
    key, sep, raw = override.partition("=")
    section, dot, name = (part.strip() for part in key.partition("."))
    return (section, name, raw) if sep and dot and section and name else (None, None, raw)


def overridden_twice(overrides: list[str]) -> list[str]:
    """For each key that two ``-o`` overrides set to different values, a line naming both: the
    last is the one used (as a later option wins), which a user may not have meant."""
    given: dict[str, list[str]] = {}
    for override in overrides:
        section, name, _ = _override_parts(override)
        if section is not None:   # (anything else is refused by _apply_override with its own message)
            given.setdefault(f"{section}.{name}", []).append(override)
    return [f"-o {key} is given {len(values)} times ({', '.join(repr(v) for v in values)}); the last is used"
            for key, values in given.items() if len({_override_parts(v)[2].strip() for v in values}) > 1]


def _text_fields(values: dict, section: str) -> dict[str, bool]:
    """The keys of ``section`` that hold text only (names, paths, choices) in any recipe kind, each
    with whether it may be null."""
    from codec.entropy.model import EntropyModelConfig
    from codec.train.entropy_trainer import EntropyDataConfig

    model = values.get("model") or {}
    architecture = model.get("architecture", "conv") if isinstance(model, dict) else None
    known = isinstance(architecture, str) and architecture in ARCHITECTURES   # (else refused by name later)
    classes = {"model": [config_class(model)] if known else [],
               "data": [DataConfig, EntropyDataConfig], "optim": [OptimConfig], "loss": [LossConfig],
               "gan": [GanConfig], "run": [RunConfig], "entropy": [EntropyModelConfig]}.get(section, [])
    text = {}
    for section_cls in classes:
        for key, hint in typing.get_type_hints(section_cls).items():
            allowed = set(typing.get_args(hint)) if typing.get_origin(hint) in (typing.Union, types.UnionType) \
                else {hint}
            if str in allowed and not allowed & {bool, int, float}:
                text[key] = text.get(key, False) or type(None) in allowed
    return text


def load_recipe(path: Path | str, overrides: list[str] = ()):
    """Read a recipe (following ``inherit``) and apply ``section.key=value`` overrides.

    Returns a codec ``Recipe``, or an ``EntropyRecipe`` when the recipe has an ``entropy`` section.

    Raises:
        CodecError: for a missing file, invalid YAML, or unknown sections/keys.
    """
    path = find_recipe(Path(path), str(path))   # (a str keeps "./tiny", which a Path would make "tiny")
    origins = RecipeOrigins(str(path))
    values = _read_yaml(path, places=origins.places)
    for override in overrides:
        _apply_override(values, override, origins.places)
    _follow_a_moved_run(path, values, origins)
    try:
        if "entropy" in values:
            from codec.train.entropy_trainer import EntropyRecipe, refuse_codec_only_keys

            codec_only = sorted(set(values) & {"model", "loss", "gan"})
            if codec_only:   # led by where those sections were set (a file, one it inherits, or an -o)
                raise RecipeKeysError(f"the recipe has an 'entropy' section (an entropy-model recipe) and codec "
                                      f"sections ({', '.join(codec_only)}); a recipe trains a codec or an entropy "
                                      f"model, not both (entropy recipes: entropy, data, optim, run)",
                                      ["entropy", *codec_only])
            refuse_codec_only_keys(values)
            recipe = EntropyRecipe.from_dict(values)
        else:
            recipe = Recipe.from_dict(values)
    except CodecError as error:
        raise CodecError(origins.locate(str(error), getattr(error, "keys", None))) from None
    recipe.origins = origins   # (not a field: the checkpoint's recipe is the values, not where they came from)
    return recipe


def _follow_a_moved_run(path: Path, values: dict, origins: "RecipeOrigins") -> None:
    """A run's resolved recipe names its folder by absolute path: in a copied or moved run
    folder (its checkpoint beside it), it would resume, and write over, the run it came from.
    There the run's folder is the recipe's own (an ``-o run.out_dir`` still decides), with a note."""
    from codec.atomic import same_file
    from codec.train.run_recipe import is_run_recipe

    if origins.places.get("run.out_dir", "").startswith("override "):
        return
    out_dir = values.get("run", {}).get("out_dir") if isinstance(values.get("run"), dict) else None
    if not isinstance(out_dir, str) or not is_run_recipe(path) or not (path.parent / "checkpoint.pt").is_file():
        return
    if same_file(out_dir, path.parent):
        return
    values["run"]["out_dir"] = str(path.parent)
    origins.notes.append(f"{path} names run.out_dir {out_dir}, the folder the run was in; it is in "
                         f"{path.parent} now (copied or moved), and trains there (-o run.out_dir=DIR for another)")


SECTIONS = ("model", "data", "optim", "loss", "gan", "run", "entropy")
_KEY_NAMED = re.compile(rf"(?<![\w./~-])({'|'.join(SECTIONS)})\.(\w+)")
_SECTION_NAMED = re.compile(r"recipe section '(\w+)'")
_ABOUT_A_RECIPE_VALUE = re.compile(rf"^(recipe values? |recipe model section|({'|'.join(SECTIONS)})\.\w+)")


@dataclass
class RecipeOrigins:
    """Where a loaded recipe's values were set, for messages: ``recipe``, the file given, and in
    ``places``, for each ``section`` and ``section.key`` set, the file that set it (the recipe,
    or one it inherits) or the ``-o`` override."""

    recipe: str
    places: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)   # what loading changed, for the run to print

    def locate(self, message: str, keys: list[str] | None = None) -> str:
        """``message``, an error about recipe values, led by where the values it names (or
        ``keys``) were set (the recipe file where none of them was set: a default, or a rule
        between values)."""
        places = []
        for named in ([keys] if keys is not None else
                      [[f"{section}.{key}" for section, key in _KEY_NAMED.findall(message)],
                       _SECTION_NAMED.findall(message)]):   # keys first: a section's place is where it starts
            places = places or list(dict.fromkeys(self.places[name] for name in named if name in self.places))
        places = places or [self.recipe]
        if any(message.startswith(f"{place}:") for place in (*places, self.recipe)):
            return message
        if len(places) == 1 and places[0].startswith("override '"):   # the value not twice in a row, as
            given = places[0].removeprefix("override '").removesuffix("'")   # "-o k=v: recipe value k=v: ..."
            if message.startswith(f"recipe value {given}: "):
                return f"{places[0]}: {message[len(f'recipe value {given}: '):]}"
        return f"{' and '.join(places)}: {message}"

    def locate_training_error(self, message: str) -> str:
        """``locate`` for an error of a training run, when it is about recipe values (it starts
        with ``recipe value``, or a key such as ``run.out_dir=``); other messages as they are."""
        return self.locate(message) if _ABOUT_A_RECIPE_VALUE.match(message) else message


@contextlib.contextmanager
def data_named_by(key: str, value: str, if_missing: str = ""):
    """Turn a CodecError raised inside for the folder or manifest ``value`` (missing, no audio)
    into one that names the recipe ``key`` (such as ``data.train_dir``), and for a relative path
    that is not there, the folder it is relative to (and ``if_missing``, what to do instead)."""
    try:
        yield
    except CodecError as error:
        named = next((f"{name}:" for name in (value, str(Path(value))) if str(error).startswith(f"{name}:")), None)
        if named is None:   # (Path drops "./" and a trailing "/")
            raise
        where = f" (relative to the current folder, {os.getcwd()})" \
            if not os.path.isabs(value) and not os.path.exists(value) else ""
        problem = re.sub(r"^(\d+): ", r"line \1: ", str(error)[len(named):].strip())   # (a manifest's FILE:LINE:)
        if if_missing and not os.path.exists(value):
            problem += f"; {if_missing}"
        raise CodecError(f"recipe value {key}={value}{where}: {problem}") from None


def expand_paths(config, section: str, names: tuple[str, ...], optional: tuple[str, ...] = ()) -> None:
    """Expand a leading ``~`` in ``config``'s path values, as a shell would (YAML and ``-o
    key=~/x`` keep it as typed, and a run made a folder named ``~``); an empty value is refused,
    as ``Path("")`` is the current folder, or, for ``optional`` keys, means unset.

    Raises:
        CodecError: naming the empty recipe value.
    """
    for name in names:
        value = getattr(config, name)
        if value is None or not isinstance(value, str):
            continue
        if not value.strip():
            if name in optional:
                setattr(config, name, None)
                continue
            raise CodecError(f"recipe value {section}.{name}={value!r} is empty; give a folder or file")
        setattr(config, name, os.path.expanduser(value))


@contextlib.contextmanager
def model_named_by(key: str):
    """Turn a ModelNotFoundError raised inside into a CodecError that names the recipe ``key``
    (such as ``run.init_from``), since that is what the user fixes, not a CLI option."""
    try:
        yield
    except ModelNotFoundError as error:
        raise CodecError(f"recipe value {key}: {error}") from None
