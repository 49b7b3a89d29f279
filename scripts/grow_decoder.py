"""Grow a trained conv codec's decoder by ConvNeXt blocks that start as the identity.

    .venv/bin/python scripts/grow_decoder.py models/conv-16k runs/conv-16k-grown --code-rate 2 --analysis 2

Appends ``--code-rate`` blocks after the decoder's code-rate (50 frames/s) blocks and
``--analysis`` blocks after its analysis-rate blocks. Every trained tensor keeps its value; each
new block's layer scale (gamma) starts at zero, so the grown model decodes exactly as the trained
one and a decoder fine-tuning (``recipes/conv_16k_decoder.yaml`` with ``run.init_from`` = the
output folder and the grown block counts) starts from its quality with more capacity. The
encoder and quantizer are untouched: the codes, and the entropy model trained on them, stay valid.

Writes ``OUT/model.safetensors`` and ``OUT/config.json`` (float32) into a new folder. Raises
SystemExit for a model that is not a conv codec, has a global code, an ``OUT`` that already
holds a model, negative block counts, or when the grown model's output differs.
"""

import argparse
import dataclasses
from pathlib import Path

import torch

from codec.models import load_model, save_model
from codec.models.conv_codec import ConvCodec


def decoder_index_map(code_rate: int, analysis: int, grown_code_rate: int) -> dict[int, int]:
    """Old decoder layer index -> new index. The decoder is: input conv, norm, ``code_rate``
    blocks, upsample, norm, ``analysis`` blocks, norm; new blocks go at the end of each run."""
    mapping = {}
    for old in range(4 + code_rate + analysis + 1):
        if old < 2 + code_rate:
            mapping[old] = old
        elif old < 4 + code_rate + analysis:
            mapping[old] = old + grown_code_rate - code_rate
        else:                                   # the final norm, after any new analysis blocks
            mapping[old] = None
    return mapping


def grow(model: ConvCodec, extra_code_rate: int, extra_analysis: int) -> ConvCodec:
    """A copy of ``model`` with the extra decoder blocks, zero layer scale (identity) in each."""
    c = model.config
    config = dataclasses.replace(c, decoder_code_rate_blocks=c.decoder_code_rate_blocks + extra_code_rate,
                                 decoder_analysis_blocks=c.decoder_analysis_blocks + extra_analysis)
    grown = ConvCodec(config)
    mapping = decoder_index_map(c.decoder_code_rate_blocks, c.decoder_analysis_blocks,
                                config.decoder_code_rate_blocks)
    final_norm = len(grown.decoder) - 1
    state = {}
    for key, value in model.state_dict().items():
        if key.startswith("decoder."):
            _, index, rest = key.split(".", 2)
            new_index = mapping[int(index)]
            key = f"decoder.{final_norm if new_index is None else new_index}.{rest}"
        state[key] = value
    missing, unexpected = grown.load_state_dict(state, strict=False)
    new_blocks = sorted({key.split(".")[1] for key in missing})
    if unexpected or any(not key.startswith("decoder.") for key in missing):
        raise SystemExit(f"weights did not map onto the grown decoder: missing {missing}, unexpected {unexpected}")
    with torch.no_grad():
        for index in new_blocks:
            grown.decoder[int(index)].gamma.zero_()
    return grown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a conv codec: model name or folder")
    parser.add_argument("out", type=Path, help="folder for the grown model")
    parser.add_argument("--code-rate", type=int, default=2, help="blocks to add at the code rate")
    parser.add_argument("--analysis", type=int, default=2, help="blocks to add at the analysis rate")
    args = parser.parse_args()
    if args.code_rate < 0 or args.analysis < 0 or args.code_rate + args.analysis == 0:
        parser.error("--code-rate and --analysis must be >= 0, and at least one block must be added")
    if (args.out / "model.safetensors").exists():
        parser.error(f"{args.out} already holds a model; choose a new folder")
    model = load_model(args.model).float().eval()
    if not isinstance(model, ConvCodec) or model.global_code is not None:
        raise SystemExit(f"{args.model}: only conv codecs without a global code can be grown")
    grown = grow(model, args.code_rate, args.analysis).eval()
    codes = torch.randint(0, model.codebook_size, (1, model.num_codebooks, 40))
    with torch.no_grad():
        difference = (grown.decode(codes) - model.decode(codes)).abs().max().item()
    if difference > 1e-5:
        raise SystemExit(f"the grown model decodes differently (max difference {difference:.2e})")
    save_model(grown, args.out)
    print(f"{args.out}: decoder blocks {grown.config.decoder_code_rate_blocks} + "
          f"{grown.config.decoder_analysis_blocks}, decodes as {args.model} (max difference {difference:.1e})")


if __name__ == "__main__":
    main()
