"""``codec``: encode, decode, inspect and train neural speech codecs.

Each command is a thin typed function over one library call. Problems the user can fix
(``CodecError``) become one line on stderr and exit code 1, never a traceback.
"""

import codecs
import contextlib
import functools
import inspect
import json
import os
import re
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperCommand

from codec import __version__
from codec.errors import CodecError, ModelNotFoundError, TrainingStopped, internal_error_message, os_error_message
from codec.pipes import check_redirections, discard_output, reserve_closed_std_streams, stdout_was_closed
from codec.signals import Terminated, ignore_stopping_signals, stop_on_termination
from codec.threads import check_threads

app = typer.Typer(add_completion=True, no_args_is_help=True, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="Neural speech codec: encode audio to compact codes and decode it back.")


class _StderrConsole(Console):
    """The console for messages: a control character in their text (a terminal escape in a file
    name) is shown as ``\\x1b``, not obeyed; line breaks are kept (``_visible`` shows those too,
    for messages that must stay one line)."""

    def print(self, *objects, **kwargs) -> None:
        super().print(*(_visible(o, keep_line_breaks=True) if isinstance(o, str) else o for o in objects),
                      **kwargs)


stderr = _StderrConsole(stderr=True, highlight=False, markup=False, soft_wrap=True)  # paths: no markup, no wrapping


class _StdoutConsole(Console):
    """A console for tables on stdout: one whose reader went away (``| head``) ends the command
    quietly with 141 (128 + SIGPIPE), as the other commands do; rich's own choice is 1."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        discard_output()
        raise typer.Exit(141)


def _stdout_console() -> Console:
    console = _StdoutConsole()
    return console if console.is_terminal else _StdoutConsole(width=200)   # piped: wide enough that no column is cut


# what a file name or a .codes file's metadata must not pass to the terminal as it is: C0 and C1
# controls and DEL (a newline, a terminal escape), bidirectional overrides (text shown reversed),
# line and paragraph separators, zero-width spaces and byte-order marks (unseen), and lone
# surrogates (an undecodable file name's bytes, a crafted JSON string: unprintable)
_INVISIBLE = ("\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200b\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff"
              "\ud800-\udfff")


# compiled now: an error message for memory that ran out must not need memory to compile them
_INVISIBLE_CHARACTER = re.compile(f"[{_INVISIBLE}]")
_INVISIBLE_OR_LINE_BREAK = re.compile(f"[\n{_INVISIBLE}]")


def _visible(text: str, keep_line_breaks: bool = False) -> str:
    """``text`` with the characters ``_INVISIBLE`` names shown as ``\\x1b`` or ``\\u202e``, so
    that a message stays one plain, printable line; ``keep_line_breaks``: all but ``\\n``."""
    pattern = _INVISIBLE_CHARACTER if keep_line_breaks else _INVISIBLE_OR_LINE_BREAK
    return pattern.sub(lambda match: _escaped(match[0]), text)


def _escaped(char: str) -> str:
    """One character as Python writes it escaped, ``\\x1b``, ``\\u202e`` or ``\\U0001f600``, but
    a byte of a file name that is not valid in the locale's encoding as ``\\xff``, not ``\\udcff``:
    Python reads such bytes into lone surrogates (PEP 383), and ``\\udcff`` names no byte of the
    user's file name."""
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"
    return char.encode("ascii", "backslashreplace").decode() if code > 0x7F else f"\\x{code:02x}"


def _fail(message: str, code: int = 1) -> None:
    stderr.print(Text.assemble(("error:", "bold red"), f" {_visible(message)}"), soft_wrap=True)
    raise typer.Exit(code)


def model_option_hint(command):
    """For the commands with ``--model``: an unknown model's error says how to pass one's folder."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except ModelNotFoundError as error:
            raise CodecError(error.for_model_option()) from None
    return wrapper


CLOSED_STDOUT = "stdout is closed; redirect the output to a file (> FILE) or discard it (> /dev/null)"


def _stdout_failure(error: OSError) -> str:
    """The message for stdout that cannot be written (closed, or on a full disk)."""
    return CLOSED_STDOUT if stdout_was_closed(error) else f"cannot write to stdout ({error.strerror or error})"


@contextmanager
def _writing_stdout() -> Iterator[None]:
    """Around what a command prints on stdout (a table, a list, JSON): a failed write is named as
    stdout's, once; a reader that went away is left to ``user_errors`` (exit 141).

    Raises:
        CodecError: if stdout cannot be written.
    """
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as error:
        discard_output()   # what is still buffered goes nowhere at exit, not into a second message
        _stdout_failed.append(error)   # (so that run() does not take the discarded stdout for a reader gone)
        raise CodecError(_stdout_failure(error)) from None


_stdout_failed: list[OSError] = []


def user_errors(command):
    """Turn a CodecError (or a failed write) into a one-line message and exit code 1."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except typer.Exit:  # an exit code chosen by the command
            raise
        except CodecError as error:
            _fail(str(error))
        except BrokenPipeError:  # the reader of stdout went away (`| head`): stop quietly, as Unix tools do
            discard_output()
            raise typer.Exit(141) from None
        except OSError as error:
            _fail(os_error_message(error))
        except Terminated as stopped:   # SIGTERM, SIGHUP or SIGQUIT, after the temporary files were removed
            _fail(str(stopped), 128 + stopped.signum)
        except KeyboardInterrupt as error:   # (an evaluation's says how far it got)
            _fail(str(error) or "interrupted", 130)   # 128 + SIGINT, as a shell reports a program stopped by Ctrl-C
        except Exception as error:  # a bug, not the user's fault: one line unless debugging
            if os.environ.get("CODEC_DEBUG"):
                raise
            _fail(internal_error_message(error))
    # this typer keeps the line breaks inside a paragraph of --help, which then break mid-sentence
    # at any terminal width but the source's: each paragraph is given as one line, for rich to wrap
    wrapper.__doc__ = "\n\n".join(paragraph.replace("\n", " ")
                                   for paragraph in inspect.cleandoc(command.__doc__ or "").split("\n\n"))
    return wrapper


def _version(value: bool) -> None:
    if value:
        print(f"codec {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                               help="Print the version and exit.")] = False) -> None:
    """Neural speech codec: encode audio to compact codes and decode it back."""


# Path arguments take readable=False: an unreadable file then gets this tool's one-line error and
# exit code 1 (check_paths, open_audio), not click's usage box and exit code 2.
ModelOption = Annotated[str | None, typer.Option(
    "--model", "-m", help="Shipped or installed model name (see codec models) or model directory "
                          "\\[default: esc-16k-small].")]
ForceOption = Annotated[bool, typer.Option("--force", "-f", help="Overwrite the output file (in a batch: "
                                                                 "redo files whose output exists).")]
DecodeModelOption = Annotated[str | None, typer.Option(
    "--model", "-m", help="Shipped or installed model name (see codec models) or model directory \\[default: the "
                          "model named in the file].")]
FolderForceOption = Annotated[bool, typer.Option("--force", "-f", help="Overwrite the files already in the "
                                                                       "output folder.")]
JobsOption = Annotated[int, typer.Option("--jobs", "-j", help="Worker processes for a batch (one torch "
                                                             "thread each).")]
RefineOption = Annotated[int, typer.Option(
    "--refine-steps", metavar="STEPS",
    help="Refine each block's latent with STEPS steps of analysis by synthesis (0: off, up to 1000; 1-60 is a "
         "useful range): the decoded audio is perceptually closer to the input at the same nominal bitrate and "
         "any decoder reads the codes, but encoding is far slower (esc-16k-small at 6 kbps: 60 steps +0.51 "
         "PESQ-WB, encoding about 5x slower than real time; 1 step +0.13, about 5x faster than real time; see "
         "its model card). Range-coded, refined codes can take a few % more bits.")]
Int8Option = Annotated[bool, typer.Option(
    "--int8", help="Compute the model's linear layers in int8 (PyTorch dynamic quantization): about 1.3x faster "
                   "on a CPU, with slightly different codes and audio (esc-16k-small: mean PESQ-WB within 0.03 "
                   "of float over the dev files, single files -0.24 to +0.43; see its model card). The files "
                   "are ordinary: any decoder reads them.")]
DecodeInt8Option = Annotated[bool, typer.Option(
    "--int8", help="Decode with the model's linear layers in int8 (PyTorch dynamic quantization): faster on a "
                   "CPU, with slightly different audio (esc-16k-small: mean PESQ-WB within 0.03 of float over "
                   "the dev files; see its model card). Any file decodes this way, however it was encoded.")]
ThreadsOption = Annotated[int | None, typer.Option(
    "--threads", show_default=False,
    help="Torch threads for the model, 1 to the CPU cores \\[default: one per core for one file; one per job in a "
         "batch]. One thread leaves the other cores free; on a busy machine it can be far faster than several.")]
BitrateOption = Annotated[float | None, typer.Option(
    "--bitrate", "-b", show_default=False,
    help="Bitrate in kbps, one the model supports (the shipped ones: 1.5, 3, 6, 12; see codec models) "
         "\\[default: 6, or the model's bitrate nearest to 6].")]


def _arguments(command: str, inputs: list[str] | None, output: str | None, jobs: int,
               threads: int | None = None) -> list[str]:
    """The input arguments as given. A ``threads`` count is set for this process's torch (a batch
    holds its own count while it runs, and its workers set theirs).

    Raises:
        typer.Exit: code 2 after the usage, as for any malformed command line, naming the missing
            argument (with one argument, click gives it to OUTPUT).
        CodecError: for ``--jobs`` under 1, or ``--threads`` outside 1 to the CPU cores.
    """
    if jobs < 1:
        raise CodecError(f"--jobs {jobs}: must be at least 1")
    if threads is not None:
        import torch

        torch.set_num_threads(check_threads(threads))
    if not inputs:
        missing = "OUTPUT" if output is not None else "INPUT and OUTPUT"
        stderr.print(f"Usage: codec {command} [OPTIONS] INPUT... OUTPUT", soft_wrap=True)
        _fail(f"missing {missing} (see codec {command} --help)", 2)
    for argument in inputs:
        if _named_path(argument, "INPUT").is_file() and argument.endswith(("/", os.sep)):   # (Path drops the /)
            raise CodecError(f"{argument}: is a file, not a folder (it ends with /); name the file without the /")
    if output is not None:
        _named_path(output, "OUTPUT")
    return list(inputs)


def _warn_of_oversubscription(jobs: int, threads: int) -> None:
    """Warn where ``jobs`` workers of ``threads`` threads each outnumber the usable cores: they
    compete for them, and on this suite's models that is slower than fewer threads or jobs (each
    job's process also loads its own copy of torch and the model)."""
    from codec.threads import usable_cores

    cores = usable_cores()
    plural = "s" if cores > 1 else ""
    if jobs > 1 and threads > 1 and jobs * threads > cores:
        stderr.print(f"warning: --jobs {jobs} with --threads {threads} runs {jobs * threads} threads on {cores} "
                     f"CPU core{plural}; they compete for them: --threads {max(1, cores // jobs)} is likely "
                     f"faster", soft_wrap=True)
    elif jobs > cores:
        stderr.print(f"warning: --jobs {jobs} runs {jobs} processes on {cores} CPU core{plural}; they compete "
                     f"for them: --jobs {cores} is likely faster", soft_wrap=True)


def _named_path(argument: str, name: str) -> Path:
    """A path argument that must name something: ``Path("")`` would be the current folder.

    Raises:
        CodecError: for an empty argument.
    """
    if not argument:
        raise CodecError(f"an empty file name was given ({name}); name a file")
    return _as_path(argument)


def _non_empty_path(value) -> Path:
    """Typer parser for path options: ``--out ''`` (an unset variable) names no file or folder,
    where ``Path("")`` would be the current folder.

    Raises:
        typer.BadParameter: for an empty value (exit code 2, naming the option).
    """
    if isinstance(value, str) and not value:
        raise typer.BadParameter("an empty path was given; name a file or folder")
    return Path(value)


NON_EMPTY_PATH = {"parser": _non_empty_path, "metavar": "<path>"}   # for path options


def _check_out_folder(out: Path, purpose: str) -> None:
    """``--out`` names a folder of several files (``purpose`` says which): ``-`` (stdout elsewhere),
    a file, a device and a link to nothing are refused.

    Raises:
        CodecError: naming what ``out`` is instead of a folder.
    """
    if str(out) == "-":
        raise CodecError("--out -: the results are several files, not a stream for stdout; name a folder")
    if out.is_symlink() and not out.exists():
        try:
            out.resolve(strict=True)
        except FileNotFoundError:
            raise CodecError(f"--out {out}: a link to {os.readlink(out)}, which does not exist; {purpose}") from None
        except (RuntimeError, OSError):   # (Python 3.11 raises RuntimeError for a loop)
            raise CodecError(f"--out {out}: is a loop of symbolic links; {purpose}") from None
    if out.exists() and not out.is_dir():
        kind = "a file" if out.is_file() else "a device, pipe or socket"
        raise CodecError(f"--out {out}: is {kind}, not a folder; {purpose}")


def _as_path(argument: str) -> Path:
    """A path argument as a Path. ``./-`` names a file called ``-``, which ``Path`` would shorten
    to ``-`` (stdin or stdout); it is kept apart as an absolute path."""
    if argument != "-" and str(Path(argument)) == "-":
        return Path.cwd() / "-"
    return Path(argument)


def _file_output(output: str, source: str, suffix: str) -> Path:
    """OUTPUT for one input file. It arrives as text: a trailing / names a folder, and a Path would
    drop it and write a file of the folder's name.

    Raises:
        CodecError: for a name that ends with /.
    """
    from codec.coding import refuse_folder_name
    refuse_folder_name(output, source, suffix)
    return _as_path(output)


@contextmanager
def _readable(path: Path, example: str) -> Iterator[Path]:
    """``path``, or stdin buffered into a temporary file for ``-`` (``example``: a command that
    pipes the input in, for the error if stdin is a terminal or empty)."""
    from codec.pipes import is_stdio, stdin_file

    if is_stdio(path):
        with stdin_file(example=example) as buffered:
            yield buffered
    else:
        yield path


@contextmanager
def _writable(path: Path, suffix: str) -> Iterator[Path]:
    """``path``, or for ``-`` a temporary file that goes to stdout once written."""
    from codec.pipes import is_stdio, stdout_file

    if is_stdio(path):
        with stdout_file(suffix) as buffered:
            yield buffered
    else:
        yield path


@contextmanager
def _encoding_progress(refine_steps: int) -> Iterator:
    """A progress bar on a terminal for encoding with refinement (minutes for a long file, where
    plain encoding takes seconds): ``on_progress`` for ``encode_file``, or None."""
    if not refine_steps or not stderr.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(TextColumn(f"encoding, {refine_steps} refinement steps"), BarColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=stderr, transient=True) as progress:
        task = progress.add_task("encode", total=None)
        yield lambda done, total: progress.update(task, completed=done, total=total)


def _print_warnings(report, paths: dict) -> None:
    """The report's warnings, naming each path as the user gave it: ``{used path: given path}``,
    where a given ``-`` (stdin or stdout) was a temporary file."""
    for warning in report.warnings:
        for used, given in paths.items():
            if str(given) == "-":
                warning = warning.replace(str(used), "stdin" if Path(used).name == "stdin" else "stdout")
        stderr.print(_visible(f"warning: {warning}"), soft_wrap=True)


def _label(path: Path) -> str:
    """How messages name a path argument (``-`` is stdin or stdout)."""
    return "stdout" if str(path) == "-" else str(path)


class _InputsAndOutput(TyperCommand):
    """encode and decode: INPUT... and OUTPUT are optional to click, so that the command names what
    is missing (click gives a lone argument to OUTPUT), but the usage line shows them as required."""

    def collect_usage_pieces(self, ctx) -> list[str]:
        return [piece.removeprefix("[").removesuffix("]") if piece in ("[INPUT...]", "[OUTPUT]") else piece
                for piece in super().collect_usage_pieces(ctx)]


@app.command(cls=_InputsAndOutput)
@user_errors
@model_option_hint
def encode(
    inputs: Annotated[list[str] | None, typer.Argument(
        metavar="INPUT...", show_default=False,
        help="Audio file (WAV, FLAC, OGG, MP3, AIFF, CAF, W64; 1 to 1024 channels, 1 to 384 kHz), or - for stdin. "
             "A folder, a quoted glob ('in/**/*.flac') or several of these and files encode them all into the folder "
             "OUTPUT.")] = None,
    output: Annotated[str | None, typer.Argument(
        metavar="OUTPUT", show_default=False,
        help="The .codes file to write (- for stdout), or a batch's output folder (the input tree is "
             "mirrored there).")] = None,
    bitrate: BitrateOption = None,
    model: ModelOption = None,
    entropy: Annotated[bool | None, typer.Option(
        "--entropy/--no-entropy", show_default=False,
        help="Range-code the codes with the model's entropy model (conv-16k has one: files about 23% smaller "
             "at 6 kbps; coding runs at about 9x real time on one thread) "
             "\\[default: on if the model has one].")] = None,
    refine_steps: RefineOption = 0,
    int8: Int8Option = False,
    force: ForceOption = False,
    jobs: JobsOption = 1,
    threads: ThreadsOption = None,
) -> None:
    """Encode an audio file into a .codes file, or many files into a folder."""
    from codec.batch import is_batch
    from codec.coding import check_paths, encode_file
    from codec.models import load_model
    from codec.refine import check_refine_steps

    sources = _arguments("encode", inputs, output, jobs, threads)
    codec_model = load_model(model, int8)
    bitrate = codec_model.default_bitrate() if bitrate is None else bitrate
    try:  # the model's own bitrates, checked before any work
        codec_model.codebooks_for_bitrate(bitrate)
    except ValueError as error:
        raise CodecError(f"--bitrate: {error}") from None
    try:
        check_refine_steps(refine_steps, codec_model)
    except CodecError as error:
        raise CodecError(f"--refine-steps: {error}") from None
    if is_batch(sources):
        _encode_batch(sources, Path(output), bitrate, model, entropy, force, jobs, refine_steps, int8, threads or 1)
        return
    output = _file_output(output, sources[0], ".codes")
    check_redirections(sources[0], output)
    with _readable(_as_path(sources[0]), "codec encode - out.codes < in.wav") as source, \
            _writable(output, ".codes") as target:
        check_paths(source, target, force, codes_writer="encoding")
        with _encoding_progress(refine_steps) as on_progress:
            codes_file, report = encode_file(codec_model, source, target, bitrate, force, entropy, refine_steps,
                                             on_progress)
        _print_warnings(report, {source: sources[0], target: output})
        meta = codes_file.metadata
        seconds = meta.samples / meta.sample_rate
        size = target.stat().st_size
        kbps = f", {size * 8 / seconds / 1000:.2f} kbps" if seconds else ""
    # once written: for - (stdout), after the copy out, which can fail
    nominal = (f"{bitrate:g} kbps nominal" if meta.channels == 1 else
               f"{bitrate:g} kbps nominal per channel, {bitrate * meta.channels:g} in all")   # as measured below
    stderr.print(_visible(f"{_label(output)}: {seconds:.2f} s, {meta.channels} ch, {meta.codebooks} codebooks "
                          f"({nominal}), {size} bytes{kbps}"))


@app.command(cls=_InputsAndOutput)
@user_errors
@model_option_hint
def decode(
    inputs: Annotated[list[str] | None, typer.Argument(
        metavar="INPUT...", show_default=False,
        help="The .codes file (or saved packet stream) to read, or - for stdin. A folder, a quoted glob "
             "('codes/**/*.codes') or several of these and files decode them all into the folder OUTPUT.")] = None,
    output: Annotated[str | None, typer.Argument(
        metavar="OUTPUT", show_default=False,
        help="Audio file to write (format from the suffix: .wav, .flac, .ogg, .aiff; - for stdout), or a batch's "
             "output folder.")] = None,
    model: DecodeModelOption = None,
    force: ForceOption = False,
    sample_rate: Annotated[int | None, typer.Option(
        "--sample-rate", "-r", help="Resample the output to this rate in Hz \\[default: the original's].",
        show_default=False)] = None,
    channels: Annotated[int | None, typer.Option(
        "--channels", "-c", help="Output channels: 1 mixes down, N copies a mono original \\[default: the "
                                 "original's].", show_default=False)] = None,
    format: Annotated[str | None, typer.Option(
        "--format", help="wav, flac, ogg (Vorbis) or aiff: the format of a batch's files and of - (stdout) "
                         "\\[default: wav].",
        show_default=False)] = None,
    sample_format: Annotated[str | None, typer.Option(
        "--sample-format", help="pcm16, pcm24 or float (float in .wav and .aiff only): float keeps samples beyond "
                                "full scale, which integer PCM clips \\[default: pcm16, or pcm24 where encoding "
                                "raised the input by 24 dB or more].",
        show_default=False)] = None,
    int8: DecodeInt8Option = False,
    jobs: JobsOption = 1,
    threads: ThreadsOption = None,
) -> None:
    """Decode a .codes file (or a saved packet stream) back to audio, or many files into a folder.

    The audio has the original's sample rate, channels and length (or --sample-rate / --channels)."""
    from codec.atomic import final_path
    from codec.batch import OUTPUT_FORMATS, is_batch
    from codec.coding import (
        SAMPLE_FORMATS,
        audio_format_for,
        check_output_format,
        check_paths,
        chosen_subtype,
        decode_any_file,
    )
    from codec.models import load_model

    sources = _arguments("decode", inputs, output, jobs, threads)
    if format is not None and format.lower() not in OUTPUT_FORMATS:
        raise CodecError(f"--format {format} is not supported; choose {', '.join(OUTPUT_FORMATS)}")
    if sample_format is not None and sample_format.lower() not in SAMPLE_FORMATS:
        raise CodecError(f"--sample-format {sample_format} is not supported; choose {', '.join(SAMPLE_FORMATS)}")
    suffixes = OUTPUT_FORMATS[(format or "wav").lower()]
    suffix = suffixes[0]
    check_output_format(1, sample_rate, channels)  # the rate and a positive count; the mix per file
    if is_batch(sources):
        chosen_subtype(sample_format, audio_format_for(Path(f"x{suffix}")), f"--format {format or 'wav'}")
        _decode_batch(sources, Path(output), suffix, model, force, sample_rate, channels, jobs, int8, threads or 1,
                      sample_format)
        return
    output = _file_output(output, sources[0], suffix)
    check_redirections(sources[0], output)
    written = output if str(output) == "-" else final_path(output)   # a symbolic link's target is written
    if format is not None and str(output) != "-" and written.suffix.lower() not in suffixes:
        shown = output if written == output else f"{output} (a link to {written})"
        raise CodecError(f"--format {format} does not match {shown}: a file's suffix sets its format "
                         f"(--format is for a batch or for - as the output)")
    with _readable(_as_path(sources[0]), "codec decode - out.wav < in.codes") as source, \
            _writable(output, suffix) as target:
        # a name no audio can be written to, or in no such sample format: before any work, and before "exists"
        chosen_subtype(sample_format, audio_format_for(target), _label(output))
        check_paths(source, target, force)
        report = decode_any_file(source, target, force, model, sample_rate, channels,
                                 load=lambda name: load_model(name, int8), sample_format=sample_format)
        _print_warnings(report, {source: sources[0], target: output})
        written = _written(target, _label(output))
    stderr.print(_visible(written))   # once written: for - (stdout), after the copy out, which can fail


def _encode_batch(sources: list[str], output: Path, bitrate: float, model: str | None, entropy: bool | None,
                  force: bool, jobs: int, refine_steps: int = 0, int8: bool = False, threads: int = 1) -> None:
    from codec.audio import AUDIO_SUFFIXES
    from codec.batch import CODES_SUFFIX, BatchSettings, load_cached
    from codec.coding import entropy_coder_for, wants_entropy

    network = load_cached(model, int8)  # a bad model, bitrate or --entropy fails here, before any file
    try:
        network.codebooks_for_bitrate(bitrate)
    except ValueError as error:
        raise CodecError(str(error)) from None
    if wants_entropy(network, entropy):
        entropy_coder_for(network, required=True)
    # as given (None: the model's entropy model where it has one, and a plain file where that is smaller)
    settings = BatchSettings("encode", model, bitrate, entropy, force, refine_steps=refine_steps, int8=int8,
                             threads=threads)
    _run_batch(sources, output, settings, jobs, AUDIO_SUFFIXES, CODES_SUFFIX)


def _decode_batch(sources: list[str], output: Path, suffix: str, model: str | None, force: bool,
                  sample_rate: int | None, channels: int | None, jobs: int, int8: bool = False,
                  threads: int = 1, sample_format: str | None = None) -> None:
    from codec.batch import CODES_SUFFIX, BatchSettings, load_cached
    from codec.codes_files import is_packet_stream

    if model is not None:
        load_cached(model, int8)  # a bad --model fails here, before any file
    settings = BatchSettings("decode", model, force=force, sample_rate=sample_rate, channels=channels, int8=int8,
                             threads=threads, sample_format=sample_format)
    _run_batch(sources, output, settings, jobs, (CODES_SUFFIX,), suffix,
               ("packet streams saved by codec stream --save", is_packet_stream))


def _run_batch(sources: list[str], output: Path, settings, jobs: int, input_suffixes: tuple[str, ...],
               output_suffix: str, recognise=None) -> None:
    """Code all inputs into ``output`` with a progress bar; summary on stderr; exit 1 if any failed.
    ``recognise`` as in ``find_files``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from codec.audio import AUDIO_SUFFIXES
    from codec.batch import (
        CODES_SUFFIX,
        already_done,
        check_output_folder,
        find_files,
        outside_the_output,
        plan_jobs,
        run_batch,
        summary_lines,
    )
    from codec.datasets import Skipped
    from codec.pipes import is_stdio

    if "-" in sources:
        raise CodecError("- (stdin) takes one input; for several, give files, a folder or a glob")
    if is_stdio(output):
        given = "a folder or glob pattern" if len(sources) == 1 else "several inputs"
        raise CodecError(f"{given} cannot go to - (stdout); give an output folder")
    check_output_folder(sources, output, (CODES_SUFFIX, *AUDIO_SUFFIXES), settings.command)
    skipped = Skipped()
    found, inside_output = outside_the_output(find_files(sources, input_suffixes, recognise, skipped), sources, output)
    if not found and inside_output:   # all below the output folder: nothing to code fails, as no inputs at all
        files = f"{inside_output} input files lie" if inside_output > 1 else "input file lies"
        raise CodecError(f"the only {files} below the output folder {output}, inside the input folder, where they "
                         f"are taken for earlier outputs; give an output folder outside the input folder, or the "
                         f"files by name")
    planned, clashes = plan_jobs(found, output, output_suffix)
    # the other kind's files are expected beside the inputs (coding in place): not worth a note
    outputs_kind = (CODES_SUFFIX,) if settings.command == "encode" else AUDIO_SUFFIXES
    skipped.not_audio = [path for path in skipped.not_audio if path.suffix.lower() not in outputs_kind]
    output.mkdir(parents=True, exist_ok=True)
    _warn_of_oversubscription(min(jobs, sum(not already_done(job, settings) for job in planned)), settings.threads)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=stderr, transient=True, disable=not stderr.is_terminal) as progress:
        task = progress.add_task(f"{settings.command} ({jobs} job{'s' if jobs > 1 else ''})", total=len(planned))
        outcomes = run_batch(planned, settings, jobs, lambda outcome: progress.advance(task))
    outcomes += clashes
    wanted = "audio" if settings.command == "encode" else ("a .codes file or saved stream",
                                                           ".codes files or saved streams")
    if note := skipped.summary(wanted):
        stderr.print(_visible(f"note: {note}"), soft_wrap=True)
    if inside_output:
        stderr.print(_visible(f"note: left out {inside_output} file{'s' if inside_output > 1 else ''} below the "
                              f"output folder {output}, which lies inside the input folder: taken for earlier "
                              f"outputs, which coded again would nest one level deeper at each run (to code "
                              f"{'them' if inside_output > 1 else 'it'}, give an output folder outside the input "
                              f"folder, or the files by name)"), soft_wrap=True)
    for line in summary_lines(outcomes, settings.command):
        stderr.print(_visible(line), soft_wrap=True)
    if any(o.status == "failed" for o in outcomes):
        raise typer.Exit(1)


def _written(path: Path, label: str) -> str:
    """What was written to the audio file ``path``, for the line that reports it."""
    import soundfile as sf

    info = sf.info(os.fsencode(path))
    return f"{label}: {info.frames / info.samplerate:.2f} s, {info.channels} ch, {info.samplerate} Hz"


@app.command()
@user_errors
def info(
    path: Annotated[str, typer.Argument(
        metavar="PATH", show_default=False,
        help="A .codes file (or a packet stream saved by codec stream --save; - for stdin), or a model: "
             "shipped name or model directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the metadata as JSON.")] = False,
) -> None:
    """Print the metadata of a .codes file or a model's summary.

    Every chunk of a .codes file is checked (length, CRC), and its end; only decode unpacks the codes.
    """
    path = _named_path(path, "PATH")
    if path.exists() and not path.is_file() and not path.is_dir():   # not a model's name either
        raise CodecError(f"{path}: is a pipe or device, not a file; give - as PATH and redirect it to stdin instead")
    with _readable(path, "codec info - < in.codes") as source:
        values = _codes_info(source) if source.is_file() else _model_info(path)
    with _writing_stdout():
        if as_json:
            print(json.dumps(values, indent=2))
        else:
            width = max(map(len, values))
            for key, value in values.items():
                print(_visible(f"{key:<{width}}  {_plain(value)}"))   # (metadata strings too)


def _codes_info(path: Path) -> dict:
    from dataclasses import asdict

    from codec.codes_files import is_packet_stream, read_codes_metadata

    if is_packet_stream(path):   # saved by codec stream --save
        return _packet_stream_info(path)
    meta = read_codes_metadata(path, whole_file=True)
    values = {k: v for k, v in asdict(meta).items() if v is not None}
    seconds = values["samples"] / values["sample_rate"]
    values["duration_s"] = round(seconds, 3)
    values["file_bytes"] = path.stat().st_size
    per_channel = meta.codebooks * meta.bits_per_code * values["frame_rate"] / 1000
    values["nominal_kbps"] = round(per_channel * meta.channels, 3)   # all channels, as file_kbps
    if meta.channels > 1:
        values["nominal_kbps_per_channel"] = round(per_channel, 3)
    values["file_kbps"] = round(values["file_bytes"] * 8 / seconds / 1000, 3) if seconds else None
    values["entropy_coded"] = meta.entropy_coded
    if meta.has_global:
        from codec.bitstream import read_global_codes

        values["global_codes"] = read_global_codes(path.read_bytes()).tolist()  # per channel, sent once
    return values


def _packet_stream_info(path: Path) -> dict:
    """A saved packet stream's header, and what its packets hold (counted, not decoded)."""
    from dataclasses import asdict

    from codec.codes_files import read_stream_info
    from codec.packets import summarize_stream

    data = path.read_bytes()
    info, offset = read_stream_info(path, data)
    values = {"format": "packet stream", **{k: v for k, v in asdict(info).items() if v is not None}}
    summary = summarize_stream(data, offset, info)
    if summary.total_samples is not None:   # the end packet's exact length
        seconds = summary.total_samples / info.sample_rate
    else:
        # no end packet: the stream was cut off; its length is the frames received and those that
        # decoding conceals for the packets lost, each taken to be the sender's packet size (but
        # the first of a TiCodec stream, its global code's packet, holds no frames)
        concealed = summary.lost_packets - bool(info.global_codebook_size is not None and summary.lost_at_start)
        seconds = (summary.frames + concealed * summary.max_frames) / info.frame_rate
        values["ended"] = False
    values["duration_s"] = round(seconds, 3)
    values["packets"] = summary.packets
    values["frames"] = summary.frames
    if summary.codebooks:   # (a stream without frames has none)
        values["codebooks"] = summary.codebooks[0] if len(summary.codebooks) == 1 else list(summary.codebooks)
    if summary.global_packets:
        values["global_code_packets"] = summary.global_packets
    values["lost_packets"] = summary.lost_packets
    if summary.stale_packets:
        values["stale_packets"] = summary.stale_packets
    if summary.damaged_bytes:
        values["damaged_bytes"] = summary.damaged_bytes
    if summary.bytes_after_end:
        values["bytes_after_end"] = summary.bytes_after_end
    values["file_bytes"] = len(data)
    if len(summary.codebooks) == 1:   # all channels, as file_kbps and as for .codes files
        per_channel = summary.codebooks[0] * info.bits_per_code * info.frame_rate / 1000
        values["nominal_kbps"] = round(per_channel * info.channels, 3)
        if info.channels > 1:
            values["nominal_kbps_per_channel"] = round(per_channel, 3)
    values["file_kbps"] = round(len(data) * 8 / seconds / 1000, 3) if seconds else None
    values["entropy_coded"] = summary.entropy_coded
    return values


def _model_info(path: Path) -> dict:
    """A model's summary; a path that is neither a file nor a model is named in the error."""
    from dataclasses import asdict

    from codec.errors import ModelNotFoundError
    from codec.models.catalog import summarize_model
    from codec.models.loading import names_hint

    if not path.exists():
        try:
            return asdict(summarize_model(str(path), with_hash=True))
        except ModelNotFoundError:   # (a model of that name that cannot be read says why)
            raise CodecError(f"{path}: no such file, and no model has that name {names_hint(str(path))}") from None
    return asdict(summarize_model(path, with_hash=True))


def _plain(value) -> str:
    """A value for the text listing of ``codec info``: lists joined, ``{"6": 1.9812}`` as ``6: 1.98``
    (as ``codec models`` and the model cards round PESQ-WB; ``--json`` has every digit), None as ``-``."""
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v:.2f}" if isinstance(v, float) else f"{k}: {v}" for k, v in value.items()) or "-"
    if isinstance(value, list):
        return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return "-" if value is None else str(value)


@app.command()
@user_errors
def models(
    as_json: Annotated[bool, typer.Option("--json", help="Print the list as JSON.")] = False,
) -> None:
    """List the models --model accepts by name, with rates, size, latency and measured quality.

    The shipped ones, and those installed in $CODEC_MODELS_DIR."""
    from dataclasses import asdict

    from codec.models.catalog import list_models

    problems = []
    summaries = list_models(problems)
    for problem in problems:
        stderr.print(f"warning: skipped {problem}", soft_wrap=True)
    installed = os.environ.get("CODEC_MODELS_DIR")
    if installed and not Path(installed).is_dir():   # a typo would otherwise only hide the models it names
        what = "is a file, not a folder" if Path(installed).exists() else "no such folder"
        stderr.print(f"warning: CODEC_MODELS_DIR={installed}: {what}; no installed models listed", soft_wrap=True)
    elif installed and (Path(installed) / "config.json").is_file():   # one model, not a folder of them
        stderr.print(f"note: CODEC_MODELS_DIR={installed} is a model folder itself; it takes the folder that "
                     f"holds model folders (here {Path(installed).resolve().parent}), and --model takes this one",
                     soft_wrap=True)
    elif installed and not any(Path(installed).glob("*/config.json")):
        runs = sorted(Path(installed).glob("*/model/config.json"))   # a folder of training runs
        hint = f"; training runs keep theirs in RUN/model (such as {runs[0].parent}): --model takes that " \
               f"folder" if runs else ""
        stderr.print(f"note: CODEC_MODELS_DIR={installed} holds no model folders (a model folder holds "
                     f"config.json and model.safetensors){hint}", soft_wrap=True)
    with _writing_stdout():
        if as_json:
            # (no weights hash is computed for the list; a model without an input level or high-pass says null)
            print(json.dumps([{k: v for k, v in asdict(s).items() if k != "weights_sha256" or v is not None}
                              for s in summaries], indent=2))
            return
        console = _stdout_console()
        console.print(_models_table(summaries, console.width))
    if not summaries:
        stderr.print("no models found; set CODEC_MODELS_DIR to a folder of model directories")


def _models_table(summaries, width: int | None = None):
    """The models as a table; where it would not fit ``width`` columns (a narrow terminal), the
    columns needed to choose one (rich would cut the names to be typed), and a note for the rest."""
    from rich.console import Console, Group
    from rich.table import Table
    from rich.text import Text

    columns = ("name", "sample rate", "bitrates (kbps)", "parameters", "latency", "PESQ-WB", "entropy", "where")
    table = Table(title="models (PESQ-WB: mean on the dev set, per bitrate)", title_justify="left")
    for column in columns:
        table.add_column(column, justify="right" if column in ("parameters", "latency") else "left")
    rows = []
    for s in summaries:
        entropy = _entropy_column(s)
        pesq = ", ".join(f"{k}: {v:.2f}" for k, v in s.pesq_wb.items()) or "not measured"
        name = _visible(s.name) + (" (default)" if s.default else "")
        table.add_row(name, f"{s.sample_rate / 1000:g} kHz", ", ".join(f"{b:g}" for b in s.bitrates_kbps),
                      f"{s.parameters / 1e6:.2f} M", f"{s.latency_ms:g} ms", pesq, entropy,
                      _visible(f"{s.source}: {s.directory}"))
        rows.append((name, pesq, entropy))
    if width is None or Console(width=10_000).measure(table).maximum <= width:
        return table
    narrow = Table(title="models (PESQ-WB: mean on the dev set, kbps: score)", title_justify="left")
    for column in ("name", "PESQ-WB", "entropy"):   # (a long name folds onto lines of its own, whole)
        narrow.add_column(column, overflow="fold", ratio={"name": 3, "PESQ-WB": 3, "entropy": 1}[column])
    for row in rows:
        narrow.add_row(*row)
    return Group(narrow, Text("(a narrow terminal: codec models --json or codec info NAME give every field)"))


def _entropy_column(summary) -> str:
    """``codec models``' entropy column: yes, no, or unusable (``codec info`` says why)."""
    return "yes" if summary.entropy_model else "no" if summary.entropy_problem is None else "unusable"


EVAL_OUTPUTS = ("results.json", "results.csv", "rate_distortion.png", "spectrograms.png")


@app.command("eval")
@user_errors
@model_option_hint
def evaluate(
    inputs: Annotated[list[str], typer.Argument(
        metavar="INPUT...", show_default=False,
        help="Folders of audio files (searched recursively), files, quoted globs ('dev/**/*.flac') or manifests: "
             ".tsv/.jsonl with a 'path' column/key, or a Kaldi wav.scp. A file given twice is scored once.")],
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="Shipped or installed model name (see codec models) or model directory "
                              "\\[default: esc-16k-small].")] = None,
    bitrates: Annotated[str | None, typer.Option(
        help="Comma-separated kbps \\[default: the model's bitrates; the shipped ones: 1.5,3,6,12].",
        show_default=False)] = None,
    baselines: Annotated[str, typer.Option(
        help="Comma-separated: opus (CBR), opus-vbr, speex, codec2 (or 'none'). opus and speex need ffmpeg "
             "with libopus/libspeex, codec2 c2enc/c2dec; opus runs from 6 kbps, speex at its wideband rate "
             "nearest each bitrate, codec2 at 3.2 and 1.3 kbps whatever --bitrates says.")] = "none",
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for results.json, results.csv and plots.",
                                      **NON_EMPTY_PATH)] = Path("eval"),
    pesq_nb: Annotated[bool, typer.Option("--pesq-nb", help="Also compute narrowband PESQ.")] = False,
    entropy: Annotated[bool, typer.Option("--entropy", help="Also rows with the entropy coding.")] = False,
    refine_steps: Annotated[int, typer.Option(
        "--refine-steps", metavar="STEPS",
        help="Also rows with latent refinement of STEPS steps (see codec encode --refine-steps).")] = 0,
    int8: Annotated[bool, typer.Option(
        "--int8", help="Also rows with the model computing in int8 (see codec encode --int8).")] = False,
    jobs: Annotated[int, typer.Option(
        help="Worker processes scoring files in parallel (real-time factors are measured with them all busy).")] = 1,
    threads: Annotated[int, typer.Option(help="Torch threads per worker (real-time factors use it).")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    force: FolderForceOption = False,
) -> None:
    """Quality and speed of a model (and, with --baselines, of classical codecs): PESQ, STOI, SI-SDR, bitrate, RTF."""
    from dataclasses import asdict

    from rich.progress import Progress

    from codec.evaluation.evaluate import EvalSettings, run_evaluation, summarize
    from codec.evaluation.metrics import MEL_LEVEL_DBFS
    from codec.evaluation.notes import result_notes
    from codec.evaluation.report import plot_rate_distortion, plot_spectrograms, summary_table, write_results
    from codec.models.loading import DEFAULT_MODEL
    from codec.refine import check_refine_steps

    _check_out_folder(out, "give a folder for the results")
    existing = next(p for p in (out.absolute(), *out.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise CodecError(f"--out {out}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):   # found before minutes of coding, not after
        raise CodecError(f"--out {out}: cannot write in {existing} (permission denied or a read-only disk)")
    if bitrates is None:
        from codec.models.catalog import summarize_model

        bitrates = ",".join(f"{b:g}" for b in summarize_model(model).bitrates_kbps)
    try:
        kbps = list(dict.fromkeys(float(b) for b in bitrates.split(",") if b.strip()))  # each rate once
    except ValueError:
        kbps = []
    if not kbps:
        raise CodecError(f"--bitrates {bitrates!r}: expected comma-separated numbers such as 1.5,3,6,12")
    names = [] if baselines.strip() in ("", "none") else [b.strip() for b in baselines.split(",")]
    if "none" in names:
        raise CodecError(f"--baselines {baselines}: 'none' means no baselines: give it alone, or leave it out")
    if jobs < 1:
        raise CodecError(f"--jobs {jobs}: must be at least 1")
    check_threads(threads)
    try:
        check_refine_steps(refine_steps)
    except CodecError as error:
        raise CodecError(f"--refine-steps: {error}") from None
    files, repeated, skipped = _evaluation_files(inputs)
    _warn_of_oversubscription(min(jobs, len(files)), threads)
    names = list(dict.fromkeys(names))   # each baseline once
    settings = EvalSettings(model, kbps, names, pesq_nb, threads, entropy, refine_steps, int8, jobs)
    created = _create_folder(out)   # before minutes of coding: where it cannot be made (/proc, a full disk)
    progress = Progress(console=stderr, transient=True, disable=not stderr.is_terminal)
    task = progress.add_task("evaluating", total=len(files))
    def start() -> None:   # once the model, bitrates and baselines passed their checks: --force fixes this alone
        _refuse_earlier_results(out, force)
        progress.start()

    try:
        results, notes, example = run_evaluation(files, settings, lambda: progress.advance(task), on_start=start)
    except BaseException:
        for folder in created:   # (the deepest first; only those still empty)
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    finally:
        if progress.live.is_started:   # stopping one that never started would print an empty line
            progress.stop()
    if repeated:
        notes.insert(0, f"{repeated} input(s) named a file already listed: each file was scored once")
    if skipped:   # (as training notes them: a folder's .m4a files are not silently missing from the scores)
        notes.insert(0, skipped)
    summaries = summarize(results)
    notes += result_notes(results, summaries, names)
    evaluated = len({r.path for r in results})
    # written to a folder of their own first and moved in together: Ctrl-C while plotting leaves no
    # half set (results without plots, which a rerun would refuse to overwrite without --force)
    staging = Path(tempfile.mkdtemp(prefix=".eval.", suffix=".partial", dir=out))
    try:
        write_results(staging, results, summaries, notes, {
            **asdict(settings), "model": settings.model or DEFAULT_MODEL, "inputs": inputs, "files": evaluated,
            "files_left_out": len(files) - evaluated, "mel_distance_level_dbfs": MEL_LEVEL_DBFS,
            "working_directory": os.getcwd()})   # what the relative paths are relative to (compare_evals.py)
        plot_rate_distortion(staging / "rate_distortion.png", summaries)
        if example is not None:   # the first readable file's spectrograms
            example_path, reference, decoded = example
            ours = {k: v for k, v in decoded.items() if k.startswith(summaries[0].system)}
            plot_spectrograms(staging / "spectrograms.png",
                              _visible(f"{example_path.name}: reference and {summaries[0].system}"), reference, ours)
        for name in EVAL_OUTPUTS:   # an earlier run's spectrograms do not stay beside these results
            if (staging / name).exists():
                os.replace(staging / name, out / name)
            else:
                (out / name).unlink(missing_ok=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    with _writing_stdout():
        if as_json:
            print(json.dumps([asdict(s) for s in summaries], indent=2))
        else:
            console = _stdout_console()
            # (the workers that ran: no more than the files)
            console.print(summary_table(summaries, threads, min(jobs, len(files)), console.width))
    for note in notes:
        stderr.print(f"note: {note}")
    stderr.print(f"wrote {out}/{', '.join(name for name in EVAL_OUTPUTS if (out / name).exists())}")
    if evaluated < len(files):   # as a batch that could not code every file
        _fail(f"{len(files) - evaluated} of {len(files)} files could not be evaluated (unreadable, or audio no "
              f"codec can take) and were left out (see the notes)")


def _refuse_earlier_results(out: Path, force: bool) -> None:
    """Raises CodecError where ``out`` holds an evaluation's results already, unless ``force``."""
    written = [out / name for name in EVAL_OUTPUTS if (out / name).exists()]
    if written and not force:
        raise CodecError(f"--out {out}: holds results already ({', '.join(p.name for p in written)}); "
                         f"pass --force to overwrite them, or choose another folder")


def _evaluation_files(inputs: list[str]) -> tuple[list[Path], int, str | None]:
    """The audio files that ``codec eval``'s inputs name (folders, files, quoted globs, manifests),
    each once, in order; how many more times some were named; and a note on the files of folders
    and globs that were left out (not audio, hidden), if any.

    Raises:
        CodecError: for an empty argument, or an input that is missing or holds no audio.
    """
    from codec.audio import AUDIO_SUFFIXES
    from codec.batch import find_files, is_batch, resolved_path
    from codec.datasets import Skipped, find_inputs

    files: list[Path] = []
    skipped = Skipped()
    for text in inputs:
        path = _named_path(text, "INPUT")
        if not path.exists() and is_batch([text]):   # a quoted glob
            files += [file for file, _ in find_files([text], AUDIO_SUFFIXES, skipped=skipped)]
        else:
            files += find_inputs(path, skipped)
    unique = {}
    for file in files:   # the same file by another name (./a.flac, a link) too
        unique.setdefault(resolved_path(file), file)
    return list(unique.values()), len(files) - len(unique), skipped.summary()


def _create_folder(folder: Path) -> list[Path]:
    """Make ``folder`` (and its parents); the folders this made, deepest first. A folder that was
    there already is never among them, whatever the path calls it (``new/../old``: ``old``).

    Raises:
        CodecError: naming ``--out`` if it cannot be made.
    """
    from codec.batch import file_identity

    paths = (folder, *folder.parents)
    # where each path leads now, as far as it exists (realpath keeps "missing/.." from hiding it)
    before = {file_identity(Path(os.path.realpath(p))) for p in paths} - {None}
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:   # (where os.access could not tell: /proc, a full disk)
        raise CodecError(f"--out {folder}: cannot create the folder ({error.strerror or error})") from None
    return [p for p in paths if file_identity(p) is not None and file_identity(p) not in before]


@app.command()
@user_errors
def export(
    model: Annotated[str | None, typer.Argument(
        metavar="MODEL", help="Shipped or installed model name (see codec models) or model directory "
                              "\\[default: esc-16k-small].",
        show_default=False)] = None,
    format: Annotated[str, typer.Option("--format", help="Export format: onnx (in any case).")] = "onnx",
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.", **NON_EMPTY_PATH)] = Path("exported"),
    int8: Annotated[bool, typer.Option("--int8", help="8-bit weights for the encoder and decoder (conv-16k: "
                                       "1.6-2x as fast per frame on one CPU thread, same PESQ; "
                                       "esc-16k-small: little or no faster; see the README).")] = False,
    bitrate: Annotated[float | None, typer.Option(
        "--bitrate", "-b", show_default=False,
        help="Export only the graphs of this bitrate in kbps (its encoder graph and the decoder: "
             "esc-16k-small in half the time and 14 of 33 MB) \\[default: every bitrate].")] = None,
    force: FolderForceOption = False,
    model_option: Annotated[str | None, typer.Option(
        "--model", "-m", help="The model, as the other commands take it (or give it as MODEL).")] = None,
) -> None:
    """Export a model for CPU streaming: encoder and decoder step graphs with explicit state."""
    from codec.atomic import same_file
    from codec.models import load_model
    from codec.onnx.export import export_format, export_onnx

    if model is not None and model_option is not None and model != model_option \
            and not same_file(model, model_option):   # (the same folder spelt two ways is one model)
        raise CodecError(f"two models given: {model} (MODEL) and {model_option} (--model); give one")
    model = model if model is not None else model_option
    export_format(format)   # onnx, in any case
    _check_out_folder(out, "the export writes a folder of graphs; name a folder")
    # (an export's hidden staging folder does not count: one killed outright leaves it, and the
    # export removes it once it is an hour old)
    if out.exists() and set(out.iterdir()) - set(out.glob(".export.*.partial")) and not force:
        raise CodecError(f"{out} exists and is not empty; pass --force to overwrite its files")
    if not out.parent.is_dir():   # as encode and decode: a typo in the path does not grow a tree of folders
        raise CodecError(f"--out {out}: {out.parent} is a file, not a folder" if out.parent.exists() else
                         f"--out {out}: no such folder for it ({out.parent})")
    loaded = load_model(model)
    num_codebooks = None
    if bitrate is not None:
        try:
            num_codebooks = loaded.codebooks_for_bitrate(bitrate)
        except ValueError as error:
            raise CodecError(f"--bitrate: {error}") from None
    earlier = _exported_graphs(out)
    export_onnx(loaded, out, int8=int8, num_codebooks=num_codebooks)
    written = _exported_graphs(out)
    for stale in earlier - written:   # an earlier export's graphs that this model has not: not a mixed folder
        (out / stale).unlink(missing_ok=True)
    stderr.print(f"wrote {', '.join(sorted(['codec.json', *written]))} to {out}")


def _exported_graphs(folder: Path) -> set[str]:
    """The graph files that ``folder``'s ``codec.json`` lists (none if it has no readable one)."""
    try:
        graphs = json.loads((folder / "codec.json").read_text())["graphs"].values()
        return {Path(g["file"]).name for g in graphs}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return set()


@app.command()
@user_errors
@model_option_hint
def stream(
    input: Annotated[Path | None, typer.Option("--input", "-i", readable=False, **NON_EMPTY_PATH,
                                               help="Stream this file in real time instead of the microphone.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Record the decoded audio to a file.",
                                                **NON_EMPTY_PATH)] = None,
    play: Annotated[bool, typer.Option("--play/--no-play", help="Play the decoded audio on the speaker "
                                                                "\\[default: play unless --output is given].")] = None,
    bitrate: BitrateOption = None,
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="Shipped or installed model name (see codec models) or model directory "
                              "\\[default: esc-16k-small].")] = None,
    runtime: Annotated[str | None, typer.Option(
        help="Inference runtime: onnx (onnxruntime, about twice as fast as torch on one CPU thread; the "
             "model is exported at its first stream and kept in the folder onnx of $CODEC_CACHE_DIR, "
             "else of $XDG_CACHE_HOME/codec or ~/.cache/codec), "
             "onnx-int8 (8-bit weights: faster still for conv-16k), or torch \\[default: onnx; torch for a "
             "model with a global code].", show_default=False)] = None,
    device: Annotated[str | None, typer.Option(help="Audio device (index or name substring) for the "
                                                    "microphone and the speaker; see --list-devices.")] = None,
    list_devices: Annotated[bool, typer.Option("--list-devices", help="List audio devices and exit.")] = False,
    save: Annotated[Path | None, typer.Option(help="Save the packet stream as sent, before any --packet-loss "
                                                   "(decodable with codec decode).", **NON_EMPTY_PATH)] = None,
    packet_loss: Annotated[float, typer.Option(help="Simulate losing this fraction of packets, in [0, 1).")] = 0.0,
    realtime: Annotated[bool, typer.Option("--realtime/--fast", help="Pace --input at real time.")] = True,
    threads: Annotated[int, typer.Option(help="Inference threads.")] = 1,
    entropy: Annotated[bool, typer.Option("--entropy", help="Range-code each packet with the model's entropy "
                                          "model (needs several frames per packet to pay off).")] = False,
    packet_frames: Annotated[int | None, typer.Option(
        "--packet-frames", help="Code frames (20 ms each) per packet; each frame beyond the first adds 20 ms "
                                "of latency \\[default: 1, or 10 with --entropy].")] = None,
    global_refresh: Annotated[float | None, typer.Option(
        "--global-refresh", help="Models with a time-invariant global code (TiCodec): recompute and resend it "
                                 "every this many seconds \\[default: sent once, from the first seconds].",
        show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite the --output and --save files.")] = False,
) -> None:
    """Real time: microphone (or --input) -> encode -> packets -> decode -> speaker (or --output)."""
    from codec.live import run_stream_command

    stats = run_stream_command(input=input, output=output, play=play, bitrate=bitrate, model=model, runtime=runtime,
                               device=device, list_devices=list_devices, save=save, packet_loss=packet_loss,
                               realtime=realtime, force=force, console=stderr, threads=threads, entropy=entropy,
                               packet_frames=packet_frames, global_refresh=global_refresh)
    # Ctrl-C is how a live stream ends (exit 0); a file's stream cut short by it, or any stream by
    # SIGTERM or SIGHUP, exits 128 + the signal, so that a script can tell it from a whole one
    if stats is not None and stats.interrupted and (stats.stop_signal != signal.SIGINT or input is not None):
        raise typer.Exit(128 + stats.stop_signal)


@app.command()
@user_errors
def train(
    recipe: Annotated[str, typer.Argument(   # (a str: a Path would drop the "./" of ./tiny.yaml)
        metavar="RECIPE", show_default=False,
        help="Recipe YAML (e.g. recipes/conv_16k.yaml), or a shipped recipe's name (conv_16k).")],
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the run's checkpoint.")] = False,
    override: Annotated[list[str] | None, typer.Option(
        "--override", "-o", help="Change a recipe value: section.key=value (repeatable).")] = None,
) -> None:
    """Train a codec (or an entropy model) from a recipe; checkpoints and the model go to run.out_dir.

    On your own speech (a folder, a file or a manifest): codec train esc_16k_small_finetune -o
    data.train_dir=my_audio/ fine-tunes the default model (about 26 minutes on one CPU thread);
    codec train tiny -o data.train_dir=my_audio/ -o run.max_steps=200 trains a small test model in a
    minute. The run folder (run.out_dir) gets model/ (codec encode --model RUN/model), checkpoint.pt,
    train.log, resolved_recipe.yaml and tensorboard/; Ctrl-C keeps a checkpoint, and codec train
    RUN/resolved_recipe.yaml --resume goes on with the values the run was started with. The recipes
    and their keys: the README's Training section and recipes/."""
    from codec.train import load_recipe, train_any
    from codec.train.recipe import overridden_twice

    for line in overridden_twice(override or []):
        stderr.print(f"warning: {line}", soft_wrap=True)
    try:
        train_any(load_recipe(recipe, override or []), resume=resume, console=stderr)
    except TrainingStopped as stopped:   # saved, but not finished: a script can tell the two apart
        raise typer.Exit(128 + stopped.signum) from None


def _escape_undecodable(error: UnicodeEncodeError) -> tuple[str, int]:
    """What stderr cannot encode in the locale's encoding, escaped as ``_escaped`` says."""
    return "".join(map(_escaped, error.object[error.start:error.end])), error.end


def _raw_or_escaped(error: UnicodeEncodeError) -> tuple[bytes, int]:
    """What stdout cannot encode: a file name's undecodable byte (a lone surrogate, PEP 383) as that
    byte, raw, for the programs reading stdout; any other character (``ä`` where stdout is ASCII)
    escaped as ``_escaped`` says, rather than failing the command."""
    text = error.object[error.start:error.end]
    return b"".join(bytes([ord(char) - 0xDC00]) if 0xDC80 <= ord(char) <= 0xDCFF else _escaped(char).encode()
                    for char in text), error.end


def _show_names_readably() -> None:
    """Messages on stderr escape such bytes; stdout keeps writing them raw, for the programs reading it."""
    codecs.register_error("codec-escape-names", _escape_undecodable)
    codecs.register_error("codec-raw-or-escaped", _raw_or_escaped)
    if hasattr(sys.stderr, "reconfigure"):  # not when replaced by a test runner's capture
        sys.stderr.reconfigure(errors="codec-escape-names")
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="codec-raw-or-escaped")


def run() -> None:
    """Console-script entry point."""
    reserve_closed_std_streams()
    stop_on_termination()
    _show_names_readably()
    stdout_was_null = _stdout_is_null()
    try:
        app()
        code = 0
    except SystemExit as exit:
        code = exit.code
        if code == 1 and not _stdout_failed and _help_saw_a_broken_pipe(stdout_was_null):
            code = 141
    except OSError as error:   # outside the commands' own handling: --help, --version, completion
        code = _output_failed(error)
    try:   # what is still buffered for stdout (--version, a table) goes now, not at exit with a traceback
        sys.stdout.flush()
    except OSError as error:
        code = _output_failed(error)
    ignore_stopping_signals()   # (a second Ctrl-C now would only print a traceback from an atexit callback)
    sys.exit(code)


def _stdout_is_null() -> bool:
    try:
        return os.path.samestat(os.fstat(sys.stdout.fileno()), os.stat(os.devnull))
    except (OSError, ValueError):
        return False


def _help_saw_a_broken_pipe(stdout_was_null: bool) -> bool:
    """Whether --help or --version exited 1 because stdout's reader went away, where Unix tools exit 141.

    Their output is not the commands' own: click's handler then wraps stdout to keep later flushes
    quiet, and rich's (help pages) points stdout at /dev/null; both exit 1.
    """
    return type(sys.stdout).__name__ == "PacifyFlushWrapper" or (not stdout_was_null and _stdout_is_null())


def _output_failed(error: OSError) -> int:
    """The exit code for stdout that cannot be written: 141 (SIGPIPE's) when its reader went away,
    quietly, as Unix tools do; else 1, with the reason (a full disk). Later writes go to /dev/null."""
    discard_output()
    if isinstance(error, BrokenPipeError):
        return 141
    try:
        stderr.print(f"error: {_stdout_failure(error)}", soft_wrap=True)
    except OSError:
        pass
    return 1


if __name__ == "__main__":  # python -m codec.cli.main (spawned batch workers import this as __mp_main__)
    run()
