"""``-`` for stdin and stdout: ``cat in.wav | codec encode - - | codec decode - out.wav``.

The coders need seekable files (audio headers, the ``.codes`` size check), so stdin is read
whole into a temporary file first, and an output to stdout is written to a temporary file
and then copied out. stdout carries only data; every message goes to stderr. Error messages
name ``stdin`` or ``stdout``, not the temporary files.
"""

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from codec.errors import CodecError

STDIO = "-"


def discard_output(stream=None) -> None:
    """Point ``stream``'s file descriptor (default stdout) at /dev/null, so that what is still
    buffered for a reader that went away, or a full disk, goes nowhere at exit instead of raising
    again. Does nothing for a stream without a descriptor (one replaced in-process, as in tests)."""
    stream = sys.stdout if stream is None else stream
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def is_stdio(path: Path | str | None) -> bool:
    """Whether a path argument is ``-`` (stdin for an input, stdout for an output)."""
    return path is not None and str(path) == STDIO


@contextmanager
def _renamed_errors(path: Path, label: str) -> Iterator[None]:
    """Re-raise a CodecError naming the temporary ``path`` with ``label`` in its place."""
    try:
        yield
    except CodecError as error:
        raise CodecError(str(error).replace(str(path), label)) from None


@contextmanager
def stdin_file(name: str = "stdin", example: str = "codec encode - out.codes < in.wav") -> Iterator[Path]:
    """All of stdin in a temporary file (deleted afterwards); yields its path. ``example`` is the
    command the errors suggest.

    Raises:
        CodecError: if stdin is a terminal or empty.
    """
    source = sys.stdin
    if source is None or source.isatty():
        raise CodecError(f"stdin is a terminal; pipe the input in (e.g. {example})")
    with tempfile.TemporaryDirectory(prefix="codec-") as folder:
        path = Path(folder) / name
        with open(path, "wb") as sink:
            shutil.copyfileobj(source.buffer, sink)
        if path.stat().st_size == 0:
            raise CodecError(f"stdin is empty; pipe the input in (e.g. {example})")
        with _renamed_errors(path, "stdin"):
            yield path


@contextmanager
def stdout_file(suffix: str) -> Iterator[Path]:
    """A temporary path ending in ``suffix`` to write to; once the block succeeds, its bytes are
    copied to stdout. Nothing reaches stdout if the block fails.

    Raises:
        CodecError: if stdout is a terminal (binary data would garble it).
    """
    sink = sys.stdout
    if sink is None:   # started with stdout closed (>&-)
        raise CodecError("stdout is closed; redirect it to a file (> out) or pipe it to a program")
    if sink.isatty():
        raise CodecError("stdout is a terminal; redirect it to a file (> out) or pipe it to a program")
    with tempfile.TemporaryDirectory(prefix="codec-") as folder:
        path = Path(folder) / f"stdout{suffix}"
        with _renamed_errors(path, "stdout"):
            yield path
        try:
            sink.flush()
            with open(path, "rb") as source:
                shutil.copyfileobj(source, sink.buffer)
            sink.buffer.flush()
        except BrokenPipeError:   # the reader left: handled as a closed pipe, as for any program
            raise
        except OSError as error:  # a full disk behind > out, say
            raise CodecError(f"stdout: cannot write ({error.strerror or error})") from None
