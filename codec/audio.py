"""Audio file I/O (soundfile), resampling (soxr) and input validation.

Arrays are ``[T, C]`` float (samples by channels), as soundfile returns them. No torchaudio: its
x86-64 wheels are CUDA builds tied to one torch release and fail beside the CPU torch wheel.
"""

import mmap
import os
import re
import shlex
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from codec.errors import CodecError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".aifc", ".caf", ".w64")
SUPPORTED = "WAV, FLAC, OGG (Vorbis, Opus), MP3, AIFF, CAF, W64"
LOSSY_SUFFIXES = (".ogg", ".oga", ".opus", ".mp3")   # (a batch prefers x.wav to x.mp3 for x.codes)
# audio that libsndfile does not read but ffmpeg converts: named in the errors and batch notes
RAW_PCM_SUFFIXES = (".raw", ".pcm", ".s16", ".sln")
FFMPEG_ONLY_SUFFIXES = (".m4a", ".mp4", ".aac", ".wma", ".webm", ".amr", ".3gp", ".mka", ".ac3", ".mov", ".mkv")
# files that are never audio: no conversion is offered for them
TEXT_AND_DATA_SUFFIXES = (".txt", ".md", ".json", ".yaml", ".yml", ".csv", ".tsv", ".xml", ".html", ".pdf",
                          ".py", ".sh", ".png", ".jpg", ".jpeg", ".zip", ".gz", ".tar", ".npz", ".npy", ".pt")
_READ_ERRORS = (sf.LibsndfileError, RuntimeError, ValueError, TypeError, OSError)


MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1000, 384000   # Hz read, written and stored in a .codes file
UNKNOWN_LENGTH = 1 << 62   # what libsndfile reports as the length of a stream without one


# what libmpg123 (libsndfile's MP3 decoder) prints on stderr for damaged data, by itself
_MPG123_LINE = re.compile(r"^(?:Note|Warning|Error): |^\[src/libmpg123/")


@contextmanager
def _mpg123_messages(notes: list[str]) -> Iterator[None]:
    """Collect into ``notes`` the lines libmpg123 writes to file descriptor 2 meanwhile; any other
    output meanwhile (a progress bar's refresh) goes on to stderr. libsndfile offers no way to quiet it."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            lines = caught.read().decode(errors="replace").splitlines(keepends=True)
    notes.extend(line.strip() for line in lines if _MPG123_LINE.match(line))
    if other := "".join(line for line in lines if not _MPG123_LINE.match(line)):
        sys.stderr.write(other)


# libmpg123's note on an MP3 whose size disagrees with its Xing header's (which it reads the length
# from): a file cut short, or more audio after the counted frames (MP3 files joined end to end)
_XING_SIZE_NOTE = "Xing stream size off"


def decoder_notes(source: sf.SoundFile) -> str | None:
    """What the MP3 decoder said of damaged data while ``source`` was opened and read (by
    ``open_audio`` and ``read_blocks``), summed up in one phrase, or None if it said nothing
    (its note on the Xing header's size: ``xing_size_disagrees``)."""
    said = list(dict.fromkeys(note.split(": ", 1)[-1] for note in getattr(source, "mpg123_notes", [])
                              if _XING_SIZE_NOTE not in note))
    places = [note for note in said if "offset" in note] or said   # opening and reading both say each
    if not places:
        return None
    return (f"damaged MP3 data: the decoder skipped what it could not read, at {len(places)} place(s) "
            f"(libmpg123: {places[0]})")


def xing_size_disagrees(source: sf.SoundFile) -> bool:
    """Whether the MP3 decoder found ``source``'s size off from what its Xing header counts; it
    reads the frames the header counts, so a file that is not cut short (``samples_missing``) holds
    more audio than was read: most likely MP3 files joined end to end (``cat a.mp3 b.mp3``)."""
    return any(_XING_SIZE_NOTE in note for note in getattr(source, "mpg123_notes", []))


def check_sample_rate(sample_rate: int) -> None:
    """Raises CodecError unless ``sample_rate`` (Hz) is one the codec reads, writes and stores."""
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise CodecError(f"sample rate {sample_rate} Hz is not supported; supported: {MIN_SAMPLE_RATE} to "
                         f"{MAX_SAMPLE_RATE} Hz")


def missing(path: Path) -> str:
    """Why ``path`` names no file, in words: a dangling link (or a loop of links) or nothing."""
    return "is a symbolic link to a missing file (or a loop of links)" if path.is_symlink() else "no such file"


# How the formats libsndfile names in its first bytes begin; MP3 (an ID3 tag or a frame) does not.
_NOT_MP3_MAGIC = (b"RIFF", b"RIFX", b"RF64", b"fLaC", b"OggS", b"FORM", b"caff", b"wvpk", b".snd", b"ajkg")


def starts_as_audio(start: bytes) -> bool:
    """Whether a file beginning with ``start`` (its first 4 bytes or more) is audio by its header:
    WAV, FLAC, Ogg, AIFF and the others in ``_NOT_MP3_MAGIC``, or MP3 (an ID3 tag or a frame header:
    its sync, then no reserved version, layer, bitrate or sample rate, so that 0xFF 0xFF ... is not one)."""
    return start.startswith(_NOT_MP3_MAGIC) or start.startswith(b"ID3") or _mpeg_frame_header(start)


def _mpeg_frame_header(start: bytes) -> bool:
    if len(start) < 3 or start[0] != 0xFF or start[1] & 0xE0 != 0xE0:
        return False
    version, layer = (start[1] >> 3) & 3, (start[1] >> 1) & 3
    bitrate, rate = start[2] >> 4, (start[2] >> 2) & 3
    return version != 1 and layer != 0 and bitrate != 15 and rate != 3


def _could_be_mp3(path: Path) -> bool:
    """Whether opening ``path`` may run libmpg123 (whose notes on fd 2 are then collected): not
    for a file that begins as WAV, FLAC, Ogg, AIFF or another format with a header."""
    try:
        with path.open("rb") as file:
            return not file.read(4).startswith(_NOT_MP3_MAGIC)
    except OSError:   # unreadable: libsndfile says why
        return True


def _coded_kind(path: Path) -> str | None:
    """``codec.packets.coded_kind`` of the file's first bytes (None if it cannot be read)."""
    from codec.packets import coded_kind

    try:
        with path.open("rb") as file:
            return coded_kind(file.read(4))
    except OSError:
        return None


def _convert_first(path: Path, example: str) -> str:
    """How to make ``path`` readable with ffmpeg: convert the file to WAV beside it, or, for piped
    input (``codec.pipes.stdin_file`` names it ``stdin``), convert in the pipe (``example``: a
    file name for the command, such as ``in.m4a``)."""
    if path.name == "stdin":
        return f"pipe it in as WAV instead, e.g. ffmpeg -i {example} -f wav - | codec ..."
    wav = shlex.quote(str(path.with_name(path.stem + "-converted.wav")))
    return f"convert it first, e.g. ffmpeg -i {shlex.quote(str(path))} {wav}"


def unreadable(path: Path, reason: str) -> str:
    """Why ``path`` cannot be read, and how to make it readable where its suffix says: raw PCM
    needs a header, other formats ffmpeg reads need converting, and a file without one of the
    supported suffixes may be audio in another format too."""
    suffix = path.suffix.lower()
    source, wav = shlex.quote(str(path)), shlex.quote(str(path.with_suffix(".wav")))
    if suffix in RAW_PCM_SUFFIXES:
        return (f"{path}: raw PCM cannot be read (no header gives its sample rate, channels and sample format); "
                f"wrap it as WAV first, e.g. ffmpeg -f s16le -ar 16000 -ac 1 -i {source} {wav} with the data's own "
                f"format, rate and channels")
    if suffix in FFMPEG_ONLY_SUFFIXES:
        return f"{path}: {suffix} audio cannot be read (supported: {SUPPORTED}); convert it first, e.g. " \
               f"ffmpeg -i {source} {wav}"
    if path.name == "stdin":   # what codec.pipes.stdin_file names a piped input: convert in the pipe
        hint = f"; if it is audio in another format, {_convert_first(path, 'in.m4a')}"
    elif suffix in TEXT_AND_DATA_SUFFIXES:
        hint = f"; a {suffix} file is not audio"
    elif suffix not in AUDIO_SUFFIXES:
        hint = f"; if it is audio in another format, convert it first, e.g. ffmpeg -i {source} {wav}"
    elif "unsupported encoding" in reason.lower():   # (AAC in CAF, ADPCM in WAV, ...)
        hint = f"; convert it first, e.g. ffmpeg -i {source} {wav}"
    else:
        hint = ""
    return f"{path}: cannot read audio ({reason}); supported: {SUPPORTED}{hint}"


_IMAGE_BRANDS = (b"heic", b"heix", b"hevc", b"mif1", b"msf1", b"avif", b"avis")   # ISO media files of pictures


def _ogg_flac(path: Path) -> bool:
    """Whether the file is FLAC in an Ogg container (its first packet begins 0x7F "FLAC"), which
    libsndfile's FLAC decoder fails on with "unknown error"."""
    try:
        with open(path, "rb") as file:
            start = file.read(64)
    except OSError:
        return False
    return start.startswith(b"OggS") and b"\x7fFLAC" in start


def _mp4_under_another_suffix(path: Path) -> str | None:
    """For an MP4/M4A file (its ``ftyp`` box at offset 4) named as another format: what it is and
    how to convert it; None otherwise (and for a file named .m4a, which ``unreadable`` covers)."""
    if path.suffix.lower() in FFMPEG_ONLY_SUFFIXES:
        return None
    try:
        with open(path, "rb") as file:
            start = file.read(12)
    except OSError:
        return None
    if start[4:8] != b"ftyp" or start[8:12] in _IMAGE_BRANDS:
        return None
    return (f"{path}: is MP4/M4A audio (AAC or ALAC), whatever its name says, which cannot be read (supported: "
            f"{SUPPORTED}); {_convert_first(path, 'in.m4a')}")


def open_audio(path: Path | str) -> sf.SoundFile:
    """Open an audio file for block reading (use as a context manager).

    Raises:
        CodecError: if the file is missing, a directory, empty or not a format libsndfile decodes.
    """
    path = Path(path)
    if path.is_dir():
        raise CodecError(f"{path}: is a directory, not an audio file")
    if path.exists() and not path.is_file():   # coding reads a file more than once
        raise CodecError(f"{path}: is not a regular file (a pipe, device or socket)")
    if not path.is_file():
        raise CodecError(f"{path}: {missing(path)}")
    if path.stat().st_size == 0:
        raise CodecError(f"{path}: is empty (0 bytes), not an audio file")
    notes: list[str] = []
    try:
        with _mpg123_messages(notes) if _could_be_mp3(path) else nullcontext():
            source = sf.SoundFile(os.fsencode(path))   # bytes: any file name the system allows
    except _READ_ERRORS as error:
        reason = str(error).split(": ", 1)[-1].strip() or type(error).__name__
        if "too many channels" in reason.lower():   # a format we read, beyond libsndfile's channel limit
            raise CodecError(f"{path}: has more channels than can be read (libsndfile reads at most 1024)") from None
        if coded := _coded_kind(path):
            named_as_audio = ", whatever its name says" if path.suffix.lower() in AUDIO_SUFFIXES else ""
            raise CodecError(f"{path}: is {coded}, not audio{named_as_audio}; decode it with codec decode") from None
        if mp4 := _mp4_under_another_suffix(path):
            raise CodecError(mp4) from None
        if _ogg_flac(path):
            raise CodecError(f"{path}: is FLAC in an Ogg container (Ogg FLAC), which cannot be read (FLAC is read "
                             f"in its own container only; supported: {SUPPORTED}); {_convert_first(path, 'in.ogg')}"
                             ) from None
        if reason.startswith("File does not exist or is not a regular file"):   # (libsndfile's words for a
            reason = "no audio data libsndfile can decode: damaged, or another format"   # damaged MP3 too)
        raise CodecError(unreadable(path, reason)) from None
    source.mpg123_notes = notes   # read by decoder_notes; read_blocks adds to them
    if source.samplerate <= 0 or source.channels <= 0:
        source.close()
        raise CodecError(f"{path}: invalid header ({source.samplerate} Hz, {source.channels} channels)")
    try:
        check_sample_rate(source.samplerate)
    except CodecError as error:
        source.close()
        raise CodecError(f"{path}: {error}") from None
    if source.frames >= UNKNOWN_LENGTH:
        source.close()   # libsndfile can read no further than its header here (it needs to seek)
        raise CodecError(f"{path}: the header does not give the length (as in FLAC that ffmpeg writes to a pipe), "
                         f"which libsndfile cannot read; convert it first (e.g. ffmpeg -i IN.flac OUT.wav), or "
                         f"pipe WAV instead (ffmpeg ... -f wav -)")
    return source


_BLOCK_ALIGN = re.compile(r"^\s*Block Align\s*: (\d+)", re.MULTILINE)   # in libsndfile's log of a WAV header


def announced_frames(source: sf.SoundFile) -> int:
    """The length in samples that a WAV or AIFF file's header announces, or ``source.frames``.

    libsndfile sets ``frames`` from what the file holds, so a file cut short (a copy or a recording
    that stopped) reads as a shorter, complete one; its log (``extra_info``) keeps the header's data
    size beside the size it found. A data size of 0xFFFFFFFF is a stream's "unknown" (ffmpeg to a pipe).
    """
    log = source.extra_info
    found = re.search(r"^\s*(?:data|SSND) : (\d+) \(should be (\d+)\)", log, re.MULTILINE)
    if not found or not int(found[2]) < int(found[1]) < 0xFFFFFFFF:
        return source.frames
    if frames := re.search(r"^\s*Frames\s*: (\d+)", log, re.MULTILINE):   # AIFF's COMM chunk says it
        return max(source.frames, int(frames[1]))
    block_align = _BLOCK_ALIGN.search(log)
    if not block_align or not int(block_align[1]):
        return source.frames
    return max(source.frames, int(found[1]) // int(block_align[1]))


def _readable_part(source: sf.SoundFile, path: Path, start: int, block_samples: int) -> np.ndarray:
    """The samples from ``start`` that decode, read again in small pieces after a block failed
    (libsndfile's FLAC decoder loses the whole block at a cut): ``[n, C]``, n maybe 0."""
    pieces, reopened = [], None
    try:
        try:
            source.seek(start)
        except _READ_ERRORS:   # a FLAC decoder that lost sync cannot seek any more: the file opened afresh can
            reopened = source = sf.SoundFile(os.fsencode(path))
            source.seek(start)
        while sum(map(len, pieces)) < block_samples:
            piece = source.read(min(1024, block_samples - sum(map(len, pieces))), dtype="float64", always_2d=True)
            if not len(piece):
                break
            pieces.append(piece)
    except _READ_ERRORS:
        pass
    finally:
        if reopened is not None:
            reopened.close()
    return np.concatenate(pieces) if pieces else np.zeros((0, source.channels))


def read_blocks(source: sf.SoundFile, path: Path, block_samples: int) -> Iterator[np.ndarray]:
    """``[n, C]`` float64 blocks of an open file until its end. A block that fails to decode is
    read again in small pieces, and the file ends after what of it decodes (libsndfile loses a
    cut FLAC's whole last block otherwise); the caller compares the count with the header's.

    Raises:
        CodecError: if nothing of a failing block decodes, or the file holds NaN or infinite samples.
    """
    ended, notes = False, getattr(source, "mpg123_notes", [])
    start = 0   # counted, not asked (tell): libsndfile cannot seek in GSM 6.10 or G.72x data, nor tell there
    while not ended:
        try:
            if source.format == "MP3":
                with _mpg123_messages(notes):
                    block = source.read(block_samples, dtype="float64", always_2d=True)
            else:
                block = source.read(block_samples, dtype="float64", always_2d=True)
        except _READ_ERRORS as error:
            block = _readable_part(source, path, start, block_samples)
            if not len(block):
                raise CodecError(f"{path}: cannot decode audio after {start} samples ({error})") from None
            ended = True   # a damaged or cut file ends here (the caller compares what it got with the header)
        if len(block) == 0:
            return
        finite = np.isfinite(block).all(axis=1)
        if not finite.all():
            raise CodecError(f"{path}: contains NaN or infinite samples (the first at sample "
                             f"{start + int(np.argmin(finite))})")
        start += len(block)
        yield block


def load_audio(path: Path | str) -> tuple[np.ndarray, int]:
    """Read a whole audio file as float64 ``[T, C]`` (integer formats in [-1, 1]) and its rate.

    Raises:
        CodecError: as ``open_audio`` and ``read_blocks``.
    """
    audio, rate, _ = load_audio_and_announced(path)
    return audio, rate


# an MP3 without a frame count in its header (ffmpeg writing to a pipe) has its length estimated
# from the file's size: off by up to the encoder's padding, not missing audio
MP3_LENGTH_SLACK = 2 * 1152   # samples: two MPEG-1 layer III frames


def unannounced_bytes(source: sf.SoundFile) -> int:
    """Bytes after a WAV file's data chunk that are no chunk, at least 0.1 s of its audio's worth, or 0.

    A recorder that stops before it writes its header's sizes leaves a data size of 0 (or of the
    first part) with the audio after it; libsndfile reads what the header announces, logs "Unknown
    chunk marker ... at position P" where the rest begins, and reports a shorter, complete file."""
    if source.format not in ("WAV", "WAVEX", "RF64"):
        return 0
    log = source.extra_info
    stray = re.search(r"^\*\*\* Unknown chunk marker \(\w+\) at position (\d+)", log, re.MULTILINE)
    length = re.search(r"^Length : (\d+)", log, re.MULTILINE)
    align = _BLOCK_ALIGN.search(log)
    if not (stray and length and align):
        return 0
    extra = int(length[1]) - int(stray[1])
    return extra if extra >= 0.1 * source.samplerate * int(align[1]) else 0


_OGG_PAGE = re.compile(rb"OggS\x00([\x00-\x07])")   # a page: capture pattern, version 0, header flags


def chained_ogg_streams(source: sf.SoundFile, path: Path) -> int:
    """How many Ogg streams follow the first in a chained Ogg file (streams one after another, as
    ``cat a.ogg b.ogg`` makes, or a radio recording): libsndfile reads the first only, and reports
    it as the whole file. 0 for any other file, or one that cannot be read again."""
    if source.format != "OGG":
        return 0
    try:
        with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            later, begun = 0, False
            for page in _OGG_PAGE.finditer(data):
                first_page_of_a_stream = page[1][0] & 0x02
                later += bool(first_page_of_a_stream and begun)
                begun = begun or not first_page_of_a_stream
            return later
    except (OSError, ValueError):   # (a pipe, an empty file: nothing to tell)
        return 0


def samples_missing(source: sf.SoundFile, read: int) -> int:
    """How many samples the header announces (``announced_frames``) beyond the ``read`` ones that
    could be read: > 0 for a file cut short; 0 within an MP3's ``MP3_LENGTH_SLACK``."""
    missing = announced_frames(source) - read
    return 0 if missing <= (MP3_LENGTH_SLACK if source.format == "MP3" else 0) else missing


def load_audio_and_announced(path: Path | str) -> tuple[np.ndarray, int, int]:
    """``load_audio``'s audio and rate, and the length in samples its header announces (more
    than the audio's for a file cut short: ``samples_missing``)."""
    with open_audio(path) as source:
        blocks = list(read_blocks(source, Path(path), 1 << 20))
        audio = np.concatenate(blocks) if blocks else np.zeros((0, source.channels))
        return audio, source.samplerate, len(audio) + samples_missing(source, len(audio))


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample ``[T]`` or ``[T, C]`` audio with soxr (high quality). A no-op when rates match."""
    if from_rate == to_rate or len(audio) == 0:
        return audio
    return soxr.resample(audio, from_rate, to_rate, quality="HQ")


# integer PCM subtypes: the int array that soundfile writes into each exactly, and its full scale
_PCM_FULL_SCALE = {"PCM_16": (np.int16, 2 ** 15, 1), "PCM_24": (np.int32, 2 ** 23, 2 ** 8),
                   "PCM_32": (np.int32, 2 ** 31, 1)}


def write_samples(sink: sf.SoundFile, block: np.ndarray) -> None:
    """Write float ``block [n, C]`` (within ±1.0) to ``sink``, rounded to the nearest step of an
    integer PCM file: libsndfile 1.2's own conversion floors (-1e-9 became -1 in 16 bits, so decoded
    silence read -94 dBFS, and every sample lay half a step low on average)."""
    pcm = _PCM_FULL_SCALE.get(sink.subtype)
    if pcm is None:
        sink.write(block)
        return
    dtype, full_scale, shift = pcm
    steps = np.clip(np.round(np.asarray(block, dtype=np.float64) * full_scale), -full_scale, full_scale - 1)
    sink.write(steps.astype(dtype) * dtype(shift))   # (24-bit: the top 24 bits of an int32)


def limited(block: np.ndarray, report_counts: list[int], peak: float | None = None) -> np.ndarray:
    """Clip samples beyond ±1 (float files can hold them); count them for a warning. ``peak``: the
    block's largest magnitude where the caller has it (``checked_peak``): within ±1, nothing to count."""
    if peak is not None and peak <= 1.0:
        return block
    outside = int(np.count_nonzero(np.abs(block) > 1.0))
    if outside:
        report_counts[0] += outside
        return np.clip(block, -1.0, 1.0)
    return block


# samples up to this far beyond full scale (48 dB) are clipped with a warning, as float files are
# (a codec's overshoot, e.g. decode's output, stays far below it); farther, they are most likely
# integer PCM held in floats, and refused
OVERSHOOT = 256.0


def checked_peak(samples: np.ndarray, source: str | Path = "audio") -> float:
    """The largest magnitude of float ``samples`` read from ``source`` (named in the error).

    Raises:
        CodecError: beyond ±``OVERSHOOT``: integer-scale PCM stored as floats, which clipping to
            ±1 would turn into a square wave (``codec encode``, ``eval``, ``stream`` and the
            Python APIs refuse it alike).
    """
    peak = float(np.max(np.abs(samples), initial=0.0))
    if peak > OVERSHOOT:
        raise CodecError(f"{source}: samples reach {peak:.9g}, far outside [-1, 1]: integer-scale PCM held in "
                         f"floats? scale it to [-1, 1] (16-bit PCM: divide by 32768)")
    return peak


def limited_float_samples(array: np.ndarray, stacklevel: int = 2, leveled: bool = False) -> np.ndarray:
    """Float samples given to the Python APIs (``Codec.encode``, ``OnnxCodec.encode``), as
    ``codec encode`` takes a float file: clipped to ±1 with a ``UserWarning`` (counting them),
    if none is beyond ±``OVERSHOOT``. ``stacklevel`` is the warning's, as ``warnings.warn``'s,
    counted from the caller of this function. ``leveled``: for a model that normalises its input's
    level, which scales such samples as it scales the rest: returned unclipped, without a warning.

    Raises:
        CodecError: for non-finite samples, or samples beyond ±``OVERSHOOT``.
    """
    if not np.all(np.isfinite(array)):
        raise CodecError("audio contains NaN or infinite samples")
    peak = checked_peak(array)
    if leveled:
        return array
    clipped = [0]
    array = limited(array, clipped, peak)
    if count := clipped[0]:
        warnings.warn(f"{count} sample{'s were' if count > 1 else ' was'} beyond ±1.0 full scale (peak {peak:.9g}) "
                      f"and {'were' if count > 1 else 'was'} limited to ±1.0", UserWarning, stacklevel=stacklevel + 1)
    return array
