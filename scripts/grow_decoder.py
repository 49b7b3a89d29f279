"""Grow a trained codec's decoder (or an ESC codec's encoder) by blocks that start as the identity.

    .venv/bin/python scripts/grow_decoder.py models/conv-16k runs/conv-16k-grown --code-rate 2 --analysis 2
    .venv/bin/python scripts/grow_decoder.py esc-16k-small runs/esc-16k-small-grown --finest 1
    .venv/bin/python scripts/grow_decoder.py esc-16k-small runs/esc-16k-small-grown-encoder --finest 0 --encoder 1

A conv codec: appends ``--code-rate`` ConvNeXt blocks after the decoder's code-rate (50 frames/s)
blocks and ``--analysis`` blocks after its analysis-rate blocks; each new block's layer scale
(gamma) starts at zero. An ESC codec: appends ``--finest`` transformer blocks to the finest
decoder stage (the only one the encoder does not run); each new block's output projections start
at zero. Either way every trained tensor keeps its value and the grown model decodes exactly as
the trained one, so a decoder fine-tuning (``recipes/conv_16k_decoder.yaml``,
``recipes/esc_16k_small_grown.yaml``) starts from its quality with more capacity. The encoder and
quantizer are untouched, so the codes stay the same: the output folder reads the original's
``.codes`` files (its weights are listed in ``compatible_weights.json``) and gets a copy of its
entropy model, as a decoder fine-tune's model does (``codec.models.loading.inherit_code_readers``).

An ESC codec's finest encoder stage (the one whose features the finest scale's 18 codebooks code)
grows the same way with ``--encoder``: the grown model still makes the same codes, but training it
changes them, so it is a new model, not a decoder update (it reads only its own files).

Writes ``OUT/model.safetensors`` and ``OUT/config.json`` (float32) into a new folder. Raises
SystemExit for an unknown model, a model of another kind, a conv codec with a global code, an
``OUT`` that already holds a model, block counts out of range, or when the grown model's output
differs.
"""

import argparse
import dataclasses
from pathlib import Path

from script_errors import new_folder_problem, run_main  # first: a Ctrl-C while torch loads is one line

# isort: split
import torch

from codec.errors import CodecError
from codec.models import EscCodec, load_model, save_model
from codec.models.conv_codec import ConvCodec
from codec.models.loading import inherit_code_readers, resolve_model_dir


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


def grow_esc(model: EscCodec, extra_finest: int, extra_encoder: int = 0) -> EscCodec:
    """A copy of ``model`` with ``extra_finest`` more blocks in decoder stage 0 and ``extra_encoder``
    more in encoder stage 0, each the identity (the residual branches' output projections are
    zero, so their gradients are not)."""
    c = model.config
    config = dataclasses.replace(c, decoder_blocks=[c.decoder_blocks[0] + extra_finest, *c.decoder_blocks[1:]],
                                 encoder_blocks=[c.encoder_blocks[0] + extra_encoder, *c.encoder_blocks[1:]])
    grown = EscCodec(config)
    missing, unexpected = grown.load_state_dict(model.state_dict(), strict=False)
    if unexpected or any(not key.startswith(("decoder.0.", "encoder.0.")) for key in missing):
        raise SystemExit(f"weights did not map onto the grown model: missing {missing}, unexpected {unexpected}")
    new_blocks = [*grown.decoder[0][c.decoder_blocks[0]:], *grown.encoder[0][c.encoder_blocks[0]:]]
    with torch.no_grad():
        for block in new_blocks:
            for projection in (block.frequency.proj, block.time.proj, block.mlp[-1]):
                projection.weight.zero_()
                projection.bias.zero_()
    return grown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a conv or ESC codec: model name or folder")
    parser.add_argument("out", type=Path, help="folder for the grown model")
    parser.add_argument("--code-rate", type=int, help="conv: blocks to add at the code rate (default 2)")
    parser.add_argument("--analysis", type=int, help="conv: blocks to add at the analysis rate (default 2)")
    parser.add_argument("--finest", type=int, help="ESC: blocks to add to the finest decoder stage (default 1)")
    parser.add_argument("--encoder", type=int, help="ESC: blocks to add to the finest encoder stage (default 0)")
    args = parser.parse_args()
    if problem := new_folder_problem(args.out, "grown model"):
        parser.error(problem)
    try:
        model = load_model(args.model).float().eval()
        source_dir = resolve_model_dir(args.model)
    except CodecError as error:
        raise SystemExit(f"error: {error}") from None
    if isinstance(model, EscCodec):
        if args.code_rate is not None or args.analysis is not None:
            parser.error(f"{args.model} is an ESC codec: grow it with --finest and --encoder")
        finest, encoder = (1 if args.finest is None else args.finest), (args.encoder or 0)
        if finest < 0 or encoder < 0 or finest + encoder == 0:
            parser.error("--finest and --encoder must be >= 0, and at least one block must be added")
        grown = grow_esc(model, finest, encoder).eval()
        blocks = f"encoder blocks {grown.config.encoder_blocks}, decoder blocks {grown.config.decoder_blocks}"
    elif isinstance(model, ConvCodec) and model.global_code is None:
        if args.finest is not None or args.encoder is not None:
            parser.error(f"{args.model} is a conv codec: grow it with --code-rate and --analysis")
        code_rate, analysis = (2 if args.code_rate is None else args.code_rate), \
            (2 if args.analysis is None else args.analysis)
        if code_rate < 0 or analysis < 0 or code_rate + analysis == 0:
            parser.error("--code-rate and --analysis must be >= 0, and at least one block must be added")
        grown = grow(model, code_rate, analysis).eval()
        blocks = f"decoder blocks {grown.config.decoder_code_rate_blocks} + {grown.config.decoder_analysis_blocks}"
    else:
        raise SystemExit(f"{args.model}: only ESC codecs and conv codecs without a global code can be grown")
    codes = torch.randint(0, model.codebook_size, (1, model.num_codebooks, 40))
    with torch.no_grad():
        difference = (grown.decode(codes) - model.decode(codes)).abs().max().item()
    if difference > 1e-5:
        raise SystemExit(f"the grown model decodes differently (max difference {difference:.2e})")
    wav = torch.randn(1, 1, 40 * model.frame_size) * 0.1
    with torch.no_grad():
        if not torch.equal(grown.encode(wav, model.num_codebooks), model.encode(wav, model.num_codebooks)):
            raise SystemExit("the grown model encodes differently")
    try:
        save_model(grown, args.out)
        readers = inherit_code_readers(args.out, grown, model, source_dir)
    except CodecError as error:
        raise SystemExit(f"error: {error}") from None
    reads = f"; reads the .codes files of weights {', '.join(readers)}" if readers else ""
    print(f"{args.out}: {blocks}, encodes and decodes as {args.model} (max difference {difference:.1e}){reads}")


if __name__ == "__main__":
    run_main(main)
