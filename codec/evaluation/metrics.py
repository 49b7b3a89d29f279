"""Speech quality metrics: PESQ wideband (ITU-T P.862.2, via ``pesq``) and STOI (``pystoi``).

Both compare a reference and a degraded signal, 1-D float arrays at the same sample rate; they
are computed at 16 kHz (resampled with soxr when needed), as the reference figures in DESIGN.md.
"""

import numpy as np
from pesq import pesq
from pystoi import stoi

from codec.audio import resample

METRIC_RATE = 16000


def _at_metric_rate(signal: np.ndarray, sample_rate: int) -> np.ndarray:
    return resample(np.asarray(signal, dtype=np.float64), sample_rate, METRIC_RATE)


def pesq_wb(reference: np.ndarray, degraded: np.ndarray, sample_rate: int) -> float:
    """PESQ-WB (MOS-LQO, about 1.0-4.64) of ``degraded [T]`` against ``reference [T]``."""
    return float(pesq(METRIC_RATE, _at_metric_rate(reference, sample_rate),
                      _at_metric_rate(degraded, sample_rate), "wb"))


def stoi_score(reference: np.ndarray, degraded: np.ndarray, sample_rate: int) -> float:
    """STOI (0-1) of ``degraded [T]`` against ``reference [T]``."""
    return float(stoi(_at_metric_rate(reference, sample_rate), _at_metric_rate(degraded, sample_rate),
                      METRIC_RATE, extended=False))
