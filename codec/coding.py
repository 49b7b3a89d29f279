"""Audio <-> codes for whole signals and files, at any sample rate, channel count and length.

One path serves arrays and files of any length: audio flows in blocks through a streaming
resampler (soxr) to the model's rate, through a ``StreamingEncoder`` (each channel one batch
item; one session per channel for a model in int8), and back through a ``StreamingDecoder`` and
resampler to the input's rate. Peak memory does not grow with duration, and chunk seams are
exact: streaming equals offline coding (in float; int8 rounds each call on its own scale).
The decoded signal has exactly the input's sample rate, channel count and number of samples.
"""

import itertools
import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

from codec import bitstream
from codec.atomic import final_path, same_file, write_atomically, write_limit_reached
from codec.audio import (
    AUDIO_SUFFIXES,
    UNKNOWN_LENGTH,
    chained_ogg_streams,
    check_sample_rate,
    checked_peak,
    decoder_notes,
    limited,
    missing,
    open_audio,
    read_blocks,
    samples_missing,
    starts_as_audio,
    unannounced_bytes,
    write_samples,
    xing_size_disagrees,
)
from codec.band_fill import BandFill, QuietFloor
from codec.bitstream import (
    MAX_GAIN_DB,
    CodesFile,
    CodesMetadata,
    from_bytes,
    read_metadata,
    to_bytes,
)
from codec.codes_files import codes_bytes, is_packet_stream, read_codes_metadata, read_stream_info
from codec.errors import CodecError, ModelNotFoundError
from codec.highpass import HighPass
from codec.level import Leveling, amplitude, measure_leveling
from codec.models import ConvCodec
from codec.pipes import names_a_file_descriptor
from codec.refine import LatentRefiner, check_refine_steps
from codec.streaming import file_decoder, file_encoder

BLOCK_SECONDS = 10.0        # audio handled per step: bounds memory for any file length
QUIET_GAIN_DB = 24.0        # raised this much (input below about -42 dBFS), a decoded file is 24-bit
_HOLDBACK = 8               # resampled samples kept back until the true length is known
_LARGEST_CONVERSION = 1 << 22   # samples x channels (32 MiB as float64) a rate or channel conversion makes at once


def block_seconds(channels: int) -> float:
    """Seconds of audio a step handles: BLOCK_SECONDS of mono or stereo, less for more channels, so
    that memory does not grow with the channel count either (a .codes file may hold 1024)."""
    return BLOCK_SECONDS * 2 / max(2, channels)


@dataclass
class CodingReport:
    """What happened besides the output itself: warnings for the user."""

    warnings: list[str] = field(default_factory=list)


def model_length(num_samples: int, sample_rate: int, model_rate: int) -> int:
    """Samples at the model's rate that cover ``num_samples`` at ``sample_rate``."""
    return math.ceil(num_samples * model_rate / sample_rate)


def _resampler(from_rate: int, to_rate: int, channels: int) -> Callable[..., np.ndarray]:
    """``resample(block [n, C], last=False) -> [m, C]`` in a stream (identity when rates match)."""
    if from_rate == to_rate:
        return lambda block, last=False: block
    stream = soxr.ResampleStream(from_rate, to_rate, channels, dtype="float64", quality="HQ")
    return lambda block, last=False: stream.resample_chunk(np.ascontiguousarray(block), last=last)


def _remixer(from_channels: int, to_channels: int) -> Callable[[np.ndarray], np.ndarray]:
    """``remix(block [n, from_channels]) -> [n, to_channels]``: N -> 1 averages, 1 -> N copies.

    Raises:
        CodecError: for any other change of channel count, or fewer than one channel.
    """
    if to_channels == from_channels:
        return lambda block: block
    if to_channels == 1:
        return lambda block: block.mean(axis=1, keepdims=True)
    if from_channels == 1 and to_channels > 1:
        return lambda block: np.repeat(block, to_channels, axis=1)
    raise CodecError(f"cannot turn {from_channels} channels into {to_channels}; supported: keep "
                     f"{from_channels}, mix down to 1, or copy 1 channel to N")


def check_output_format(from_channels: int, sample_rate: int | None, channels: int | None,
                        path: Path | None = None) -> None:
    """Fail before any work on an output rate or channel count that decoding cannot produce from
    ``from_channels`` (of the file ``path``, which the error names if given).

    Raises:
        CodecError: naming the value and what is supported.
    """
    if sample_rate is not None:
        check_sample_rate(sample_rate)
    if channels is not None:
        if channels < 1:
            raise CodecError(f"{channels} channels is not supported; choose 1 or more")
        try:
            _remixer(from_channels, channels)
        except CodecError as error:
            raise CodecError(f"{path}: {error}" if path else str(error)) from None


def convert_blocks(blocks: Iterable[np.ndarray], sample_rate: int, samples: int | None, to_rate: int | None,
                   to_channels: int | None) -> Iterator[np.ndarray]:
    """``[n, C]`` blocks at ``sample_rate`` (``samples`` in all) -> ``[m, to_channels]`` blocks at
    ``to_rate`` (None: keep), ``round(samples * to_rate / sample_rate)`` samples in all, exactly
    (``samples`` None: as many as the resampler gives).

    Channels are remixed where there are fewer of them (before resampling when mixing down,
    after when copying up); resampling streams through soxr, so memory stays flat.
    """
    blocks = iter(blocks)
    first = next(blocks, None)
    if first is None:
        return
    from_channels = first.shape[1]
    to_rate, to_channels = to_rate or sample_rate, to_channels or from_channels
    remix = _remixer(from_channels, to_channels)
    early = to_channels < from_channels
    resample = _resampler(sample_rate, to_rate, to_channels if early else from_channels)
    left = None if samples is None else round(samples * to_rate / sample_rate)

    def convert(block: np.ndarray, last: bool = False) -> np.ndarray:
        nonlocal left
        block = np.asarray(block, dtype=np.float64)
        out = resample(remix(block), last=last) if early else remix(resample(block, last=last))
        if left is not None:
            out = out[:left]
            left -= len(out)
        return out.astype(np.float32)

    # a block's share at a time: 10 s of one channel copied to 1024 at 192 kHz would be 15 GiB
    rows = max(1, int(_LARGEST_CONVERSION / (max(from_channels, to_channels) * max(1.0, to_rate / sample_rate))))
    for block in itertools.chain([first], blocks):
        for start in range(0, len(block), rows):
            yield convert(block[start:start + rows])
    yield convert(np.zeros((0, from_channels)), last=True)
    if left:
        yield np.zeros((left, to_channels), dtype=np.float32)


class _CodesBuffer:
    """A file's codes ``[C, K, F]`` gathered block by block into one array that doubles when full,
    in the smallest unsigned type that holds ``codebook_size`` entries. Kept as a list of each
    block's int64 array, an hour's codes (17 MB) split the allocator's heap between the blocks'
    large temporary buffers and held it: encoding's peak memory grew by about 90 MB an hour."""

    def __init__(self, codebook_size: int):
        self.dtype = np.uint16 if codebook_size <= 1 << 16 else np.int64
        self.array: np.ndarray | None = None
        self.frames = 0

    def append(self, codes: np.ndarray) -> None:
        """``codes [C, K, f]`` after those appended so far."""
        if self.array is None:
            self.array = np.zeros((*codes.shape[:2], max(64, codes.shape[-1])), dtype=self.dtype)
        end = self.frames + codes.shape[-1]
        if end > self.array.shape[-1]:
            grown = np.zeros((*self.array.shape[:2], max(end, 2 * self.array.shape[-1])), dtype=self.dtype)
            grown[..., :self.frames] = self.array[..., :self.frames]
            self.array = grown
        self.array[..., self.frames:end] = codes
        self.frames = end

    def codes(self) -> np.ndarray:
        """All codes appended, ``[C, K, F]`` int64."""
        return self.array[..., :self.frames].astype(np.int64)


def encode_blocks(model: ConvCodec, blocks: Iterable[np.ndarray], sample_rate: int, channels: int,
                  num_codebooks: int, refine_steps: int = 0,
                  leveling: Leveling = Leveling()) -> tuple[np.ndarray, int, np.ndarray | None, float | list[float]]:
    """Encode ``[n, C]`` float blocks; returns ``(codes [C, K, F], number of input samples,
    global codes [C, G] or None, gain_db)``, the gain for the file's metadata that decoding takes
    off. ``refine_steps`` > 0: refine each block's latent by that many steps of analysis by
    synthesis (``codec/refine.py``; slower, closer to the input), and correct the gain by the
    level the refined codes decode at (``decoded_level_db``).
    ``leveling``: what to do to the input first (``codec.level``: DC removal and a gain that decoding
    undoes), after the model's high-pass (``codec.highpass``; ``measured_leveling`` measures the level after it).

    Raises:
        CodecError: for refinement steps out of range or with a model that cannot use them.
    """
    check_refine_steps(refine_steps, model)   # (None or 0.0 is no number of steps, even if falsy)
    encoder = file_encoder(model, num_codebooks, channels,
                           (lambda: LatentRefiner(model, num_codebooks, refine_steps)) if refine_steps else None)
    resample = _network_input_stream(model, sample_rate, channels, leveling)
    codes, pending, seen, fed = _CodesBuffer(model.codebook_size), np.zeros((0, channels)), 0, 0
    energy = np.zeros(channels)   # of what the network was given, per channel (for refinement's level)

    def feed(samples: np.ndarray) -> None:
        nonlocal fed, energy
        if len(samples):
            audio = torch.from_numpy(np.ascontiguousarray(samples.T[:, None, :], dtype=np.float32))
            codes.append(encoder.encode(audio).numpy())
            fed += len(samples)
            if refine_steps:
                energy = energy + np.square(samples).sum(axis=0)

    for block in blocks:
        seen += len(block)
        pending = np.concatenate([pending, resample(block)])
        feed(pending[:max(0, len(pending) - _HOLDBACK)])
        pending = pending[max(0, len(pending) - _HOLDBACK):]
    pending = np.concatenate([pending, resample(np.zeros((0, channels)), last=True)])
    # exactly what the input covers (counted as fed: frames held back for a global code return no codes yet)
    target = model_length(seen, sample_rate, model.sample_rate) - fed
    feed(np.concatenate([pending, np.zeros((max(0, target - len(pending)), channels))])[:max(0, target)])
    codes.append(encoder.flush().numpy())
    global_codes = None if encoder.global_codes is None else encoder.global_codes.numpy()
    codes, gain_db = codes.codes(), leveling.gain_db
    if refine_steps:
        gain_db = corrected_gain_db(gain_db, decoded_level_db(model, codes, global_codes, energy, fed))
    return codes, seen, global_codes, gain_db


SILENT_POWER = 1e-9        # mean square (-90 dBFS) below which a channel's level is left as it is
MAX_CORRECTION_DB = 12.0   # a refined channel's level correction at most (measured: within ±1.5 dB)


def decoded_level_db(model: ConvCodec, codes: np.ndarray, global_codes: np.ndarray | None,
                     input_energy: np.ndarray, samples: int) -> np.ndarray:
    """``[C]`` dB by which ``codes [C, K, F]`` decode louder than the network input they code, whose
    sum of squares over its ``samples`` (at the model's rate) per channel is ``input_energy``;
    negative: quieter. 0 for a channel whose input or output is below ``SILENT_POWER``.

    For latent refinement (``codec/refine.py``), which moves the level: its PESQ and STOI terms
    ignore a signal's level and it weighs them against the log-mel distance, which does not. On
    every 4th dev file at 6 kbps the shipped model's refined codes decoded +0.98 dB from the
    input's level with 5 steps and +0.47 dB with 60, against -0.28 dB for plain codes; both
    measures are the same at any level. The codes are decoded once, as a decoder will (a pass
    that costs what plain decoding does, a small share of refinement's time)."""
    output, left = np.zeros(codes.shape[0]), samples
    for wav, _ in _decoder_output(model, codes, global_codes):
        part = wav[:, 0, :left].double().numpy()
        output, left = output + np.square(part).sum(axis=1), left - part.shape[-1]
    audible = (output > SILENT_POWER * samples) & (input_energy > SILENT_POWER * samples)
    ratio = np.where(audible, output, 1.0) / np.where(audible, input_energy, 1.0)
    return np.clip(10.0 * np.log10(ratio), -MAX_CORRECTION_DB, MAX_CORRECTION_DB)


def corrected_gain_db(gain_db: float | list[float], correction_db: np.ndarray) -> float | list[float]:
    """A file's ``gain_db`` (one, or one per channel) plus a ``[C]`` correction: one number where the
    channels agree, within ±``MAX_GAIN_DB``, to 0.01 dB as ``normalizing_gain_db`` gives it."""
    gains = np.clip(np.asarray(gain_db, dtype=np.float64) + correction_db, -MAX_GAIN_DB, MAX_GAIN_DB)
    gains = [round(float(gain), 2) for gain in np.broadcast_to(gains, correction_db.shape)]
    return gains[0] if len(set(gains)) == 1 else gains


def _network_input_stream(model: ConvCodec, sample_rate: int, channels: int,
                          leveling: Leveling) -> Callable[..., np.ndarray]:
    """``prepare(block [n, C], last=False) -> [m, C]`` at the model's rate, in a stream: the
    model's high-pass, then ``leveling``, the resampling and a low-rate input's empty band filled;
    for a model with an input level, a quiet noise floor (``QuietFloor``) last."""
    resampler = _resampler(sample_rate, model.sample_rate, channels)
    fill = BandFill(sample_rate, model.sample_rate, channels)
    highpass = HighPass(model.config.input_highpass_hz, sample_rate)
    floor = QuietFloor() if model.config.input_level_dbfs is not None else (lambda block: block)
    return lambda block, last=False: floor(fill(resampler(leveling(highpass(block)), last=last)))


def model_input(model: ConvCodec, audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """``[T, C]`` audio at ``sample_rate`` Hz as ``encode_audio`` gives it to the network, whole:
    high-passed, leveled, resampled to the model's rate (with a low-rate input's band filled),
    ``[model_length(T), C]`` float64. For coding a whole file in one offline ``encode`` (the
    entropy trainer on a GPU) and getting the codes ``codec encode`` writes."""
    audio = np.asarray(audio, dtype=np.float64)
    leveling = measured_leveling(model, [audio], sample_rate)
    out = _network_input_stream(model, sample_rate, audio.shape[1], leveling)(audio, last=True)
    length = model_length(len(audio), sample_rate, model.sample_rate)
    return np.concatenate([out, np.zeros((max(0, length - len(out)), audio.shape[1]))])[:length]


def _decoder_output(model: ConvCodec, codes: np.ndarray,
                    global_codes: np.ndarray | None) -> Iterator[tuple[torch.Tensor, bool]]:
    """``(audio [C, 1, n] at the model's rate, whether it is the last)`` as a file's decoder session
    gives it for ``codes [C, K, F]`` (and ``global_codes [C, G]`` or None), its flush last."""
    codes = np.asarray(codes, dtype=np.int64)
    channels = codes.shape[0]
    decoder = file_decoder(model, channels, None if global_codes is None else torch.from_numpy(
        np.asarray(global_codes, dtype=np.int64)))
    step = max(1, int(block_seconds(channels) * model.frame_rate))
    tensor = torch.from_numpy(codes)
    for start in range(0, codes.shape[-1], step):
        yield decoder.decode(tensor[..., start:start + step]), False
    yield (decoder.flush() if codes.shape[-1] else torch.zeros(channels, 1, 0)), True


def decode_blocks(model: ConvCodec, codes_file: CodesFile) -> Iterator[np.ndarray]:
    """Decoded ``[n, C]`` float32 blocks at the original rate, ``samples`` in all, exactly."""
    meta = codes_file.metadata
    check_compatible(model, meta)
    resample = _resampler(model.sample_rate, meta.sample_rate, meta.channels)
    unscale = amplitude(-np.asarray(meta.gain_db or 0.0, dtype=np.float64))   # undo the level normalisation
    model_samples_left = model_length(meta.samples, meta.sample_rate, model.sample_rate)
    samples_left = meta.samples

    def emit(wav: torch.Tensor, last: bool = False) -> np.ndarray:
        nonlocal model_samples_left, samples_left
        audio = wav[:, 0].numpy().T.astype(np.float64)[:model_samples_left] * unscale   # [n, C]
        model_samples_left -= len(audio)
        out = resample(audio, last=last)[:samples_left]
        samples_left -= len(out)
        return out.astype(np.float32)

    for wav, last in _decoder_output(model, np.asarray(codes_file.codes)[..., :meta.frames], codes_file.global_codes):
        yield emit(wav, last)
    if samples_left:
        yield np.zeros((samples_left, meta.channels), dtype=np.float32)


def _codebooks(model: ConvCodec, bitrate_kbps: float) -> int:
    try:
        return model.codebooks_for_bitrate(bitrate_kbps)
    except ValueError as error:
        raise CodecError(str(error)) from None


def measured_leveling(model: ConvCodec, blocks: Iterable[np.ndarray], sample_rate: int) -> Leveling:
    """The ``Leveling`` for ``model`` of a signal given as ``[n, C]`` blocks at ``sample_rate`` Hz,
    measured after the model's high-pass, as ``encode_blocks`` filters them before leveling."""
    return measure_leveling(blocks, sample_rate, model.config.input_level_dbfs, model.config.input_highpass_hz)


def _codes_file(model: ConvCodec, sample_rate: int, codes: np.ndarray, num_samples: int,
                global_codes: np.ndarray | None, gain_db: float | list[float] = 0.0) -> CodesFile:
    frame_rate = model.frame_rate
    meta = CodesMetadata(
        model=model.config.name, weights=getattr(model, "weights_sha256", "")[:8], sample_rate=sample_rate,
        channels=codes.shape[0], samples=num_samples,
        frame_rate=int(frame_rate) if float(frame_rate).is_integer() else round(frame_rate, 6),
        codebooks=codes.shape[1], codebook_size=model.codebook_size, frames=codes.shape[2],
        gain_db=[float(g) for g in gain_db] if isinstance(gain_db, list) else (gain_db or None))
    if global_codes is not None:
        meta.global_codebooks, meta.global_codebook_size = global_codes.shape[1], model.config.global_codebook_size
    return CodesFile(meta, codes, global_codes)


def in_full_scale(blocks: Iterable[np.ndarray], input_path: Path, clipped: list[int],
                  peak: list[float], leveled: bool = False) -> Iterator[np.ndarray]:
    """A float file's blocks with samples beyond ±1 clipped (counted in ``clipped[0]``, the largest
    magnitude in ``peak[0]``), as the Python API's ``limited_float_samples`` does; for a model
    that normalises the level (``leveled``), unclipped: the gain scales them with the rest.

    Raises:
        CodecError: as ``checked_peak``, for integer-scale samples.
    """
    for block in blocks:
        block_peak = checked_peak(block, input_path)
        peak[0] = max(peak[0], block_peak)
        yield block if leveled else limited(block, clipped, block_peak)


def encode_audio(model: ConvCodec, audio: np.ndarray, sample_rate: int, bitrate_kbps: float,
                 refine_steps: int = 0) -> CodesFile:
    """Encode ``[T, C]`` float audio at ``sample_rate`` Hz into codes ``[C, K, F]`` (``refine_steps``:
    see ``encode_blocks``).

    Raises:
        CodecError: for an unsupported bitrate or refinement, an invalid sample rate, or non-finite
            samples.
    """
    check_sample_rate(sample_rate)
    audio = np.asarray(audio, dtype=np.float64)
    if audio.ndim != 2 or audio.shape[1] == 0:
        raise CodecError(f"audio must be [samples, channels] with at least one channel, got shape {audio.shape}")
    if not np.all(np.isfinite(audio)):
        raise CodecError("audio contains NaN or infinite samples")
    step = max(1, int(block_seconds(audio.shape[1]) * sample_rate))
    leveling = measured_leveling(model, [audio], sample_rate)
    blocks = (audio[start:start + step] for start in range(0, len(audio), step))
    return _codes_file(model, sample_rate, *encode_blocks(model, blocks, sample_rate, audio.shape[1],
                                                          _codebooks(model, bitrate_kbps), refine_steps, leveling))


def check_compatible(model: ConvCodec, meta: CodesMetadata, path: Path | None = None) -> None:
    """Raise CodecError (naming ``path``, if given) unless ``model`` is the one that wrote codes
    with this metadata."""
    where = f"{path}: " if path else ""
    weights = getattr(model, "weights_sha256", "")[:8]
    # a decoder retrained on fixed codes also reads its predecessors' files (compatible_weights.json)
    readable = {weights, *getattr(model, "readable_weights", ())}
    # codes without a weights hash come from a model that was never saved: a saved model cannot
    # know they are its own
    if meta.model != model.config.name or (weights and meta.weights not in readable):
        raise CodecError(f"{where}the codes were made by model '{meta.model}' "
                         f"(weights {meta.weights or 'unrecorded'}), "
                         f"but the loaded model is '{model.config.name}' (weights {weights}); "
                         f"pass --model with the model that encoded them")
    if meta.codebook_size != model.codebook_size or meta.codebooks > model.num_codebooks:
        raise CodecError(f"{where}the codes use {meta.codebooks} codebooks of {meta.codebook_size}; "
                         f"model '{model.config.name}' has {model.num_codebooks} of {model.codebook_size}")
    if not math.isclose(meta.frame_rate, model.frame_rate):
        raise CodecError(f"{where}the codes have {meta.frame_rate} frames/s; model '{model.config.name}' "
                         f"has {model.frame_rate}")
    has_global = getattr(model, "global_code", None) is not None
    wanted = (model.config.global_groups, model.config.global_codebook_size) if has_global else (None, None)
    if (meta.global_codebooks, meta.global_codebook_size) != wanted:
        def described(groups, size) -> str:
            return "no time-invariant global code" if size is None else \
                f"a time-invariant global code of {groups} codebooks of {size}"
        raise CodecError(f"{where}the codes have {described(meta.global_codebooks, meta.global_codebook_size)}; "
                         f"model '{model.config.name}' has {described(*wanted)}")


def decode_audio(model: ConvCodec, codes_file: CodesFile) -> tuple[np.ndarray, int]:
    """Decode to ``([T, C] float32 audio, sample_rate)`` with the input's exact shape and rate.

    Raises:
        CodecError: if the codes were made by another model.
    """
    blocks = list(decode_blocks(model, codes_file))
    return np.concatenate(blocks), codes_file.metadata.sample_rate


def check_paths(input_path: Path, output_path: Path, force: bool, codes_writer: str | None = None) -> None:
    """Fail early, before any work: the input must exist, the output must not (unless forced).
    ``codes_writer``: see ``check_output_path``.

    Raises:
        CodecError: naming the missing input or the existing output.
    """
    if input_path.is_dir():
        raise CodecError(f"{input_path}: is a directory, not a file")
    if input_path.exists() and not input_path.is_file():   # coding reads a file twice (level, then codes)
        raise CodecError(f"{input_path}: is a pipe or device, not a file; give - as the input and "
                         f"redirect it to stdin instead")
    if not input_path.is_file():
        raise CodecError(f"{input_path}: {missing(input_path)}")
    if not os.access(input_path, os.R_OK):
        raise CodecError(f"{input_path}: permission denied (the file cannot be read)")
    check_output_path(output_path, force, input_path, codes_writer=codes_writer)


def _not_a_file(path: Path, stdout: bool = False) -> str | None:
    """Why ``path`` cannot be written as a file (a folder; a device, pipe or socket, which renaming
    over would replace), naming it; None if it can. ``stdout``: the command can write to ``-``."""
    if path.is_dir():
        return f"{path}: is a directory; give a file name"
    if path.exists() and not path.is_file():
        return f"{path}: is not a regular file (a device, pipe or socket); give a file name" \
               f"{', or - for stdout' if stdout else ''}"
    return None


def refuse_folder_name(output, source, suffix: str) -> None:
    """An output file's name as given (text, or a path-like object's): one that ends with / names
    a folder, and a Path would drop the / and write a file of the folder's name. ``source`` is the
    input file's (``-``: stdin; None: none), for the suggestion.

    Raises:
        CodecError: for such a name, suggesting ``output + source's stem + suffix``; but first,
            for an input that is not there (the real mistake, where both are named wrongly).
    """
    output, source = os.fsdecode(output), "-" if source is None else os.fsdecode(source)   # (bytes: path-like)
    if not output.endswith(("/", os.sep)):
        return
    if source != "-" and not os.path.lexists(source):
        from codec.audio import missing
        raise CodecError(f"{source}: {missing(Path(source))}")
    raise CodecError(f"{output}: names a folder (it ends with /); give a file name such as "
                     f"{output}{'out' if source == '-' else Path(source).stem}{suffix}")


def check_output_path(output_path: Path, force: bool, input_path: Path | None = None, stdout: bool = True,
                      codes_writer: str | None = None) -> None:
    """Fail early, before any work, unless ``output_path`` may be written: not a folder, not the
    input, not an existing file (unless forced), in a folder that exists. ``stdout``: the command
    can write to ``-`` instead (the error for a device says so). ``codes_writer``: what writes codes
    there ("encoding", "--save"), for ``check_not_replacing_audio``, whose refusal (--force cannot
    help) comes before the one that names --force.

    Raises:
        CodecError: naming the path and the problem.
    """
    if output_path.is_dir():
        raise CodecError(_not_a_file(output_path))
    if names_a_file_descriptor(output_path):
        raise CodecError(f"{output_path}: names an open file by its file descriptor, which the output, written "
                         f"beside it and renamed, would replace; give "
                         f"{'- for stdout, or ' if stdout else ''}a file name")
    try:
        final = final_path(output_path)
    except (RuntimeError, OSError):   # Python 3.11 raises RuntimeError for a loop of links
        raise CodecError(f"{output_path}: is a loop of symbolic links; give a file name") from None
    if input_path is not None and final.resolve() == input_path.resolve():
        raise CodecError(f"{output_path}: the output would overwrite the input; give another file name")
    if input_path is not None and same_file(final, input_path):   # the same file by another route
        raise CodecError(f"{output_path}: is the input file under another name (a hard link, another mount "
                         f"of its folder, or another case of its name), which the output would replace; "
                         f"give another file name")
    if problem := _not_a_file(output_path, stdout):
        raise CodecError(problem)
    if codes_writer is not None:
        check_not_replacing_audio(output_path, codes_writer)
    if output_path.exists() and not force:
        raise CodecError(f"{output_path} exists; pass --force to overwrite it")
    if output_path.parent.exists() and not output_path.parent.is_dir():
        raise CodecError(f"{output_path.parent}: is a file, not a directory for the output")
    if not output_path.parent.is_dir():
        raise CodecError(f"{output_path.parent}: no such directory for the output")


def entropy_coder_for(model: ConvCodec, required: bool = False, command: str = "encode"):
    """An ``EntropyCoder`` for the model's entropy model, or None if it has none.

    Raises:
        CodecError: if ``required`` and the model has no entropy model (the message tells to run
            ``command`` without --entropy).
    """
    entropy_model = getattr(model, "entropy_model", None)
    if entropy_model is None:
        if required:
            folder = getattr(model, "model_dir", None)
            where = f" (its folder {folder} has no entropy.safetensors and entropy_config.json)" if folder else ""
            raise CodecError(f"model '{model.config.name}' has no entropy model{where}; {command} without --entropy"
                             f"{entropy_models_hint()}")
        return None
    coder = model.__dict__.get("_entropy_coder")   # made once per model: it prepares 8-bit weights
    if coder is None or coder.model is not entropy_model:
        from codec.entropy import EntropyCoder

        coder = model.__dict__["_entropy_coder"] = EntropyCoder(entropy_model)
    return coder


def entropy_models_hint() -> str:
    """", or with a model that has one (NAMES)" for error messages; empty if none is found."""
    from codec.models.loading import models_with_entropy

    names = models_with_entropy()
    return f", or with a model that has one (--model {' / '.join(names)})" if names else ""


def wants_entropy(model: ConvCodec, entropy: bool | None) -> bool:
    """Whether to entropy-code: as asked, or (``None``) whenever the model has an entropy model."""
    return getattr(model, "entropy_model", None) is not None if entropy is None else entropy


def read_codes(path: Path | str, model: ConvCodec | None = None) -> CodesFile:
    """Read and verify a ``.codes`` file (entropy-coded ones with ``model``'s entropy model).

    Raises:
        CodecError: naming the file, on any problem.
    """
    path = Path(path)
    data = codes_bytes(path)
    try:
        coder = None
        if model is not None:
            meta = read_metadata(data)
            check_compatible(model, meta)   # before any entropy decoding, which would trust the metadata
            coder = entropy_coder_for(model) if meta.entropy_coded else None
        return from_bytes(data, coder)
    except CodecError as error:
        raise CodecError(f"{path}: {error}") from None


def check_not_replacing_audio(output_path: Path, writer: str = "encoding") -> None:
    """Refuse, even with --force, to replace an audio file with codes: ``codec encode a.wav b.wav``
    (a glob that matched two files, an output folder forgotten) would lose ``b.wav``, as would
    ``codec stream --save b.wav`` (``writer`` "--save"). Audio is known by its name's suffix (a
    symbolic link's target's) or by its header, whatever its name. A file of codes (a ``.codes``
    file or a saved packet stream) that was given an audio suffix before may be replaced.

    Raises:
        CodecError: naming the file.
    """
    from codec.packets import coded_kind

    try:
        final = final_path(output_path)
    except (RuntimeError, OSError):   # a loop of links: check_output_path names it
        return
    if not final.is_file():
        return
    try:
        with final.open("rb") as existing:
            start = existing.read(4)
    except OSError:
        return   # writing it fails with the reason
    if coded_kind(start):
        return
    named_audio = final.suffix.lower() in AUDIO_SUFFIXES or output_path.suffix.lower() in AUDIO_SUFFIXES
    if named_audio or starts_as_audio(start):
        if writer == "--save":
            raise CodecError(f"{output_path}: is an audio file, which the packet stream would replace; "
                             f"name the saved stream .codes (--output FILE writes the decoded audio)")
        fix = ("name the output .codes" if named_audio else "give the codes another name (this file holds audio, "
               "whatever its name says)")
        raise CodecError(f"{output_path}: is an audio file, which {writer} would replace with codes; "
                         f"{fix} (to encode several files, give an output folder)")


def codes_under_audio_name(path: Path, what: str = "codes") -> str | None:
    """The warning for codes (or ``what`` else: a stream's packets) written under an audio file's
    suffix (`codec encode in.wav out.wav`: a likely slip), or None."""
    if Path(path).suffix.lower() in AUDIO_SUFFIXES:
        return f"{path}: holds {what}, not audio, whatever its suffix says; codec decode turns it back into audio"
    return None


def _reporting(blocks: Iterable[np.ndarray], on_progress: Callable[[int, int | None], None],
               total: int | None) -> Iterator[np.ndarray]:
    """``blocks``, calling ``on_progress(samples so far, total)`` once each has been coded (when the
    next is asked for, and after the last)."""
    done = 0
    for block in blocks:
        yield block
        done += len(block)
        on_progress(done, total)


def encode_file(model: ConvCodec, input_path: Path | str, output_path: Path | str,
                bitrate_kbps: float = 6.0, force: bool = False, entropy: bool | None = None,
                refine_steps: int = 0,
                on_progress: Callable[[int, int | None], None] | None = None) -> tuple[CodesFile, CodingReport]:
    """Encode an audio file into a ``.codes`` file, block by block; returns what was written.

    ``entropy``: range-code the codes with the model's entropy model (True: CodecError if it has
    none; None: if it has one). ``refine_steps``: see ``encode_blocks``. ``on_progress(samples
    coded, samples in all or None where the header does not say)`` is called after each block.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    check_paths(input_path, output_path, force, codes_writer="encoding")
    num_codebooks = _codebooks(model, bitrate_kbps)
    report, clipped, peak = CodingReport(), [0], [0.0]
    leveling, leveled = Leveling(), model.config.input_level_dbfs is not None
    if leveled:   # a first pass measures the input's level
        with open_audio(input_path) as source:
            blocks = read_blocks(source, input_path, int(block_seconds(source.channels) * source.samplerate))
            leveling = measured_leveling(model, in_full_scale(blocks, input_path, [0], [0.0], leveled),
                                         source.samplerate)
    with open_audio(input_path) as source:
        block_size = int(block_seconds(source.channels) * source.samplerate)
        blocks = in_full_scale(read_blocks(source, input_path, block_size), input_path, clipped, peak, leveled)
        if on_progress:
            blocks = _reporting(blocks, on_progress, None if source.frames >= UNKNOWN_LENGTH else source.frames)
        encoded = encode_blocks(model, blocks, source.samplerate, source.channels, num_codebooks, refine_steps,
                                leveling)
        seen = encoded[1]
        if lost := samples_missing(source, seen):
            report.warnings.append(f"{input_path}: file is truncated: its header announces {seen + lost} "
                                   f"samples, {seen} could be read; coded those")
        elif xing_size_disagrees(source):
            report.warnings.append(f"{input_path}: more MPEG data follows the {seen} samples its Xing header counts "
                                   f"(most likely MP3 files joined end to end, as cat makes), which the decoder "
                                   f"does not read: coded the counted {seen} samples only (to code all, convert it "
                                   f"first, e.g. ffmpeg -i IN.mp3 OUT.wav)")
        if damage := decoder_notes(source):
            report.warnings.append(f"{input_path}: {damage}")
        if chained := chained_ogg_streams(source, input_path):
            follow = "streams follow" if chained > 1 else "stream follows"
            report.warnings.append(f"{input_path}: {chained} more Ogg {follow} the first (a chained file), which "
                                   f"libsndfile does not read: coded the first stream's {seen} samples only (to "
                                   f"code all, join them first, e.g. ffmpeg -i IN.ogg OUT.wav)")
        if stray := unannounced_bytes(source):
            report.warnings.append(f"{input_path}: {stray} bytes follow the {seen} samples its header announces and "
                                   f"are no WAV chunk: most likely audio whose header was never finished (a "
                                   f"recording that stopped); coded the announced samples only (to code the rest, "
                                   f"repair the header first, e.g. ffmpeg -i IN.wav OUT.wav)")
        codes_file = _codes_file(model, source.samplerate, *encoded)
    if clipped[0]:
        report.warnings.append(f"{input_path}: {clipped[0]} samples were beyond ±1.0 full scale (peak "
                               f"{peak[0]:.6g}) and were limited to ±1.0")
    if note := codes_under_audio_name(output_path):
        report.warnings.append(note)
    coder = entropy_coder_for(model, required=True) if wants_entropy(model, entropy) else None
    data = to_bytes(codes_file, coder)
    if coder is not None and len(plain := to_bytes(codes_file)) <= len(data):
        # a short file's codes may shrink and yet not pay for the bytes range coding adds to the
        # header (the entropy model's name, chunk lengths): nothing to warn about, only audio
        # unlike the entropy model's training data makes the codes themselves larger
        header_only = not codes_file.codes.size or bitstream.codes_bytes(data) < bitstream.codes_bytes(plain)
        what = "file larger: the bytes it adds to the header outweigh what it saves" if header_only else \
            "codes no smaller"
        larger = (f"{input_path}: range coding with entropy model '{coder.name}' made the {what} "
                  f"({len(data):,} bytes against {len(plain):,} without it)")
        if entropy:   # asked for by name: kept
            report.warnings.append(f"{larger}; written range-coded, as asked")
        else:   # on by default: the smaller file
            if not header_only:
                report.warnings.append(f"{larger}; written without it")
            data, coder = plain, None
    write_atomically(output_path, lambda tmp: tmp.write_bytes(data), overwrite=force)
    if coder is not None:   # the metadata as written (and as reading the file gives it)
        codes_file = replace(codes_file, metadata=replace(codes_file.metadata, entropy_model=coder.name,
                                                          entropy_weights=coder.weights[:8]))
    return codes_file, report


def _check_not_empty_flac(samples: int, input_path: Path, output_path: Path) -> None:
    """Raises CodecError for no samples to a FLAC file: libsndfile writes no header then."""
    if samples == 0 and audio_format_for(output_path) == "FLAC":
        raise CodecError(f"{input_path}: holds no samples, and an empty FLAC file cannot be written; "
                         f"decode it to .wav")


def decode_file(model: ConvCodec, input_path: Path | str, output_path: Path | str,
                force: bool = False, sample_rate: int | None = None,
                channels: int | None = None, sample_format: str | None = None) -> CodingReport:
    """Decode a ``.codes`` file to audio block by block; the format follows the output's suffix
    (WAV, FLAC and AIFF as 16-bit PCM, or 24-bit for quiet input; or ``sample_format``: "pcm16",
    "pcm24" or "float": see ``output_subtype``). Except in float, samples beyond ±1.0 are clipped,
    and counted in the report.

    ``sample_rate`` (Hz) and ``channels`` change the output from the original's rate and channel
    count (None: keep it); see ``convert_blocks``.

    Raises:
        CodecError: for a bad path, a corrupt file, another model's codes, or an unsupported
            output rate, channel count or format.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    check_paths(input_path, output_path, force)
    codes_file = read_codes(input_path, model)   # (checked against the model there)
    meta = codes_file.metadata
    check_output_format(meta.channels, sample_rate, channels, input_path)
    _check_not_empty_flac(meta.samples, input_path, output_path)
    subtype = output_subtype(output_path, meta.gain_db, sample_format)

    report = CodingReport()
    write_decoded(output_path, decode_blocks(model, codes_file), meta.sample_rate, meta.channels, meta.samples,
                  sample_rate, channels, force, report, subtype)
    return report


def write_decoded(output_path: Path, blocks: Iterable[np.ndarray], rate: int, channels: int, samples: int | None,
                  to_rate: int | None, to_channels: int | None, force: bool, report: CodingReport,
                  subtype: str | None = None) -> None:
    """Write decoded ``[n, C]`` blocks at ``rate`` (``samples`` in all, None: as many as they
    are) to ``output_path`` through a temporary file, at ``to_rate`` with ``to_channels`` (None:
    keep; see ``convert_blocks``), as soundfile's ``subtype`` (None: the format's default); except
    in float, samples beyond ±1.0 are clipped and counted in ``report``.

    Raises:
        CodecError: naming ``output_path`` if it cannot be written (a full disk named as one).
    """
    clipped = 0

    def write(tmp: Path) -> None:
        nonlocal clipped
        frames = None if samples is None else -(-samples * (to_rate or rate) // rate)
        with open_sink(tmp, output_path, to_rate or rate, to_channels or channels, subtype, frames) as sink:
            for block in convert_blocks(blocks, rate, samples, to_rate, to_channels):
                if subtype == "FLOAT":   # (holds samples beyond full scale: a hot float input's level)
                    sink.write(block)
                    continue
                clipped += int(np.count_nonzero(np.abs(block) > 1.0))
                write_samples(sink, np.clip(block, -1.0, 1.0))

    try:
        write_atomically(output_path, write, overwrite=force)
    except sf.LibsndfileError as error:   # a write or the closing flush failed
        reason = write_limit_reached(output_path) or error.error_string
        raise CodecError(f"{output_path}: cannot write ({reason})") from None
    if clipped:
        report.warnings.append(f"{output_path}: {clipped} decoded samples exceeded ±1.0 and were clipped (float "
                               f"samples keep them: --sample-format float, in .wav or .aiff)")


def decode_any_file(input_path: Path | str, output_path: Path | str, force: bool = False,
                    model: str | Path | None = None, sample_rate: int | None = None, channels: int | None = None,
                    load: Callable[[str | Path], ConvCodec] | None = None,
                    sample_format: str | None = None) -> CodingReport:
    """Decode a ``.codes`` file or a saved packet stream with ``model`` (a name or directory;
    None: the model named in the file), loaded by ``load`` (default ``load_model``; a cache in
    batch workers). Output options as in ``decode_file``.

    Raises:
        CodecError: as ``decode_file`` and ``codec.saved_stream.decode_stream_file``, or if the model is not found.
    """
    from codec.models import load_model

    load = load or load_model
    input_path, output_path = Path(input_path), Path(output_path)
    check_paths(input_path, output_path, force)
    if is_packet_stream(input_path):
        from codec.saved_stream import decode_stream_file

        info = read_stream_info(input_path)[0]
        entropy = (info.entropy_model, info.entropy_weights) if info.entropy_model else None
        network = load(model if model is not None else _model_named_in(input_path, info.model, info.weights,
                                                                        entropy))
        return decode_stream_file(network, input_path, output_path, force, sample_rate, channels, sample_format)
    meta = read_codes_metadata(input_path)
    entropy = (meta.entropy_model, meta.entropy_weights) if meta.entropy_model else None
    network = load(model if model is not None else _model_named_in(input_path, meta.model, meta.weights, entropy))
    return decode_file(network, input_path, output_path, force, sample_rate, channels, sample_format)


def _model_named_in(path: Path, name: str, weights: str, entropy: tuple[str, str] | None = None) -> Path:
    """``model_dir_for_codes`` for the model a file names; its ModelNotFoundError names the file."""
    from codec.models.loading import model_dir_for_codes

    try:
        return model_dir_for_codes(name, weights, entropy)
    except ModelNotFoundError as error:
        raise ModelNotFoundError(f"{path}: {error}", error.is_folder) from None


def audio_format_for(path: Path) -> str:
    """The audio format that writing ``path`` makes, by the suffix of the file written: a symbolic
    link's target (``x.wav`` linking to ``y.flac`` gets FLAC, as its name promises)."""
    if problem := _not_a_file(path):   # named before its suffix, as check_output_path would name it
        raise CodecError(problem)
    final = final_path(path)
    suffix = final.suffix.lower().lstrip(".")
    formats = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG", "oga": "OGG", "aiff": "AIFF", "aif": "AIFF"}
    if suffix not in formats:
        found = f"'.{suffix}' files" if suffix else "a file without an extension"
        target = f" (a link to {final})" if final != path else ""
        raise CodecError(f"{path}{target}: cannot write {found}; use .wav, .flac, .ogg or .aiff")
    return formats[suffix]


# ``sample_format`` of decoding (``codec decode --sample-format``): soundfile's subtype for each
SAMPLE_FORMATS = {"pcm16": "PCM_16", "pcm24": "PCM_24", "float": "FLOAT"}
_SAMPLE_BYTES = {"PCM_24": 3, "FLOAT": 4}   # (else 2: 16-bit PCM, the default)


def chosen_subtype(sample_format: str | None, audio_format: str, where: str | Path) -> str | None:
    """soundfile's subtype for ``sample_format`` (a key of ``SAMPLE_FORMATS``, any case; None: not
    chosen, None returned) written as ``audio_format`` ("WAV", "FLAC", "OGG", "AIFF").

    Raises:
        CodecError: naming ``where``, for an unknown sample format, any for OGG (Vorbis is lossy:
            it has none to choose), or float for FLAC (integer samples only).
    """
    if sample_format is None:
        return None
    if sample_format.lower() not in SAMPLE_FORMATS:
        raise CodecError(f"sample format {sample_format!r} is not supported; choose {', '.join(SAMPLE_FORMATS)}")
    if audio_format == "OGG":
        raise CodecError(f"{where}: OGG Vorbis is lossy and has no sample format to choose; write .wav, .flac or "
                         f".aiff, or leave the sample format out")
    if audio_format == "FLAC" and sample_format.lower() == "float":
        raise CodecError(f"{where}: FLAC holds integer samples only (pcm16 or pcm24); write .wav or .aiff for float")
    return SAMPLE_FORMATS[sample_format.lower()]


def output_subtype(path: Path, gain_db: float | list[float] | None, sample_format: str | None = None) -> str | None:
    """The sample format to decode to ``path``: ``sample_format``'s (see ``chosen_subtype``) where
    given; else 24-bit PCM for a PCM format (WAV, FLAC, AIFF) when the encoder raised the input
    (any channel of it) by ``QUIET_GAIN_DB`` or more, else None (soundfile's default: 16-bit PCM,
    or Vorbis for OGG).

    Why: decoding restores a quiet file's level, and 16-bit rounding is then noise not far below
    the speech. Every 8th dev file at 6 kbps, by active input level: at -48 dBFS and above, 16-bit
    output scores as float does (3.015); at -54 dBFS 2.968, at -60 dBFS 2.800; 24-bit stays within
    0.02 of float at every level.

    Raises:
        CodecError: as ``chosen_subtype``.
    """
    if sample_format is not None:
        return chosen_subtype(sample_format, audio_format_for(path), path)
    quiet = gain_db is not None and max(np.atleast_1d(gain_db)) >= QUIET_GAIN_DB
    return "PCM_24" if quiet and audio_format_for(path) in ("WAV", "FLAC", "AIFF") else None


# WAV and AIFF count their bytes in 32 bits: a file past 4 GiB would claim a wrong length
_SIZE_FIELD_LIMIT = 2**32 - 1 - 4096   # (less room for the header)


def open_sink(tmp: Path, path: Path, sample_rate: int, channels: int, subtype: str | None = None,
              frames: int | None = None) -> sf.SoundFile:
    """``tmp`` opened for writing audio in the format of ``path``'s suffix (``audio_format_for``), with
    soundfile's ``subtype`` (None: the format's default). ``frames`` (samples per channel, if
    known): a WAV file that would pass 4 GiB is written as RF64 (WAV's 64-bit form, which
    soundfile, ffmpeg and sox read; a plain WAV header would claim a wrong, wrapped length).

    Raises:
        CodecError: naming ``path`` (not ``tmp``), the format asked for and libsndfile's reason, if
            it refuses (more channels than the format holds: FLAC 8, OGG 255, WAV and AIFF 1024), above
            192 kHz in OGG, a FLAC rate above 65535 Hz not in steps of 10 Hz, or an AIFF file past 4 GiB.
    """
    audio_format = audio_format_for(path)
    data_bytes = 0 if frames is None else frames * channels * _SAMPLE_BYTES.get(subtype, 2)
    if audio_format in ("WAV", "AIFF") and channels > 1024:   # (libsndfile's limit)
        raise CodecError(f"{path}: {audio_format} holds at most 1024 channels, not {channels}")
    if data_bytes > _SIZE_FIELD_LIMIT and audio_format == "AIFF":
        raise CodecError(f"{path}: {data_bytes / 2**30:.1f} GiB of audio is past AIFF's 4 GiB; write .wav "
                         f"(RF64)" + ("" if subtype == "FLOAT" else " or .flac"))
    if data_bytes > _SIZE_FIELD_LIMIT and audio_format == "WAV":
        audio_format = "RF64"
    if audio_format == "FLAC" and channels > 8:
        raise CodecError(f"{path}: FLAC holds at most 8 channels, not {channels}; write .wav")
    if audio_format == "FLAC" and sample_rate > 65535 and sample_rate % 10:   # (its header's rate field)
        raise CodecError(f"{path}: FLAC holds a rate above 65535 Hz only in steps of 10 Hz, not {sample_rate}; "
                         f"choose one such as {sample_rate // 10 * 10}, or write .wav")
    if audio_format == "OGG" and channels > 255:   # Ogg's channel mapping holds 255 (libsndfile crashes beyond)
        raise CodecError(f"{path}: OGG holds at most 255 channels, not {channels}; write .wav")
    if audio_format == "OGG" and sample_rate > 192000:   # libvorbis crashes above about 200 kHz
        raise CodecError(f"{path}: OGG Vorbis holds at most 192000 Hz, not {sample_rate}; write .wav or .flac")
    try:
        return sf.SoundFile(os.fsencode(tmp), "w", samplerate=sample_rate, channels=channels, format=audio_format,
                            subtype=subtype)
    except (sf.LibsndfileError, ValueError, TypeError, RuntimeError) as error:
        reason = getattr(error, "error_string", None) or str(error).replace(str(tmp), str(path))
        if limit := write_limit_reached(tmp):
            raise CodecError(f"{path}: cannot write ({limit})") from None
        raise CodecError(f"{path}: cannot write {channels} channels at {sample_rate} Hz as {audio_format} "
                         f"({reason})") from None
