"""Speech quality metrics, each defined or undefined-with-a-reason, never NaN.

    PESQ (ITU-T P.862.2 wideband / P.862 narrowband, via ``pesq``), STOI (``pystoi``), SI-SDR
    ("SDR - half-baked or well done?", Le Roux et al. 2019), and a multi-resolution log-mel
    distance (mean L1 of log10 mel magnitudes, librosa filter banks).

Signals are 1-D float arrays at 16 kHz (``METRIC_RATE``) of equal length; ``score_pair`` checks
and scores a pair, ``Score.value`` is ``None`` when a metric is undefined, with ``reason`` saying
why (silence, too short, NaN in the decoded signal, ...).
"""

import warnings
from dataclasses import dataclass

import librosa
import numpy as np
from pesq import NoUtterancesError, PesqError, pesq
from pystoi import stoi

from codec.audio import resample

METRIC_RATE = 16000
MIN_SECONDS = 0.25          # PESQ needs at least 1/4 s
_MEL_WINDOWS = (256, 512, 1024, 2048)
QUIETEST_DBFS = -140.0      # below this (24-bit audio's floor), the mel distance is undefined
MEL_LEVEL_DBFS = -26.0      # the mel distance scores both signals with the reference at this RMS level


@dataclass
class Score:
    value: float | None
    reason: str | None = None     # why the value is undefined


def pesq_score(reference: np.ndarray, degraded: np.ndarray, mode: str = "wb") -> Score:
    """PESQ MOS-LQO (``mode`` "wb": P.862.2, about 1.04-4.64; "nb": P.862.1) at 16 kHz; undefined
    for a decoded signal that is digital silence (PESQ scales the degraded signal to a set level:
    silence it cannot scale, and noise at any level scores as noise, about 1.0-1.5)."""
    try:
        with warnings.catch_warnings():   # it divides by a silent signal's peak of 0 before finding no utterances
            warnings.simplefilter("ignore", RuntimeWarning)
            return Score(float(pesq(METRIC_RATE, reference, degraded, mode)))
    except NoUtterancesError:
        return Score(None, "PESQ found no utterances (silence)")
    except PesqError as error:
        return Score(None, f"PESQ failed: {type(error).__name__}")
    except ValueError:   # (its level alignment divides by zero, then converts the NaN to an integer)
        if not np.any(degraded):
            return Score(None, "PESQ undefined: the decoded signal is digital silence")
        return Score(None, f"PESQ failed: the decoded signal's level (peak {np.max(np.abs(degraded)):.1e}) is too "
                           f"low for its level alignment")


def stoi_score(reference: np.ndarray, degraded: np.ndarray) -> Score:
    """STOI, 0-1, at 16 kHz (pystoi resamples to its 10 kHz internally)."""
    if not np.any(reference):
        return Score(None, "STOI undefined for an all-zero reference")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(stoi(reference, degraded, METRIC_RATE, extended=False))
    if caught or not np.isfinite(value):  # pystoi warns and returns 1e-5 when too little is not silence
        return Score(None, "STOI undefined: too few non-silent frames")
    return Score(value)


def si_sdr(reference: np.ndarray, degraded: np.ndarray) -> Score:
    """Scale-invariant SDR in dB (at least -200 dB, where the decoded signal is orthogonal to the
    reference). Both signals are first scaled to a peak of 1, which the measure does not see, so
    that a signal at any level is computed as precisely."""
    if not np.any(reference):
        return Score(None, "SI-SDR undefined for an all-zero reference")
    if not np.any(degraded):   # (its target and its noise would both be zero)
        return Score(None, "SI-SDR undefined: the decoded signal is digital silence")
    reference, degraded = reference / np.max(np.abs(reference)), degraded / np.max(np.abs(degraded))
    target = np.dot(degraded, reference) / np.dot(reference, reference) * reference
    noise = degraded - target
    noise_energy = float(np.dot(noise, noise))
    if noise_energy == 0.0:
        return Score(None, "SI-SDR is infinite: the decoded signal is a scaled copy of the reference")
    return Score(10 * np.log10(max(float(np.dot(target, target)), 1e-20 * noise_energy) / noise_energy))


def mel_distance(reference: np.ndarray, degraded: np.ndarray) -> Score:
    """Mean over resolutions of the L1 distance of log10 mel magnitudes (lower is better);
    undefined for an all-zero reference, as the other metrics are (two silences would score a
    perfect 0 and pull a mean over other files than theirs). Both signals are first scaled by
    one gain that brings the reference to ``MEL_LEVEL_DBFS`` RMS, so that the magnitude floor
    (1e-5) sits as far below every file's speech: a quiet file's bins would otherwise meet the
    floor in both signals, and the quieter the file, the smaller its distance."""
    if not np.any(reference):
        return Score(None, "mel distance undefined for an all-zero reference")
    peak = np.max(np.abs(reference))
    level = peak * np.sqrt(np.mean(np.square(reference / peak)))   # (at unit peak: a tiny level's square underflows)
    if level < 10 ** (QUIETEST_DBFS / 20):
        return Score(None, f"mel distance undefined: the input's level is below {QUIETEST_DBFS:g} dBFS, under any "
                           f"recording's noise floor")
    gain = 10 ** (MEL_LEVEL_DBFS / 20) / level
    reference, degraded = reference * gain, degraded * gain
    distances = []
    for n_fft in _MEL_WINDOWS:
        kwargs = dict(sr=METRIC_RATE, n_fft=n_fft, hop_length=n_fft // 4, n_mels=64, power=1.0)
        with warnings.catch_warnings():   # a file shorter than the window is padded: scored, not a problem
            warnings.filterwarnings("ignore", message="n_fft=.* is too large", category=UserWarning)
            ref = librosa.feature.melspectrogram(y=reference.astype(np.float32), **kwargs)
            deg = librosa.feature.melspectrogram(y=degraded.astype(np.float32), **kwargs)
        distances.append(np.mean(np.abs(np.log10(np.maximum(ref, 1e-5)) - np.log10(np.maximum(deg, 1e-5)))))
    if not np.isfinite(np.mean(distances)):   # (a decoded signal beyond float32 once scaled: ~1e32 louder)
        return Score(None, "mel distance undefined: the decoded signal is too loud to score")
    return Score(float(np.mean(distances)))


def to_metric_rate(signal: np.ndarray, sample_rate: int) -> np.ndarray:
    """Resample a 1-D signal to the metrics' 16 kHz."""
    return resample(np.asarray(signal, dtype=np.float64), sample_rate, METRIC_RATE)


def score_pair(reference: np.ndarray, degraded: np.ndarray, pesq_nb: bool = False) -> dict[str, Score]:
    """All metrics of an aligned, equal-length pair at 16 kHz; undefined ones carry a reason."""
    names = ["pesq_wb", "stoi", "si_sdr", "mel_distance"] + (["pesq_nb"] if pesq_nb else [])
    problem = None
    if len(reference) != len(degraded):
        problem = f"unequal lengths ({len(reference)} and {len(degraded)} samples)"
    elif not np.all(np.isfinite(degraded)):
        problem = "the decoded signal contains NaN or Inf"
    elif len(reference) < MIN_SECONDS * METRIC_RATE:
        problem = f"shorter than {MIN_SECONDS} s"
    if problem:
        return {name: Score(None, problem) for name in names}
    scores = {"pesq_wb": pesq_score(reference, degraded, "wb"), "stoi": stoi_score(reference, degraded),
              "si_sdr": si_sdr(reference, degraded), "mel_distance": mel_distance(reference, degraded)}
    if pesq_nb:
        scores["pesq_nb"] = pesq_score(reference, degraded, "nb")
    return scores


def pesq_wb(reference: np.ndarray, degraded: np.ndarray, sample_rate: int) -> float:
    """PESQ-WB of two equal-length 1-D signals at any rate (resampled to 16 kHz); NaN if undefined."""
    score = pesq_score(to_metric_rate(reference, sample_rate), to_metric_rate(degraded, sample_rate))
    return np.nan if score.value is None else score.value
