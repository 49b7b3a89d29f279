"""Steady test signals through a codec: how much of each comes back.

A speech engineer's first checks of a speech codec are a 1 kHz tone, DTMF digits and a sweep. A
codec trained on speech alone can silence them (esc-16k-small did, by 80-90 dB), and PESQ on speech
never notices, so this measures the level that comes back.
"""

from collections.abc import Callable

import numpy as np

from codec.coding import decode_audio, encode_audio

RATE = 16000
SECONDS = 2.0
LEVEL_DBFS = -20.0         # every signal's RMS level
EDGE_SECONDS = 0.25        # left out of the measurement at each end (onset and the codec's latency)


def _sine(*hz: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda t: sum(np.sin(2 * np.pi * f * t) for f in hz)


def _sweep(low: float, high: float) -> Callable[[np.ndarray], np.ndarray]:
    """A logarithmic sweep from ``low`` to ``high`` Hz over the signal."""
    rate = np.log(high / low) / SECONDS
    return lambda t: np.sin(2 * np.pi * low * (np.exp(rate * t) - 1) / rate)


TEST_SIGNALS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "220 Hz": _sine(220), "500 Hz": _sine(500), "1 kHz": _sine(1000), "2 kHz": _sine(2000),
    "3 kHz": _sine(3000), "5 kHz": _sine(5000), "DTMF 1 (697 + 1209 Hz)": _sine(697, 1209),
    "DTMF # (941 + 1477 Hz)": _sine(941, 1477), "sweep 100 Hz-7 kHz": _sweep(100, 7000),
}


def make_signal(name: str) -> np.ndarray:
    """``[SECONDS * RATE]`` float64 at ``LEVEL_DBFS`` RMS, alone: no noise floor, the hardest
    case for a model that has only heard recorded speech."""
    t = np.arange(int(SECONDS * RATE)) / RATE
    signal = TEST_SIGNALS[name](t)
    return signal * 10 ** (LEVEL_DBFS / 20) / np.sqrt(np.mean(signal ** 2))


def level_db(signal: np.ndarray) -> float:
    """RMS level in dBFS of the middle of ``signal`` (``EDGE_SECONDS`` left out at each end)."""
    edge = int(EDGE_SECONDS * RATE)
    return float(10 * np.log10(np.mean(signal[edge:-edge] ** 2) + 1e-20))


def returned_levels(model, kbps: float) -> dict[str, float]:
    """For each test signal, its level after coding at ``kbps`` minus its level before, in dB
    (0: all of it comes back; -90: silenced)."""
    levels = {}
    for name in TEST_SIGNALS:
        signal = make_signal(name)
        decoded, _ = decode_audio(model, encode_audio(model, signal[:, None], RATE, kbps))
        levels[name] = level_db(decoded[:, 0]) - level_db(signal)
    return levels
