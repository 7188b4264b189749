"""Stopping a command on SIGINT/SIGTERM without losing or corrupting anything.

No JAX here: the command line starts a StopSignal before it imports JAX, for every command, so a
Ctrl-C during start-up is never lost (a KeyboardInterrupt that lands in one of JAX's callbacks is
swallowed, and one that lands inside a jitted call leaves the runtime broken: the process
crashes as it exits). The handler only sets a flag; the work stops where it asks:
`socjax.runner` after the chunk in flight, and analyze, prune and toy at `poll()`, which their
loops call between compiled calls (each series fitted, each network evaluated, each stage).
"""

from __future__ import annotations

import contextlib
import signal
import threading


class Interrupted(Exception):
    """The run stopped on SIGINT/SIGTERM; str() says what was saved and how to go on."""


class StopSignal:
    """SIGINT/SIGTERM while active set `requested`; the run stops after the chunk in flight.

    During start-up nothing is written yet, so a signal stops it at the next `check()` (between
    stages, after each compilation) with Interrupted, or at once inside `at_once()` blocks. An
    exception is never raised from the handler into JAX: one that lands inside a jitted call or a
    compilation leaves the runtime broken (the process crashes as it exits)."""

    def __init__(self):
        self.requested, self.name, self._old, self._at_once = False, None, {}, False
        self.kept = "nothing was written"  # what a stop during start-up leaves; a resume says so here

    def _handler(self, signum, frame):
        self.requested, self.name = True, signal.Signals(signum).name
        if self._at_once:
            self._at_once = False  # one Interrupted: a second signal must not break the clean-up
            self.check()

    def request(self, name: str) -> None:
        """Stop as a signal would, for a reason that is not one (e.g. "the loss of process 1"): from
        any thread; the work stops where it next asks."""
        self.requested, self.name = True, name

    def check(self, during: str = "start-up") -> None:
        """Raise Interrupted, saying what is kept (`kept`), if a signal came."""
        if self.requested:
            raise Interrupted(f"stopped by {self.name} during {during}; {self.kept}")

    @contextlib.contextmanager
    def at_once(self):
        """A block without JAX in which a signal raises Interrupted immediately."""
        self._at_once = True
        try:
            self.check()
            yield
        finally:
            self._at_once = False

    def __enter__(self):
        global _active
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handler)
        self._outer, _active = _active, self
        return self

    def __exit__(self, *exc):
        global _active
        for sig, old in self._old.items():
            signal.signal(sig, old)
        _active = self._outer
        return False


_active: StopSignal | None = None  # the innermost active StopSignal of this process (signals are per process)


def poll(during: str) -> None:
    """Raise Interrupted if the active StopSignal has caught a signal (nothing without one). Called
    by long loops between compiled calls: never from inside JAX, never from a signal handler."""
    if _active is not None:
        _active.check(during)


@contextlib.contextmanager
def kept(what: str):
    """Within the block, an Interrupted from `poll` says `what` is left (e.g. "the previous
    analysis is unchanged"); the outer description comes back after it."""
    stop = _active
    if stop is None:
        yield
        return
    before, stop.kept = stop.kept, what
    try:
        yield
    finally:
        stop.kept = before
