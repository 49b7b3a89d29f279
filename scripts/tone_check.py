"""How much of a 1 kHz tone, DTMF digits and a sweep each model gives back (codec/evaluation/tones.py).

    python scripts/tone_check.py esc-16k-small [runs/esc-16k-small-tones/model ...] [--kbps 1.5,6,12]

Prints, per signal and bitrate, the decoded level minus the input's in dB (0: all of it; -90: silenced).
"""

import argparse

from script_errors import first_paragraph, run_main  # first: a Ctrl-C while torch loads is one line

# isort: split
import torch

from codec.errors import CodecError
from codec.evaluation.tones import LEVEL_DBFS, TEST_SIGNALS, returned_levels
from codec.models import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=first_paragraph(__doc__))
    parser.add_argument("models", nargs="+", help="shipped model names or model folders")
    parser.add_argument("--kbps", default="1.5,6,12", help="comma-separated bitrates")
    args = parser.parse_args()
    torch.set_num_threads(1)
    try:
        rates = [float(k) for k in args.kbps.split(",")]
    except ValueError:
        parser.error(f"--kbps {args.kbps!r}: give comma-separated numbers, e.g. 1.5,6,12")
    columns = [(name, kbps) for name in args.models for kbps in rates]
    try:
        models = {name: load_model(name) for name in args.models}
        results = {column: returned_levels(models[column[0]], column[1]) for column in columns}
    except (CodecError, ValueError) as error:   # a model not found, or a bitrate it does not have
        raise SystemExit(f"error: {error}") from None
    print(f"decoded level minus input level (dB); inputs at {LEVEL_DBFS:g} dBFS RMS")
    print("| signal | " + " | ".join(f"{name} {kbps:g} kbps" for name, kbps in columns) + " |")
    print("| --- |" + " ---: |" * len(columns))
    for signal in TEST_SIGNALS:
        print(f"| {signal} | " + " | ".join(f"{results[c][signal]:+.1f}" for c in columns) + " |")


if __name__ == "__main__":
    run_main(main)
