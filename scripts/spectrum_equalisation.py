"""Input spectrum equalisation, measured: bring each file's long-term spectrum toward the training
corpus' before encoding and undo it after decoding, as the input level normalisation does for the
level (``codec/level.py``); scored against plain coding, file by file.

    python scripts/spectrum_equalisation.py /tmp/ood36/wb [--kbps 6] [--settings 1:6,0.5:12,1:12:tilt]

Why: the default model scores 0.36 PESQ-WB lower on speech from other corpora than on the dev
files, and microphones differ first in their long-term spectrum. The long-term spectrum is the mean
power spectrum (512-point frames at 16 kHz) of the active frames (within 30 dB of the 95th
percentile of frame power), in one-third-octave bands from 100 Hz to 6.3 kHz, minus its mean in dB.
The training corpus' is the mean over 400 of its files. Each setting ``alpha:max_db`` equalises by
``alpha`` times the difference, clipped to +-max_db; ``alpha:max_db:tilt`` by the least-squares
line through the difference in log frequency only. The filter is zero-phase over the whole file
(a gain per FFT bin, interpolated in log frequency between band centres), and the decoded audio
is filtered by its inverse before scoring.

Measured 2026-12-06 with esc-16k-small at 6 kbps (paired against plain coding; 95% intervals):
it does not help. 36 files of other corpora (``scripts/ood_speech.py``): PESQ-WB 2.487 plain,
-0.050 +- 0.055 (1:6), -0.070 +- 0.058 (1:12), -0.019 +- 0.067 (0.5:12), -0.031 +- 0.047
(1:12:tilt); STOI within +-0.002. The 40 dev files: -0.024 +- 0.042 (1:6), -0.044 +- 0.039 (1:12),
+0.008 +- 0.035 (0.5:12). The training files' band levels themselves spread by 4-6 dB (standard
deviation across files, 200 Hz-4 kHz): the model has heard such spectra, and the gap to other
corpora lies elsewhere.
"""

import argparse
import random
from pathlib import Path

from script_errors import first_paragraph, run_main  # first: a Ctrl-C while torch loads is one line

# isort: split
import numpy as np
from dev_speech import DEV
from pystoi import stoi

import codec
from codec.audio import load_audio, resample
from codec.datasets import find_inputs
from codec.evaluation.metrics import pesq_wb
from codec.evaluation.stats import interval_text

RATE = 16000
N_FFT, HOP = 512, 256
CENTRES = 1000 * 2.0 ** (np.arange(-10, 9) / 3)   # one-third-octave bands, 100 Hz to 6.3 kHz
EDGES = np.concatenate([[CENTRES[0] * 2 ** (-1 / 6)], np.sqrt(CENTRES[:-1] * CENTRES[1:]),
                        [CENTRES[-1] * 2 ** (1 / 6)]])
ACTIVE_DB = 30.0   # frames within this of the 95th percentile's power count as active


def mono16k(path: Path) -> np.ndarray:
    audio, rate = load_audio(path)
    return resample(audio.mean(axis=1), rate, RATE).astype(np.float64)


def spectrum_shape(signal: np.ndarray) -> np.ndarray:
    """``[bands]`` dB: the active frames' mean power per band, minus its mean over the bands."""
    starts = range(0, len(signal) - N_FFT + 1, HOP)
    frames = np.stack([signal[s:s + N_FFT] for s in starts]) * np.hanning(N_FFT)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    frame_db = 10 * np.log10(power.sum(axis=1) + 1e-20)
    mean = power[frame_db > np.percentile(frame_db, 95) - ACTIVE_DB].mean(axis=0)
    freqs = np.fft.rfftfreq(N_FFT, 1 / RATE)
    bands = np.array([mean[(freqs >= lo) & (freqs < hi)].mean() for lo, hi in zip(EDGES[:-1], EDGES[1:], strict=True)])
    levels = 10 * np.log10(bands + 1e-20)
    return levels - levels.mean()


def filtered(signal: np.ndarray, gains_db: np.ndarray) -> np.ndarray:
    """``signal`` through a zero-phase filter of ``gains_db`` per band (flat beyond the end bands)."""
    freqs = np.fft.rfftfreq(len(signal), 1 / RATE)
    gain = np.interp(np.log(np.maximum(freqs, 1.0)), np.log(CENTRES), gains_db)
    return np.fft.irfft(np.fft.rfft(signal) * 10 ** (gain / 20), len(signal))


def equalised_gains(difference: np.ndarray, setting: str) -> np.ndarray:
    alpha, max_db, *tilt = setting.split(":")
    if tilt:
        octaves = np.log2(CENTRES / 1000)
        difference = np.polyval(np.polyfit(octaves, difference, 1), octaves)
    return np.clip(float(alpha) * difference, -float(max_db), float(max_db))


def equalisation_settings(text: str) -> list[str]:
    """``--settings``: comma-separated ``alpha:max_db`` or ``alpha:max_db:tilt``, each finite, ``max_db``
    above 0, none twice (an argparse ``type``: anything else is a one-line usage error)."""
    settings = text.split(",")
    for setting in settings:
        parts = setting.split(":")
        try:
            alpha, max_db = float(parts[0]), float(parts[1])
            ok = len(parts) == 2 or (len(parts) == 3 and parts[2] == "tilt")
        except (ValueError, IndexError):
            ok = False
        if not ok or not np.isfinite(alpha) or not np.isfinite(max_db) or max_db <= 0:
            raise argparse.ArgumentTypeError(f"{setting!r}: give alpha:max_db or alpha:max_db:tilt, numbers with "
                                             f"max_db above 0 (e.g. 1:6,0.5:12,1:12:tilt)")
    if len(set(settings)) < len(settings):
        raise argparse.ArgumentTypeError(f"{text!r}: a setting is given twice")
    return settings


def main() -> None:
    parser = argparse.ArgumentParser(description=first_paragraph(__doc__))
    parser.add_argument("folder", type=Path, help="speech to score (a folder of audio, searched recursively)")
    parser.add_argument("--train", type=Path, default=DEV.parent / "train",
                        help="training speech whose mean spectrum is the target (default: "
                             "../shared/data/speech/train beside the checkout)")
    parser.add_argument("--kbps", type=float, default=6.0)
    parser.add_argument("--settings", type=equalisation_settings, default="1:6,1:12,0.5:12,1:12:tilt",
                        help="comma-separated alpha:max_db or alpha:max_db:tilt (see above)")
    args = parser.parse_args()
    train, scored = find_inputs(args.train), find_inputs(args.folder)   # (CodecError for a folder without audio)
    random.Random(0).shuffle(train)
    reference = np.mean([spectrum_shape(mono16k(path)) for path in train[:400]], axis=0)
    model = codec.load_model()
    settings = args.settings
    scores: dict[str, list[tuple[float, float]]] = {name: [] for name in ["plain", *settings]}
    for path in scored:
        signal = mono16k(path)
        if len(signal) < RATE // 2:   # PESQ needs a quarter second; keep to half a second
            continue
        decoded = model.decode(model.encode(signal, RATE, args.kbps))[0][:, 0].astype(np.float64)
        plain_pesq = pesq_wb(signal, decoded, RATE)
        if not np.isfinite(plain_pesq):   # no speech for PESQ to find (digital silence, say): nothing to compare
            print(f"note: {path} left out: PESQ-WB is undefined for it")
            continue
        scores["plain"].append((plain_pesq, stoi(signal, decoded, RATE)))
        difference = reference - spectrum_shape(signal)
        for setting in settings:
            gains = equalised_gains(difference, setting)
            equalised = filtered(signal, gains)
            scale = min(1.0, 0.99 / np.abs(equalised).max())
            coded = model.decode(model.encode(equalised * scale, RATE, args.kbps))[0][:, 0]
            restored = filtered(coded.astype(np.float64) / scale, -gains)
            scores[setting].append((pesq_wb(signal, restored, RATE), stoi(signal, restored, RATE)))
    if not scores["plain"]:
        raise SystemExit(f"error: {args.folder}: no file of half a second or more with a PESQ-WB score")
    plain = np.array(scores["plain"])
    print(f"{len(plain)} files at {args.kbps:g} kbps: plain PESQ-WB {plain[:, 0].mean():.3f}, "
          f"STOI {plain[:, 1].mean():.3f}")
    for setting in settings:
        values = np.array(scores[setting])
        difference = values[:, 0] - plain[:, 0]
        print(f"{setting:<12} PESQ-WB {values[:, 0].mean():.3f} ({difference.mean():+.3f} {interval_text(difference)}, "
              f"better on {int((difference > 0).sum())} of {len(difference)}), "
              f"STOI {values[:, 1].mean():.3f} ({(values[:, 1] - plain[:, 1]).mean():+.4f})")


if __name__ == "__main__":
    run_main(main)
