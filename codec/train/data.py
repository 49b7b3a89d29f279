"""Training data: every audio file of a folder, resampled and held in memory, served as random
crops with random gain (loudness augmentation)."""

from pathlib import Path

import numpy as np
import torch

from codec.audio import AUDIO_SUFFIXES, load_audio, resample
from codec.errors import CodecError


def find_audio_files(folder: Path) -> list[Path]:
    """All files under ``folder`` (recursively) with a supported audio suffix, sorted."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)


class RandomCropDataset:
    """Random fixed-length mono crops from a folder of audio, all at ``sample_rate``.

    Files are picked with probability proportional to their length; multi-channel files
    contribute their channel mean. Each crop gets a random gain so that its RMS level falls in
    ``level_db`` (dBFS) without its peak exceeding 0.99.

    Raises:
        CodecError: if the folder holds no readable audio.
    """

    def __init__(self, folder: Path, sample_rate: int, segment_samples: int,
                 level_db: tuple[float, float] = (-35.0, -15.0), seed: int = 0):
        files = find_audio_files(folder)
        if not files:
            raise CodecError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) found under {folder}")
        self.clips = []
        for path in files:
            audio, rate = load_audio(path)
            self.clips.append(resample(audio.mean(axis=1), rate, sample_rate).astype(np.float32))
        self.lengths = np.array([len(c) for c in self.clips], dtype=np.float64)
        self.sample_rate = sample_rate
        self.segment_samples = segment_samples
        self.level_db = level_db
        self.rng = np.random.default_rng(seed)

    @property
    def hours(self) -> float:
        return float(self.lengths.sum()) / self.sample_rate / 3600

    def batch(self, batch_size: int) -> torch.Tensor:
        """``[B, 1, segment_samples]`` float32 crops."""
        picks = self.rng.choice(len(self.clips), size=batch_size, p=self.lengths / self.lengths.sum())
        out = np.zeros((batch_size, 1, self.segment_samples), dtype=np.float32)
        for row, index in enumerate(picks):
            clip = self.clips[index]
            if len(clip) > self.segment_samples:
                start = self.rng.integers(0, len(clip) - self.segment_samples + 1)
                clip = clip[start:start + self.segment_samples]
            rms = float(np.sqrt(np.mean(clip ** 2) + 1e-12))
            peak = float(np.abs(clip).max()) + 1e-12
            gain = min(10 ** (self.rng.uniform(*self.level_db) / 20) / rms, 0.99 / peak)
            out[row, 0, :len(clip)] = clip * gain
        return torch.from_numpy(out)
