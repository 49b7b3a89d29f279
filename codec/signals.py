"""SIGTERM, SIGHUP and SIGQUIT stop a command as Ctrl-C does: an exception, so that every
``finally`` removes its temporary files (``timeout``, a CI cancel, systemd and ``kill`` send
SIGTERM; closing a terminal sends SIGHUP; Ctrl-\\ sends SIGQUIT). Python's default for them ends
the process at once, leaving those files."""

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from codec.errors import CodecError

STOPPING_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


class Terminated(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM, SIGHUP or SIGQUIT; ``signum`` is the signal (exit 128 + it).
    A KeyboardInterrupt, so that code which cleans up after Ctrl-C cleans up after it too."""

    def __init__(self, signum: int):
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = signum


# signals raised as exceptions in this process, in order. Python drops an exception raised inside a
# weakref callback or __del__ (printing "Exception ignored in"), so a Ctrl-C there would be lost;
# a long task that installs its own handlers (training) first takes these as stop requests.
_raised: list[int] = []


def _raise_terminated(signum, _frame) -> None:
    _raised.append(signum)
    raise Terminated(signum)


def _raise_interrupt(signum, _frame) -> None:
    _raised.append(signum)
    raise KeyboardInterrupt


def take_raised() -> list[int]:
    """The signals raised as exceptions since the last call (by ``stop_on_termination``'s handlers).
    In a command, one whose exception did not end it was lost in a place that drops exceptions."""
    raised = list(_raised)
    _raised.clear()
    return raised


def _exit(signum, _frame) -> None:
    raise SystemExit(128 + signum)


def stop_on_termination(worker: bool = False) -> None:
    """Make SIGTERM, SIGHUP and SIGQUIT raise ``Terminated`` in this process, and SIGINT
    KeyboardInterrupt as before, each noted for ``take_raised`` (call from the main thread);
    in a ``worker`` process, SIGTERM raises SystemExit (which its pool ends quietly, without a
    traceback), and SIGHUP and SIGQUIT stay as ``children_ignore_group_signals`` left them."""
    for signum in (signal.SIGTERM,) if worker else STOPPING_SIGNALS:
        signal.signal(signum, _exit if worker else _raise_terminated)
    if not worker and signal.getsignal(signal.SIGINT) is signal.default_int_handler:   # (not when ignored)
        signal.signal(signal.SIGINT, _raise_interrupt)


def ignore_stopping_signals() -> None:
    """Ignore SIGINT and the stopping signals from now on where this module's handlers (or Python's
    Ctrl-C default) would raise: for a command that has ended, whose interpreter shuts down. An
    exception raised there (in an atexit callback) cannot stop anything any more, only print "Exception
    ignored in" with a traceback."""
    for signum in (signal.SIGINT, *STOPPING_SIGNALS):
        if signal.getsignal(signum) in (signal.default_int_handler, _raise_interrupt, _raise_terminated):
            signal.signal(signum, signal.SIG_IGN)


class HeldStop:
    """What ``held_stop_signals`` recorded: ``signum``, the first stopping signal that arrived
    while it held them (None: none did)."""

    signum: int | None = None


@contextmanager
def held_stop_signals() -> Iterator[HeldStop]:
    """While inside, SIGINT and the stopping signals whose handlers raise (Python's Ctrl-C default,
    ``stop_on_termination``'s) are recorded on the yielded ``HeldStop`` instead: a step that must
    not be cut in two (a live stream's block, between its packet and its audio) finishes, and its
    caller then stops as the signal asked. A second signal runs its own handler at once (the step
    may hang). Other handlers (ignored, default, an application's own) stay as they are; outside
    the main thread nothing is held."""
    held = HeldStop()
    if threading.current_thread() is not threading.main_thread():
        yield held
        return

    def record(signum, frame) -> None:
        if held.signum is not None:   # a second one: the step may hang (a stuck device), so stop now
            previous[signum](signum, frame)
        held.signum = signum

    previous = {}
    try:
        for signum in (signal.SIGINT, *STOPPING_SIGNALS):
            if signal.getsignal(signum) in (signal.default_int_handler, _raise_interrupt, _raise_terminated):
                previous[signum] = signal.signal(signum, record)
        yield held
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def children_ignore_group_signals() -> Iterator[None]:
    """While inside, processes started here (spawned workers, multiprocessing's resource tracker,
    started now if it is not running) inherit SIGINT, SIGHUP and SIGQUIT ignored. Ctrl-C, Ctrl-\\
    and a closed terminal signal a whole process group: only this process should react, and stop
    its workers with SIGTERM, instead of each printing a traceback (and the tracker dying, unnoticed)."""
    from multiprocessing import resource_tracker

    previous = {signum: signal.signal(signum, signal.SIG_IGN)
                for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)}
    try:
        resource_tracker.ensure_running()
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def starting_workers() -> Iterator[None]:
    """``children_ignore_group_signals`` around starting worker processes (a pool, its resource
    tracker, the submits that spawn its workers). An OSError there (a pipe to a process that could
    not start reads as a BrokenPipeError, which the CLI would take for a closed stdout and exit 141
    silently) is raised as a CodecError that names it.

    Raises:
        CodecError: if a worker process cannot be started.
    """
    try:
        with children_ignore_group_signals():
            yield
    except OSError as error:
        raise CodecError(f"cannot start worker processes ({error.strerror or error}); run with --jobs 1") from None


def terminate_workers(pool) -> None:
    """SIGTERM to a ``ProcessPoolExecutor``'s processes (after an error, Ctrl-C or SIGTERM here):
    they stop now, not after their current file."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.terminate()
