"""Training data: every audio file of a folder or manifest, resampled and held in memory, served
as random crops with level normalisation and optional augmentation (noise mixing, random EQ)."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.signal import lfilter

from codec.audio import load_audio, resample
from codec.datasets import find_inputs
from codec.errors import CodecError


def find_audio_files(source: Path) -> list[Path]:
    """The audio files of a folder or manifest (see ``codec.datasets.find_inputs``)."""
    return find_inputs(source)


def _load_all(source: Path, sample_rate: int) -> list[np.ndarray]:
    clips = []
    for path in find_inputs(source):
        audio, rate = load_audio(path)
        clips.append(resample(audio.mean(axis=1), rate, sample_rate).astype(np.float32))
    return clips


@dataclass
class Augmentation:
    """Random changes applied to each crop (all off by default)."""

    noise_clips: list[np.ndarray] | None = None
    noise_probability: float = 0.0
    noise_snr_db: tuple[float, float] = (5.0, 30.0)
    eq_probability: float = 0.0
    eq_gain_db: float = 6.0


SILENT_PEAK = 1e-4                 # -80 dBFS: training audio whose every sample is below this is silence
EQ_CENTRE_HZ = (150.0, 5000.0)    # range of the random peaking EQ's centre frequency


def _peaking_eq(signal: np.ndarray, sample_rate: int, rng: np.random.Generator, max_gain_db: float) -> np.ndarray:
    """One random peaking filter (RBJ audio EQ cookbook biquad): centre in ``EQ_CENTRE_HZ``, gain
    within ±max_gain_db, Q 0.5-2."""
    low, high = EQ_CENTRE_HZ
    centre = np.exp(rng.uniform(np.log(low), np.log(min(high, 0.45 * sample_rate))))
    gain = 10 ** (rng.uniform(-max_gain_db, max_gain_db) / 40)
    omega = 2 * np.pi * centre / sample_rate
    alpha = np.sin(omega) / (2 * rng.uniform(0.5, 2.0))
    b = [1 + alpha * gain, -2 * np.cos(omega), 1 - alpha * gain]
    a = [1 + alpha / gain, -2 * np.cos(omega), 1 - alpha / gain]
    return lfilter(b, a, signal).astype(np.float32)


class RandomCropDataset:
    """Random fixed-length mono crops from a folder or manifest of audio, all at ``sample_rate``.

    Files are picked with probability proportional to their length; multi-channel files
    contribute their channel mean. After augmentation each crop gets a random gain so that its
    RMS level falls in ``level_db`` (dBFS) without its peak exceeding 0.99: level normalisation,
    so the model sees speech at every loudness.

    Raises:
        CodecError: if the source holds no readable audio, or only silence.
    """

    def __init__(self, source: Path, sample_rate: int, segment_samples: int,
                 level_db: tuple[float, float] = (-35.0, -15.0), seed: int = 0,
                 augmentation: Augmentation | None = None):
        self.clips = _load_all(source, sample_rate)
        if max(float(np.abs(c).max(initial=0.0)) for c in self.clips) < SILENT_PEAK:
            raise CodecError(f"{source}: all of its audio is silent (peak below -80 dBFS); a codec cannot "
                             f"learn from it")
        self.lengths = np.array([len(c) for c in self.clips], dtype=np.float64)
        self.sample_rate = sample_rate
        self.segment_samples = segment_samples
        self.level_db = level_db
        self.augmentation = augmentation or Augmentation()
        self.rng = np.random.default_rng(seed)

    @classmethod
    def noise_from(cls, source: Path, sample_rate: int) -> list[np.ndarray]:
        """Noise clips for ``Augmentation.noise_clips``."""
        return _load_all(source, sample_rate)

    @property
    def hours(self) -> float:
        return float(self.lengths.sum()) / self.sample_rate / 3600

    def _crop(self, clip: np.ndarray) -> np.ndarray:
        out = np.zeros(self.segment_samples, dtype=np.float32)
        if len(clip) > self.segment_samples:
            start = self.rng.integers(0, len(clip) - self.segment_samples + 1)
            clip = clip[start:start + self.segment_samples]
        out[:len(clip)] = clip
        return out

    def _augment(self, crop: np.ndarray) -> np.ndarray:
        aug = self.augmentation
        if aug.noise_clips and self.rng.random() < aug.noise_probability:
            noise = self._crop(aug.noise_clips[self.rng.integers(len(aug.noise_clips))])
            speech_power, noise_power = np.mean(crop ** 2) + 1e-10, np.mean(noise ** 2) + 1e-10
            snr = self.rng.uniform(*aug.noise_snr_db)
            crop = crop + noise * np.sqrt(speech_power / noise_power / 10 ** (snr / 10))
        if self.rng.random() < aug.eq_probability:
            crop = _peaking_eq(crop, self.sample_rate, self.rng, aug.eq_gain_db)
        return crop

    def batch(self, batch_size: int) -> torch.Tensor:
        """``[B, 1, segment_samples]`` float32 crops."""
        picks = self.rng.choice(len(self.clips), size=batch_size, p=self.lengths / self.lengths.sum())
        out = np.zeros((batch_size, 1, self.segment_samples), dtype=np.float32)
        for row, index in enumerate(picks):
            crop = self._augment(self._crop(self.clips[index]))
            rms = float(np.sqrt(np.mean(crop ** 2) + 1e-12))
            peak = float(np.abs(crop).max()) + 1e-12
            gain = min(10 ** (self.rng.uniform(*self.level_db) / 20) / rms, 0.99 / peak)
            out[row, 0] = crop * gain
        return torch.from_numpy(out)
