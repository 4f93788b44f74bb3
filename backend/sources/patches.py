"""``patches/<component>/*.patch``, applied in name order with the ``patch`` program.

``patches/<component>/<lock entry>/*.patch`` apply to that lock entry's tree
instead (vLLM's flash-attention, say, which is a tree of its own beside vLLM's).

Each patch is first tried with ``--dry-run`` and applied only when it fits
exactly (``--fuzz=0``), so a failing patch leaves the tree as it was and the
error names the patch file, the file it patches and the failing hunk.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

from ..errors import BackendError
from .lock import PROJECT_ROOT

PATCHES_ROOT = PROJECT_ROOT / "patches"


def collect(component: str, root: Path | None = None, entry: str | None = None) -> list[tuple[Path, str]]:
    """The patch files of the component's main tree (or of its lock ``entry``) in the order they apply, with their sha256."""
    folder = Path(root or PATCHES_ROOT) / component
    if entry is not None:
        folder = folder / entry
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob("*.patch"), key=lambda p: p.name):
        found.append((path, hashlib.sha256(path.read_bytes()).hexdigest()))
    return found


def _patch_program() -> str:
    program = shutil.which("patch")
    if not program:
        raise BackendError("the 'patch' program is needed to apply patches/; install it (Debian: apt-get install patch)")
    return program


def _describe_failure(output: str) -> str:
    current = None
    failures = []
    missing = None
    for line in output.splitlines():
        match = re.match(r"(?:checking|patching) file (.+)", line)
        if match:
            current = match.group(1).strip().strip("'\"")
            continue
        match = re.match(r"Hunk #(\d+) FAILED at (\d+)", line)
        if match:
            failures.append(f"hunk #{match.group(1)} of {current or '?'} (at line {match.group(2)})")
            continue
        if "can't find file to patch" in line:
            missing = "a file it patches does not exist"
        if "Reversed (or previously applied) patch detected" in line:
            failures.append(f"{current or 'a file'} looks already patched")
    if failures:
        return "failed: " + ", ".join(failures)
    if missing:
        return missing
    tail = [l for l in output.strip().splitlines() if l.strip()]
    return tail[-1] if tail else "patch failed"


def _run(args: list[str], tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=tree, capture_output=True, text=True, stdin=subprocess.DEVNULL)


def entry_folders(component: str, root: Path | None = None) -> list[str]:
    """The lock entries of the component that have patches of their own (sub-folders of patches/<component>/)."""
    folder = Path(root or PATCHES_ROOT) / component
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and any(p.glob("*.patch")))


def apply(tree: Path, component: str, root: Path | None = None, entry: str | None = None) -> list[tuple[str, str]]:
    """Apply the component's patches (or its lock ``entry``'s) to ``tree``; returns (file name, sha256) of each."""
    applied = []
    patches = collect(component, root, entry)
    if not patches:
        return applied
    program = _patch_program()
    for path, digest in patches:
        base = [program, "-p1", "--forward", "--batch", "--fuzz=0", "--no-backup-if-mismatch", "-i", str(path)]
        check = _run(base + ["--dry-run"], tree)
        if check.returncode != 0:
            shown = path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path
            raise BackendError(
                f"patch {shown} does not apply to {entry or component}: {_describe_failure(check.stdout + check.stderr)}"
            )
        done = _run(base + ["--reject-file=-"], tree)
        if done.returncode != 0:
            raise BackendError(f"patch {path.name} failed after a clean dry run: {_describe_failure(done.stdout + done.stderr)}")
        applied.append((path.name, digest))
    return applied
