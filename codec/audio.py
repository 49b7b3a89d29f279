"""Audio file I/O (soundfile), resampling (soxr) and input validation.

Arrays are ``[T, C]`` float (samples by channels), as soundfile returns them. No torchaudio: its
x86-64 wheels are CUDA builds tied to one torch release and fail beside the CPU torch wheel.
"""

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from codec.errors import CodecError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif")


def load_audio(path: Path | str) -> tuple[np.ndarray, int]:
    """Read an audio file as float64 ``[T, C]`` in [-1, 1] (integer formats) and its sample rate.

    Raises:
        CodecError: if the file is missing, unreadable, or not a format libsndfile decodes.
    """
    path = Path(path)
    if not path.is_file():
        raise CodecError(f"{path}: no such file")
    try:
        audio, sample_rate = sf.read(str(path), dtype="float64", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as error:
        raise CodecError(f"{path}: cannot read audio ({error}); supported: "
                         f"WAV, FLAC, OGG/Vorbis/Opus, MP3, AIFF") from None
    if not np.all(np.isfinite(audio)):
        raise CodecError(f"{path}: audio contains NaN or infinite samples")
    return audio, int(sample_rate)


def save_audio(path: Path | str, audio: np.ndarray, sample_rate: int) -> int:
    """Write ``[T, C]`` audio; the format follows the suffix (WAV and FLAC as 16-bit PCM).

    Returns:
        the number of samples clipped to [-1, 1] (integer formats cannot hold more).

    Raises:
        CodecError: if the suffix names no format soundfile writes.
    """
    path = Path(path)
    try:
        clipped = int(np.count_nonzero(np.abs(audio) > 1.0))
        sf.write(str(path), np.clip(audio, -1.0, 1.0), sample_rate)
    except (sf.LibsndfileError, TypeError, ValueError, RuntimeError) as error:
        raise CodecError(f"{path}: cannot write audio ({error})") from None
    return clipped


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample ``[T]`` or ``[T, C]`` audio with soxr (high quality). A no-op when rates match."""
    if from_rate == to_rate or len(audio) == 0:
        return audio
    return soxr.resample(audio, from_rate, to_rate, quality="HQ")
