"""The high-pass filter that encoding applies to a model's input (``config.json``'s
``input_highpass_hz``), as speech codecs do: Opus, AMR-WB and EVS high-pass their input too.

Content below the cutoff (rumble, hum, a drifting offset) is not speech, and P.862.2 (PESQ-WB)
filters it out of what it scores; a model trained on speech with little of it codes the rest
worse where it is present. The shipped esc-16k-small, paired on the same files with and without
an 80 Hz high-pass (``codec eval``): PESQ-WB +0.060 +- 0.043 at 6 kbps on 36 files of speech from
other corpora (``scripts/ood_speech.py``), +0.002 +- 0.023 on the 40 dev files (see its model card).
``codec stream`` applies it too (``codec.live``), though not the input level, which needs the whole signal.

The filter is causal (a streaming encoder can run it) and keeps its state from block to block, so
a signal filtered in blocks is the signal filtered whole. It starts as if the signal had always
held its first sample: a file that begins on a DC offset does not begin with the step's transient.
"""

import numpy as np

from codec.errors import CodecError

ORDER = 4   # Butterworth, 24 dB per octave below the cutoff


def check_highpass(cutoff_hz: float | None) -> None:
    """Raises CodecError unless a model's ``input_highpass_hz`` is None or from 1 to 1000 Hz."""
    if cutoff_hz is not None and (isinstance(cutoff_hz, bool) or not isinstance(cutoff_hz, (int, float))
                                  or not 1 <= cutoff_hz <= 1000):
        raise CodecError(f"input_highpass_hz={cutoff_hz!r} is not supported; give a cutoff from 1 to 1000 Hz, "
                         f"or null for no filter")


class HighPass:
    """Causal Butterworth high-pass of ``[n, C]`` blocks at ``sample_rate`` Hz, stateful across
    blocks. At a sample rate of 4x the cutoff or less (no speech there) it passes input unchanged."""

    def __init__(self, cutoff_hz: float | None, sample_rate: int):
        # imported here: scipy.signal takes ~1 s to import, which decoding is spared
        from scipy import signal as scipy_signal

        self.signal = scipy_signal
        self.sections = None
        if cutoff_hz is not None and sample_rate > 4 * cutoff_hz:
            self.sections = scipy_signal.butter(ORDER, cutoff_hz, "highpass", fs=sample_rate, output="sos")
        self.state: np.ndarray | None = None   # [sections, 2, C]

    def __call__(self, block: np.ndarray) -> np.ndarray:
        """``[n, C]`` samples, filtered (float64)."""
        block = np.asarray(block, dtype=np.float64)
        if self.sections is None or not len(block):
            return block
        if self.state is None:   # the steady state for a signal that always held the first sample
            self.state = self.signal.sosfilt_zi(self.sections)[:, :, None] * block[0]
        filtered, self.state = self.signal.sosfilt(self.sections, block, axis=0, zi=self.state)
        return filtered
