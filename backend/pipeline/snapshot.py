"""A copy of a local source tree (``-C source.<component>=PATH``) for one variant.

Builds write into their source tree (setup.py's build/, torch's build/), so
two variants must not share one; and patches must not touch the user's
checkout.  Files are copied with their modification times, so an unchanged
file keeps its mtime and ninja does not rebuild it; files gone from the
checkout are removed from the copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

from ..errors import BackendError

SKIP_TOP = frozenset({".git", "build", "dist", "_build", ".venv", "__pycache__"})
MANIFEST = ".vllm-stack-snapshot.json"


_SPECIAL = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
            (stat.S_ISBLK, "a block device"))


def _walk(root: Path):
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        if rel_dir == Path("."):
            dirnames[:] = [d for d in dirnames if d not in SKIP_TOP]
        dirnames[:] = [d for d in dirnames if d != "__pycache__" and not d.endswith(".egg-info")]
        for name in filenames:
            if name.endswith(".pyc"):
                continue
            _refuse_special(root, rel_dir / name)
            yield rel_dir / name


def _refuse_special(root: Path, rel: Path) -> None:
    """Reading a FIFO blocks for ever, a device can be endless: a source tree holds neither."""
    mode = os.lstat(root / rel).st_mode
    for test, kind in _SPECIAL:
        if test(mode):
            raise BackendError(
                f"local source tree {root}: {rel.as_posix()} is {kind}; accepted: regular files, folders and "
                "symlinks (remove it, or build from a clean checkout)"
            )


def tree_digest(root: Path) -> str:
    """Content hash of a checkout (names, modes, bytes, link targets)."""
    digest = hashlib.sha256()
    for rel in sorted(_walk(root), key=lambda p: p.as_posix().encode()):
        path = root / rel
        digest.update(rel.as_posix().encode() + b"\0")
        if path.is_symlink():
            digest.update(b"L" + os.readlink(path).encode())
        else:
            digest.update(b"X" if os.access(path, os.X_OK) else b"F")
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        digest.update(b"\0")
    return "sha256:" + digest.hexdigest()


def sync(checkout: Path, copy: Path) -> None:
    manifest = copy / MANIFEST
    record = json.loads(manifest.read_text()) if manifest.exists() else {}
    if not isinstance(record, dict):  # an older format: start anew
        record = {}
    if record.get("checkout") != str(checkout) and copy.exists():
        # Another checkout's build outputs (setuptools' build/lib ...) would leak into this one's wheel.
        shutil.rmtree(copy)
        record = {}
    copy.mkdir(parents=True, exist_ok=True)
    previous = set(record.get("files", []))
    current = set()
    for rel in _walk(checkout):
        source, target = checkout / rel, copy / rel
        current.add(rel.as_posix())
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or (target.exists() and target.is_dir()):
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink()
        if source.is_symlink():
            target.unlink(missing_ok=True)
            target.symlink_to(os.readlink(source))
        else:
            shutil.copy2(source, target)
    for gone in previous - current:
        (copy / gone).unlink(missing_ok=True)
    manifest.write_text(json.dumps({"checkout": str(checkout), "files": sorted(current)}))
