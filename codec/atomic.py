"""Writing a file so that a reader or a crash never sees half of it."""

from collections.abc import Callable
from pathlib import Path

from codec.errors import CodecError


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file beside ``path``, then rename it over ``path``: an error or
    Ctrl-C never leaves half a file and never destroys the old one, and a reader (a running
    ``codec --model``, a packer) sees the old file or the new one.

    Raises:
        CodecError: naming ``path`` (not the temporary file) if writing fails.
    """
    tmp = path.with_name(f".{path.name}.partial{path.suffix}")
    try:
        write(tmp)
        tmp.replace(path)
    except OSError as error:
        raise CodecError(f"{path}: cannot write ({error.strerror or error})") from None
    finally:
        tmp.unlink(missing_ok=True)
