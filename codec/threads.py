"""Numeric thread counts, held at a chosen count for a block of work."""

import functools
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from codec.errors import CodecError

_TORCH_TURN = threading.RLock()


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity where the OS reports one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # macOS, Windows
        return os.cpu_count() or 1


def check_threads(count: int, option: str = "--threads") -> int:
    """``count`` as a thread count for ``option``: 1 to the usable cores (more only compete for
    them, and a count in the thousands made torch hang starting its threads).

    Raises:
        CodecError: naming ``option``, the value and the range.
    """
    cores = usable_cores()
    if not 1 <= count <= cores:
        raise CodecError(f"{option} {count}: must be 1 to {cores} (the CPU cores this process may use)")
    return count


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block on ``count`` torch intra-op threads, then restore the previous count. Whether
    torch's count is each OS thread's own or the process's depends on its build (OpenMP's is
    partly both), so callers from several threads take turns, as ``one_blas_thread``'s do."""
    import torch

    with _TORCH_TURN:
        threads = torch.get_num_threads()
        torch.set_num_threads(count)
        try:
            yield
        finally:
            torch.set_num_threads(threads)


def one_torch_thread():
    """``torch_threads(1)``: for batch workers (they are the parallelism) and for building a model
    only to read its shapes."""
    return torch_threads(1)


@functools.cache
def _thread_pools():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()   # finds the BLAS libraries once (0.5 ms), not per chunk or packet


_BLAS_TURN = threading.RLock()


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run the block on one BLAS thread (the fixed numeric setup of entropy coding), then restore
    the previous limits. OpenBLAS keeps one count for the whole process, and setting it back works
    only from the thread that changed it: callers from several threads take turns (with each
    saving and restoring on its own, two interleaved ones left the process on one thread for good)."""
    with _BLAS_TURN, _thread_pools().limit(limits=1, user_api="blas"):
        yield
