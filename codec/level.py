"""Input level normalisation: scale a signal to the speech level a model was trained at before
encoding, and back after decoding, with the gain stored in the ``.codes`` file.

A model trained on crops between -35 and -15 dBFS codes quiet input worse: the shipped
esc-16k-small lost 0.15 PESQ-WB at 6 kbps on the 40 dev files scaled to -50 dBFS RMS and 0.38 at
-60 (``models/esc-16k-small/README.md``). EnCodec's 48 kHz model normalises its input too
(Défossez et al. 2022, "High Fidelity Neural Audio Compression": a scale per 1 s segment, sent as
side information); here one gain covers a whole file, so the decoder's state sees no seams.

The level is the active speech level in a simple form (after ITU-T P.56's idea, not its
algorithm): the mean power of the loudest half of the signal's 20 ms frames, channels averaged,
so pauses do not pull it down.
"""

import math

import numpy as np

from codec.bitstream import MAX_GAIN_DB  # the range a .codes file can carry
from codec.errors import CodecError

FRAME_SECONDS = 0.02      # frame over which power is measured
ACTIVE_SHARE = 0.5        # the loudest share of frames that counts as speech
SILENCE_DBFS = -100.0     # below this the input is treated as silence: no gain


def check_target_level(target_dbfs: float | None) -> None:
    """Raises CodecError unless a model's ``input_level_dbfs`` is None or a level from -60 to 0 dBFS."""
    if target_dbfs is not None and (isinstance(target_dbfs, bool) or not isinstance(target_dbfs, (int, float))
                                    or not -60 <= target_dbfs <= 0):
        raise CodecError(f"input_level_dbfs={target_dbfs!r} is not supported; give a level from -60 to 0 dBFS, "
                         f"or null for no normalisation")


class LevelMeter:
    """Active level of a signal fed as ``[n, C]`` blocks at ``sample_rate`` Hz, in dBFS.

    Memory: one float per 20 ms frame (1.8 million, 14 MB, for ten hours).
    """

    def __init__(self, sample_rate: int):
        self.frame = max(1, round(sample_rate * FRAME_SECONDS))
        self.pending = np.zeros(0)
        self.powers: list[np.ndarray] = []

    def add(self, block: np.ndarray) -> None:
        """Take ``[n, C]`` samples (full scale ±1)."""
        power = np.mean(np.square(np.asarray(block, dtype=np.float64)), axis=1)
        joined = np.concatenate([self.pending, power])
        whole = len(joined) // self.frame * self.frame
        if whole:
            self.powers.append(joined[:whole].reshape(-1, self.frame).mean(axis=1))
        self.pending = joined[whole:]

    def level_dbfs(self) -> float | None:
        """The active level in dBFS (0 dBFS: a full-scale square wave), or None for silence or
        no samples."""
        powers = list(self.powers) + ([self.pending.mean(keepdims=True)] if len(self.pending) else [])
        if not powers:
            return None
        frames = np.sort(np.concatenate(powers))[::-1]
        mean = float(np.mean(frames[:max(1, math.ceil(len(frames) * ACTIVE_SHARE))]))
        level = 10 * math.log10(mean) if mean > 0 else -math.inf
        return level if level > SILENCE_DBFS else None


def normalizing_gain_db(level_dbfs: float | None, target_dbfs: float) -> float:
    """The gain in dB that brings ``level_dbfs`` to ``target_dbfs``: to 0.01 dB, within ±60 dB (so
    near-silence is not raised to full scale); 0 for silence (``level_dbfs`` None)."""
    if level_dbfs is None:
        return 0.0
    return round(min(MAX_GAIN_DB, max(-MAX_GAIN_DB, target_dbfs - level_dbfs)), 2)


def gain_for(blocks, sample_rate: int, target_dbfs: float | None) -> float:
    """The normalising gain in dB for a signal given as ``[n, C]`` ``blocks`` at ``sample_rate``
    Hz; 0 when ``target_dbfs`` is None (a model that does not normalise)."""
    if target_dbfs is None:
        return 0.0
    meter = LevelMeter(sample_rate)
    for block in blocks:
        meter.add(block)
    return normalizing_gain_db(meter.level_dbfs(), target_dbfs)


def amplitude(gain_db: float) -> float:
    """The linear factor of a gain in dB."""
    return 10.0 ** (gain_db / 20.0)
