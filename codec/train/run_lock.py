"""One training run per run folder: two runs writing one ``run.out_dir`` would interleave their
``train.log`` and overwrite each other's checkpoint and model."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from codec.atomic import require_utf8_path
from codec.errors import CodecError

try:
    import fcntl
except ImportError:   # (not POSIX: runs are not locked)
    fcntl = None


@contextmanager
def run_folder_lock(out_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``out_dir`` (created if missing, and removed again if the run
    leaves it empty) for the duration of the run. Only the process that writes the folder (rank
    0 under torchrun) takes it; the lock goes with the process, so a killed run leaves none.

    Raises:
        CodecError: if another run holds the folder, or it cannot be created or written.
    """
    if int(os.environ.get("RANK", "0")) != 0 or (out_dir.exists() and not out_dir.is_dir()):
        yield   # (a file in the way is named by the run's own checks)
        return
    # the folders this run makes (out_dir and any missing parents), innermost first
    created = [folder for folder in (out_dir, *out_dir.parents) if not folder.exists()]
    try:
        _make_writable_folder(out_dir)
        if fcntl is None:
            yield
            return
        handle = os.open(out_dir, os.O_RDONLY)
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise CodecError(f"run.out_dir={out_dir} is in use by another training run; wait for it to end, "
                                 f"or set another run.out_dir") from None
            yield
        finally:
            os.close(handle)   # (releases the lock)
    finally:
        for folder in created:   # only those the run left empty (a recipe error, say), innermost first
            try:
                folder.rmdir()
            except OSError:
                break


def _make_writable_folder(out_dir: Path) -> None:
    """Create ``out_dir`` (and its parents) if missing, and check that files can be written in it,
    before any work: a run that cannot save its checkpoint would lose it all.

    Raises:
        CodecError: naming ``run.out_dir`` and why (a file where a folder should be, no permission,
            a read-only disk).
    """
    require_utf8_path(out_dir, f"recipe value run.out_dir={out_dir}", "the TensorBoard log writer")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as error:
        blocking = next((folder for folder in (out_dir, *out_dir.parents) if folder.exists()), None)
        reason = f"{blocking} is a file, not a folder" if blocking is not None and not blocking.is_dir() \
            else error.strerror or str(error)
        raise CodecError(f"recipe value run.out_dir={out_dir}: cannot write a run there ({reason}); give a folder "
                         f"that can be written") from None
