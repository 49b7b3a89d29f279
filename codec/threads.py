"""Numeric thread counts, held at one thread for a block of work."""

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_TORCH_TURN = threading.RLock()


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run the block on one torch intra-op thread, then restore the previous count (batch workers
    are the parallelism; building a model only to read its shapes needs no more). Whether torch's
    count is each OS thread's own or the process's depends on its build (OpenMP's is partly
    both), so callers from several threads take turns, as ``one_blas_thread``'s do."""
    import torch

    with _TORCH_TURN:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)


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
