"""What a model is, without loading its weights: ``codec models`` and ``codec info MODEL``.

A summary comes from the model directory's ``config.json`` (the network is built with random
weights to count parameters and read its frame rate and latency), the sizes of its files, and
``metrics.json`` when the model card has one (PESQ-WB measured on the dev set per bitrate).
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from codec.errors import CodecError
from codec.models.loading import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    available_models,
    check_weights_there,
    resolve_model_dir,
    shipped_models_dir,
    weights_hash,
)
from codec.threads import one_torch_thread

METRICS_FILE = "metrics.json"


@dataclass
class ModelSummary:
    """A model directory in numbers (JSON-ready)."""

    name: str
    directory: str
    source: str                      # "shipped", "installed" (CODEC_MODELS_DIR) or "directory"
    default: bool
    architecture: str                # "conv" or "esc" (config.json's)
    quantizer: str                   # its family, in words (residual VQ, masked-channel, global code, ...)
    sample_rate: int                 # Hz
    frame_rate: float                # code frames per second
    codebooks: int                   # the most codebooks (at the highest bitrate)
    codebook_size: int
    bitrates_kbps: list[float]
    latency_ms: float                # algorithmic latency of streaming decoding
    parameters: int                  # trainable parameters of the codec network
    weights_bytes: int
    entropy_model: bool              # whether an entropy model for this codec's codes is beside the weights
    input_level_dbfs: float | None   # the level encoding scales input to (codec/level.py); None: as it is
    input_highpass_hz: float | None  # the cutoff encoding high-passes input at (codec/highpass.py); None: none
    pesq_wb: dict[str, float] = field(default_factory=dict)   # kbps ("6") -> dev-set mean, if measured
    weights_sha256: str | None = None                         # with ``with_hash=True``
    entropy_problem: str | None = None   # why the entropy files there cannot code this codec's codes


def summarize_model(name_or_path: str | Path | None, with_hash: bool = False) -> ModelSummary:
    """The summary of a model given by shipped name or directory.

    Raises:
        CodecError: if the model is not found or its ``config.json`` is invalid.
    """
    from codec.entropy.model import has_entropy_model
    from codec.models.registry import build_model, config_from_dict

    directory = resolve_model_dir(name_or_path)
    try:
        check_weights_there(directory)
        config = config_from_dict(json.loads((directory / CONFIG_FILE).read_text()))
        with one_torch_thread():
            network = build_model(config)  # random weights: only the shapes matter here
        weights_bytes = (directory / WEIGHTS_FILE).stat().st_size
        if with_hash:   # reading the file anyway: its header must be a safetensors one
            from safetensors.torch import load

            weights = (directory / WEIGHTS_FILE).read_bytes()   # (an OSError is reported below)
            try:   # from bytes: safetensors takes a path only as UTF-8 text
                load(weights)
            except Exception as error:   # safetensors raises its own SafetensorError
                raise ValueError(f"{WEIGHTS_FILE} is not a safetensors file: {error}") from None
    except json.JSONDecodeError as error:
        raise CodecError(f"{directory / CONFIG_FILE}: is not valid JSON ({error})") from None
    except (OSError, ValueError, TypeError, AttributeError) as error:
        raise CodecError(f"{directory}: cannot read the model ({error})".splitlines()[0]) from None
    source = _source(directory)
    entropy_problem = _entropy_problem(directory, config, network)
    return ModelSummary(
        # the name --model accepts is the folder's; the default is the folder that no --model loads
        name=directory.name if source != "directory" else config.name, directory=str(directory),
        source=source, default=directory.resolve() == resolve_model_dir(None).resolve(),
        architecture=getattr(config, "architecture", "conv"), quantizer=quantizer_family(config),
        sample_rate=config.sample_rate, frame_rate=network.frame_rate, codebooks=network.num_codebooks,
        codebook_size=config.codebook_size, bitrates_kbps=list(config.bitrates_kbps),
        latency_ms=round(1000 * network.latency / config.sample_rate, 3),
        parameters=sum(p.numel() for p in network.parameters()), weights_bytes=weights_bytes,
        entropy_model=has_entropy_model(directory) and entropy_problem is None,
        input_level_dbfs=config.input_level_dbfs, input_highpass_hz=getattr(config, "input_highpass_hz", None),
        pesq_wb=measured_pesq(directory, config.name),
        weights_sha256=weights_hash(directory) if with_hash else None, entropy_problem=entropy_problem)


def quantizer_family(config) -> str:
    """A codec config's quantizer in words: cross-scale residual VQ (ESC), residual VQ, with
    masked channels (Language-Codec) and a time-invariant global code (TiCodec) where it has them."""
    if getattr(config, "architecture", "conv") == "esc":
        coarse_first = reversed(config.codebooks_per_scale)   # (the config lists them fine to coarse)
        return f"cross-scale residual VQ ({' + '.join(map(str, coarse_first))} codebooks, coarse to fine)"
    family = "residual VQ"
    if config.masked_quantizers:
        family = f"masked-channel residual VQ (the first {config.masked_quantizers} on 1/{config.masked_quantizers} " \
                 f"of the channels each)"
    if config.global_groups:
        family += f" + time-invariant global code ({config.global_groups} codebooks of {config.global_codebook_size}" \
                  f"{', FiLM' if config.global_film else ''})"
    return family


def _entropy_problem(directory: Path, config, network) -> str | None:
    """Why the entropy model in ``directory`` cannot code this codec's codes (``load_model``
    refuses the folder then), or None (none there, or it fits)."""
    from codec.entropy.model import (
        ENTROPY_CONFIG,
        EntropyModelConfig,
        codes_fit,
        half_an_entropy_model,
        has_entropy_model,
    )

    if not has_entropy_model(directory):
        return None
    if half := half_an_entropy_model(directory):   # (load_model refuses the folder with the same words)
        return half
    try:
        entropy = EntropyModelConfig.from_dict(json.loads((directory / ENTROPY_CONFIG).read_text()))
    except Exception as error:   # missing, not JSON, or not an entropy config
        return f"{ENTROPY_CONFIG} cannot be read ({str(error).splitlines()[0] if str(error) else type(error).__name__})"
    if entropy.codec != config.name or not codes_fit(entropy, network):
        return (f"entropy model '{entropy.name}' was trained on the codes of '{entropy.codec}' "
                f"({entropy.num_codebooks} codebooks of {entropy.codebook_size}), not on this model's; the folder "
                f"does not load until entropy.safetensors and {ENTROPY_CONFIG} there are removed")
    return None


def list_models(problems: list[str] | None = None) -> list[ModelSummary]:
    """Every model found by name: installed (``$CODEC_MODELS_DIR``) and shipped, sorted by name.
    A model directory that cannot be read is left out, its error appended to ``problems``."""
    summaries = []
    for directory in available_models():
        try:
            summaries.append(summarize_model(directory))
        except CodecError as error:
            if problems is not None:
                problems.append(str(error))
    return summaries


def measured_pesq(directory: Path, name: str) -> dict[str, float]:
    """Mean PESQ-WB on the dev set per nominal bitrate (``"6": 1.98``) from the card's
    ``metrics.json`` (rows of this model, not of baselines); empty if there is none."""
    try:
        rows = json.loads((directory / METRICS_FILE).read_text()).get("dev", [])
    except (OSError, ValueError, AttributeError):
        return {}
    pesq = {}
    for row in rows:
        try:
            if row["system"] == name and row["mean"].get("pesq_wb") is not None:
                pesq[f"{float(row['nominal_kbps']):g}"] = float(row["mean"]["pesq_wb"])
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
    return pesq


def _source(directory: Path) -> str:
    if directory.resolve().parent == shipped_models_dir().resolve():
        return "shipped"
    if any(directory.resolve() == found.resolve() for found in available_models()):
        return "installed"
    return "directory"
