"""``codec``: encode, decode, inspect and train neural speech codecs.

Each command is a thin typed function over one library call. Problems the user can fix
(``CodecError``) become one line on stderr and exit code 1, never a traceback.
"""

import functools
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from codec import __version__
from codec.errors import CodecError

app = typer.Typer(add_completion=True, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Neural speech codec: encode audio to compact codes and decode it back.")
stderr = Console(stderr=True, highlight=False, markup=False)  # messages hold paths: no markup in them

BITRATES = (1.5, 3.0, 6.0, 12.0)


def _fail(message: str) -> None:
    stderr.print(Text.assemble(("error:", "bold red"), f" {message}"), soft_wrap=True)
    raise typer.Exit(1)


def user_errors(command):
    """Turn a CodecError (or a failed write) into a one-line message and exit code 1."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except CodecError as error:
            _fail(str(error))
        except OSError as error:
            _fail(f"{error.filename or ''}: {error.strerror or error}".lstrip(": "))
        except KeyboardInterrupt:
            _fail("interrupted")
        except Exception as error:  # a bug, not the user's fault: one line unless debugging
            if os.environ.get("CODEC_DEBUG"):
                raise
            _fail(f"internal error: {type(error).__name__}: {error} (set CODEC_DEBUG=1 for the traceback)")
    return wrapper


def _version(value: bool) -> None:
    if value:
        print(f"codec {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                               help="Print the version and exit.")] = False) -> None:
    """Neural speech codec: encode audio to compact codes and decode it back."""


ModelOption = Annotated[str | None, typer.Option(
    "--model", "-m", help="Shipped model name or model directory [default: conv-16k; on decode, "
                          "the model named in the file].")]
ForceOption = Annotated[bool, typer.Option("--force", "-f", help="Overwrite the output file.")]


@app.command()
@user_errors
def encode(
    input: Annotated[Path, typer.Argument(help="Audio file (WAV, FLAC, OGG, MP3; any rate and channels).")],
    output: Annotated[Path, typer.Argument(help="The .codes file to write.")],
    bitrate: Annotated[float, typer.Option("--bitrate", "-b", help="Bitrate in kbps: 1.5, 3, 6 or 12.")] = 6.0,
    model: ModelOption = None,
    entropy: Annotated[bool | None, typer.Option("--entropy/--no-entropy", help="Range-code the codes with the "
                                                 "model's entropy model [default: when the model has one].")] = None,
    force: ForceOption = False,
) -> None:
    """Encode an audio file into a .codes file."""
    from codec.coding import check_paths, encode_file
    from codec.models import load_model

    if not any(abs(bitrate - b) < 1e-9 for b in BITRATES):
        raise CodecError(f"--bitrate {bitrate:g} is not supported; choose 1.5, 3, 6 or 12")
    check_paths(input, output, force)
    codes_file, report = encode_file(load_model(model), input, output, bitrate, force, entropy)
    for warning in report.warnings:
        stderr.print(f"warning: {warning}", soft_wrap=True)
    meta = codes_file.metadata
    seconds = meta.samples / meta.sample_rate
    size = output.stat().st_size
    kbps = f", {size * 8 / seconds / 1000:.2f} kbps" if seconds else ""
    stderr.print(f"{output}: {seconds:.2f} s, {meta.channels} ch, {meta.codebooks} codebooks "
                 f"({bitrate:g} kbps nominal), {size} bytes{kbps}")


@app.command()
@user_errors
def decode(
    input: Annotated[Path, typer.Argument(help="The .codes file to read.")],
    output: Annotated[Path, typer.Argument(help="Audio file to write (format from the suffix: .wav, .flac, .ogg).")],
    model: ModelOption = None,
    force: ForceOption = False,
) -> None:
    """Decode a .codes file (or a saved packet stream) back to audio at its original sample rate,
    channels and length."""
    from codec.coding import check_paths, decode_file, decode_stream_file, read_codes_metadata, read_stream_info
    from codec.models import load_model
    from codec.packets import STREAM_MAGIC

    check_paths(input, output, force)
    with open(input, "rb") as handle:
        is_stream = handle.read(4) == STREAM_MAGIC
    if is_stream:  # a saved packet stream from `codec stream --save`
        name = model or read_stream_info(input)[0].model
        report = decode_stream_file(load_model(name), input, output, force)
        for warning in report.warnings:
            stderr.print(f"warning: {warning}", soft_wrap=True)
        _print_written(output)
        return
    else:
        codec_model = load_model(model or read_codes_metadata(input).model)
        report = decode_file(codec_model, input, output, force)
    for warning in report.warnings:
        stderr.print(f"warning: {warning}", soft_wrap=True)
    _print_written(output)


def _print_written(path: Path) -> None:
    import soundfile as sf

    info = sf.info(str(path))
    stderr.print(f"{path}: {info.frames / info.samplerate:.2f} s, {info.channels} ch, {info.samplerate} Hz")


@app.command()
@user_errors
def info(
    path: Annotated[Path, typer.Argument(help="A .codes file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the metadata as JSON.")] = False,
) -> None:
    """Print the metadata of a .codes file (its CRCs are checked by decode)."""
    from dataclasses import asdict

    from codec.coding import read_codes_metadata

    meta = read_codes_metadata(path)
    values = {k: v for k, v in asdict(meta).items() if v is not None}
    seconds = values["samples"] / values["sample_rate"]
    values["duration_s"] = round(seconds, 3)
    values["file_bytes"] = path.stat().st_size
    values["nominal_kbps"] = round(meta.codebooks * meta.bits_per_code * values["frame_rate"] / 1000, 3)
    values["file_kbps"] = round(values["file_bytes"] * 8 / seconds / 1000, 3) if seconds else None
    values["entropy_coded"] = meta.entropy_coded
    if meta.has_global:
        from codec.bitstream import read_global_codes

        values["global_codes"] = read_global_codes(path.read_bytes()).tolist()  # per channel, sent once
    if as_json:
        print(json.dumps(values, indent=2))
    else:
        width = max(map(len, values))
        for key, value in values.items():
            print(f"{key:<{width}}  {value}")


@app.command("eval")
@user_errors
def evaluate(
    input: Annotated[Path, typer.Argument(help="Folder of audio files, one file, or a .tsv/.jsonl manifest with a "
                                                "'path' column/key.")],
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model name or directory.")] = None,
    bitrates: Annotated[str, typer.Option(help="Comma-separated kbps.")] = "1.5,3,6,12",
    baselines: Annotated[str, typer.Option(help="Comma-separated: opus, speex, codec2 (or 'none').")] = "none",
    out: Annotated[Path, typer.Option(help="Folder for results.json, results.csv and plots.")] = Path("eval"),
    pesq_nb: Annotated[bool, typer.Option("--pesq-nb", help="Also compute narrowband PESQ.")] = False,
    entropy: Annotated[bool, typer.Option("--entropy", help="Also rows with the entropy coding.")] = False,
    jobs: Annotated[int, typer.Option(help="Worker processes scoring files in parallel.")] = 1,
    threads: Annotated[int, typer.Option(help="Torch threads per worker (real-time factors use it).")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Quality and speed of a model against classical codecs: PESQ, STOI, SI-SDR, bitrate, RTF."""
    from dataclasses import asdict

    from rich.progress import Progress

    from codec.datasets import find_inputs
    from codec.evaluation.evaluate import EvalSettings, run_evaluation, summarize
    from codec.evaluation.report import plot_rate_distortion, plot_spectrograms, summary_table, write_results

    try:
        kbps = [float(b) for b in bitrates.split(",") if b.strip()]
    except ValueError:
        raise CodecError(f"--bitrates {bitrates!r}: expected comma-separated numbers such as 1.5,3,6,12") from None
    names = [] if baselines.strip() in ("", "none") else [b.strip() for b in baselines.split(",")]
    if jobs < 1 or threads < 1:
        raise CodecError("--jobs and --threads must be at least 1")
    files = find_inputs(input)
    settings = EvalSettings(model, kbps, names, pesq_nb, threads, entropy)
    with Progress(console=stderr, transient=True) as progress:
        task = progress.add_task("evaluating", total=len(files))
        results, notes, example = run_evaluation(files, settings, jobs, lambda: progress.advance(task))
    summaries = summarize(results)
    rates = sorted({r.sample_rate for r in results})
    if rates != [16000]:
        notes.append(f"inputs at {', '.join(map(str, rates))} Hz were resampled to 16 kHz for scoring")
    notes.append("scored on the first channel of each file, after aligning the decoded signal (lags in results)")
    write_results(out, results, summaries, notes, {**asdict(settings), "input": str(input), "files": len(files)})
    plot_rate_distortion(out / "rate_distortion.png", summaries)
    reference, decoded = example
    ours = {k: v for k, v in decoded.items() if k.startswith(summaries[0].system)}
    plot_spectrograms(out / "spectrograms.png", f"{files[0].name}: reference and {summaries[0].system}",
                      reference, ours)
    if as_json:
        print(json.dumps([asdict(s) for s in summaries], indent=2))
    else:
        console = Console()
        if not console.is_terminal:  # piped: wide enough that no column is cut
            console = Console(width=200)
        console.print(summary_table(summaries, threads))
    for note in notes:
        stderr.print(f"note: {note}")
    stderr.print(f"wrote {out}/results.json, results.csv, rate_distortion.png, spectrograms.png")


@app.command()
@user_errors
def export(
    model: Annotated[str, typer.Argument(help="Shipped model name or model directory.")] = "conv-16k",
    format: Annotated[str, typer.Option("--format", help="Export format: onnx.")] = "onnx",
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("exported"),
    int8: Annotated[bool, typer.Option("--int8", help="8-bit weights for the encoder and decoder: about "
                                       "twice as fast per frame on one CPU thread, same PESQ.")] = False,
    force: ForceOption = False,
) -> None:
    """Export a model for CPU streaming: encoder and decoder step graphs with explicit state."""
    from codec.models import load_model
    from codec.onnx.export import export_onnx

    if format != "onnx":
        raise CodecError(f"--format {format!r} is not supported; choose onnx")
    if out.exists() and any(out.iterdir()) and not force:
        raise CodecError(f"{out} exists and is not empty; pass --force to overwrite its files")
    export_onnx(load_model(model), out, int8=int8)
    stderr.print(f"wrote {', '.join(sorted(p.name for p in out.iterdir()))} to {out}")


@app.command()
@user_errors
def stream(
    input: Annotated[Path | None, typer.Option("--input", "-i", help="Stream this file in real time instead of "
                                                                     "the microphone.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Record the decoded audio to a file.")] = None,
    play: Annotated[bool, typer.Option("--play/--no-play", help="Play the decoded audio on the speaker "
                                                                "[default: play unless --output is given].")] = None,
    bitrate: Annotated[float, typer.Option("--bitrate", "-b", help="Bitrate in kbps: 1.5, 3, 6 or 12.")] = 6.0,
    model: ModelOption = None,
    runtime: Annotated[str, typer.Option(help="Inference runtime: torch, onnx, or onnx-int8 (8-bit weights, "
                                         "the fastest on one CPU thread).")] = "torch",
    device: Annotated[str | None, typer.Option(help="Audio device (index or name substring) for input and "
                                                    "output; see --list-devices.")] = None,
    list_devices: Annotated[bool, typer.Option("--list-devices", help="List audio devices and exit.")] = False,
    save: Annotated[Path | None, typer.Option(help="Save the packet stream (decodable with codec decode).")] = None,
    packet_loss: Annotated[float, typer.Option(help="Simulate losing this fraction of packets (0-1).")] = 0.0,
    realtime: Annotated[bool, typer.Option("--realtime/--fast", help="Pace --input at real time.")] = True,
    threads: Annotated[int, typer.Option(help="Inference threads.")] = 1,
    force: ForceOption = False,
) -> None:
    """Real time: microphone (or --input) -> encode -> packets -> decode -> speaker (or --output)."""
    from codec.live import run_stream_command

    run_stream_command(input=input, output=output, play=play, bitrate=bitrate, model=model, runtime=runtime,
                       device=device, list_devices=list_devices, save=save, packet_loss=packet_loss,
                       realtime=realtime, force=force, console=stderr, threads=threads)


@app.command()
@user_errors
def train(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML, e.g. recipes/conv_16k.yaml.")],
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the run's checkpoint.")] = False,
    override: Annotated[list[str] | None, typer.Option(
        "--override", "-o", help="Change a recipe value: section.key=value (repeatable).")] = None,
) -> None:
    """Train a codec (or an entropy model) from a recipe; checkpoints and the model go to run.out_dir."""
    from codec.train import load_recipe, train_any

    train_any(load_recipe(recipe, override or []), resume=resume, console=stderr)


def run() -> None:
    """Console-script entry point."""
    sys.exit(app())
