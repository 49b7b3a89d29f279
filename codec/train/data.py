"""Training data: every audio file of a folder or manifest, resampled and held in memory, served
as random crops with level normalisation and optional augmentation (noise mixing, random EQ,
random shelving filters, speed perturbation, synthetic tones)."""

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soxr
import torch
from scipy.signal import lfilter

from codec.audio import load_audio_and_announced, resample
from codec.datasets import Skipped, find_inputs
from codec.errors import CodecError


def find_audio_files(source: Path, skipped: Skipped | None = None) -> list[Path]:
    """The audio files of a folder or manifest (see ``codec.datasets.find_inputs``); with
    ``skipped``, what a folder holds besides them is listed there."""
    return find_inputs(source, skipped)


@dataclass
class Findings:
    """What loading training audio found that a user should hear of: files cut short (shorter than
    their header announces, as ``codec encode`` warns of them), files at a sample rate below the
    model's (upsampled, so empty above half their rate), files a manifest lists more than once,
    very quiet files (each crop is raised to the training level: their noise and rounding floor too)."""

    truncated: list[str] = field(default_factory=list)
    low_rate: list[str] = field(default_factory=list)
    repeated: list[str] = field(default_factory=list)
    quiet: list[str] = field(default_factory=list)


def _load_all(source: Path, sample_rate: int, findings: Findings | None = None,
              unreadable: list[str] | None = None, skipped: Skipped | None = None) -> list[np.ndarray]:
    """Every file's channel mean at ``sample_rate``; what a user should hear of goes into
    ``findings``. With ``unreadable``, a file that cannot be read is left out and its error listed
    there (one bad file among thousands does not stop a run, as it does not stop a batch). With
    ``skipped``, a folder's files that are not audio and its hidden ones are listed there.

    Raises:
        CodecError: for a file that cannot be read (without ``unreadable``), or if none can be.
    """
    clips = []
    paths = find_inputs(source, skipped)
    if findings is not None:
        findings.repeated += [str(path) for path, times in Counter(paths).items() if times > 1]
    for path in paths:
        try:
            audio, rate, announced = load_audio_and_announced(path)
        except CodecError as error:
            if unreadable is None:
                raise
            unreadable.append(str(error))
            continue
        if findings is not None and len(audio) < announced:
            findings.truncated.append(f"{path} ({len(audio)} of {announced} samples)")
        if findings is not None and rate < sample_rate:
            findings.low_rate.append(f"{path} ({rate} Hz)")
        clips.append(resample(audio.mean(axis=1), rate, sample_rate).astype(np.float32))
        if findings is not None and 0 < np.abs(clips[-1]).max(initial=0.0) < QUIET_PEAK:   # (zeros stay zeros)
            findings.quiet.append(str(path))
    if not clips and unreadable:
        raise CodecError(f"{source}: none of its audio files can be read; first: {unreadable[0]}")
    return clips


@dataclass
class Augmentation:
    """Random changes applied to each crop (all off by default)."""

    noise_clips: list[np.ndarray] | None = None
    noise_probability: float = 0.0
    noise_snr_db: tuple[float, float] = (5.0, 30.0)
    eq_probability: float = 0.0
    eq_gain_db: float = 6.0
    shelf_probability: float = 0.0
    shelf_gain_db: float = 8.0
    speed_probability: float = 0.0
    speed_range: tuple[float, float] = (0.9, 1.1)
    tone_probability: float = 0.0
    tone_level_db: tuple[float, float] = (-20.0, 10.0)


SILENT_PEAK = 1e-4                 # -80 dBFS: training audio whose every sample is below this is silence
QUIET_PEAK = 1e-3                  # -60 dBFS: a training file whose every sample is below this is warned of
EQ_CENTRE_HZ = (150.0, 5000.0)    # range of the random peaking EQ's centre frequency
LOW_SHELF_HZ = (80.0, 400.0)      # corner range of the random low shelf (microphone bass, proximity effect)
HIGH_SHELF_HZ = (2000.0, 6000.0)  # corner range of the random high shelf (microphone presence, room damping)
TONE_HZ = (60.0, 7000.0)          # range of the synthetic tones' frequencies
TONE_RAMP_SECONDS = 0.005         # fade in and out of a synthetic tone
TONES_ALONE_PROBABILITY = 0.7     # of the crops that get tones, those whose speech they replace


def _log_uniform_hz(rng: np.random.Generator, low_high: tuple[float, float], sample_rate: int) -> float:
    """A frequency drawn evenly on a log scale (as we hear) from ``low_high``, kept below Nyquist."""
    low, high = low_high
    return float(np.exp(rng.uniform(np.log(low), np.log(min(high, 0.45 * sample_rate)))))


def _peaking_eq(signal: np.ndarray, sample_rate: int, rng: np.random.Generator, max_gain_db: float) -> np.ndarray:
    """One random peaking filter (RBJ audio EQ cookbook biquad): centre in ``EQ_CENTRE_HZ``, gain
    within ±max_gain_db, Q 0.5-2."""
    centre = _log_uniform_hz(rng, EQ_CENTRE_HZ, sample_rate)
    gain = 10 ** (rng.uniform(-max_gain_db, max_gain_db) / 40)
    omega = 2 * np.pi * centre / sample_rate
    alpha = np.sin(omega) / (2 * rng.uniform(0.5, 2.0))
    b = [1 + alpha * gain, -2 * np.cos(omega), 1 - alpha * gain]
    a = [1 + alpha / gain, -2 * np.cos(omega), 1 - alpha / gain]
    return lfilter(b, a, signal).astype(np.float32)


def _shelf(signal: np.ndarray, sample_rate: int, corner_hz: float, gain_db: float, high: bool) -> np.ndarray:
    """A low or high shelving filter (RBJ audio EQ cookbook biquad, shelf slope 1)."""
    gain = 10 ** (gain_db / 40)
    omega = 2 * np.pi * corner_hz / sample_rate
    cos, alpha = np.cos(omega), np.sin(omega) / np.sqrt(2)
    root = 2 * np.sqrt(gain) * alpha
    sign = -1 if high else 1        # the cookbook's high-shelf formulas are its low-shelf ones with these signs flipped
    b = [gain * ((gain + 1) - sign * (gain - 1) * cos + root), sign * 2 * gain * ((gain - 1) - sign * (gain + 1) * cos),
         gain * ((gain + 1) - sign * (gain - 1) * cos - root)]
    a = [(gain + 1) + sign * (gain - 1) * cos + root, -sign * 2 * ((gain - 1) + sign * (gain + 1) * cos),
         (gain + 1) + sign * (gain - 1) * cos - root]
    return lfilter(b, a, signal).astype(np.float32)


def _random_shelves(signal: np.ndarray, sample_rate: int, rng: np.random.Generator, max_gain_db: float) -> np.ndarray:
    """A random low shelf (corner in ``LOW_SHELF_HZ``) and a random high shelf (corner in
    ``HIGH_SHELF_HZ``), each of gain within ±max_gain_db: another microphone's tilt."""
    for corners, is_high in ((LOW_SHELF_HZ, False), (HIGH_SHELF_HZ, True)):
        corner = _log_uniform_hz(rng, corners, sample_rate)
        signal = _shelf(signal, sample_rate, corner, rng.uniform(-max_gain_db, max_gain_db), is_high)
    return signal


def synthetic_tones(samples: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """``[samples]`` float32: one (half of the time) to three sinusoids (a test tone, a DTMF pair, a whistle), each
    steady or swept linearly between two frequencies drawn log-uniformly from ``TONE_HZ``, with
    random phases and amplitudes, sounding for a random 25-100% of the crop with 5 ms ramps;
    peak 1. Why: speech alone never shows the model a spectrum that is empty but for a few
    bins, and models trained on it silenced a steady 1 kHz tone (-90 dB)."""
    t = np.arange(samples) / sample_rate
    tones = np.zeros(samples)
    for _ in range(rng.choice([1, 2, 3], p=[0.5, 0.25, 0.25])):   # one alone most often: the hardest case
        start_hz, end_hz = (_log_uniform_hz(rng, TONE_HZ, sample_rate) for _ in range(2))
        if rng.random() < 0.5:
            end_hz = start_hz
        phase = 2 * np.pi * (start_hz * t + (end_hz - start_hz) * t ** 2 / (2 * t[-1] + 2 / sample_rate))
        tones += rng.uniform(0.2, 1.0) * np.sin(phase + rng.uniform(0, 2 * np.pi))
    length = int(samples * rng.uniform(0.25, 1.0))
    start = int(rng.integers(0, samples - length + 1))
    ramp = min(int(TONE_RAMP_SECONDS * sample_rate), length // 2)
    envelope = np.zeros(samples)
    envelope[start:start + length] = 1.0
    envelope[start:start + ramp] = np.linspace(0, 1, ramp, endpoint=False)
    envelope[start + length - ramp:start + length] = np.linspace(1, 0, ramp, endpoint=False)
    tones *= envelope
    return (tones / np.abs(tones).max()).astype(np.float32)


def _refuse_empty_or_silent(source: Path, clips: list[np.ndarray], why_not_silence: str,
                            silent_peak: float = SILENT_PEAK) -> None:
    """Raises CodecError if ``clips`` (all of ``source``'s audio) hold no samples, or none that
    reaches ``silent_peak``."""
    if not any(len(c) for c in clips):
        raise CodecError(f"{source}: holds no audio (its files have no samples)")
    peak = max(float(np.abs(c).max(initial=0.0)) for c in clips)
    if peak < silent_peak:
        raise CodecError(f"{source}: all of its audio is silent (peak below -80 dBFS); {why_not_silence}")
    if peak == 0:
        raise CodecError(f"{source}: all of its audio is digital silence (every sample 0); {why_not_silence}")


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
        self.findings = Findings()       # files cut short, upsampled or listed twice: for warnings
        self.unreadable: list[str] = []  # files left out, for a warning
        self.skipped = Skipped()         # files of the folder that are not audio, or hidden: for a note
        self.clips = _load_all(source, sample_rate, self.findings, self.unreadable, self.skipped)
        _refuse_empty_or_silent(source, self.clips, "a codec cannot learn from it")
        self.lengths = np.array([len(c) for c in self.clips], dtype=np.float64)
        self.sample_rate = sample_rate
        self.segment_samples = segment_samples
        self.level_db = level_db
        self.augmentation = augmentation or Augmentation()
        self.rng = np.random.default_rng(seed)

    @classmethod
    def noise_from(cls, source: Path, sample_rate: int, unreadable: list[str] | None = None,
                   skipped: Skipped | None = None) -> list[np.ndarray]:
        """Noise clips for ``Augmentation.noise_clips``; files that cannot be read are left out
        and listed in ``unreadable``, and a folder's other files in ``skipped`` (see ``_load_all``).

        Raises:
            CodecError: if the source holds no readable audio, or only silence (mixed in, it would
                add nothing).
        """
        clips = _load_all(source, sample_rate, unreadable=unreadable, skipped=skipped)
        # (only digital silence: the noise is scaled to the SNR drawn, so a quiet recording of it serves)
        _refuse_empty_or_silent(source, clips, "as noise it would add nothing", silent_peak=0.0)
        return clips

    @property
    def hours(self) -> float:
        return float(self.lengths.sum()) / self.sample_rate / 3600

    def notes(self) -> list[str]:
        """What the training folder holds besides the training audio (files that are not audio,
        hidden ones), so that a user can tell a file left out by its name from one read."""
        summary = self.skipped.summary()
        return [f"training data: {summary}"] if summary else []

    def warnings(self) -> list[str]:
        """What a user should know about this training audio before a run (files left out, cut
        short, upsampled or listed twice, too little audio for one crop)."""
        found = []
        if self.unreadable:
            found.append(f"{len(self.unreadable)} training file(s) cannot be read and are left out, first: "
                         f"{self.unreadable[0]}")
        truncated, low_rate, repeated = self.findings.truncated, self.findings.low_rate, self.findings.repeated
        if truncated:
            found.append(f"{len(truncated)} training file(s) hold less audio than their header announces "
                         f"(cut short?), first: {truncated[0]}")
        if low_rate:
            found.append(f"{len(low_rate)} training file(s) have a sample rate below the model's {self.sample_rate} Hz "
                         f"and are upsampled: they hold nothing above half their rate, and the model learns to "
                         f"leave that band empty; first: {low_rate[0]}")
        if self.findings.quiet:
            low, high = self.level_db
            found.append(f"{len(self.findings.quiet)} training file(s) are very quiet (peak below -60 dBFS, not "
                         f"digital silence), and each crop is raised to {low:g} to {high:g} dBFS RMS "
                         f"(data.level_db), by {low + 60:g} dB or more, with their noise and rounding floor; first: "
                         f"{self.findings.quiet[0]}")
        if repeated:
            found.append(f"{len(repeated)} training file(s) are listed more than once, and each listing counts "
                         f"(crops come from them that many times as often); first: {repeated[0]}")
        crop = f"{self.segment_samples / self.sample_rate:g} s, data.segment_seconds"
        short = self.lengths < self.segment_samples
        if self.lengths.sum() < self.segment_samples:
            found.append(f"the training audio lasts {self.lengths.sum() / self.sample_rate:.2f} s, less than one "
                         f"crop ({crop}): every crop is padded with silence")
        elif short.any():   # crops are drawn in proportion to length: say how much of them is padding
            share = self.lengths[short].sum() / self.lengths.sum()
            found.append(f"{int(short.sum())} of {len(self.lengths)} training files are shorter than one crop "
                         f"({crop}): crops from them, {'under 1%' if share < 0.005 else f'{share:.0%}'} of all, "
                         f"are padded with silence")
        return found

    def _crop(self, clip: np.ndarray, samples: int | None = None) -> np.ndarray:
        samples = self.segment_samples if samples is None else samples
        out = np.zeros(samples, dtype=np.float32)
        if len(clip) > samples:
            start = self.rng.integers(0, len(clip) - samples + 1)
            clip = clip[start:start + samples]
        out[:len(clip)] = clip
        return out

    def _speech_crop(self, clip: np.ndarray) -> np.ndarray:
        """A crop, sped up or slowed down (pitch and tempo together, as Kaldi's speed perturbation:
        Ko et al., "Audio augmentation for speech recognition", Interspeech 2015) when drawn."""
        aug = self.augmentation
        if not (aug.speed_probability and self.rng.random() < aug.speed_probability):
            return self._crop(clip)
        speed = self.rng.uniform(*aug.speed_range)
        # one sample more than needed: soxr may return one fewer than the exact ratio gives
        longer = self._crop(clip, int(round(self.segment_samples * speed)) + 1)
        faster = soxr.resample(longer, speed, 1.0, quality="HQ")     # 1/speed as many samples: played faster
        out = np.zeros(self.segment_samples, dtype=np.float32)
        out[:min(len(faster), self.segment_samples)] = faster[:self.segment_samples]
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
        if aug.shelf_probability and self.rng.random() < aug.shelf_probability:
            crop = _random_shelves(crop, self.sample_rate, self.rng, aug.shelf_gain_db)
        if aug.tone_probability and self.rng.random() < aug.tone_probability:
            crop = self._add_tones(crop)
        return crop

    def _add_tones(self, crop: np.ndarray) -> np.ndarray:
        """Synthetic tones over the crop at ``tone_level_db`` (dB, RMS against the crop's), or, 70% of
        the time, in place of it: tones alone in digital silence (what the model failed on)."""
        tones = synthetic_tones(len(crop), self.sample_rate, self.rng)
        if self.rng.random() < TONES_ALONE_PROBABILITY:
            return tones
        speech_rms = float(np.sqrt(np.mean(crop ** 2))) + 1e-10
        tones_rms = float(np.sqrt(np.mean(tones ** 2))) + 1e-10
        relative = 10 ** (self.rng.uniform(*self.augmentation.tone_level_db) / 20)
        return (crop + tones * relative * speech_rms / tones_rms).astype(np.float32)

    def batch(self, batch_size: int) -> torch.Tensor:
        """``[B, 1, segment_samples]`` float32 crops."""
        picks = self.rng.choice(len(self.clips), size=batch_size, p=self.lengths / self.lengths.sum())
        out = np.zeros((batch_size, 1, self.segment_samples), dtype=np.float32)
        for row, index in enumerate(picks):
            crop = self._augment(self._speech_crop(self.clips[index]))
            rms = float(np.sqrt(np.mean(crop ** 2) + 1e-12))
            peak = float(np.abs(crop).max()) + 1e-12
            gain = min(10 ** (self.rng.uniform(*self.level_db) / 20) / rms, 0.99 / peak)
            out[row, 0] = crop * gain
        return torch.from_numpy(out)
