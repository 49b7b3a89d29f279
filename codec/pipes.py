"""``-`` for stdin and stdout: ``cat in.wav | codec encode - - | codec decode - out.wav``.

The coders need seekable files (audio headers, the ``.codes`` size check), so stdin is read
whole into a temporary file first, and an output to stdout is written to a temporary file
and then copied out. stdout carries only data; every message goes to stderr. Error messages
name ``stdin`` or ``stdout``, not the temporary files.
"""

import errno
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from codec.errors import CodecError

STDIO = "-"


# The standard file descriptors (0, 1, 2) that the process started without (``<&-``, ``>&-``).
_closed_at_start: set[int] = set()


def reserve_closed_std_streams() -> None:
    """Open /dev/null on each standard file descriptor the process started without, so that no
    file opened later takes its number (a library or a child process writing to "stderr" would
    write into it). stdin then reads nothing, stdout refuses writes (``EBADF``: a table or ``-``
    fails with a message, as ``cat >&-`` does) and stderr discards its messages (nowhere to go);
    ``stdin_file`` and ``stdout_file`` say that the stream is closed."""
    for fd, mode in ((0, os.O_RDONLY), (1, os.O_RDONLY), (2, os.O_WRONLY)):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, mode)   # the lowest free number: fd itself, unless a lower one is free too
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            _closed_at_start.add(fd)
    if 1 in _closed_at_start and sys.stdout is None:
        sys.stdout = open(1, "w", closefd=False)
    if 2 in _closed_at_start and sys.stderr is None:
        sys.stderr = open(2, "w", closefd=False)


def stdout_was_closed(error: OSError) -> bool:
    """Whether ``error`` is a write to the stdout the process started without (``codec models >&-``)."""
    return error.errno == errno.EBADF and 1 in _closed_at_start


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


def check_redirections(source: Path | str, output: Path | str) -> None:
    """Before stdin is read: refuse a redirection that makes the output overwrite the input
    (``codec decode a.codes - >> a.codes``, ``codec encode - a.flac --force < a.flac``), as a path
    given twice is refused.

    Raises:
        CodecError: naming the file.
    """
    if is_stdio(output) and not is_stdio(source) and _is_std_stream(1, Path(source)):
        if Path(source).stat().st_size == 0:   # the shell's > truncated it before this process started
            raise CodecError(f"{source}: stdout is redirected to this input file, which the shell's > "
                             f"emptied before codec started; redirect it to another file")
        raise CodecError(f"{source}: stdout is redirected to this input file, which the output would "
                         f"overwrite; redirect it to another file")
    if is_stdio(source) and not is_stdio(output) and _is_std_stream(0, Path(output)):
        raise CodecError(f"{output}: stdin is read from this file, which the output would overwrite; "
                         f"give another file name")
    if is_stdio(source) and is_stdio(output) and _same_regular_file(0, 1):
        raise CodecError("stdin and stdout are the same file, which the output would overwrite; "
                         "redirect stdout to another file")


# a process's open file by its number, once the folders above it are resolved (/dev/fd and
# /proc/self/fd lead here): /proc/PID/fd/N, and a thread's /proc/PID/task/TID/fd/N
_FILE_DESCRIPTOR = re.compile(r"/proc/[^/]+(/task/[^/]+)?/fd/[^/]+")
_STD_DEVICES = ("/dev/stdin", "/dev/stdout", "/dev/stderr")


def names_a_file_descriptor(path: Path | str) -> bool:
    """Whether ``path`` reaches a process's open file through its file descriptor: ``/dev/stdout``,
    ``/dev/fd/1``, ``/proc/self/fd/1``, or a link to one, by any route (``//dev/fd/1``, a link to
    ``/proc/self/fd`` as a folder). Through it, a file written beside the output and renamed over
    it would replace the file the shell opened (``>> log`` would lose the log), so such a path is
    refused, and ``-`` given instead. Other paths under ``/proc`` (``/proc/self/cwd/out.codes``) are not."""
    path = Path(path)
    try:
        for _ in range(40):   # (a loop of links: the caller's own check names it)
            path = Path(os.path.realpath(path.parent)) / path.name   # every folder above it resolved
            if str(path) in _STD_DEVICES or _FILE_DESCRIPTOR.fullmatch(str(path)):
                return True
            if not path.is_symlink():
                return False
            path = path.parent / os.readlink(path)
    except OSError:   # a folder it cannot look into: writing there names the reason
        return False
    return False


def _same_regular_file(fd: int, other: int) -> bool:
    """Whether file descriptors ``fd`` and ``other`` are one regular file (pipes and terminals
    shared by both are fine)."""
    try:
        first, second = os.fstat(fd), os.fstat(other)
    except OSError:
        return False
    return stat.S_ISREG(first.st_mode) and os.path.samestat(first, second)


def _is_std_stream(fd: int, path: Path) -> bool:
    """Whether the standard file descriptor ``fd`` is the file at ``path``."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:
        return False


@contextmanager
def _renamed_errors(path: Path, label: str, hints: dict[str, str] | None = None) -> Iterator[None]:
    """Re-raise a CodecError naming the temporary ``path`` with ``label`` in its place (and each
    of ``hints``' phrases replaced by its value)."""
    try:
        yield
    except CodecError as error:
        message = str(error).replace(str(path), label)
        for phrase, replacement in (hints or {}).items():
            message = message.replace(phrase, replacement)
        raise CodecError(message) from None


# stdout has no suffix to change: the formats it can take are --format's
_STDOUT_HINTS = {"write .wav (RF64) or .flac": "use --format wav or --format flac",
                 "write .wav or .aiff for float": "use --format wav or --format aiff for float",
                 "write .wav, .flac or .aiff, or leave the sample format out":
                     "use --format wav, flac or aiff, or leave --sample-format out",
                 "write .wav (RF64)": "use --format wav",
                 "write .wav or .flac": "use --format wav or --format flac",
                 "write .wav": "use --format wav", "decode it to .wav": "decode it with --format wav"}


@contextmanager
def stdin_file(name: str = "stdin", example: str = "codec encode - out.codes < in.wav") -> Iterator[Path]:
    """All of stdin in a temporary file (deleted afterwards); yields its path. ``example`` is the
    command the errors suggest.

    Raises:
        CodecError: if stdin is a terminal or empty.
    """
    source = sys.stdin
    if source is None or 0 in _closed_at_start:
        raise CodecError(f"stdin is closed; pipe the input in (e.g. {example})")
    if source.isatty():
        raise CodecError(f"stdin is a terminal; pipe the input in (e.g. {example})")
    with tempfile.TemporaryDirectory(prefix="codec-") as folder:
        path = Path(folder) / name
        _copy_stdin(source.buffer, path)
        if path.stat().st_size == 0:
            raise CodecError(f"stdin is empty; pipe the input in (e.g. {example})")
        with _renamed_errors(path, "stdin"):
            yield path


def _copy_stdin(source, path: Path) -> None:
    """Copy ``source`` (stdin's bytes) to the file ``path``; a failure names the side that failed.

    Raises:
        CodecError: if stdin cannot be read (a folder redirected in) or the copy not written (a
            full temporary folder).
    """
    with open(path, "wb", buffering=0) as sink:   # unbuffered: a failed write fails here, not at close
        while True:
            try:
                chunk = source.read(1 << 20)
            except OSError as error:
                raise CodecError(f"stdin: cannot read it ({error.strerror or error})") from None
            if not chunk:
                return
            try:
                rest = memoryview(chunk)
                while rest:   # an unbuffered write may take part of it
                    rest = rest[sink.write(rest):]
            except OSError as error:
                raise CodecError(f"stdin: cannot keep it in the temporary folder {tempfile.gettempdir()} "
                                 f"({error.strerror or error}); set TMPDIR to a folder with room") from None


@contextmanager
def stdout_file(suffix: str) -> Iterator[Path]:
    """A temporary path ending in ``suffix`` to write to; once the block succeeds, its bytes are
    copied to stdout. Nothing reaches stdout if the block fails.

    Raises:
        CodecError: if stdout is a terminal (binary data would garble it).
    """
    sink = sys.stdout
    if sink is None or 1 in _closed_at_start:   # started with stdout closed (>&-)
        raise CodecError("stdout is closed; redirect it to a file (> out) or pipe it to a program")
    if sink.isatty():
        raise CodecError("stdout is a terminal; redirect it to a file (> out) or pipe it to a program")
    with tempfile.TemporaryDirectory(prefix="codec-") as folder:
        path = Path(folder) / f"stdout{suffix}"
        try:
            with _renamed_errors(path, "stdout", _STDOUT_HINTS):
                yield path
        except CodecError as error:
            if os.strerror(errno.ENOSPC) not in str(error):
                raise
            raise CodecError(f"{error}; stdout is written to the temporary folder {tempfile.gettempdir()} first, "
                             f"and that is full: set TMPDIR to a folder with room") from None
        try:
            sink.flush()
            with open(path, "rb") as source:
                shutil.copyfileobj(source, sink.buffer)
            sink.buffer.flush()
        except BrokenPipeError:   # the reader left: handled as a closed pipe, as for any program
            raise
        except OSError as error:  # a full disk behind > out, say
            raise CodecError(f"stdout: cannot write ({error.strerror or error})") from None
