"""Writing a file so that a reader or a crash never sees half of it."""

import errno
import glob
import os
import resource
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

from codec.errors import CodecError


def write_limit_reached(path: Path) -> str | None:
    """Why writing ``path`` failed, where a limit explains it: "No space left on device" if the disk of
    ``path``'s folder is (nearly) full, or the process's file-size limit (``ulimit -f``) if it has one;
    else None. libsndfile reports a failed write as "System error", and torch.save as "unexpected
    pos", without the reason."""
    try:
        stats = os.statvfs(path.parent)
    except OSError:
        stats = None
    if stats is not None and stats.f_bavail * stats.f_frsize < 1 << 20:
        return "No space left on device"
    size_limit, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    if size_limit != resource.RLIM_INFINITY:
        return f"File too large: this process may write files of at most {size_limit} bytes (ulimit -f)"
    return None


def require_utf8_path(folder: Path, what: str, writer: str) -> None:
    """For writers that take a path only as UTF-8 text (ONNX's exporter, TensorBoard's): refuse a
    ``folder`` whose absolute path holds bytes that are not UTF-8 (a name Linux allows, which
    Python reads into lone surrogates) before any work, naming it as ``what``.

    Raises:
        CodecError: for such a folder.
    """
    try:
        str(folder.absolute()).encode("utf-8")
    except UnicodeEncodeError:
        raise CodecError(f"{what}: {writer} needs a folder whose path is UTF-8 text, and this one holds bytes "
                         f"that are not; use another folder (and move the result afterwards)") from None


def final_path(path: Path) -> Path:
    """The file that writing ``path`` replaces: a symbolic link's target, so that the link stays."""
    return path.resolve() if path.is_symlink() else path


# Room in a 255-byte file name for the dot, the random part and ".partial" around the kept parts.
_KEPT_NAME_BYTES = 200
_KEPT_SUFFIX_BYTES = 16


def _partial_name_parts(final: Path) -> tuple[str, str]:
    """A temporary file's name for ``final`` around its random part: ``(".NAME.", ".partial.SUFFIX")``."""
    name = os.fsencode(final.name)[:_KEPT_NAME_BYTES].decode(errors="ignore")
    suffix = final.suffix if len(os.fsencode(final.suffix)) <= _KEPT_SUFFIX_BYTES else ""
    return f".{name}.", f".partial{suffix}"


def create_partial(path: Path) -> Path:
    """Create an empty temporary file beside ``path`` (a link's target) for its content until it
    is complete, and return it. Its name is unique (``.NAME.RANDOM.partial.SUFFIX``), so two
    writers of one output never share it and no user file is replaced; the suffix is kept for
    writers that choose a format by it. A missing folder or a permission fails here with the
    system's reason (libsndfile would say only "System error").

    Raises:
        CodecError: naming ``path`` (not the temporary file) and the reason.
    """
    final = final_path(path)
    head, tail = _partial_name_parts(final)
    while True:
        tmp = final.with_name(f"{head}{secrets.token_hex(4)}{tail}")
        try:
            tmp.open("xb").close()   # exclusive: never another's file; the umask sets its mode
            return tmp
        except FileExistsError:
            continue
        except OSError as error:
            raise CodecError(f"{path}: cannot write ({error.strerror or error})") from None


def remove_partials(path: Path) -> None:
    """Remove the temporary files of ``path`` (``create_partial``'s names) that a writer killed
    outright (SIGKILL, out of memory) left behind; call only when no one else writes ``path``."""
    final = final_path(path)
    head, tail = _partial_name_parts(final)
    for leftover in final.parent.glob(glob.escape(head) + "[0-9a-f]" * 8 + glob.escape(tail)):
        leftover.unlink(missing_ok=True)


def replace_with_partial(tmp: Path, path: Path, overwrite: bool = True) -> None:
    """Rename the complete temporary file ``tmp`` over ``path`` (a link's target), with the
    permissions of the file it replaces: overwriting a private file keeps it private. Without
    ``overwrite``, a file that appeared at ``path`` since the caller checked (another run, the
    user) is kept: ``tmp`` is hard-linked there only if nothing is.

    Raises:
        CodecError: without ``overwrite``, if ``path`` exists now.
        OSError: if the rename fails.
    """
    final = final_path(path)
    if not overwrite:
        try:
            os.link(tmp, final)   # atomic, and never over an existing file
        except FileExistsError:
            raise CodecError(f"{path} exists (it appeared while this ran); pass --force to overwrite it") from None
        except OSError as error:   # a file system without hard links: the check at the start must do
            if error.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK):
                raise
        else:
            tmp.unlink()
            return
    if final.exists():
        os.chmod(tmp, stat.S_IMODE(final.stat().st_mode))
    tmp.replace(final)


def write_atomically(path: Path, write: Callable[[Path], None], overwrite: bool = True) -> None:
    """Write through a temporary file beside ``path``, then rename it over ``path``: an error or
    Ctrl-C never leaves half a file and never destroys the old one, and a reader (a running
    ``codec --model``, a packer) sees the old file or the new one. ``overwrite=False``: see
    ``replace_with_partial``.

    Raises:
        CodecError: naming ``path`` (not the temporary file) if writing fails, or without
            ``overwrite`` if ``path`` exists by then.
    """
    tmp = create_partial(path)
    try:
        write(tmp)
        replace_with_partial(tmp, path, overwrite)
    except OSError as error:
        raise CodecError(f"{path}: cannot write ({error.strerror or error})") from None
    except RuntimeError:   # torch.save's "[enforce fail ...] unexpected pos" when the disk filled up
        if limit := write_limit_reached(tmp):
            raise CodecError(f"{path}: cannot write ({limit})") from None
        raise
    finally:
        tmp.unlink(missing_ok=True)


def same_file(first: Path | str, second: Path | str) -> bool:
    """Whether both paths name one existing file (same device and inode)."""
    try:
        return os.path.samefile(first, second)
    except OSError:
        return False
