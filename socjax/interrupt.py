"""Stopping a run on SIGINT/SIGTERM without losing or corrupting anything (used by socjax.runner).

No JAX here: the command line starts a StopSignal before it imports JAX, so a Ctrl-C during
start-up is never lost (a KeyboardInterrupt that lands in one of JAX's callbacks is swallowed,
and one that lands inside a jitted call leaves the runtime broken).
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

    def check(self) -> None:
        """During start-up: raise Interrupted if a signal came."""
        if self.requested:
            raise Interrupted(f"stopped by {self.name} during start-up; {self.kept}")

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
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False
