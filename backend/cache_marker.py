"""Whose folder the cache is: a marker the backend writes when it creates a cache, checked before anything is deleted.

``-C cache-dir=~`` (or ``VLLM_STACK_CACHE_DIR=/``) names a folder that holds the
user's own ``work``, ``downloads`` ...; ``clean`` removes ``<cache>/work`` and the
like, so it must know the folder is a cache.  The backend writes
``<cache>/.vllm-stack-cache`` when it creates the cache folder, or finds it empty.
A folder without the marker that holds nothing but the backend's own layout is a
cache of an earlier version (before the marker): it is adopted (marked) by the next
build or clean.  Anything else is not the backend's: builds still write only their own
subfolders there, and ``clean`` refuses it in one line, deleting nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import BackendError

MARKER = ".vllm-stack-cache"
_MARKER_TEXT = json.dumps({"vllm-stack": "cache", "layout": 1}) + "\n"
# The top of a cache: each folder the backend writes there, and what its entries' names start with
# (None: any name; the download cache holds the lock's file names, the compiler caches their tools').
# backend/pipeline/layout.py (work, envs, compiler-cache), backend/sources/fetch.py (downloads, tmp),
# backend/toolchains/{nix,pypi}.py (toolchains: farms `<provider>-cu<release>-<hash>`, hidden while staged).
LAYOUT: dict[str, tuple[str, ...] | None] = {
    "work": ("vllm-",),
    "envs": ("vllm-",),
    "downloads": None,
    "toolchains": ("nix-", "pypi-", ".nix-", ".pypi-"),
    "compiler-cache": None,
    "tmp": None,
}


def is_marked(cache: Path) -> bool:
    marker = Path(cache) / MARKER
    # A link is no marker: it could make any folder look like a cache.
    return marker.is_file() and not marker.is_symlink()


def foreign_entries(cache: Path) -> list[str]:
    """What in ``cache`` is not the backend's layout (links count as foreign: never followed)."""
    found: list[str] = []
    for entry in sorted(Path(cache).iterdir()):
        prefixes = LAYOUT.get(entry.name, ())
        if entry.name == MARKER and not entry.is_symlink():
            continue
        if entry.is_symlink() or not entry.is_dir() or entry.name not in LAYOUT:
            found.append(entry.name)
            continue
        if prefixes is None:
            continue
        found += [f"{entry.name}/{inner.name}" for inner in sorted(entry.iterdir())
                  if inner.is_symlink() or not inner.name.startswith(prefixes)]
    return found


def _mark(cache: Path) -> None:
    marker = Path(cache) / MARKER
    staged = marker.with_name(f"{MARKER}.{os.getpid()}.tmp")
    staged.write_text(_MARKER_TEXT)
    os.replace(staged, marker)


def claim(cache: Path) -> bool:
    """Create the cache folder (marked), or mark one that is empty or only the backend's layout.

    False: the folder holds what the backend did not put there; it stays unmarked.
    """
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    if is_marked(cache):
        return True
    if foreign_entries(cache):
        return False
    _mark(cache)
    return True


def require_owned(cache: Path, what: str) -> None:
    """Stop in one line unless ``cache`` is the backend's (marked, or adoptable, then marked)."""
    if claim(cache):
        return
    foreign = foreign_entries(cache)
    shown = ", ".join(foreign[:4]) + (f" and {len(foreign) - 4} more" if len(foreign) > 4 else "")
    raise BackendError(
        f"{what}: {cache} is not a cache the backend created (no {MARKER}, and it holds {shown}, which "
        f"the backend did not put there); nothing was removed; accepted: a cache-dir of its own "
        f"(e.g. {cache / 'vllm-stack'})"
    )
