"""Measure a trained model on the dev set and write its model card and metrics.

    .venv/bin/python scripts/write_model_card.py runs/conv-16k --ship models/conv-16k

Stores the run's weights in the ship directory (16-bit floats; with ``--eight-bit-decoder`` the
decoder's matrices in 8 bits, for a smaller file with the same codes), runs the same evaluation as
`codec eval` on every file of ../shared/data/speech/dev at 1.5, 3, 6 and 12 kbps with the Opus
and Codec2 baselines, measures the real-time factor on one thread, and writes ``metrics.json``
(read by the regression test), ``rate_distortion.png`` and ``README.md``.

    .venv/bin/python scripts/write_model_card.py --speed-only models/conv-16k

re-measures only the speed of a shipped model (real-time factor, MACs) and rewrites those figures
in its card and metrics: for a quiet machine, when the full run shared the CPU with other jobs.

    .venv/bin/python scripts/write_model_card.py --refinement eval-dev [--refinement-other eval-other] \
        models/esc-16k-small

adds (or replaces) the card's latent-refinement section and ``metrics.json``'s ``refined`` entry
from ``codec eval --refine-steps N`` results (``results.json``) on the dev set and, optionally, on
speech from other corpora: the plain and refined rows side by side, with paired differences.
"""

import argparse
import json
import platform
import re
import time
from dataclasses import asdict
from pathlib import Path

from script_errors import run_main  # first: a Ctrl-C while torch loads is one line

# isort: split
import numpy as np
import torch
from compare_evals import paired_difference  # scripts/ is on the path when this script runs
from dev_speech import DEV, dev_files

from codec.audio import load_audio
from codec.coding import decode_audio, encode_audio
from codec.datasets import find_inputs
from codec.errors import CodecError
from codec.evaluation import EvalSettings, pesq_wb, run_evaluation, summarize
from codec.evaluation.report import plot_rate_distortion
from codec.models import DEFAULT_MODEL, load_model, ship_model
from codec.models.loading import WEIGHTS_FILE
from codec.refine import PESQ_WEIGHT, STEP_SIZE, STOI_WEIGHT
from codec.train.data import EQ_CENTRE_HZ, HIGH_SHELF_HZ, LOW_SHELF_HZ

DEV_FILES = sorted(DEV.rglob("*.flac"))
REGRESSION_FILES = 6  # every 7th dev file: a spread of speakers, quick enough for the test suite


def real_time_factors(models: list, seconds: float = 10.0) -> list[float]:
    """Per model, encode + decode time of ``seconds`` of audio at 6 kbps on one thread, divided by
    its duration: the fastest of 9 runs, the models' runs interleaved so that they meet the same load."""
    torch.set_num_threads(1)
    audio, rate = load_audio(dev_files()[0])
    audio = np.tile(audio, (int(np.ceil(seconds * rate / len(audio))), 1))[:int(seconds * rate)]
    best = [np.inf] * len(models)
    for _ in range(9):  # the fastest run: other load on a shared machine only ever slows a run down
        for index, model in enumerate(models):
            start = time.perf_counter()
            decode_audio(model, encode_audio(model, audio, rate, 6.0))
            best[index] = min(best[index], time.perf_counter() - start)
    return [time_taken / seconds for time_taken in best]


def augmentation_text(data: dict) -> str:
    """The training data's augmentation, as the card's data line ends it ("" when none)."""
    parts = []
    if data.get("eq_probability"):
        low, high = EQ_CENTRE_HZ
        parts.append(f"a random peaking EQ ({low:g} Hz-{high / 1000:g} kHz, up to ±{data['eq_gain_db']:g} dB) on "
                     f"{100 * data['eq_probability']:.0f}% of crops")
    if data.get("shelf_probability"):
        parts.append(f"random low ({LOW_SHELF_HZ[0]:g}-{LOW_SHELF_HZ[1]:g} Hz) and high ({HIGH_SHELF_HZ[0] / 1000:g}-"
                     f"{HIGH_SHELF_HZ[1] / 1000:g} kHz) shelves of up to ±{data['shelf_gain_db']:g} dB on "
                     f"{100 * data['shelf_probability']:.0f}% of crops")
    if data.get("speed_probability"):
        parts.append(f"speed perturbation ({data['speed_range'][0]:g}-{data['speed_range'][1]:g}x, pitch and tempo) "
                     f"on {100 * data['speed_probability']:.0f}% of crops")
    if data.get("noise_probability") and data.get("noise_dir"):
        parts.append(f"noise from `{data['noise_dir']}` at {data['noise_snr_db'][0]:g} to "
                     f"{data['noise_snr_db'][1]:g} dB SNR on {100 * data['noise_probability']:.0f}% of crops")
    return "; " + " and ".join(parts) if parts else ""


def speed_text(rtf: float, encode_macs: float, decode_macs: float, int8_rtf: float) -> str:
    """The card's speed paragraph."""
    return f"""Speed: encode + decode of 10 s of speech at 6 kbps takes \
{rtf * 10:.2f} s on one CPU thread
(real-time factor {rtf:.3f}, {1 / rtf:.0f}x faster than real time); with `--int8` (the linear layers in
int8, `codec/int8.py`) {int8_rtf * 10:.2f} s (real-time factor {int8_rtf:.3f}, {1 / int8_rtf:.0f}x), the fastest
of 9 runs each, interleaved. Compute per second of audio at
6 kbps: {encode_macs / 1e9:.2f} GMAC to encode, {decode_macs / 1e9:.2f} GMAC to decode."""


def remeasure_speed(ship: Path) -> None:
    """``--speed-only``: the shipped model's speed figures, measured again, into its card and metrics
    (both files are checked before the measurement, and written together, or neither)."""
    if not ship.is_dir():
        raise SystemExit(f"error: {ship}: no such folder; give a shipped model's folder, e.g. models/esc-16k-small")
    metrics = json.loads((ship / "metrics.json").read_text())
    card = (ship / "README.md").read_text()
    speed_paragraph = re.compile(r"Speed: encode \+ decode .*?GMAC to decode\.", flags=re.S)
    if len(speed_paragraph.findall(card)) != 1:
        raise SystemExit(f"error: {ship / 'README.md'}: no speed paragraph to replace (one that starts "
                         f"'Speed: encode + decode' and ends 'GMAC to decode.')")
    model = load_model(ship)
    rtf, int8_rtf = real_time_factors([model, load_model(ship, int8=True)])   # float, --int8
    encode_macs, decode_macs = macs_per_second(model, 6.0)
    metrics["real_time_factor_1_thread"] = round(rtf, 4)
    metrics["real_time_factor_1_thread_int8"] = round(int8_rtf, 4)
    metrics["gmacs_per_second_6kbps"] = {"encode": round(encode_macs / 1e9, 3), "decode": round(decode_macs / 1e9, 3)}
    card = speed_paragraph.sub(lambda _: speed_text(rtf, encode_macs, decode_macs, int8_rtf), card)
    (ship / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (ship / "README.md").write_text(card)
    print(speed_text(rtf, encode_macs, decode_macs, int8_rtf))


def paired_rows(results: dict, plain: str, refined: str) -> list[dict]:
    """Per nominal kbps, from one ``codec eval`` results.json: both systems' summaries and the
    paired (file by file) PESQ-WB and STOI differences, refined minus plain, with 95% intervals."""
    summaries = {(s["system"], s["nominal_kbps"]): s for s in results["summary"]}
    scores = {(f["system"], f["nominal_kbps"], f["path"]): f["scores"] for f in results["files"]}
    rows = []
    for kbps in sorted({k for system, k in summaries if system == refined}):
        row = {"nominal_kbps": kbps, "plain": summaries[(plain, kbps)], "refined": summaries[(refined, kbps)]}
        paths = [p for system, k, p in scores if system == refined and k == kbps]
        for metric in ("pesq_wb", "stoi"):
            pairs = [(scores[(plain, kbps, p)][metric], scores[(refined, kbps, p)][metric]) for p in paths
                     if scores[(refined, kbps, p)].get(metric) is not None
                     and scores.get((plain, kbps, p), {}).get(metric) is not None]
            mean, ci, better = paired_difference(*np.array(pairs).T)
            row[metric] = {"plain": row["plain"]["mean"][metric], "refined": row["refined"]["mean"][metric],
                           "difference": mean, "difference_ci95": ci, "better_files": f"{better} of {len(pairs)}"}
        rows.append(row)
    if not rows:
        raise SystemExit(f"no '{refined}' rows: run codec eval with --refine-steps")
    return rows


def refinement_table(rows: list[dict]) -> str:
    def pair(row, metric, digits):
        m = row[metric]
        return (f"{m['plain']:.{digits}f} | {m['refined']:.{digits}f} | {m['difference']:+.{digits}f} ± "
                f"{m['difference_ci95']:.{digits}f} ({m['better_files']})")
    lines = ["| nominal kbps | measured kbps | PESQ-WB plain | refined | refined - plain (better on) | "
             "STOI plain | refined | refined - plain (better on) | encode RTF refined (1 thread) |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {row['nominal_kbps']:g} | {row['refined']['measured_kbps']:.2f} | {pair(row, 'pesq_wb', 2)} | "
              f"{pair(row, 'stoi', 3)} | {row['refined']['encode_rtf']:.2f} |" for row in rows]
    return "\n".join(lines)


def add_refinement(ship: Path, dev_eval: Path, other_eval: Path | None, notes: str = "") -> None:
    """``--refinement``: the card's latent-refinement section and metrics from eval results
    (``notes``: markdown after the tables)."""
    model = load_model(ship)
    plain, refined = model.config.name, f"{model.config.name}+refined"
    evals = {"dev": dev_eval, **({"other_corpora": other_eval} if other_eval else {})}
    loaded = {name: json.loads((folder / "results.json").read_text()) for name, folder in evals.items()}
    steps = {r["settings"].get("refine_steps") for r in loaded.values()}
    if len(steps) != 1 or not next(iter(steps)):
        raise SystemExit(f"the results need one and the same --refine-steps (found {sorted(map(str, steps))})")
    steps = steps.pop()
    tables = {name: paired_rows(results, plain, refined) for name, results in loaded.items()}
    metrics = json.loads((ship / "metrics.json").read_text())

    def compact(row: dict) -> dict:
        return {"nominal_kbps": row["nominal_kbps"], "measured_kbps": round(row["refined"]["measured_kbps"], 4),
                "encode_rtf_refined": round(row["refined"]["encode_rtf"], 3),
                **{metric: {k: round(v, 4) if isinstance(v, float) else v for k, v in row[metric].items()}
                   for metric in ("pesq_wb", "stoi")}}
    metrics["refined"] = {"steps": steps, **{name: [compact(row) for row in rows] for name, rows in tables.items()}}
    other = ""
    if other_eval:
        settings = loaded["other_corpora"]["settings"]
        inputs = settings.get("inputs") or [settings.get("input")]   # (results.json before several inputs: "input")
        other = (f"\n\nOn speech from other corpora (`{' '.join(map(str, inputs))}`, {settings['files']} files):\n\n"
                 f"{refinement_table(tables['other_corpora'])}")
    section = f"""## Latent refinement (slower encoding, codes of the same kind)

`codec encode --refine-steps {steps}` (Python: `refine_steps={steps}`) refines each block's latent
by {steps} steps of analysis by synthesis before quantizing it (`codec/refine.py`): Adam (first
step {STEP_SIZE:g} of the latent's RMS, decaying to 0 on a cosine) on a perceptual distance
between the decoded block and the input (log-mel L1 + {PESQ_WEIGHT:g} x a PESQ disturbance model
+ {STOI_WEIGHT:g} x a STOI envelope-correlation model), through the quantizer, from the encoder's
latent, keeping the best latent seen. The two perceptual terms model the measures in this table,
so part of their gain here is a gain on the measures' own models. The codes are ordinary codes at
the same nominal bitrate, read by every decoder of this model; only encoding is slower. Measured
with `codec eval --refine-steps {steps}` (both rows from the one run, paired file by file; 95%
intervals) on all {loaded['dev']['settings']['files']} dev files:

{refinement_table(tables['dev'])}{other}
{notes and chr(10) + notes + chr(10)}
"""
    card = (ship / "README.md").read_text()
    card, count = re.subn(r"## Latent refinement .*?(?=^## |^Speed: encode)", lambda _: section, card,
                          flags=re.S | re.M)
    if count == 0:
        card, count = re.subn(r"^(?=## Speech from other corpora|Speed: encode)", lambda _: section, card, count=1,
                              flags=re.M)
    if count != 1:
        raise SystemExit(f"{ship / 'README.md'}: no place for the refinement section")
    (ship / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")   # both files, or neither
    (ship / "README.md").write_text(card)
    print(section)


def architecture(model) -> str:
    """The card's architecture paragraph, for either codec family."""
    c = model.config
    if getattr(c, "architecture", "conv") == "esc":
        scales = ", ".join(f"{c.subbands >> s} x {d}" for s, d in enumerate(c.dims))
        return (f"Causal STFT (window {c.n_fft}, hop {c.hop_length}) -> {c.subbands} sub-band tokens per frame -> "
                f"transformer encoder stages (tokens x channels: {scales}; blocks {c.encoder_blocks}; attention "
                f"across the frame's tokens and causally along time over {c.window} frames) -> cross-scale "
                f"residual VQ, coarse to fine ({list(reversed(c.codebooks_per_scale))} codebooks of "
                f"{c.codebook_size}, factorized {c.codebook_dim}-d), each scale quantizing the encoder's "
                f"features minus the decoder's prediction from the coarser scales -> mirrored decoder "
                f"(blocks {c.decoder_blocks}) -> Vocos inverse-STFT head ({c.synthesis_subframes} "
                f"window{'s' if c.synthesis_subframes > 1 else ''} of {c.synthesis_n_fft} per frame, hop "
                f"{c.hop_length // c.synthesis_subframes}).")
    return (f"Causal STFT (window {c.analysis_n_fft}, hop {c.hop_length}) -> causal ConvNeXt encoder "
            f"({c.encoder_analysis_blocks} blocks x {c.analysis_dim} ch at 100 frames/s, {c.encoder_code_rate_blocks} "
            f"blocks x {c.code_rate_dim} ch at 50 frames/s) -> residual VQ ({c.num_codebooks} x {c.codebook_size}, "
            f"factorized L2-normalised {c.codebook_dim}-d codes, quantizer dropout) -> causal ConvNeXt decoder "
            f"({c.decoder_code_rate_blocks} + {c.decoder_analysis_blocks} blocks) -> Vocos inverse-STFT head "
            f"(window {c.synthesis_n_fft}).")


def run_state(run_dir: Path, recipe_path: str | None) -> dict:
    """Step, training seconds and resolved recipe of a run: from its checkpoint, or, for a run
    brought back without one (a GPU session returns only ``model/`` and logs), from its
    ``train.log`` and ``recipe_path``."""
    if (run_dir / "checkpoint.pt").is_file():
        return torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    if recipe_path is None or not (run_dir / "train.log").is_file():
        raise SystemExit(f"{run_dir}: no checkpoint.pt; give --recipe and keep its train.log")
    from codec.train.recipe import load_recipe

    last = [json.loads(line) for line in (run_dir / "train.log").read_text().splitlines()][-1]
    return {"step": last["step"], "train_seconds": 60 * last["total_min"], "recipe": load_recipe(recipe_path).to_dict()}


def entropy_training(run_dir: Path | None) -> str:
    """Steps, wall time and held-out bits from an entropy model's training log, as a sentence."""
    if run_dir is None or not (run_dir / "train.log").is_file():
        return ""
    records = [json.loads(line) for line in (run_dir / "train.log").read_text().splitlines()]
    minutes = max(r.get("total_min", 0.0) for r in records)
    held_out = [r for r in records if "dev_bits_per_code_12" in r][-1]
    return (f" {held_out['step']} steps in {minutes:.0f} min on one CPU thread (resumed from checkpoints); "
            f"{held_out['dev_bits_per_code_12']:.2f} bits per code on dev at 12 codebooks, where the plain format "
            f"spends 10.")


def entropy_section(model, summaries, ship: Path, run_dir: Path | None = None) -> str:
    """The card's paragraph on the shipped entropy model: file bitrate with and without it."""
    plain = {s.nominal_kbps: s for s in summaries if s.system == model.config.name}
    coded = {s.nominal_kbps: s for s in summaries if s.system == f"{model.config.name}+entropy"}
    rows = "\n".join(
        f"| {k:g} | {plain[k].measured_kbps:.2f} | {coded[k].measured_kbps:.2f} | "
        f"{100 * (1 - coded[k].measured_kbps / plain[k].measured_kbps):.1f}% | "
        f"{1 / max(coded[k].encode_rtf, 1e-9):.1f}x / {1 / max(coded[k].decode_rtf, 1e-9):.1f}x |"
        for k in sorted(plain) if k in coded)
    c = model.entropy_model.config
    size_mb = (ship / "entropy.safetensors").stat().st_size / 1e6
    recipe = f"recipes/{c.name.replace('-', '_')}.yaml"   # entropy-esc-16k -> recipes/entropy_esc_16k.yaml
    recipe = f"`{recipe}`" if Path(recipe).is_file() else "its recipe"
    return f"""## Entropy coding

`{c.name}` (`entropy.safetensors` beside the weights; {sum(p.numel() for p in model.entropy_model.parameters())
/ 1e6:.2f} M parameters: a {c.layers}-layer causal transformer over code frames, {c.context_frames}-frame
window, each codebook predicted from the past frames and the lower codebooks of its frame; 8-bit
matrices, {size_mb:.1f} MB) range-codes the codes in `codec encode` unless `--no-entropy`. Its linear
layers run as exact integer products, so encoder and decoder agree on any CPU. Trained with
{recipe} on the codes of the training set:{entropy_training(run_dir)}
On the same {len(DEV_FILES)} dev files (every byte of the files counted, headers included;
real-time factors on one thread, whole encode and decode):

| nominal kbps | kbps without | kbps with | saved | encode / decode speed (x real time) |
| ---: | ---: | ---: | ---: | ---: |
{rows}

"""


def compatible_text(readable: list[str]) -> str:
    """The card's sentence on the earlier weights whose ``.codes`` files these weights read."""
    if not readable:
        return ""
    return (f" The encoder and quantizer are those of the earlier weights {', '.join(readable)}: "
            f"`.codes` files written by them decode with these (`compatible_weights.json`).")


def macs_per_second(model, kbps: float) -> tuple[float, float]:
    """Multiply-accumulates per second of audio for encoding and for decoding at ``kbps``
    (``torch.utils.flop_counter``: matrix products, convolutions and attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    wav = 0.1 * torch.randn(1, 1, 10 * model.sample_rate)
    with FlopCounterMode(display=False) as counter:
        codes = model.encode(wav, model.codebooks_for_bitrate(kbps))
    encode = counter.get_total_flops() / 2 / 10
    with FlopCounterMode(display=False) as counter:
        model.decode(codes)
    return encode, counter.get_total_flops() / 2 / 10


def storage_text(ship: Path, eight_bit_decoder: bool) -> str:
    """The card's sentence on how the weights are stored."""
    size_mb = (ship / WEIGHTS_FILE).stat().st_size / 1e6
    if not eight_bit_decoder:
        return f"Weights stored as 16-bit floats ({size_mb:.1f} MB)."
    return (f"Weights stored as 16-bit floats, the decoder's matrices as 8-bit integers with one scale per "
            f"output channel ({size_mb:.1f} MB; the codes are those of the 16-bit weights, and every number "
            f"above is measured with the stored weights).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="the training run (with --speed-only: the shipped model)")
    parser.add_argument("--ship", type=Path)
    parser.add_argument("--speed-only", action="store_true", help="re-measure only the speed of a shipped model")
    parser.add_argument("--notes", default="", help="extra markdown for the training section (with "
                                                    "--refinement: for the refinement section)")
    parser.add_argument("--summary", default="", help="markdown after the card's first paragraph")
    parser.add_argument("--recipe", help="the recipe named in the card (default recipes/conv_16k.yaml; needed "
                                         "for a run without checkpoint)")
    parser.add_argument("--hardware", help="the hardware sentence (default: this machine's CPU, no GPU)")
    parser.add_argument("--entropy-run", type=Path, help="the entropy model's run folder (its train.log)")
    parser.add_argument("--other-corpora", type=Path,
                        help="a folder of speech from other corpora (scripts/ood_speech.py's wb/) for a second table")
    parser.add_argument("--eight-bit-decoder", action="store_true",
                        help="store the decoder's matrices in 8 bits (a smaller file; the codes do not change)")
    parser.add_argument("--refinement", type=Path, metavar="EVAL",
                        help="codec eval --refine-steps results on dev: only add the card's refinement section "
                             "(run_dir: the shipped model)")
    parser.add_argument("--refinement-other", type=Path, metavar="EVAL",
                        help="with --refinement: the same on speech from other corpora")
    args = parser.parse_args()
    if args.speed_only:
        remeasure_speed(args.run_dir)
        return
    if args.refinement:
        add_refinement(args.run_dir, args.refinement, args.refinement_other, args.notes)
        return
    if args.ship is None:
        parser.error("--ship is required")
    other_files = []
    if args.other_corpora:
        try:
            other_files = find_inputs(args.other_corpora)
        except CodecError as error:
            parser.error(f"--other-corpora: {error}")

    state = run_state(args.run_dir, args.recipe)
    args.ship.mkdir(parents=True, exist_ok=True)
    readable = ship_model(load_model(args.run_dir / "model"), args.ship,  # 16-bit: half the size
                          eight_bit_decoder=args.eight_bit_decoder)
    model = load_model(args.ship)

    files = dev_files()
    bitrates = list(model.config.bitrates_kbps)
    with_entropy = getattr(model, "entropy_model", None) is not None
    results, notes, _ = run_evaluation(files, EvalSettings(str(args.ship), bitrates, ["opus", "opus-vbr", "codec2"],
                                                           entropy=with_entropy))
    summaries = summarize(results)
    entropy_text = entropy_section(model, summaries, args.ship, args.entropy_run) if with_entropy else ""
    plot_rate_distortion(args.ship / "rate_distortion.png", summaries)
    over_nominal = {}  # largest .codes file size minus nominal bitrate x duration, per bitrate
    for r in results:
        if r.system == model.config.name and r.measured_kbps is not None:   # (None: a file with no samples)
            excess = (r.measured_kbps - r.nominal_kbps) * r.duration_s * 1000 / 8
            over_nominal[r.nominal_kbps] = max(over_nominal.get(r.nominal_kbps, -np.inf), excess)
    regression = files[::7][:REGRESSION_FILES]
    regression_pesq = []
    for path in regression:
        audio, rate = load_audio(path)
        decoded, _ = decode_audio(model, encode_audio(model, audio, rate, 6.0))
        regression_pesq.append(pesq_wb(audio[:, 0], decoded[:, 0], rate))
    rtf, int8_rtf = real_time_factors([model, load_model(args.ship, int8=True)])   # float, --int8
    params = sum(p.numel() for p in model.parameters())
    encode_macs, decode_macs = macs_per_second(model, 6.0)
    metrics = {
        "model": model.config.name,
        "weights_sha256": model.weights_sha256,
        "parameters": params,
        "steps": state["step"],
        "train_wall_minutes": round(state.get("train_seconds", 0.0) / 60, 1),
        "real_time_factor_1_thread": round(rtf, 4),
        "real_time_factor_1_thread_int8": round(int8_rtf, 4),
        "gmacs_per_second_6kbps": {"encode": round(encode_macs / 1e9, 3), "decode": round(decode_macs / 1e9, 3)},
        "dev": [asdict(summary) for summary in summaries],
        "max_bytes_over_nominal": {f"{k:g}": round(v, 1) for k, v in over_nominal.items()},
        "regression": {"files": [str(p.relative_to(DEV.parent.parent)) for p in regression],
                       "pesq_wb_6kbps": round(float(np.mean(regression_pesq)), 4)},
    }

    def cell(summary, metric, digits):
        mean, ci = summary.mean[metric], summary.ci95[metric]
        return "undefined" if mean is None else f"{mean:.{digits}f} ± {(ci or 0):.{digits}f}"

    def table_rows(summaries):
        return "\n".join(f"| {s.system} | {s.setting} | {s.nominal_kbps:g} | {s.measured_kbps:.2f} | "
                         f"{cell(s, 'pesq_wb', 2)} | {cell(s, 'stoi', 3)} | {s.encode_rtf + s.decode_rtf:.4f} |"
                         for s in summaries)

    rows = table_rows(summaries)
    other_text = ""
    if other_files:
        other_results, _, _ = run_evaluation(other_files, EvalSettings(str(args.ship), bitrates, ["opus-vbr"]))
        other = summarize(other_results)
        metrics["other_corpora"] = [asdict(summary) for summary in other]
        seconds = sum(r.duration_s for r in other_results if r.system == model.config.name) / len(bitrates)
        other_text = f"""
## Speech from other corpora ({len(other_files)} files, {seconds:.0f} s)

Speakers and microphones that none of the training or dev files share (`{args.other_corpora}`; for
example the wideband files `scripts/ood_speech.py` gathers from public packages: CMU ARCTIC,
AMI meeting speakers, PocketSphinx's and silero-vad's test voices, a LibriVox reader, voices in
other languages; see its docstring), scored at 16 kHz. A rough stand-in for the hidden test set's
other corpora.

| codec | setting | nominal kbps | measured kbps | PESQ-WB | STOI | RTF (1 thread) |
| --- | --- | ---: | ---: | ---: | ---: | ---: |
{table_rows(other)}
"""
    (args.ship / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    recipe, c = state["recipe"], model.config
    role = "The default model of `codec`" if c.name == DEFAULT_MODEL else f"`{c.name}`"
    listed = ", ".join(f"{b:g}" for b in bitrates)
    counts = ", ".join(str(model.codebooks_for_bitrate(b)) for b in bitrates)
    extras = ""
    if getattr(c, "masked_quantizers", 0):
        extras += (f" The first {c.masked_quantizers} quantizers are masked-channel quantizers (MCRVQ, "
                   f"Language-Codec): each sees only its {c.latent_dim // c.masked_quantizers} of the "
                   f"{c.latent_dim} latent channels.")
    if getattr(c, "global_groups", 0):
        extras += (f" A time-invariant global code (TiCodec): {c.global_groups} groups x "
                   f"{c.global_codebook_size} entries ({c.global_groups * int(np.log2(c.global_codebook_size))} "
                   f"bits per file and channel, counted in the measured bitrate), summarising the first "
                   f"{c.global_seconds:g} s, is subtracted from the latent before the RVQ and added back "
                   f"before decoding.")
    augmented = augmentation_text(recipe["data"])
    card = f"""# {model.config.name}

{role}: 16 kHz mono speech, 50 code frames/s, up to {model.num_codebooks} codebooks of {c.codebook_size}
entries ({int(np.log2(c.codebook_size))} bits), so one model serves {listed} kbps ({counts} codebooks). Causal
encoder and decoder (streaming-capable), algorithmic latency {model.latency} samples
({1000 * model.latency / model.sample_rate:.0f} ms).{extras}

{args.summary}

## Architecture

{architecture(model)}
{params / 1e6:.2f} M parameters.

## Training

- Data: `../shared/data/speech/train` (2.64 h, 231 speakers: speechocean762 read English, half of
  it children, plus one adult male, dc_tts self-recordings), random {recipe['data']['segment_seconds']} s crops,
  random level {recipe['data']['level_db'][0]:g} to {recipe['data']['level_db'][1]:g} dBFS{augmented}.
- Recipe: `{args.recipe or "recipes/conv_16k.yaml"}`{" (resolved copy in the training checkpoint)" if
    (args.run_dir / "checkpoint.pt").is_file() else ""}; losses: multi-resolution
  log-mel L1 (windows {recipe['loss']['mel_windows']}) x {recipe['loss']['mel_weight']:g}, multi-resolution STFT
  magnitude x {recipe['loss']['stft_weight']:g}, commitment x {recipe['loss']['commitment_weight']:g},
  codebook x {recipe['loss']['codebook_weight']:g}; no adversarial loss yet.
- Steps: {state['step']} at batch {recipe['run']['batch_size']}, AdamW lr {recipe['optim']['lr']:g};
  wall time {metrics['train_wall_minutes']:.0f} minutes in all (runs resumed from checkpoints).
- Hardware: {args.hardware or f"{platform.machine()} CPU, 2 cores, no GPU."} {args.notes}

## Measured quality (all {len(files)} files of `../shared/data/speech/dev`)

| codec | setting | nominal kbps | measured kbps | PESQ-WB | STOI | RTF (1 thread) |
| --- | --- | ---: | ---: | ---: | ---: | ---: |
{rows}

Mean ± 95% confidence interval over the files (Student's t); RTF: encode + decode on one thread,
one file at a time. Measured kbps counts every byte of the `.codes`
file (header included) for this model, and the codec's packets for the baselines. Largest
`.codes` file minus nominal bitrate x duration, in bytes, per nominal kbps:
{", ".join(f"{k} kbps: {v:.0f}" for k, v in metrics["max_bytes_over_nominal"].items())}.

![rate-distortion](rate_distortion.png)
{other_text}
{entropy_text}{speed_text(rtf, encode_macs, decode_macs, int8_rtf)}

Measured with `scripts/write_model_card.py`, which runs the evaluation of `codec eval` (PESQ-WB from
`pesq`, STOI from `pystoi`, both at 16 kHz; this model's output as decoded, with no lag search).
`metrics.json` holds the same numbers; `tests/test_shipped_model.py` fails if PESQ-WB at 6 kbps on its
{len(regression)} regression files drops more than 0.1 below {metrics['regression']['pesq_wb_6kbps']:.2f}.

{storage_text(args.ship, args.eight_bit_decoder)} Weights SHA-256: `{model.weights_sha256}`.{compatible_text(readable)}
"""
    (args.ship / "README.md").write_text(card)
    print(card)
    for note in notes:
        print(f"note: {note}")


if __name__ == "__main__":
    run_main(main)
