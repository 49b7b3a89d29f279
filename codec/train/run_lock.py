"""One training run per run folder: two runs writing one ``run.out_dir`` would interleave their
``train.log`` and overwrite each other's checkpoint and model."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
        CodecError: if another run holds the folder.
    """
    if fcntl is None or int(os.environ.get("RANK", "0")) != 0 or (out_dir.exists() and not out_dir.is_dir()):
        yield   # (a file in the way is named by the run's own checks)
        return
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
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
        if created:
            try:
                out_dir.rmdir()   # only if the run wrote nothing (a recipe error, say)
            except OSError:
                pass
