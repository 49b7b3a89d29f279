"""Where an ESC codec loses quality: its decoded STFT magnitude or its decoded phase.

    python scripts/phase_swap.py esc-16k-small [--every 4] [--kbps 6]

For each dev file, the model's output head gives a magnitude and a phase per STFT frame (window
``n_fft``, hop ``hop_length``). Four signals are made with the head's own inverse STFT and scored
with PESQ-WB against the input:

* decoded: magnitude and phase as decoded (what ``codec decode`` writes, offline);
* decoded magnitude, input phase: how good the magnitude is;
* input magnitude, decoded phase: how good the phase is;
* input resynthesized: the inverse STFT alone (the ceiling of this comparison).

If the input's phase lifts the score far more than the input's magnitude does, the phase limits
the model. Magnitude losses (mel, multi-resolution STFT) do not constrain the phase, and a complex
STFT loss did not help (recipes/esc_16k_small_phase.yaml); the usual remedy is the adversarial
stage (Vocos, DAC; recipes/esc_16k_small_gan.yaml).
"""

import argparse
from pathlib import Path

import numpy as np
import torch

from codec.audio import load_audio, resample
from codec.errors import CodecError
from codec.evaluation.metrics import pesq_wb
from codec.models import EscCodec
from codec.models.loading import load_model

DEV = Path("../shared/data/speech/dev")

SIGNALS = ("decoded", "decoded magnitude, input phase", "input magnitude, decoded phase", "input resynthesized")


@torch.no_grad()
def swapped_signals(model: EscCodec, audio: np.ndarray, kbps: float) -> dict[str, np.ndarray]:
    """``audio [T]`` float at the model's rate -> the four signals above, each ``[T']`` (whole frames)."""
    frames = len(audio) // model.frame_size
    wav = torch.from_numpy(audio[:frames * model.frame_size]).float()[None, None]
    codes = model.encode(wav, model.codebooks_for_bitrate(kbps))
    magnitude, phase = model.head.spectrum(model.decoder_features(model.dequantize(codes)))
    real, imag = model.stft(wav).chunk(2, dim=1)
    input_magnitude, input_phase = torch.sqrt(real ** 2 + imag ** 2), torch.atan2(imag, real)
    pairs = zip(SIGNALS, ((magnitude, phase), (magnitude, input_phase), (input_magnitude, phase),
                          (input_magnitude, input_phase)), strict=True)
    return {name: model.head.synthesize(m, p)[0, 0].numpy() for name, (m, p) in pairs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="an ESC codec: model name or directory")
    parser.add_argument("--every", type=int, default=4, help="use every Nth dev file (default 4: 10 files)")
    parser.add_argument("--kbps", type=float, default=6.0)
    args = parser.parse_args()
    if args.every < 1:
        parser.error("--every must be >= 1")
    torch.set_num_threads(1)
    try:
        model = load_model(args.model).float().eval()
        model.codebooks_for_bitrate(args.kbps)
    except (CodecError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    c = model.config
    if not isinstance(model, EscCodec) or c.synthesis_n_fft != c.n_fft or c.synthesis_subframes != 1:
        raise SystemExit(f"{args.model}: needs an ESC codec whose output head uses the analysis STFT's "
                         "frames (synthesis_n_fft = n_fft, synthesis_subframes = 1)")
    files = sorted(DEV.rglob("*.flac"))[::args.every]
    if not files:
        raise SystemExit(f"no dev audio in {DEV}: run from the repository root beside ../shared")
    scores = {name: [] for name in SIGNALS}
    for path in files:
        audio, rate = load_audio(path)
        audio = resample(audio.mean(axis=1), rate, model.sample_rate).astype(np.float64)
        for name, signal in swapped_signals(model, audio, args.kbps).items():
            scores[name].append(pesq_wb(audio[:len(signal)], signal.astype(np.float64), model.sample_rate))
    print(f"PESQ-WB of {args.model} at {args.kbps:g} kbps on {len(files)} dev files (every {args.every}th)")
    for name, values in scores.items():
        print(f"{name:<32}{np.mean(values):6.3f}")


if __name__ == "__main__":
    main()
