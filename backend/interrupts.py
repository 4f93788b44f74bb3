"""SIGTERM stops a build as Ctrl-C does: running compiles stopped, finished work kept, a resumable exit.

Builds run in their own sessions (``pipeline/runner.py``), so a terminal's
Ctrl-C reaches only this process, which stops them.  SIGTERM (``kill``,
``timeout``, a CI job cancelled, ``docker stop``) would otherwise end this
process at once and leave every compile running, orphaned, still writing
into the build tree.  Under this guard it raises :class:`Terminated`, a
``KeyboardInterrupt``, so the same clean-up runs; the entry points exit
with 128 + the signal's number.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class Terminated(KeyboardInterrupt):
    """The process was asked to stop by a signal other than SIGINT."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def describe(interrupt: KeyboardInterrupt) -> str:
    """The line an entry point prints for it."""
    by = f" by {signal.Signals(interrupt.signum).name}" if isinstance(interrupt, Terminated) else ""
    return f"interrupted{by}; finished work is kept and the next run resumes"


def exit_status(interrupt: KeyboardInterrupt) -> int:
    """What the shell reports for a process stopped by this signal (130 for Ctrl-C, 143 for SIGTERM)."""
    return 128 + (interrupt.signum if isinstance(interrupt, Terminated) else signal.SIGINT)


def _raise_terminated(signum: int, frame) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread (elsewhere: no change)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can be set only from the main thread
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
