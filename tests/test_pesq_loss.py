"""The PESQ-style training loss (codec/train/pesq_loss.py): what it counts, what it forgives, and
that it trains."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from pesq import pesq

from codec.errors import CodecError
from codec.train import train
from codec.train.losses import MultiResolutionMelLoss
from codec.train.pesq_loss import PesqDisturbanceLoss, frame_length
from tests.test_train import audio_folder, tiny  # noqa: F401 (a fixture)


def voiced(seconds: float = 0.8, seed: int = 0) -> torch.Tensor:
    """``[2, 1, T]`` two harmonic, amplitude-modulated items with a faint noise floor."""
    t = torch.arange(int(seconds * 16000)) / 16000
    harmonics = sum(torch.sin(2 * torch.pi * 150 * k * t) / k for k in range(1, 12))
    envelope = 0.5 + 0.5 * torch.sin(2 * torch.pi * 3 * t)
    noise = torch.randn(2, 1, len(t), generator=torch.Generator().manual_seed(seed))
    return 0.1 * envelope * harmonics + 1e-3 * noise


def test_identical_and_rescaled_outputs_score_zero_and_gradients_stay_finite():
    loss = PesqDisturbanceLoss(16000)
    y = voiced()
    assert loss(y, y) < 1e-6
    assert loss(0.2 * y, y) < 1e-6          # each item is levelled first, as PESQ does
    assert loss(y + 0.01 * torch.randn_like(y), y) > 1e-3
    for output, reference in ((torch.zeros_like(y), y), (y, torch.zeros_like(y))):
        output = output.clone().requires_grad_(True)
        value = loss(output, reference)
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(output.grad).all()
    assert frame_length(16000) == 512 and frame_length(8000) == 256
    with pytest.raises(ValueError, match="8000 Hz"):
        PesqDisturbanceLoss(4000)


def test_added_energy_weighs_more_than_missing_energy():
    loss = PesqDisturbanceLoss(16000)
    y = voiced()
    hiss = 0.02 * torch.randn(2, 1, y.shape[-1], generator=torch.Generator().manual_seed(1))
    assert loss(y + hiss, y) > 1.5 * loss(y, y + hiss)


def test_it_forgives_what_is_inaudible_where_log_mel_does_not():
    """A 12 dB change in a pause ~80 dB below the speech (below the hearing threshold when the
    speech plays at 65 dB SPL) against a 6 dB change in 0.2 s of the speech: log-mel counts the
    first more, this loss the second. (Changes under ~4 dB fall in PESQ's dead zone.)"""
    pesq_loss, mel = PesqDisturbanceLoss(16000), MultiResolutionMelLoss(16000, [256, 512, 1024], [32, 64, 128])
    y = voiced(1.6)
    y[..., 12800:] = 1e-5 * torch.randn(2, 1, 12800, generator=torch.Generator().manual_seed(2))
    in_the_pause = y.clone()
    in_the_pause[..., 12800:] *= 4
    in_the_speech = y.clone()
    in_the_speech[..., 3200:6400] *= 2
    assert mel(in_the_pause, y) > mel(in_the_speech, y)
    assert pesq_loss(in_the_pause, y) < 0.2 * pesq_loss(in_the_speech, y)


def test_it_ranks_noisy_speech_as_pesq_does(dev_files):
    loss = PesqDisturbanceLoss(16000)
    rng = np.random.default_rng(0)
    for path in dev_files[:3]:
        speech, rate = sf.read(path, dtype="float32")
        assert rate == 16000
        noise = rng.standard_normal(len(speech)).astype(np.float32) * np.sqrt(np.mean(speech ** 2))
        noisy = [speech + noise * 10 ** (-snr / 20) for snr in (10, 20, 30)]
        ours = [float(loss(torch.from_numpy(x)[None, None], torch.from_numpy(speech)[None, None])) for x in noisy]
        theirs = [pesq(16000, speech, x, "wb") for x in noisy]
        assert ours == sorted(ours, reverse=True) and theirs == sorted(theirs), (path, ours, theirs)


def test_pesq_loss_trains_and_is_checked(audio_folder, tmp_path):  # noqa: F811
    out = tmp_path / "pesq"
    train(tiny(audio_folder, out, "run.max_steps=2", "run.log_every=1", "loss.pesq_weight=100"))
    log = [json.loads(line) for line in (out / "train.log").read_text().splitlines()]
    assert all(np.isfinite(entry["pesq"]) and entry["pesq"] > 0 for entry in log)
    gan = tmp_path / "pesq-gan"
    train(tiny(audio_folder, gan, "run.max_steps=2", "run.log_every=1", "loss.pesq_weight=100",
               "gan.enabled=true", "gan.channels=4", "gan.periods=[2]", "gan.stft_windows=[256]",
               "gan.discriminator_warmup_steps=1"))
    assert "pesq" in json.loads((gan / "train.log").read_text().splitlines()[-1])
    for bad in ("loss.pesq_weight=-1", "loss.pesq_weight=.inf"):
        with pytest.raises(CodecError, match="loss.pesq_weight"):
            tiny(audio_folder, out, bad)
