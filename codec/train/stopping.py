"""Stopping a training run cleanly: Ctrl-C (SIGINT) or SIGTERM ends it after the step in progress,
so that its checkpoint and model are saved; a second Ctrl-C stops at once, without saving."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager


def signal_name(signum: int) -> str:
    return "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"


@contextmanager
def stop_after_step() -> Iterator[list[int]]:
    """Yields a list that the signals received while inside are appended to (their numbers); the
    training loop ends when it is not empty. The process gets its own handlers back on leaving.

    A SIGINT that the launching shell ignores (as for a background job) stays ignored.
    """
    stop_requested: list[int] = []

    def stop_at_step_end(signum, frame) -> None:
        stop_requested.append(signum)
        if signum == signal.SIGINT:   # a second Ctrl-C stops at once (without saving)
            signal.signal(signal.SIGINT, signal.default_int_handler)

    signals = [signal.SIGTERM] + ([signal.SIGINT] if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN else [])
    previous_handlers = {signum: signal.signal(signum, stop_at_step_end) for signum in signals}
    try:
        yield stop_requested
    finally:
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)
