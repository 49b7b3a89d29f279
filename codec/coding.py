"""Audio <-> codes for whole signals and files, at any sample rate and channel count.

Each channel is resampled to the model's rate (soxr), padded with zeros to whole code frames,
coded as one batch item, and on decode resampled back and cut to the input's exact length.
"""

import math
from pathlib import Path

import numpy as np
import torch

from codec.audio import load_audio, resample, save_audio
from codec.bitstream import CodesFile, CodesMetadata, from_bytes, to_bytes
from codec.errors import CodecError
from codec.models import ConvCodec


def model_length(num_samples: int, sample_rate: int, model_rate: int) -> int:
    """Samples at the model's rate that cover ``num_samples`` at ``sample_rate``."""
    return math.ceil(num_samples * model_rate / sample_rate)


def _fit_length(audio: np.ndarray, length: int) -> np.ndarray:
    """Cut or zero-pad ``[T, C]`` audio to exactly ``length`` samples."""
    if len(audio) >= length:
        return audio[:length]
    return np.concatenate([audio, np.zeros((length - len(audio), audio.shape[1]), audio.dtype)])


def _compact_number(value: float) -> float | int:
    """``50.0 -> 50``: an integral frame rate is written without a fraction (fewer header bytes)."""
    return int(value) if float(value).is_integer() else round(value, 6)


def encode_audio(model: ConvCodec, audio: np.ndarray, sample_rate: int, bitrate_kbps: float) -> CodesFile:
    """Encode ``[T, C]`` float audio at ``sample_rate`` Hz into codes ``[C, K, F]``.

    Raises:
        CodecError: for an unsupported bitrate or an invalid sample rate.
    """
    if sample_rate <= 0:
        raise CodecError(f"invalid sample rate {sample_rate} Hz")
    try:
        num_codebooks = model.codebooks_for_bitrate(bitrate_kbps)
    except ValueError as error:
        raise CodecError(str(error)) from None
    num_samples, channels = audio.shape
    length = model_length(num_samples, sample_rate, model.sample_rate)
    frames = math.ceil(length / model.frame_size)
    codes = np.zeros((channels, num_codebooks, frames), dtype=np.int64)
    if frames:
        signal = _fit_length(resample(audio, sample_rate, model.sample_rate), frames * model.frame_size)
        wav = torch.from_numpy(np.ascontiguousarray(signal.T, dtype=np.float32)).unsqueeze(1)  # [C, 1, T]
        with torch.inference_mode():
            codes = model.encode(wav, num_codebooks).numpy()
    metadata = CodesMetadata(
        model=model.config.name, weights=getattr(model, "weights_sha256", "")[:8],
        sample_rate=sample_rate, channels=channels, samples=num_samples,
        frame_rate=_compact_number(model.frame_rate), codebooks=num_codebooks,
        codebook_size=model.codebook_size, frames=frames)
    return CodesFile(metadata, codes)


def check_compatible(model: ConvCodec, meta: CodesMetadata) -> None:
    """Raise CodecError unless ``model`` is the one that wrote codes with this metadata."""
    weights = getattr(model, "weights_sha256", "")[:8]
    if meta.model != model.config.name or (meta.weights and weights and meta.weights != weights):
        raise CodecError(f"the codes were made by model '{meta.model}' (weights {meta.weights}), "
                         f"but the loaded model is '{model.config.name}' (weights {weights}); "
                         f"pass --model with the model that encoded them")
    if meta.codebook_size != model.codebook_size or meta.codebooks > model.num_codebooks:
        raise CodecError(f"the codes use {meta.codebooks} codebooks of {meta.codebook_size}; "
                         f"model '{model.config.name}' has {model.num_codebooks} of {model.codebook_size}")


def decode_audio(model: ConvCodec, codes_file: CodesFile) -> tuple[np.ndarray, int]:
    """Decode to ``([T, C] float32 audio, sample_rate)`` with the input's exact shape and rate.

    Raises:
        CodecError: if the codes were made by another model.
    """
    meta = codes_file.metadata
    check_compatible(model, meta)
    if meta.frames == 0:
        return np.zeros((meta.samples, meta.channels), dtype=np.float32), meta.sample_rate
    codes = torch.from_numpy(np.asarray(codes_file.codes, dtype=np.int64))
    with torch.inference_mode():
        wav = model.decode(codes).squeeze(1).numpy().T  # [T, C]
    length = model_length(meta.samples, meta.sample_rate, model.sample_rate)
    audio = resample(wav[:length].astype(np.float64), model.sample_rate, meta.sample_rate)
    return _fit_length(audio, meta.samples).astype(np.float32), meta.sample_rate


def check_paths(input_path: Path, output_path: Path, force: bool) -> None:
    """Fail early, before any work: the input must exist, the output must not (unless forced).

    Raises:
        CodecError: naming the missing input or the existing output.
    """
    if not input_path.is_file():
        raise CodecError(f"{input_path}: no such file")
    if output_path.exists() and not force:
        raise CodecError(f"{output_path} exists; pass --force to overwrite it")
    if output_path.resolve() == input_path.resolve():
        raise CodecError(f"{output_path}: the output would overwrite the input")


def _write_atomically(path: Path, write) -> None:
    """Write through a temporary file beside ``path`` so a failure never leaves half a file."""
    tmp = path.with_name(f".{path.name}.partial{path.suffix}")
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def read_codes(path: Path | str) -> CodesFile:
    """Read and verify a ``.codes`` file. Raises CodecError naming the file on any problem."""
    path = Path(path)
    if not path.is_file():
        raise CodecError(f"{path}: no such file")
    try:
        return from_bytes(path.read_bytes())
    except CodecError as error:
        raise CodecError(f"{path}: {error}") from None


def encode_file(model: ConvCodec, input_path: Path | str, output_path: Path | str,
                bitrate_kbps: float = 6.0, force: bool = False) -> CodesFile:
    """Encode an audio file into a ``.codes`` file; returns what was written."""
    input_path, output_path = Path(input_path), Path(output_path)
    check_paths(input_path, output_path, force)
    audio, sample_rate = load_audio(input_path)
    codes_file = encode_audio(model, audio, sample_rate, bitrate_kbps)
    data = to_bytes(codes_file)
    _write_atomically(output_path, lambda tmp: tmp.write_bytes(data))
    return codes_file


def decode_file(model: ConvCodec, input_path: Path | str, output_path: Path | str,
                force: bool = False) -> int:
    """Decode a ``.codes`` file to audio; returns the number of samples clipped to [-1, 1]."""
    input_path, output_path = Path(input_path), Path(output_path)
    check_paths(input_path, output_path, force)
    codes_file = read_codes(input_path)
    audio, sample_rate = decode_audio(model, codes_file)
    clipped = []
    _write_atomically(output_path, lambda tmp: clipped.append(save_audio(tmp, audio, sample_rate)))
    return clipped[0]
