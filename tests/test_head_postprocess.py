"""scripts/head_postprocess.py: Griffin-Lim rounds and peak emphasis on an ESC codec's decoded spectrum."""

import sys

import numpy as np
import torch

from codec.models import EscCodec
from tests.conftest import REPO
from tests.test_esc import TINY

sys.path.insert(0, str(REPO / "scripts"))
from head_postprocess import emphasize_peaks, griffin_lim, variants  # noqa: E402


def test_the_plain_variant_is_the_codec_and_the_others_change_it():
    torch.manual_seed(0)
    model = EscCodec(TINY).eval()
    audio = np.random.default_rng(0).standard_normal(20 * model.frame_size + 7) * 0.1
    kbps = TINY.bitrates_kbps[-1]
    signals = variants(model, audio, kbps)
    with torch.no_grad():
        wav = torch.from_numpy(audio[:20 * model.frame_size]).float()[None, None]
        decoded = model.decode(model.encode(wav, model.codebooks_for_bitrate(kbps)))[0, 0].numpy()
    np.testing.assert_allclose(signals["plain"], decoded, atol=1e-5)
    assert all(len(s) == len(decoded) for s in signals.values())
    assert not any(np.allclose(s, decoded, atol=1e-4) for name, s in signals.items() if name != "plain")


def test_griffin_lim_keeps_a_consistent_spectrum_and_peak_emphasis_keeps_frame_energy():
    torch.manual_seed(0)
    model = EscCodec(TINY).eval()
    wav = torch.randn(1, 1, 60 * model.frame_size) * 0.1
    real, imag = model.stft(wav).chunk(2, dim=1)
    magnitude, phase = torch.sqrt(real ** 2 + imag ** 2), torch.atan2(imag, real)
    # a real signal's own spectrum is a fixed point: the rounds give back what no rounds give, but
    # for the causal window's ramp at the start and the partial window sum at the end (each round
    # spreads their differences by one window)
    margin = 4 * model.head.istft.n_fft
    middle = slice(margin, -margin)
    torch.testing.assert_close(griffin_lim(model, magnitude, phase, 3)[..., middle],
                               griffin_lim(model, magnitude, phase, 0)[..., middle], atol=1e-4, rtol=0)
    emphasized = emphasize_peaks(magnitude, 0.3, 3)
    torch.testing.assert_close((emphasized ** 2).sum(1), (magnitude ** 2).sum(1), rtol=1e-4, atol=1e-8)
    # peaks rise relative to their frame: the largest bin's share of the energy grows
    share = lambda m: (m.max(1).values ** 2 / (m ** 2).sum(1)).mean()  # noqa: E731
    assert share(emphasized) > share(magnitude)
