"""The exception types that the CLI turns into a one-line error message, and the nearest name
that such a message offers for a misspelt one."""

import difflib
from collections.abc import Iterable


class CodecError(Exception):
    """A problem the user can fix: bad input file, wrong option value, corrupt ``.codes`` file.

    The message names the file or value and what is supported; the CLI prints it on one line
    and exits non-zero, without a traceback.
    """


class ModelNotFoundError(CodecError):
    """No model directory and no shipped model has the name given. The message leaves out how to
    name a model, which differs between the CLI (``--model``) and a script's argument;
    ``is_folder`` says the name was a folder (one without a model's config), not a missing name."""

    def __init__(self, message: str, is_folder: bool = False):
        super().__init__(message)
        self.is_folder = is_folder

    def for_model_option(self) -> str:
        """The message for a command that takes the model with ``--model``: for a name that is no
        folder, how to pass a trained model's folder."""
        if self.is_folder:
            return str(self)
        return f"{self}; for a model you trained, pass its directory with --model (e.g. runs/NAME/model)"


def nearest_name(asked: str, names: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The one of ``names`` nearest to ``asked`` in spelling, case aside (for "did you mean ...?"
    in an error), or None where none is as near as ``cutoff`` (difflib's similarity ratio)."""
    lowered = {name.lower(): name for name in names}
    close = difflib.get_close_matches(asked.lower(), list(lowered), n=1, cutoff=cutoff)
    return lowered[close[0]] if close else None


class TrainingStopped(Exception):
    """A training run stopped early by a signal (Ctrl-C: SIGINT, or SIGTERM), after saving its
    checkpoint and model: not an error, but not a finished run either. The CLI exits with
    128 + ``signum``, as a shell reports a program stopped by that signal."""

    def __init__(self, signum: int, checkpoint: str):
        super().__init__(f"stopped by signal {signum}; checkpoint {checkpoint}")
        self.signum = signum


def os_error_message(error: OSError) -> str:
    """One line for a failed file operation: the file it names, then the system's reason."""
    return f"{error.filename or ''}: {error.strerror or error}".lstrip(": ")


_LONGEST_DETAIL = 500   # characters of an internal error's own message that are shown


def out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocation that failed: Python's MemoryError, or PyTorch's CPU
    allocator's RuntimeError (which it raises instead)."""
    return isinstance(error, MemoryError) or (
        isinstance(error, RuntimeError) and "DefaultCPUAllocator" in str(error))


def internal_error_message(error: Exception) -> str:
    """The one line shown for a bug (not the user's fault), in the CLI and ``python -m codec.train``;
    for memory that ran out (not a bug either) a line that says so."""
    if out_of_memory(error):
        detail = str(error)[:_LONGEST_DETAIL]
        return (f"out of memory{f' ({detail})' if detail else ''}: close other programs, or code fewer or "
                f"shorter files (or fewer output channels) at a time")
    text = str(error)
    if len(text) > _LONGEST_DETAIL:   # some libraries put a whole graph or array in their message
        text = f"{text[:_LONGEST_DETAIL]}... ({len(text) - _LONGEST_DETAIL} characters more)"
    kind = type(error)
    generic = kind.__name__ == kind.__name__.lower() or kind.__name__ == "Error"   # (struct.error, shutil.Error)
    name = f"{kind.__module__}.{kind.__name__}" if generic and kind.__module__ != "builtins" else kind.__name__
    return f"internal error: {name}: {text} (set CODEC_DEBUG=1 for the traceback)"
