"""PESQ-WB of one or two models on dev speech changed to stand in for other microphones, rooms and
levels: the check behind the default model's EQ augmentation (recipes/esc_16k_small_5.yaml).

    python scripts/robustness.py esc-16k-small [runs/esc-16k-small-6/model] [--every 4] [--kbps 6]

Each condition filters or scales the input; the model codes the changed input, and PESQ-WB
compares its decoding with that changed input (not the original), so only the codec's loss
counts. With two models, each condition also gets the paired difference B - A over the files with
its 95% confidence interval (Student's t) and on how many files B is better.
"""

import argparse
from collections.abc import Callable

from script_errors import first_paragraph, run_main  # first: a Ctrl-C while torch loads is one line

# isort: split
import numpy as np
import torch
from dev_speech import add_options, dev_audio, load_models
from scipy.signal import butter, fftconvolve, lfilter, sosfilt

from codec.coding import decode_audio, encode_audio
from codec.evaluation.metrics import pesq_wb
from codec.evaluation.stats import interval_text

RATE = 16000


def _shelf(audio: np.ndarray, corner_hz: float, gain_db: float, high: bool) -> np.ndarray:
    """RBJ audio-EQ-cookbook shelving biquad (slope 1): ``gain_db`` above (high) or below ``corner_hz``."""
    a_gain = 10 ** (gain_db / 40)
    omega = 2 * np.pi * corner_hz / RATE
    alpha = np.sin(omega) / np.sqrt(2)
    cos, root = np.cos(omega), 2 * np.sqrt(a_gain) * alpha
    sign = 1 if high else -1   # the high shelf is the low shelf with the cosine terms' signs flipped
    b = [a_gain * ((a_gain + 1) + sign * (a_gain - 1) * cos + root),
         -sign * 2 * a_gain * ((a_gain - 1) + sign * (a_gain + 1) * cos),
         a_gain * ((a_gain + 1) + sign * (a_gain - 1) * cos - root)]
    a = [(a_gain + 1) - sign * (a_gain - 1) * cos + root,
         sign * 2 * ((a_gain - 1) - sign * (a_gain + 1) * cos),
         (a_gain + 1) - sign * (a_gain - 1) * cos - root]
    return lfilter(b, a, audio)


def _at_level(audio: np.ndarray, dbfs: float) -> np.ndarray:
    return audio * 10 ** (dbfs / 20) / np.sqrt(np.mean(audio ** 2) + 1e-12)


def _with_noise(audio: np.ndarray, snr_db: float) -> np.ndarray:
    noise = np.random.default_rng(0).standard_normal(len(audio))
    return audio + noise * np.sqrt(np.mean(audio ** 2) / 10 ** (snr_db / 10))


def _room_response(rt60_s: float, drr_db: float) -> np.ndarray:
    """A synthetic room impulse response: the direct sound and a diffuse tail of Gaussian noise that
    decays by 60 dB in ``rt60_s`` from 2.5 ms on (the statistical model of late reverberation,
    Polack 1988), scaled to a direct-to-reverberant energy ratio of ``drr_db``."""
    delay, n = int(0.0025 * RATE), np.arange(int(rt60_s * RATE))
    tail = np.random.default_rng(0).standard_normal(len(n)) * np.exp(-3 * np.log(10) * n / (rt60_s * RATE))
    tail *= np.sqrt(10 ** (-drr_db / 10) / np.sum(tail ** 2))
    return np.concatenate([[1.0], np.zeros(delay - 1), tail])


def _in_room(audio: np.ndarray, rt60_s: float, drr_db: float) -> np.ndarray:
    response = _room_response(rt60_s, drr_db)
    return _at_level(fftconvolve(audio, response)[:len(audio)], -26)


CONDITIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "as recorded": lambda x: x,
    "+8 dB above 3 kHz": lambda x: _shelf(x, 3000, 8, high=True),
    "-10 dB above 2.5 kHz": lambda x: _shelf(x, 2500, -10, high=True),
    "+8 dB below 300 Hz": lambda x: _shelf(x, 300, 8, high=False),
    "band-limited 300-3400 Hz": lambda x: sosfilt(butter(4, [300, 3400], "bandpass", fs=RATE, output="sos"), x),
    "white noise at 25 dB SNR": lambda x: _with_noise(x, 25),
    "level -50 dBFS": lambda x: _at_level(x, -50),
    "level -20 dBFS": lambda x: _at_level(x, -20),
    "room, RT60 0.3 s, DRR 6 dB": lambda x: _in_room(x, 0.3, 6),
    "room, RT60 0.8 s, DRR 0 dB": lambda x: _in_room(x, 0.8, 0),
}


def score(model, audio: np.ndarray, kbps: float) -> float:
    decoded, _ = decode_audio(model, encode_audio(model, audio[:, None], RATE, kbps))
    return pesq_wb(audio, decoded[:, 0], RATE)


def main() -> None:
    parser = argparse.ArgumentParser(description=first_paragraph(__doc__))
    parser.add_argument("models", nargs="+", help="one or two model names or directories (A [B])")
    add_options(parser)
    args = parser.parse_args()
    if len(args.models) > 2:
        parser.error("give one or two models")
    torch.set_num_threads(1)
    inputs = dev_audio(parser, args.every, RATE, args.dev)
    models = load_models(args.models, args.kbps)
    print(f"PESQ-WB at {args.kbps:g} kbps on {len(inputs)} dev files (every {args.every}th); "
          f"models: {', '.join(args.models)}")
    for name, change in CONDITIONS.items():
        changed = [np.clip(change(x), -1.0, 1.0) for x in inputs]
        scores = np.array([[score(model, x, args.kbps) for x in changed] for model in models])
        line = f"{name:<26}" + "".join(f"{s.mean():8.3f}" for s in scores)
        if len(models) == 2:
            diff = scores[1] - scores[0]
            line += f"   B - A {diff.mean():+.3f} {interval_text(diff)}, B better on {(diff > 0).sum()} of {len(diff)}"
        print(line, flush=True)


if __name__ == "__main__":
    run_main(main)
