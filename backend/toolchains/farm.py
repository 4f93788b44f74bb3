"""A CUDA_HOME joined from symlinks, one per library set, built once and reused.

Providers that gather a toolkit from several places (Nix store paths, the
files of PyPI wheels) join them into ``<parent>/<prefix>-<hash>``, the hash
taken over the lines that say what it joins.  So each library set has its own
folder: a build never sees optional libraries (cuDNN, NCCL ...) because an
earlier build of a larger set left them in a shared one.  The folder is filled
under a temporary name and renamed, so only a complete one is ever reused.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path


def farm(parent: Path, prefix: str, identity: Sequence[str], fill: Callable[[Path], None]) -> Path:
    """``<parent>/<prefix>-<hash of identity>``: made by ``fill(folder)`` unless it exists complete."""
    digest = hashlib.sha256("\n".join(identity).encode()).hexdigest()[:16]
    home = Path(parent) / f"{prefix}-{digest}"
    if (home / ".complete").is_file():
        return home
    home.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{prefix}-", dir=home.parent))
    try:
        fill(staging)
        (staging / ".sources").write_text("".join(f"{line}\n" for line in identity))
        (staging / ".complete").write_text("")
        staging.chmod(0o755)
        try:
            os.rename(staging, home)
        except OSError:
            # Another process finished the same farm first (keep it), or a half-made one is in the way.
            if not (home / ".complete").is_file():
                shutil.rmtree(home, ignore_errors=True)
                os.rename(staging, home)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return home


def link(path: Path, target: Path | str) -> bool:
    """A symlink ``path -> target`` unless something is there already (the first one joined wins)."""
    if os.path.lexists(path):
        return False
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)
    return True
