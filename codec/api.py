"""The Python API: load a codec by name, code arrays or files.

    import codec

    model = codec.load_model("esc-16k-small")       # a shipped name or a model directory
    codes = model.encode(audio, sample_rate=44100)  # numpy [T] or [T, C], or torch [C, T] / [T]
    codes.save("talk.codes")                        # or codes.to_bytes()
    audio, sample_rate = model.decode(codec.Codes.load("talk.codes"))   # numpy [T, C]

    codec.encode_file("talk.wav", "talk_6k.codes", bitrate=6)
    codec.decode_file("talk_6k.codes", "talk_out.wav")

Decoded audio always has the input's sample rate, channel count and number of samples.
Problems with the input raise ``codec.CodecError`` with a message naming the cause.
"""

import dataclasses
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from codec import coding
from codec.atomic import write_atomically
from codec.audio import limited_float_samples
from codec.bitstream import (
    MAX_CHANNELS,
    CodesFile,
    CodesMetadata,
    codes_problem,
    from_bytes,
    parses_as_codes_file,
    read_metadata,
    to_bytes,
)
from codec.errors import CodecError, os_error_message
from codec.models import ConvCodec
from codec.models import load_model as _load_network
from codec.models.interface import CodecBase
from codec.packets import CODES_FILE_WITH_STREAM_MAGIC, STREAM_MAGIC
from codec.refine import check_refine_steps


@contextmanager
def _file_errors() -> Iterator[None]:
    """A failed file operation (a name too long for the file system, a folder that cannot be
    listed) as a CodecError naming the file, as the CLI reports it, instead of an OSError. (A
    context, not a decorator: a wrapper's frame would move the warnings' stacklevel off the caller.)"""
    try:
        yield
    except OSError as error:
        raise CodecError(os_error_message(error)) from None


@dataclass(eq=False)
class Codes:
    """Codes of one signal: ``codes [C, K, F]`` int64 (channels, codebooks, frames), metadata, and
    for models with a time-invariant code (TiCodec) ``global_codes [C, G]``, sent once. Two
    ``Codes`` are equal when their metadata and every code are, however they were stored
    (entropy-coded or not).

    Raises:
        CodecError: if ``metadata`` is not a ``CodesMetadata`` (as ``encode`` and ``load`` make).
    """

    metadata: CodesMetadata
    codes: np.ndarray
    global_codes: np.ndarray | None = None

    def __post_init__(self):
        if not isinstance(self.metadata, CodesMetadata):
            raise CodecError(f"Codes metadata must be a codec.bitstream.CodesMetadata (as encode and Codes.load "
                             f"make), not {type(self.metadata).__name__}")

    def __eq__(self, other) -> bool:
        if not isinstance(other, Codes):
            return NotImplemented
        return (_as_coded(self.metadata) == _as_coded(other.metadata) and np.array_equal(self.codes, other.codes)
                and (self.global_codes is None) == (other.global_codes is None)
                and (self.global_codes is None or np.array_equal(self.global_codes, other.global_codes)))

    def _file(self) -> CodesFile:
        """The codes as the file format holds them.

        Raises:
            CodecError: if the codes' shape or values disagree with the metadata.
        """
        codes_file = CodesFile(self.metadata, self.codes, self.global_codes)
        problem = codes_problem(codes_file)
        if problem:
            raise CodecError(problem)
        return codes_file

    @property
    def bitrate_kbps(self) -> float:
        """Nominal bitrate: codebooks x bits per code x frame rate."""
        return self.metadata.codebooks * self.metadata.bits_per_code * self.metadata.frame_rate / 1000

    @property
    def duration(self) -> float:
        """Seconds of audio the codes stand for."""
        return self.metadata.samples / self.metadata.sample_rate

    def to_bytes(self, model: "Codec | str | Path | None" = None) -> bytes:
        """The ``.codes`` file format (``codec/bitstream.py``); with ``model`` (the one that made
        the codes, or its name or folder), range-coded by its entropy model, always (``encode_file``
        writes a plain file instead where that is smaller, unless ``entropy=True``).

        Raises:
            CodecError: if the codes' shape or values disagree with the metadata, or ``model`` is
                not the model that made them or has no entropy model.
        """
        with _file_errors():
            return self._bytes(model, "to_bytes")

    def _bytes(self, model: "Codec | str | Path | None", caller: str) -> bytes:
        """``to_bytes`` for the method named ``caller`` (which the errors name)."""
        coder = None
        if model is not None:
            network = _network_of(model)
            with _python_argument_names({"pass --model with the model that encoded them":
                                         "pass the model that encoded them as model="}):
                coding.check_compatible(network, self.metadata)   # another model's entropy model mis-codes them
            with _python_argument_names({"without --entropy": "without model=", "(--model ": "(model="}):
                coder = coding.entropy_coder_for(network, required=True, command=f"call {caller}")
        try:
            return to_bytes(self._file(), coder)
        except ValueError as error:   # metadata too long for the format
            raise CodecError(str(error)) from None

    @classmethod
    def from_bytes(cls, data: bytes, model: "Codec | str | Path | None" = None) -> "Codes":
        """Parse ``.codes`` bytes (or a bytearray or memoryview of them); entropy-coded ones need
        the ``model`` that wrote them (a ``Codec``, or its name or folder).

        Raises:
            CodecError: for a corrupt or unsupported file (``BitstreamError``), data that is not
                bytes, or a ``model`` that cannot be loaded or did not make the codes.
        """
        with _file_errors():
            if isinstance(data, (bytearray, memoryview)):
                data = bytes(data)
            if not isinstance(data, bytes):
                raise CodecError(f"from_bytes takes the bytes of a .codes file, not {type(data).__name__}")
            coder = None
            metadata = read_metadata(data)
            if model is not None:   # the model the caller means is the one that made them, entropy-coded or not
                network = _network_of(model)
                with _python_argument_names({"pass --model with the model that encoded them":
                                             "pass the model that encoded them as model="}):
                    coding.check_compatible(network, metadata)
                if metadata.entropy_coded:
                    coder = coding.entropy_coder_for(network)
            elif metadata.entropy_coded:
                raise CodecError(f"the codes are entropy-coded with model '{metadata.entropy_model}': pass "
                                 f"{_model_argument_for(metadata)}")
            parsed = from_bytes(data, coder)
            return cls(parsed.metadata, parsed.codes, parsed.global_codes)

    def save(self, path: Path | str, model: "Codec | str | Path | None" = None) -> None:
        """Write a ``.codes`` file (replacing any file there but audio, only once the new one is
        complete); with ``model``, range-coded as ``to_bytes``. Warns (``UserWarning``) if ``path``
        has an audio file's suffix, as ``encode_file`` does.

        Raises:
            CodecError: as ``to_bytes``, or naming ``path`` if it is an audio file (as
                ``encode_file``, whatever ``force``), a folder, a device or pipe (which renaming
                the new file over it would replace), or cannot be written.
        """
        with _file_errors():
            _check_path(path, "path")
            coding.refuse_folder_name(path, None, ".codes")
            with _python_argument_names():
                # a folder, device, pipe or audio file: refused
                coding.check_output_path(Path(path), force=True, stdout=False, codes_writer="encoding")
            data = self._bytes(model, "save")
            write_atomically(Path(path), lambda tmp: tmp.write_bytes(data))
            if note := coding.codes_under_audio_name(Path(path)):
                warnings.warn(note, UserWarning, stacklevel=2)

    @classmethod
    def load(cls, path: Path | str, model: "Codec | str | Path | None" = None) -> "Codes":
        """Read a ``.codes`` file (see ``from_bytes``).

        Raises:
            CodecError: if it cannot be read, for a corrupt or unsupported file, or as ``from_bytes``
                for ``model``.
        """
        with _file_errors():
            _check_path(path, "path")
            try:
                data = Path(path).read_bytes()
            except OSError as error:
                raise CodecError(f"{path}: cannot read ({error.strerror or error})") from None
            if data.startswith(STREAM_MAGIC):
                if parses_as_codes_file(data):   # (CODC and CODS differ by one bit)
                    raise CodecError(f"{path}: {CODES_FILE_WITH_STREAM_MAGIC}")
                raise CodecError(f"{path}: is a packet stream (codec stream --save), not a .codes file; "
                                 f"decode it with codec.decode_file")
            try:
                return cls.from_bytes(data, model)
            except CodecError as error:
                raise CodecError(f"{path}: {error}") from None


def _as_coded(metadata: CodesMetadata) -> CodesMetadata:
    """The metadata without how a file stored the codes (the entropy model that range-coded them)."""
    return dataclasses.replace(metadata, entropy_model=None, entropy_weights=None)


def _network_of(model: "Codec | str | Path") -> ConvCodec:
    """The network of a ``Codec``, or of the model a name or folder names.

    Raises:
        CodecError: for anything else, or a model that cannot be loaded.
    """
    if isinstance(model, Codec):
        return model.network
    if isinstance(model, (str, os.PathLike)):
        _check_path(model, "model", "a model's name or folder")
        return _load_network(model)
    raise CodecError(f"model must be a codec.Codec (from codec.load_model), or a model's name or folder, "
                     f"not {type(model).__name__}")


# up to this many channels, an array with fewer samples than channels is taken as it comes (a
# stream's last, one-sample stereo block); beyond, it is most likely a short clip in the other layout
_FEW_CHANNELS = 8


def _misread(array: np.ndarray) -> str | None:
    """What a ``[T, C]`` array that is most likely the other layout would be (more channels than
    samples and than ``_FEW_CHANNELS``, or more than a file holds: caught before it fills the
    memory), or None."""
    samples, channels = array.shape
    if channels > MAX_CHANNELS:
        return f"{channels} channels (at most {MAX_CHANNELS})"
    if channels > max(samples, _FEW_CHANNELS):
        return f"{channels} channels of {samples} samples"
    return None


def _as_samples_by_channels(audio) -> tuple[np.ndarray, bool]:
    """numpy ``[T]``/``[T, C]`` (or a list of floats) or torch ``[T]``/``[C, T]`` -> float64
    ``[T, C]``, and whether torch. More channels than samples is refused as the other layout."""
    if isinstance(audio, torch.Tensor):
        if audio.dim() not in (1, 2) or not audio.is_floating_point():
            raise CodecError(f"torch audio must be floats, [samples] or [channels, samples], got "
                             f"{audio.dtype} of shape {tuple(audio.shape)}")
        if audio.is_meta or audio.layout != torch.strided:
            raise CodecError(f"torch audio must be a dense tensor holding its samples, got a "
                             f"{'meta' if audio.is_meta else str(audio.layout).removeprefix('torch.')} tensor")
        if audio.dim() == 2 and audio.shape[0] == 0:
            raise CodecError(f"torch audio is [channels, samples], and shape {tuple(audio.shape)} has no channels")
        array = audio.detach().cpu().double().numpy()
        array = array[:, None] if array.ndim == 1 else array.T
        if _misread(array):
            raise CodecError(f"torch audio is [channels, samples], and shape {tuple(audio.shape)} would be "
                             f"{_misread(array)}{_transpose_hint(array, 'pass audio.T')}")
        return array, True
    if isinstance(audio, (list, tuple)):   # Python numbers: 0 and 1 are floats here, not integer PCM
        try:
            audio = np.asarray(audio, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise CodecError(f"audio as a list must hold numbers in [-1, 1] ({error})") from None
    elif audio is None or isinstance(audio, (str, bytes)):
        raise CodecError(f"audio must be a numpy array (or a list of floats, or anything numpy.asarray takes) "
                         f"or a torch tensor, not {type(audio).__name__}")
    given = type(audio).__name__
    audio = np.asarray(audio)   # array.array, memoryview, objects with __array__ (pandas, xarray, JAX)
    kind = audio.dtype
    if kind.kind == "O":
        raise CodecError(f"audio must be a numpy array (or a list of floats, or anything numpy.asarray takes) "
                         f"or a torch tensor; numpy reads a {given} as Python objects")
    if kind.kind not in "f":   # integer PCM would be read as its raw values; strings and complex make no audio
        scale = f" (integer PCM: divide by {2 ** (8 * kind.itemsize - 1)})" if kind.kind in "iu" else ""
        raise CodecError(f"audio must be floats in [-1, 1], got numpy {kind}{scale}")
    array = np.asarray(audio, dtype=np.float64)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise CodecError(f"audio must be [samples] or [samples, channels] (numpy), got shape {array.shape}")
    if _misread(array):
        raise CodecError(f"numpy audio is [samples, channels], and shape {array.shape} would be {_misread(array)}"
                         f"{_transpose_hint(array, 'pass audio.T for [channels, samples] input')}")
    return array, False


def _transpose_hint(array: np.ndarray, hint: str) -> str:
    """``"; " + hint`` where the other layout of the ``[T, C]`` ``array`` would be read, else why not."""
    if _misread(array.T):
        return f"; nor is it audio the other way round ({_misread(array.T)})"
    return f"; {hint}"


class Codec:
    """A loaded codec (from ``load_model``). ``network`` is the underlying network, a
    ``codec.models.ConvCodec`` or ``EscCodec`` (tensor-level interface)."""

    def __init__(self, network: CodecBase):
        """Raises CodecError for anything but a codec network (a name or folder: ``load_model``)."""
        if not isinstance(network, torch.nn.Module) or not hasattr(network, "config"):
            example = f"codec.load_model({network!r})" if isinstance(network, (str, Path)) else "codec.load_model"
            raise CodecError(f"Codec wraps a loaded codec network, not {type(network).__name__}; load a model by "
                             f"name or folder with {example}")
        self.network = network

    def __repr__(self) -> str:
        rates = ", ".join(f"{b:g}" for b in self.bitrates_kbps)
        return f"<codec.Codec {self.name!r}: {self.sample_rate} Hz, {rates} kbps>"

    @property
    def name(self) -> str:
        """The model's name (as ``codec models`` lists it and ``.codes`` files record it)."""
        return self.network.config.name

    @property
    def sample_rate(self) -> int:
        """The rate in Hz the model codes at; input at any other rate is resampled to it and back."""
        return self.network.sample_rate

    @property
    def bitrates_kbps(self) -> list[float]:
        """The bitrates in kbps ``encode`` takes, lowest first."""
        return list(self.network.config.bitrates_kbps)

    @property
    def latency(self) -> int:
        """Samples (at ``sample_rate``) by which streaming decoding lags the input: one code frame
        plus the decoder's look-ahead (``codec.streaming``)."""
        return self.network.latency

    def encode(self, audio, sample_rate: int, bitrate: float | None = None, refine_steps: int = 0) -> Codes:
        """Encode audio: numpy ``[T]`` or ``[T, C]`` (or a list of floats), or torch ``[T]`` or
        ``[C, T]``; floats in [-1, 1], at any ``sample_rate`` from 1000 to 384000 Hz, up to 1024
        channels (each coded on its own), any length. ``bitrate`` in kbps, one of
        ``bitrates_kbps`` (None: 6, or the model's bitrate nearest to 6). ``refine_steps`` > 0
        refines the latent by analysis by synthesis (``codec/refine.py``): closer to the input,
        far slower to encode. Models with an input level (``config.json``'s ``input_level_dbfs``)
        bring each channel to it and record the gain (``metadata.gain_db``) that decoding undoes.

        Samples beyond ±1 (``decode``'s output may overshoot) are coded as they are by a model
        with an input level, whose gain scales them with the rest (``decode`` restores them);
        other models clip them to ±1 with a ``UserWarning``, as ``encode_file`` does for float
        files. Beyond ±256 (48 dB) they are refused as integer PCM held in floats. An array with
        more channels than samples (and more than 8) is refused as a short clip in the other
        layout (numpy is ``[T, C]``, torch ``[C, T]``).

        Raises:
            CodecError: for an unsupported bitrate or refinement, a bad shape, type or rate, or
                non-finite samples.
        """
        try:   # a rate of 16000.5 is not 16000, nor True 1 Hz, nor "16000" a number
            whole = not isinstance(sample_rate, (bool, str, bytes)) and float(sample_rate).is_integer()
        except (TypeError, ValueError, OverflowError):
            whole = False
        if not whole:
            raise CodecError(f"sample_rate {sample_rate!r}: must be a whole number of Hz")
        kbps = _checked_kbps(bitrate, self.network)
        check_refine_steps(refine_steps, self.network)
        array = limited_float_samples(_as_samples_by_channels(audio)[0], stacklevel=2,
                                      leveled=self.network.config.input_level_dbfs is not None)
        codes_file = coding.encode_audio(self.network, array, int(sample_rate), kbps, refine_steps)
        return Codes(codes_file.metadata, codes_file.codes, codes_file.global_codes)

    def decode(self, codes: Codes, tensor: bool = False):
        """``(audio, sample_rate)``: numpy float32 ``[T, C]``, or torch ``[C, T]`` with
        ``tensor=True``; the sample rate, channels and number of samples are those of the audio
        that was encoded, and so is its level. Samples may exceed ±1 a little (the codec's
        overshoot); files written by ``decode_file`` are clipped to ±1 with a warning.

        Raises:
            CodecError: if the codes were made by another model, or disagree with their metadata.
        """
        _check_flag(tensor, "tensor")
        if not isinstance(codes, Codes):
            raise CodecError(f"decode takes a codec.Codes (from encode, Codes.load or Codes.from_bytes), "
                             f"not {type(codes).__name__}")
        with _python_argument_names({"pass --model with the model that encoded them":
                                     "decode them with codec.load_model of the model that encoded them"}):
            audio, rate = coding.decode_audio(self.network, codes._file())
        return (torch.from_numpy(np.ascontiguousarray(audio.T)), rate) if tensor else (audio, rate)


def load_model(name_or_path: str | Path | None = None, int8: bool = False) -> Codec:
    """A shipped model by name (default: ``esc-16k-small``) or a model directory; ``int8``: its
    linear layers compute in int8 (faster on a CPU, slightly different output; ``codec/int8.py``).

    Raises:
        CodecError: if it is not found or cannot be loaded, or int8 is not available.
    """
    with _file_errors():
        if name_or_path is not None:
            _check_path(name_or_path, "name_or_path", "a model's name or folder (None: the default model)")
        _check_flag(int8, "int8")
        return Codec(_load_network(name_or_path, int8))


def _check_path(value, name: str, what: str = "a path") -> None:
    """Raises CodecError unless ``value`` is a non-empty ``str`` or ``os.PathLike`` (a file or
    folder, or a model's name: ``what`` it should be, for the message)."""
    if not isinstance(value, (str, os.PathLike)):
        raise CodecError(f"{name} must be {what} (str or pathlib.Path), not {type(value).__name__}")
    text = os.fspath(value)
    if not text:
        raise CodecError(f"{name} is empty; give {what}")
    if ("\0" if isinstance(text, str) else b"\0") in text:   # (no file name can hold one; os raises ValueError)
        raise CodecError(f"{name} {value!r} contains a NUL character, which no file name can hold")


def _check_flag(value, name: str, none_too: bool = False) -> None:
    """Raises CodecError unless ``value`` is True or False (or None, with ``none_too``): "no" or
    "false" would count as true, and ``force="no"`` would replace a file."""
    if not isinstance(value, bool) and not (none_too and value is None):
        raise CodecError(f"{name} must be True{', False or None' if none_too else ' or False'}, not {value!r}")


def _check_file_arguments(input_path, output_path, output_suffix: str, model, force, int8) -> None:
    """``encode_file``'s and ``decode_file``'s shared arguments, checked as the CLI checks its own
    (``output_suffix``: the output's usual suffix, for the suggestion for a folder's name)."""
    _check_path(input_path, "input_path")
    _check_path(output_path, "output_path")
    coding.refuse_folder_name(output_path, input_path, output_suffix)
    _check_model_argument(model)
    _check_flag(force, "force")
    _check_flag(int8, "int8")


def _check_sample_format(sample_format, output_path) -> None:
    """Raises CodecError unless ``sample_format`` is None or one that ``output_path``'s format holds
    (before any work, and before an existing output is named, as ``codec decode`` checks it)."""
    if sample_format is None:
        return
    if not isinstance(sample_format, str):
        raise CodecError(f"sample_format must be one of {', '.join(map(repr, coding.SAMPLE_FORMATS))} or None, "
                         f"not {type(sample_format).__name__}")
    coding.chosen_subtype(sample_format, coding.audio_format_for(Path(output_path)), output_path)


def _check_model_argument(model) -> None:
    """Raises CodecError unless ``model`` is None, a ``Codec`` or a model's name or folder."""
    if model is not None and not isinstance(model, Codec):
        _check_path(model, "model", "a codec.Codec (from codec.load_model), or a model's name or folder")


def _warn_int8_unused(model, int8: bool) -> None:
    """int8 takes effect where a model is loaded: a ``Codec`` was loaded already."""
    if int8 and isinstance(model, Codec):
        warnings.warn("int8=True is unused with a loaded Codec: it computes as it was loaded "
                      "(codec.load_model(..., int8=True) loads an int8 one)", UserWarning, stacklevel=3)


# the CLI's options in messages shared with it, and this API's arguments for them
_ARGUMENT_NAMES = {"pass --force": "pass force=True", "pass --model": "pass model=",
                   "without --entropy": "with entropy=False", "(--model ": "(model=",
                   "--sample-format float": 'sample_format="float"',
                   " (to encode several files, give an output folder)": ""}


def _in_python_names(message: str, replacements: dict[str, str] | None = None) -> str:
    """``message`` with the CLI's options named as this API's arguments (``replacements``, or ``_ARGUMENT_NAMES``)."""
    for cli, python in (replacements or _ARGUMENT_NAMES).items():
        message = message.replace(cli, python)
    return message


def _warn(report: coding.CodingReport) -> None:
    """The CLI's warnings about a file (clipped samples, a truncated input, codes under an audio
    file's suffix) as Python warnings, naming this API's arguments for the CLI's options."""
    for message in report.warnings:
        warnings.warn(_in_python_names(message), UserWarning, stacklevel=3)


@contextmanager
def _python_argument_names(replacements: dict[str, str] | None = None) -> Iterator[None]:
    """Errors shared with the CLI name its options; here they name this API's arguments."""
    try:
        yield
    except CodecError as error:
        message = _in_python_names(str(error), replacements)
        if message == str(error):
            raise
        raise CodecError(message) from None


def _checked_kbps(bitrate, network) -> float:
    """``bitrate`` as a float of kbps (None: the model's default). Raises CodecError for a value
    that is not a number (a bool, text such as "6k"); an unsupported number fails where it is used."""
    bitrate = network.default_bitrate() if bitrate is None else bitrate
    try:
        kbps = None if isinstance(bitrate, bool) else float(bitrate)
    except (TypeError, ValueError):
        kbps = None
    if kbps is None:
        raise CodecError(f"bitrate {bitrate!r}: must be a number of kbps, one of "
                         f"{', '.join(f'{b:g}' for b in network.config.bitrates_kbps)}")
    return kbps


def encode_file(input_path: Path | str, output_path: Path | str, bitrate: float | None = None,
                model: "Codec | str | Path | None" = None, force: bool = False, entropy: bool | None = None,
                refine_steps: int = 0, int8: bool = False) -> Codes:
    """Encode an audio file (WAV, FLAC, OGG, MP3, AIFF, CAF, W64; any rate and channel count) to a ``.codes``
    file (what ``codec encode`` does): range-coded with the model's entropy model when it has one,
    unless ``entropy=False``; ``model`` a ``Codec`` (as loaded: ``int8`` is then unused, with a
    warning) or a name or folder (None: the default model); ``bitrate`` and ``refine_steps`` as
    ``Codec.encode``; ``int8`` as ``load_model``. An existing ``output_path`` is replaced only with
    ``force=True`` (an audio file never), and only once the new file is complete.

    Returns the codes as written. Warnings (clipped samples, a truncated input, codes under an
    audio suffix) are ``UserWarning``s.

    Raises:
        CodecError: naming the file for input that cannot be read or output that exists or cannot
            be written; as ``Codec.encode`` for the bitrate and refinement; as ``load_model``.
    """
    with _file_errors():
        _check_file_arguments(input_path, output_path, ".codes", model, force, int8)
        _check_flag(entropy, "entropy", none_too=True)
        _warn_int8_unused(model, int8)
        with _python_argument_names():
            network = model.network if isinstance(model, Codec) else _load_network(model, int8)
            codes_file, report = coding.encode_file(network, input_path, output_path, _checked_kbps(bitrate, network),
                                                    force, entropy, refine_steps)
        _warn(report)
        return Codes(codes_file.metadata, codes_file.codes, codes_file.global_codes)


def decode_file(input_path: Path | str, output_path: Path | str, model: "Codec | str | Path | None" = None,
                force: bool = False, int8: bool = False, sample_format: str | None = None) -> None:
    """Decode a ``.codes`` file, or a packet stream saved by ``codec stream --save``, to audio
    (what ``codec decode`` does) with the input's sample rate, channels and length; the format
    follows the suffix of ``output_path`` (.wav, .flac, .ogg, .aiff). The model named in the file
    is used unless ``model`` is given (a ``Codec``: ``int8`` is then unused, with a warning; or a
    name or folder); ``int8`` as ``load_model``. An existing ``output_path`` is replaced only with
    ``force=True``, and only once the new file is complete. ``sample_format``: "pcm16", "pcm24" or
    "float" (.wav and .aiff only); None: 16-bit PCM, or 24-bit where encoding raised the input by 24
    dB or more (OGG: Vorbis). Decoded samples beyond ±1 are clipped, with a ``UserWarning``, except
    in float.

    Raises:
        CodecError: naming the file for a corrupt or unreadable input, an unsupported output
            suffix or sample format for it, output that exists or cannot be written, or codes another
            model made.
    """
    with _file_errors():
        _check_file_arguments(input_path, output_path, ".wav", model, force, int8)
        _check_sample_format(sample_format, output_path)
        _warn_int8_unused(model, int8)
        with _python_argument_names():
            report = coding.decode_any_file(input_path, output_path, force, model, load=lambda name_or_path: (
                name_or_path.network if isinstance(name_or_path, Codec) else _load_network(name_or_path, int8)),
                sample_format=sample_format)
        _warn(report)


def _model_argument_for(metadata) -> str:
    """The ``model=`` that reads entropy-coded codes of ``metadata``: the installed or shipped
    folder that holds their codec and entropy model, by name where its name loads it (a model
    trained under another folder name is loaded by its path), or a general hint where none does."""
    from codec.models.loading import holds_entropy_model, model_dir_for_codes, resolve_model_dir

    general = "model= the model that encoded them (a Codec, or its name or folder, with that entropy model)"
    try:
        folder = model_dir_for_codes(metadata.model, metadata.weights,
                                     (metadata.entropy_model, metadata.entropy_weights))
        by_name = resolve_model_dir(folder.name).resolve() == folder.resolve()
    except CodecError:
        return general
    if not holds_entropy_model(folder, metadata.entropy_model, metadata.entropy_weights):
        return general   # (the first folder of that codec, which cannot read them)
    return f"model=codec.load_model({folder.name if by_name else str(folder)!r})"
