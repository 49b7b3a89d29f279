"""SIGTERM and SIGHUP stop a command as Ctrl-C does: an exception, so that every ``finally``
removes its temporary files (``timeout``, a CI cancel, systemd and ``kill`` send SIGTERM; closing
a terminal sends SIGHUP). Python's default for them ends the process at once, leaving those files."""

import signal

STOPPING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Terminated(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM or SIGHUP; ``signum`` is the signal (exit 128 + it).
    A KeyboardInterrupt, so that code which cleans up after Ctrl-C cleans up after it too."""

    def __init__(self, signum: int):
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = signum


def _raise_terminated(signum, _frame) -> None:
    raise Terminated(signum)


def _exit(signum, _frame) -> None:
    raise SystemExit(128 + signum)


def stop_on_termination(worker: bool = False) -> None:
    """Make SIGTERM and SIGHUP raise ``Terminated`` in this process (call from the main thread);
    in a ``worker`` process, SystemExit (which its pool ends quietly, without a traceback)."""
    for signum in STOPPING_SIGNALS:
        signal.signal(signum, _exit if worker else _raise_terminated)
