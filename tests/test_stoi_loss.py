"""The STOI loss (codec/train/stoi_loss.py): each step of STOI, agreement with pystoi, and its
place in training."""


import numpy as np
import pytest
import soundfile as sf
import torch
from pystoi import stoi
from pystoi.utils import thirdoct
from scipy.signal import butter, sosfilt

from codec.errors import CodecError
from codec.train import train
from codec.train.stoi_loss import SEGMENT_FRAMES, StoiLoss
from tests.test_pesq_loss import edge_case_gradients, train_with_loss, voiced
from tests.test_train import audio_folder, tiny  # noqa: F401 (a fixture)


def test_identical_and_rescaled_outputs_score_zero_and_gradients_stay_finite():
    loss = StoiLoss(16000)
    y = voiced(1.0)
    assert loss(y, y) < 1e-5
    assert loss(0.1 * y, y) < 1e-5          # each band and segment is scaled to the input's energy
    noisy = (y + 0.03 * torch.randn_like(y)).requires_grad_(True)
    value = loss(noisy, y)
    value.backward()
    assert value > 1e-2 and noisy.grad.abs().max() > 0
    edge_case_gradients(loss, y)
    assert torch.isclose(loss(noisy.bfloat16(), y), loss(noisy, y), atol=0.01)
    with pytest.raises(ValueError, match="9000 Hz"):
        StoiLoss(8000)
    shortest = StoiLoss.min_samples(16000)
    assert loss.band_envelopes(loss.power_spectrum(y[..., :shortest])).shape[-1] == SEGMENT_FRAMES
    with pytest.raises(ValueError, match=f"at least {shortest} samples"):
        loss(y[..., :shortest - 1], y[..., :shortest - 1])


def test_stoi_step_by_step():
    loss = StoiLoss(16000)
    # 15 one-third-octave bands from 150 Hz, as pystoi's (at 10 kHz, STOI's own rate, the same bins)
    assert np.array_equal(StoiLoss(10000).bins_to_band.numpy(), thirdoct(10000, 512, 15, 150)[0])
    tone = torch.sin(2 * torch.pi * 1000 * torch.arange(8000) / 16000)[None, None]
    energy = loss.band_envelopes(loss.power_spectrum(tone)).mean(dim=-1)[0]
    assert energy.argmax() == 8 and energy[8] > 100 * torch.cat([energy[:7], energy[10:]]).max()
    envelope = torch.rand(15, 60, generator=torch.Generator().manual_seed(0)) + 0.1
    assert loss.correlation(envelope, envelope) == pytest.approx(1.0, abs=1e-5)
    assert loss.correlation(3.0 * envelope, envelope) == pytest.approx(1.0, abs=1e-5)  # level-blind
    assert loss.correlation(envelope.max() + 0.1 - envelope, envelope) < -0.9         # inverted envelope
    # clipping at 15 dB above the input: noise that fills a near-silent frame counts as at most
    # 15 dB above it, so it harms the score far less than unclipped
    dip = envelope.clone()
    dip[:, 40] = 1e-3
    filled = envelope.clone()
    filled[:, 40] = 1.0
    clipped = loss.correlation(filled, dip)
    loss.clip = float("inf")
    assert clipped > 0.95 and clipped > loss.correlation(filled, dip) + 0.05


def test_frames_40_db_below_the_loudest_below_5_khz_are_left_out_as_pystoi_does():
    loss = StoiLoss(16000)
    y = voiced(1.5)[:1]
    generator = torch.Generator().manual_seed(1)
    noisy = y + 0.01 * torch.randn(y.shape, generator=generator)
    hiss = 0.1 * torch.randn(1, 1, 16000, generator=generator)  # in the output's pause: counts where the pause does
    floor = torch.randn(1, 1, 16000, generator=generator)
    loudest = y.unfold(-1, 410, 205).pow(2).mean(dim=-1).amax().sqrt()   # RMS of the loudest frame
    above_5k = torch.from_numpy(sosfilt(butter(8, 5500, "high", fs=16000, output="sos"), floor.numpy())).float()
    pauses = {"45 dB down": floor * loudest * 10 ** (-45 / 20),
              "35 dB down": floor * loudest * 10 ** (-35 / 20),
              "above 5 kHz only, 20 dB down": above_5k * loudest * 0.1 / above_5k.std()}
    scores = {}
    for name, pause in pauses.items():
        reference, output = torch.cat([y, pause], dim=-1), torch.cat([noisy, hiss], dim=-1)
        scores[name] = 1.0 - float(loss(output, reference))
        assert scores[name] == pytest.approx(stoi(reference.squeeze().numpy(), output.squeeze().numpy(), 16000),
                                             abs=0.02), name
    assert scores["35 dB down"] < scores["45 dB down"] - 0.1   # a pause that counts lowers the score


def test_at_10_khz_it_is_pystoi():
    loss = StoiLoss(10000)
    y = voiced(2.0)[:1]
    rng = np.random.default_rng(0)
    for snr in (-5, 5, 15):   # at -5 dB the clipping decides much of the score
        noise = torch.from_numpy(rng.standard_normal(y.shape).astype(np.float32)) * y.pow(2).mean().sqrt()
        noisy = y + noise * 10 ** (-snr / 20)
        theirs = stoi(y.squeeze().numpy(), noisy.squeeze().numpy(), 10000)
        assert 1.0 - float(loss(noisy, y)) == pytest.approx(theirs, abs=0.002), snr


def test_it_agrees_with_pystoi():
    loss = StoiLoss(16000)
    y = voiced(2.0)[:1]
    rng = np.random.default_rng(0)
    for snr in (0, 10, 20):
        noise = torch.from_numpy(rng.standard_normal(y.shape).astype(np.float32)) * y.pow(2).mean().sqrt()
        noisy = y + noise * 10 ** (-snr / 20)
        theirs = stoi(y.squeeze().numpy(), noisy.squeeze().numpy(), 16000)
        assert 1.0 - float(loss(noisy, y)) == pytest.approx(theirs, abs=0.03), snr


def test_it_matches_pystoi_on_noisy_speech(dev_files):
    loss = StoiLoss(16000)
    rng = np.random.default_rng(0)
    for path in dev_files[:3]:
        speech, rate = sf.read(path, dtype="float32")
        noise = rng.standard_normal(len(speech)).astype(np.float32) * np.sqrt(np.mean(speech ** 2))
        for snr in (0, 10, 20):
            noisy = speech + noise * 10 ** (-snr / 20)
            ours = 1.0 - float(loss(torch.from_numpy(noisy)[None, None], torch.from_numpy(speech)[None, None]))
            assert ours == pytest.approx(stoi(speech, noisy, rate), abs=0.02), (path, snr)


def test_stoi_loss_trains_and_is_checked(audio_folder, tmp_path):  # noqa: F811
    for entry in train_with_loss(audio_folder, tmp_path, "stoi", 10):
        assert 0 < entry["stoi"] < 2
    out = tmp_path / "stoi"
    with pytest.raises(CodecError, match=r"loss\.stoi_weight=10.*data\.segment_seconds=0\.3"):
        train(tiny(audio_folder, tmp_path / "short", "loss.stoi_weight=10", "data.segment_seconds=0.3"))
    with pytest.raises(CodecError, match=r"loss\.stoi_weight=10\.0: .*at least 9000 Hz, not 8000"):
        train(tiny(audio_folder, tmp_path / "8k", "loss.stoi_weight=10", "model.sample_rate=8000",
                   "model.bitrates_kbps=[1.5,3]"))   # (at 8 kHz 12 kbps would need 48 codebooks)
    for bad in ("loss.stoi_weight=-1", "gan.stoi_weight=.nan"):
        with pytest.raises(CodecError, match=bad.split("=")[0].replace(".", r"\.")):
            tiny(audio_folder, out, bad)
