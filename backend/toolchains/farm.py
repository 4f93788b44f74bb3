"""A CUDA_HOME joined from symlinks, one per library set, built once and reused while whole.

Providers that gather a toolkit from several places (Nix store paths, the
files of PyPI wheels) join them into ``<parent>/<prefix>-<hash>``, the hash
taken over ``LAYOUT`` and the lines that say what it joins.  So each library
set has its own folder: a build never sees optional libraries (cuDNN, NCCL ...)
because an earlier build of a larger set left them in a shared one.  The folder
is filled under a temporary name and renamed, so only a complete one is ever
reused; and only a whole one: every path its links point into (``needs``,
recorded in ``.needs``) must still exist, else it is made again.  That check is
a handful of ``stat`` calls (the store paths, the wheels' ``dist-info``
folders), not one per link (bench/farm_check.py measures both).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

# How farms are filled.  Bump it whenever this module or a provider's fill changes what a farm holds
# (which files, which extra links, where they point): the hash changes, so old farms are not reused.
LAYOUT = 2


def farm_name(prefix: str, identity: Sequence[str]) -> str:
    digest = hashlib.sha256("\n".join([f"farm layout {LAYOUT}", *identity]).encode()).hexdigest()[:16]
    return f"{prefix}-{digest}"


def is_whole(home: Path) -> bool:
    """Complete, and every path its links point into (``.needs``) is still there."""
    try:
        if not (home / ".complete").is_file():
            return False
        needs = (home / ".needs").read_text().splitlines()
    except OSError:
        return False
    return all(os.path.exists(line) for line in needs if line)


def farm(parent: Path, prefix: str, identity: Sequence[str], fill: Callable[[Path], None],
         needs: Sequence[Path | str] = ()) -> Path:
    """``<parent>/<prefix>-<hash of identity>``: made by ``fill(folder)`` unless it exists whole.

    ``needs``: the paths outside the farm its links point into (absolute); one gone (a store path
    collected, an install root removed) makes the farm stale, and it is made again.
    """
    home = Path(parent) / farm_name(prefix, identity)
    if is_whole(home):
        return home
    home.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{prefix}-", dir=home.parent))
    try:
        fill(staging)
        (staging / ".sources").write_text("".join(f"{line}\n" for line in identity))
        (staging / ".needs").write_text("".join(f"{os.path.abspath(p)}\n" for p in needs))
        (staging / ".complete").write_text("")
        staging.chmod(0o755)
        try:
            os.rename(staging, home)
        except OSError:
            # Another process finished the same farm first (keep it), or a stale or half-made one is in the way.
            if not is_whole(home):
                _remove(home)
                try:
                    os.rename(staging, home)
                except OSError:
                    if not is_whole(home):  # unless yet another process put a whole one there meanwhile
                        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return home


def _remove(home: Path) -> None:
    """Out of the way first (a rename), so no build sees it half removed."""
    if not os.path.lexists(home):
        return
    doomed = Path(tempfile.mkdtemp(prefix=".stale-", dir=home.parent))
    try:
        os.rename(home, doomed / "farm")
    except OSError:
        pass
    shutil.rmtree(doomed, ignore_errors=True)


def link(path: Path, target: Path | str) -> bool:
    """A symlink ``path -> target`` unless something is there already (the first one joined wins)."""
    if os.path.lexists(path):
        return False
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)
    return True
