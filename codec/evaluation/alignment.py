"""Time alignment of a decoded signal to its reference before scoring.

A codec may delay its output (look-ahead, resampler or container pre-skip). The lag is found in
two steps and removed, and reported: the peak of the cross-correlation of the two amplitude
envelopes (robust for codecs that do not keep the waveform's phase, such as Codec2), then, within
one envelope-smoothing length of it, the peak of the waveform cross-correlation where that is
clear. A pair searched for a lag whose envelopes do not correlate is flagged instead of scored
silently (its lag is unknown). A pair with no lag to find (this suite's decoders remove their
latency exactly) is scored whatever it sounds like: a broken decoder scores badly, not "undefined".
"""

from dataclasses import dataclass

import numpy as np
from scipy.signal import correlate

MIN_CORRELATION = 0.2
ENVELOPE_SAMPLES = 32            # 2 ms at 16 kHz
DIRECT_LAGS = 2 * ENVELOPE_SAMPLES + 1   # up to this many lags, correlate by dot products (no FFT)


@dataclass
class Alignment:
    degraded: np.ndarray          # [T] shifted and cut/padded to the reference's length
    lag: int                      # samples the degraded signal lagged the reference (negative: led)
    correlation: float            # normalised correlation at that lag, 0-1
    problem: str | None = None    # why the pair should not be scored


def align(reference: np.ndarray, degraded: np.ndarray, max_lag: int) -> Alignment:
    """Shift ``degraded [T']`` by at most ``max_lag`` samples either way to best match ``reference
    [T]``; returns a ``[T]`` signal (``max_lag`` 0: no shift, and no problem but NaN or Inf)."""
    length = len(reference)
    if not np.all(np.isfinite(degraded)):
        return Alignment(_fit(degraded, length), 0, 0.0, "the decoded signal contains NaN or Inf")
    if not np.any(reference) or not np.any(degraded):
        return Alignment(_fit(degraded, length), 0, 0.0)  # silence: nothing to align, nothing to flag
    lag, correlation = _best_lag(_envelope(reference), _envelope(degraded), -max_lag, max_lag)
    fine_lag, fine_correlation = _best_lag(reference, degraded, max(-max_lag, lag - ENVELOPE_SAMPLES),
                                           min(max_lag, lag + ENVELOPE_SAMPLES))
    if fine_correlation > 0.5:
        lag = fine_lag
    shifted = degraded[lag:] if lag >= 0 else np.concatenate([np.zeros(-lag), degraded])
    problem = None
    if max_lag and correlation < MIN_CORRELATION:
        problem = f"could not align: correlation {correlation:.2f} at best lag {lag}"
    return Alignment(_fit(shifted, length), lag, correlation, problem)


def _envelope(signal: np.ndarray) -> np.ndarray:
    smoothed = np.convolve(np.abs(signal), np.ones(ENVELOPE_SAMPLES) / ENVELOPE_SAMPLES, mode="same")
    return smoothed - smoothed.mean()


def _best_lag(reference: np.ndarray, degraded: np.ndarray, low: int, high: int) -> tuple[int, float]:
    """Lag in ``[low, high]`` with the largest normalised correlation, and that correlation."""
    energy = np.sqrt(np.dot(reference, reference) * np.dot(degraded, degraded))
    if energy == 0.0:
        return 0, 0.0
    low, high = max(low, -len(reference) + 1), min(high, len(degraded) - 1)
    if low > high:
        return 0, 0.0
    lags = np.arange(low, high + 1)
    if len(lags) <= DIRECT_LAGS:   # a few lags (the fine step, or none): dot products, not a whole correlation
        values = np.array([np.dot(degraded[max(0, lag):len(reference) + lag],
                                  reference[max(0, -lag):len(degraded) - lag]) for lag in lags])
    else:
        full = correlate(degraded, reference, mode="full", method="fft")  # index of lag 0: len(reference) - 1
        values = full[lags + len(reference) - 1]
    best = int(np.argmax(values))
    return int(lags[best]), float(values[best] / energy)


def _fit(signal: np.ndarray, length: int) -> np.ndarray:
    if len(signal) >= length:
        return signal[:length]
    return np.concatenate([signal, np.zeros(length - len(signal))])
