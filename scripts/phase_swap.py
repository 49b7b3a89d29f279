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

from script_errors import first_paragraph, run_main  # first: a Ctrl-C while torch loads is one line

# isort: split
import numpy as np
import torch
from dev_speech import head_script

from codec.evaluation.metrics import pesq_wb
from codec.models import EscCodec

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
    args, model, inputs = head_script(first_paragraph(__doc__))
    scores = {name: [] for name in SIGNALS}
    for audio in inputs:
        for name, signal in swapped_signals(model, audio, args.kbps).items():
            scores[name].append(pesq_wb(audio[:len(signal)], signal.astype(np.float64), model.sample_rate))
    print(f"PESQ-WB of {args.model} at {args.kbps:g} kbps on {len(inputs)} dev files (every {args.every}th)")
    for name, values in scores.items():
        print(f"{name:<32}{np.mean(values):6.3f}")


if __name__ == "__main__":
    run_main(main)
