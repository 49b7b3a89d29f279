"""Thread counts held at one thread by several Python threads at once."""

import threading
import time

import torch
from threadpoolctl import threadpool_info

from codec.entropy.coding import fixed_numerics
from codec.threads import one_torch_thread


def _blas_threads() -> list[int]:
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_entropy_coding_threads_take_turns_with_the_blas_limit():
    """OpenBLAS's count is the whole process's: a second thread waits for the first to restore it
    (callers that each save and restore on their own can leave it at 1 for good)."""
    before = _blas_threads()
    a_in, b_tried, b_in = threading.Event(), threading.Event(), threading.Event()
    seen_by_a = []

    def a():
        with fixed_numerics():
            a_in.set()
            b_tried.wait(10)
            time.sleep(0.2)
            seen_by_a.append(b_in.is_set())   # B must not be inside yet

    def b():
        a_in.wait(10)
        b_tried.set()
        with fixed_numerics():
            b_in.set()

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert seen_by_a == [False] and b_in.is_set()
    assert _blas_threads() == before


def test_one_torch_thread_restores_the_count():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with one_torch_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
