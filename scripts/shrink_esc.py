"""Drop transformer blocks from a trained ESC codec, keeping every other weight.

    .venv/bin/python scripts/shrink_esc.py models/esc-16k runs/esc-16k-small-init --decoder-blocks 1,1,1

Each stage keeps its first blocks (the last ones are dropped: in a residual stack they change
the features least). The result decodes worse until trained again (``recipes/esc_16k_small.yaml``
starts from it); dropping a block of a coarser decoder stage changes the codes too, as the
encoder runs those stages. The point is speed: the 50x real-time rule for the default model.

Writes ``OUT/model.safetensors`` and ``OUT/config.json`` (float32) into a new folder. Raises
SystemExit for a model that is not ESC, block counts above the model's or of the wrong length,
or an ``OUT`` that already holds a model.
"""

import argparse
import dataclasses
from pathlib import Path

from script_errors import new_folder_problem, run_main  # first: a Ctrl-C while torch loads is one line

# isort: split
from codec.models import EscCodec, load_model, save_model


def counts(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def shrink(model: EscCodec, encoder_blocks: list[int], decoder_blocks: list[int]) -> EscCodec:
    """A copy of ``model`` keeping the first ``encoder_blocks[s]`` / ``decoder_blocks[s]`` blocks of each stage."""
    config = dataclasses.replace(model.config, encoder_blocks=encoder_blocks, decoder_blocks=decoder_blocks)
    small = EscCodec(config)
    missing, unexpected = small.load_state_dict(model.state_dict(), strict=False)
    if missing:
        raise SystemExit(f"weights missing from {model.config.name} for the smaller model: {missing}")
    dropped = sorted({".".join(key.split(".")[:3]) for key in unexpected})
    print(f"dropped {', '.join(dropped) or 'nothing'}")
    return small


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="an ESC codec: model name or folder")
    parser.add_argument("out", type=Path, help="folder for the smaller model")
    for part in ("encoder", "decoder"):
        parser.add_argument(f"--{part}-blocks", type=counts,
                            help=f"blocks per {part} stage, e.g. 1,1,1 (default: unchanged)")
    args = parser.parse_args()
    if problem := new_folder_problem(args.out, "smaller model"):
        parser.error(problem)
    model = load_model(args.model).float()
    if not isinstance(model, EscCodec):
        raise SystemExit(f"{args.model}: only ESC codecs can be shrunk by this script")
    c = model.config
    encoder_blocks, decoder_blocks = args.encoder_blocks or c.encoder_blocks, args.decoder_blocks or c.decoder_blocks
    for name, new, old in (("encoder", encoder_blocks, c.encoder_blocks),
                           ("decoder", decoder_blocks, c.decoder_blocks)):
        if len(new) != len(old) or any(n < 0 or n > o for n, o in zip(new, old, strict=True)):
            parser.error(f"--{name}-blocks {new}: need {len(old)} counts, each from 0 to the model's {old}")
    save_model(shrink(model, encoder_blocks, decoder_blocks), args.out)


if __name__ == "__main__":
    run_main(main)
