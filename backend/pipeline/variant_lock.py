"""One build of a variant at a time: two builds of one variant take turns.

Two builds writing ``<cache>/work/<variant>/`` at once race on the same
source trees, build folders and ``_wheels`` folders: one can package what
the other is still writing (a wheel holding only its ``.dist-info`` was
seen).  The second build waits on ``<cache>/work/<variant>.lock`` (a
``filelock``, released by the kernel if the holder dies), then finds the
first one's wheels in the wheelhouse and reuses them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from filelock import FileLock, Timeout

POLL_SECONDS = 0.5


def lock_path(variant_dir: Path) -> Path:
    return Path(variant_dir).with_name(Path(variant_dir).name + ".lock")


@contextlib.contextmanager
def hold(variant_dir: Path, say: Callable[[str], None]) -> Iterator[None]:
    """Hold the variant's lock for the whole build, saying so when another build has it."""
    path = lock_path(variant_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        say(f"   waiting: another build of {Path(variant_dir).name} is running (lock {path}); "
            "this one continues when it ends and reuses its wheels")
        lock.acquire(poll_interval=POLL_SECONDS)
    try:
        _note_holder(path)
        yield
    finally:
        lock.release()


def _note_holder(path: Path) -> None:
    """Who holds the lock, for a person looking at the cache (the lock itself is the kernel's)."""
    with contextlib.suppress(OSError):
        path.with_suffix(".holder").write_text(f"{os.getpid()}\n")
