"""Stopping a training run cleanly: Ctrl-C (SIGINT), SIGTERM or SIGHUP (a closed terminal) ends it
after the step in progress, so that its checkpoint and model are saved; so does losing the
console's reader (``| head``, or a ``| tee`` that Ctrl-C stopped first). A second Ctrl-C stops at
once, without saving."""

from __future__ import annotations

import errno
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from codec.pipes import discard_output
from codec.signals import STOPPING_SIGNALS, take_raised


def signal_name(signum: int) -> str:
    if signum == signal.SIGPIPE:
        return "the end of its output (the reader of the console went away)"
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


class _OutputLossGuard:
    """A console's file that, once a write finds no reader (EPIPE), sends the rest to /dev/null and
    calls ``on_lost`` instead of raising in the middle of a training step."""

    def __init__(self, file, on_lost):
        self.file, self.on_lost, self.lost = file, on_lost, False

    def _guarded(self, action, *args):
        if self.lost:
            return None
        try:
            return action(*args)
        except OSError as error:
            if not isinstance(error, BrokenPipeError) and error.errno != errno.EPIPE:
                raise
            self.lost = True
            discard_output(self.file)   # its buffer is flushed again at exit
            self.on_lost()
            return None

    def write(self, text: str) -> int:
        self._guarded(self.file.write, text)
        return len(text)

    def flush(self) -> None:
        self._guarded(self.file.flush)

    def isatty(self) -> bool:
        return self.file.isatty()

    def fileno(self) -> int:
        return self.file.fileno()

    def __getattr__(self, name):   # encoding, errors, ...: the stream's own
        return getattr(self.file, name)


@contextmanager
def stop_after_step(console=None, checkpoint: Path | None = None) -> Iterator[list[int]]:
    """Yields a list that the signals received while inside are appended to (their numbers); the
    training loop ends when it is not empty. The process gets its own handlers back on leaving.
    With a rich ``console``, a write that finds its reader gone appends SIGPIPE instead of raising.
    A second Ctrl-C raises KeyboardInterrupt at once, saying whether ``checkpoint`` (the run's) is there.

    A SIGINT that the launching shell ignores (as for a background job) stays ignored.
    """
    stop_requested: list[int] = take_raised()   # a Ctrl-C during setup that Python dropped is still one

    def stop_at_step_end(signum, frame) -> None:
        stop_requested.append(signum)
        if signum == signal.SIGINT:   # a second Ctrl-C stops at once (without saving)
            signal.signal(signal.SIGINT, lambda signum, frame: _stop_at_once(checkpoint))

    signals = [*STOPPING_SIGNALS] + ([signal.SIGINT] if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN else [])
    previous_handlers = {signum: signal.signal(signum, stop_at_step_end) for signum in signals}
    # rich's Console keeps None for "sys.stderr (or stdout) as it is at each write": restored as such
    own_file = getattr(console, "_file", None)
    if console is not None:
        console.file = _OutputLossGuard(console.file, lambda: stop_requested.append(signal.SIGPIPE))
    try:
        yield stop_requested
    finally:
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)
        if console is not None:
            console.file = own_file


_saving: list[Path] = []   # the model folder of a save in progress (its checkpoint is written first)


@contextmanager
def saving(model_dir: Path) -> Iterator[None]:
    """While inside, a save is writing the checkpoint, then ``model_dir``: a second Ctrl-C that
    stops the run at once says the model can be from the save before."""
    _saving.append(model_dir)
    try:
        yield
    finally:
        _saving.pop()


def _stop_at_once(checkpoint: Path | None):
    if checkpoint is None or not checkpoint.is_file():
        raise KeyboardInterrupt("interrupted again: stopped at once, without saving; no checkpoint had been "
                                "saved yet")
    if _saving:
        raise KeyboardInterrupt(f"interrupted again: stopped at once, during a save; {checkpoint} is kept "
                                f"(--resume goes on from it), and {_saving[-1]} can be from the save before it")
    raise KeyboardInterrupt(f"interrupted again: stopped at once, without saving; {checkpoint} from the last save "
                            f"is kept (--resume goes on from it)")


def ended_at(step: int, max_steps: int, deadline_passed: bool, stop_requested: bool) -> str:
    """How a run ended, for its last message: ``finished at step 2000 (run.max_steps)``, or
    stopped by time or by a signal (a run that ends by its own limits did not stop early)."""
    if step >= max_steps and not stop_requested:
        return f"finished at step {step} (run.max_steps)"
    if deadline_passed and not stop_requested:
        return f"stopped at step {step} (run.max_minutes)"
    return f"stopped at step {step}"
