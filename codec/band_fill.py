"""A noise floor for the band that a low-rate input lacks, before it is encoded.

A model trained on 16 kHz speech has never seen a spectrum that stops at 4 kHz: 8 kHz input,
resampled up to the model's rate, comes back 4 dB quieter and with PESQ-NB 2.10 where the same
speech at 16 kHz scores 3.40 (10 dev files at 6 kbps, scored at 8 kHz). With noise 40 dB below
the speech in the empty band it scores 3.42 and keeps its level (a floor 20 to 50 dB down gave
3.37-3.42). The decoded audio goes back to the input's rate, whose resampler removes that band
again; only ``codec decode --sample-rate`` above the input's rate keeps the (quiet) floor.

The noise follows the input's level (a 20 ms power envelope), so pauses stay silent, and it is
the same whatever blocks the input comes in: the envelope and the high-pass filter carry their
state across blocks, and the noise is drawn from one seeded generator in sample order.
"""

import numpy as np
from scipy.signal import butter, lfilter, sosfilt

FLOOR_DB = -40.0          # noise power relative to the input's, in the band above its Nyquist frequency
ENVELOPE_SECONDS = 0.02   # time constant of the power envelope the noise follows


class BandFill:
    """``fill(block [n, C] at model_rate) -> [n, C]``: adds, above ``input_rate / 2``, noise at
    ``FLOOR_DB`` below the block's running power; the identity when ``input_rate >= model_rate``.

    ``input_rate``, ``model_rate`` in Hz; ``channels`` is C (each channel its own envelope).
    """

    def __init__(self, input_rate: int, model_rate: int, channels: int, seed: int = 0):
        self.active = input_rate < model_rate
        if not self.active:
            return
        nyquist = model_rate / 2
        cutoff = input_rate / 2
        self.highpass = butter(8, cutoff, "highpass", fs=model_rate, output="sos")
        self.highpass_state = np.zeros((self.highpass.shape[0], 2, channels))
        # white noise keeps this share of its power above the cutoff; dividing it out makes the
        # floor's power FLOOR_DB below the input's
        band_share = (nyquist - cutoff) / nyquist
        self.gain = 10 ** (FLOOR_DB / 20) / np.sqrt(band_share)
        decay = np.exp(-1 / (ENVELOPE_SECONDS * model_rate))
        self.envelope = ([1 - decay], [1, -decay])
        self.envelope_state = np.zeros((1, channels))
        self.rng = np.random.default_rng(seed)

    def __call__(self, block: np.ndarray) -> np.ndarray:
        if not self.active or len(block) == 0:
            return block
        power, self.envelope_state = lfilter(*self.envelope, block ** 2, axis=0, zi=self.envelope_state)
        noise, self.highpass_state = sosfilt(self.highpass, self.rng.standard_normal(block.shape), axis=0,
                                             zi=self.highpass_state)
        return block + noise * np.sqrt(np.maximum(power, 0.0)) * self.gain
