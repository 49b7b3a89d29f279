"""Writing a file so that a reader or a crash never sees half of it."""

import os
import stat
from collections.abc import Callable
from pathlib import Path

from codec.errors import CodecError


def final_path(path: Path) -> Path:
    """The file that writing ``path`` replaces: a symbolic link's target, so that the link stays."""
    return path.resolve() if path.is_symlink() else path


def partial_path(path: Path) -> Path:
    """The temporary file beside ``path`` (a link's target) that its content goes to until it is complete."""
    path = final_path(path)
    return path.with_name(f".{path.name}.partial{path.suffix}")


def create_partial(path: Path) -> Path:
    """Create ``path``'s temporary file, empty, and return it: a missing folder or a permission
    fails here with the system's reason (libsndfile would say only "System error").

    Raises:
        CodecError: naming ``path`` (not the temporary file) and the reason.
    """
    tmp = partial_path(path)
    try:
        tmp.open("wb").close()
    except OSError as error:
        raise CodecError(f"{path}: cannot write ({error.strerror or error})") from None
    return tmp


def replace_with_partial(tmp: Path, path: Path) -> None:
    """Rename the complete temporary file ``tmp`` over ``path`` (a link's target), with the
    permissions of the file it replaces: overwriting a private file keeps it private.

    Raises:
        OSError: if the rename fails.
    """
    final = final_path(path)
    if final.exists():
        os.chmod(tmp, stat.S_IMODE(final.stat().st_mode))
    tmp.replace(final)


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file beside ``path``, then rename it over ``path``: an error or
    Ctrl-C never leaves half a file and never destroys the old one, and a reader (a running
    ``codec --model``, a packer) sees the old file or the new one.

    Raises:
        CodecError: naming ``path`` (not the temporary file) if writing fails.
    """
    tmp = create_partial(path)
    try:
        write(tmp)
        replace_with_partial(tmp, path)
    except OSError as error:
        raise CodecError(f"{path}: cannot write ({error.strerror or error})") from None
    finally:
        tmp.unlink(missing_ok=True)
