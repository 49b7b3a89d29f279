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
from codec.train.pesq_loss import (
    DEAD_ZONE,
    GAMMA,
    PesqDisturbanceLoss,
    disturbance_density,
    frame_length,
    over_time,
)
from tests.test_train import audio_folder, tiny  # noqa: F401 (a fixture)


def voiced(seconds: float = 0.8, seed: int = 0) -> torch.Tensor:
    """``[2, 1, T]`` two harmonic, amplitude-modulated items with a faint noise floor."""
    t = torch.arange(int(seconds * 16000)) / 16000
    harmonics = sum(torch.sin(2 * torch.pi * 150 * k * t) / k for k in range(1, 12))
    envelope = 0.5 + 0.5 * torch.sin(2 * torch.pi * 3 * t)
    noise = torch.randn(2, 1, len(t), generator=torch.Generator().manual_seed(seed))
    return 0.1 * envelope * harmonics + 1e-3 * noise


def edge_case_gradients(loss, y: torch.Tensor) -> list[float]:
    """The largest gradient at the output for a silent output, a silent reference and a
    near-silent output; each loss value and gradient must be finite."""
    largest = []
    for output, reference in ((torch.zeros_like(y), y), (y, torch.zeros_like(y)), (1e-7 * y, y)):
        output = output.clone().requires_grad_(True)
        value = loss(output, reference)
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(output.grad).all()
        largest.append(float(output.grad.abs().max()))
    return largest


def train_with_loss(audio_folder, tmp_path, name: str, weight: float) -> list[dict]:  # noqa: F811
    """Two tiny training steps with ``loss.<name>_weight=weight``, then two in the GAN stage; checks
    that the weighted term is in the loss that trains and that the GAN stage logs it. Returns the
    plain run's log entries."""
    out = tmp_path / name
    setting = f"loss.{name}_weight={weight}"
    train(tiny(audio_folder, out, "run.max_steps=2", "run.log_every=1", setting))
    recipe = tiny(audio_folder, out, setting).loss
    log = [json.loads(line) for line in (out / "train.log").read_text().splitlines()]
    for entry in log:
        total = (recipe.mel_weight * entry["mel"] + recipe.stft_weight * entry["stft"] + weight * entry[name]
                 + recipe.commitment_weight * entry["commitment"] + recipe.codebook_weight * entry["codebook"])
        assert entry["loss"] == pytest.approx(total, rel=1e-3)
    gan = tmp_path / f"{name}-gan"
    train(tiny(audio_folder, gan, "run.max_steps=2", "run.log_every=1", setting,
               "gan.enabled=true", "gan.channels=4", "gan.periods=[2]", "gan.stft_windows=[256]",
               "gan.discriminator_warmup_steps=1"))
    assert name in json.loads((gan / "train.log").read_text().splitlines()[-1])
    return log


def test_identical_and_rescaled_outputs_score_zero_and_gradients_stay_finite():
    loss = PesqDisturbanceLoss(16000)
    y = voiced()
    assert loss(y, y) < 1e-6
    assert loss(0.2 * y, y) < 1e-6          # each item is levelled first, as PESQ does
    noisy = (y + 0.01 * torch.randn_like(y)).requires_grad_(True)
    value = loss(noisy, y)
    value.backward()
    assert value > 1e-3 and noisy.grad.abs().max() > 0
    assert max(edge_case_gradients(loss, y)) < 1e3   # a near-silent item is not raised past -80 dBFS
    assert torch.isclose(loss(noisy.bfloat16(), y), loss(noisy, y), rtol=0.05)
    assert frame_length(16000) == 512 and frame_length(8000) == 256
    with pytest.raises(ValueError, match="8000 Hz"):
        PesqDisturbanceLoss(4000)
    with pytest.raises(ValueError, match="longer than 256 samples"):
        loss(y[..., :256], y[..., :256])


def test_the_perceptual_model_step_by_step():
    loss = PesqDisturbanceLoss(16000)
    # the dead zone: a quarter of the smaller loudness is not a difference
    loud = torch.tensor([4.0, 4.0, 4.0])
    assert torch.allclose(disturbance_density(torch.tensor([4.9, 3.1, 6.0]), loud),
                          torch.tensor([0.0, 0.125, 1.0]))
    assert DEAD_ZONE == 0.25
    # loudness: 0 at and below each band's hearing threshold, then growing as power^0.23
    threshold = loss.threshold.view(1, -1, 1)
    assert (loss.loudness(threshold) == 0).all() and (loss.loudness(0.5 * threshold) == 0).all()
    far_above = 1e10 * threshold
    growth = loss.loudness(10 * far_above) / loss.loudness(far_above)
    assert torch.allclose(growth, torch.full_like(growth, 10 ** GAMMA), rtol=1e-2)
    # the worst moments weigh most: one bad frame in 20 counts more than its mean share...
    burst, spread = torch.zeros(1, 20), torch.full((1, 20), 0.05)
    burst[0, 7] = 1.0
    assert over_time(burst) > 5 * over_time(spread)
    # ...and the last frames count, in a span filled out with zeros
    late = torch.zeros(1, 59)
    late[0, -3:] = 1.0
    assert over_time(late) > 0.1


def test_a_distortion_at_the_end_counts_as_at_the_start():
    loss = PesqDisturbanceLoss(16000)
    y = voiced(0.95)
    hiss = 0.05 * torch.randn(2, 1, 1600, generator=torch.Generator().manual_seed(3))
    at_start, at_end = y.clone(), y.clone()
    at_start[..., :1600] += hiss
    at_end[..., -1600:] += hiss
    assert loss(at_end, y) > 0.5 * loss(at_start, y)


def test_added_energy_weighs_more_than_missing_energy():
    loss = PesqDisturbanceLoss(16000)
    y = voiced()
    hiss = 0.02 * torch.randn(2, 1, y.shape[-1], generator=torch.Generator().manual_seed(1))
    assert loss(y + hiss, y) > 1.5 * loss(y, y + hiss)
    assert loss(y, y + hiss) > 0.02         # missing energy counts too, in the symmetric term


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
    for entry in train_with_loss(audio_folder, tmp_path, "pesq", 100):
        assert np.isfinite(entry["pesq"]) and entry["pesq"] > 0
    out = tmp_path / "pesq"
    for bad in ("loss.pesq_weight=-1", "loss.pesq_weight=.inf", "gan.pesq_weight=-1", "gan.feature_weight=.nan"):
        with pytest.raises(CodecError, match=bad.split("=")[0].replace(".", r"\.")):
            tiny(audio_folder, out, bad)
