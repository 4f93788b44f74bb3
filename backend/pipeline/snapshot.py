"""A copy of a local source tree (``-C source.<component>=PATH``) for one variant.

Builds write into their source tree (setup.py's build/, torch's build/), so
two variants must not share one; and patches must not touch the user's
checkout.  Files are copied with their modification times, so an unchanged
file keeps its mtime and ninja does not rebuild it; files gone from the
checkout are removed from the copy.

Links (issue 29): a link whose target stays inside the checkout (relative,
resolving inside) is copied as a link, a link to a folder included (os.walk
lists those among folders, and they used to be dropped while pip's own
build includes them).  A link that leaves the checkout (absolute, or
climbing out) is copied as what it points to, a file or a folder's files:
the copy holds what is built, and the digest hashes those bytes, not the
link's text, so a changed target is a changed tree.  The digest recorded for
a build is the copy's (``sync`` returns what it copied, ``copy_digest``
hashes exactly that), so a checkout edited while it is copied gives a wheel
whose recorded hash is of the state that was built.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

from ..cache_marker import MARKER as CACHE_MARKER
from ..errors import BackendError

SKIP_TOP = frozenset({".git", "build", "dist", "_build", ".venv", "__pycache__"})
MANIFEST = ".vllm-stack-snapshot.json"


_SPECIAL = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
            (stat.S_ISBLK, "a block device"))


def _walk(root: Path, exclude: Path | None = None):
    """(relative path, where its bytes are read, whether it is copied as a link) of every entry of the tree.

    A backend cache inside the tree (a folder holding its marker, or the folder ``exclude``, the copy,
    lies in) is no part of it: copying it into the copy would nest deeper with every build."""
    real_root = os.path.realpath(root)
    excluded = os.path.realpath(exclude) if exclude is not None else None

    def a_cache(folder: str) -> bool:
        real = os.path.realpath(folder)
        return os.path.isfile(os.path.join(folder, CACHE_MARKER)) or (
            excluded is not None and (excluded == real or excluded.startswith(real + os.sep)))

    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        if rel_dir == Path("."):
            dirnames[:] = [d for d in dirnames if d not in SKIP_TOP]
        dirnames[:] = [d for d in dirnames if d != "__pycache__" and not d.endswith(".egg-info")
                       and not a_cache(os.path.join(dirpath, d))]
        linked_dirs = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]  # not walked into
        dirnames[:] = [d for d in dirnames if d not in linked_dirs]
        for name in sorted(filenames) + sorted(linked_dirs):
            if name.endswith(".pyc"):
                continue
            rel = rel_dir / name
            _refuse_special(root, rel)
            path = root / rel
            if not path.is_symlink():
                yield rel, path, False
                continue
            text = os.readlink(path)
            resolved = os.path.realpath(path)
            stays = not os.path.isabs(text) and (resolved == real_root or resolved.startswith(real_root + os.sep))
            if stays or not os.path.exists(resolved):
                yield rel, path, True  # inside the tree (or dangling): the link itself
            elif os.path.isdir(resolved):
                if real_root == resolved or real_root.startswith(resolved.rstrip(os.sep) + os.sep):
                    raise BackendError(
                        f"local source tree {root}: {rel.as_posix()} links to {text}, a folder holding the tree "
                        "itself; accepted: links to files or folders beside or inside the tree")
                yield from _outside_folder(rel, Path(resolved), root)
            else:
                _refuse_special(Path(resolved).parent, Path(Path(resolved).name))
                yield rel, Path(resolved), False


def _outside_folder(rel: Path, folder: Path, root: Path):
    """The files of a folder a link outside the tree names, as if they lay at ``rel`` (links in it kept as links)."""
    for dirpath, dirnames, filenames in os.walk(folder):
        sub = Path(dirpath).relative_to(folder)
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        dirnames[:] = [d for d in dirnames if d not in links]
        for name in sorted(filenames) + sorted(links):
            _refuse_special(folder, sub / name)
            path = Path(dirpath) / name
            yield rel / sub / name, path, path.is_symlink()


def _refuse_special(root: Path, rel: Path) -> None:
    """Reading a FIFO blocks for ever, a device can be endless: a source tree holds neither."""
    mode = os.lstat(root / rel).st_mode
    for test, kind in _SPECIAL:
        if test(mode):
            raise BackendError(
                f"local source tree {root}: {rel.as_posix()} is {kind}; accepted: regular files, folders and "
                "symlinks (remove it, or build from a clean checkout)"
            )


def _digest(entries) -> str:
    """sha256 over (relative path, link text or mode and bytes) of ``entries``: (rel, source, is_link)."""
    digest = hashlib.sha256()
    for rel, path, is_link in sorted(entries, key=lambda e: e[0].as_posix().encode()):
        digest.update(rel.as_posix().encode() + b"\0")
        if is_link:
            digest.update(b"L" + os.readlink(path).encode())
        else:
            digest.update(b"X" if os.access(path, os.X_OK) else b"F")
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        digest.update(b"\0")
    return "sha256:" + digest.hexdigest()


def tree_digest(root: Path, exclude: Path | None = None) -> str:
    """Content hash of a checkout (names, modes, bytes, link targets inside it, what links leaving it name)."""
    return _digest(_walk(root, exclude))


def copy_digest(copy: Path, copied: list[tuple[str, bool]]) -> str:
    """The same hash over what ``sync`` copied into ``copy`` (its return value): the state that is built."""
    return _digest((Path(rel), copy / rel, is_link) for rel, is_link in copied)


def record_path(copy: Path) -> Path:
    """Where the copy's record lies: beside it, outside the copied tree (a tree's own file is never it)."""
    return copy.with_name(f".{copy.name}.snapshot.json")


def _read_record(copy: Path) -> dict:
    """The last sync's record: {"checkout": str, "files": [str]}; anything else reads as none."""
    for path in (record_path(copy), copy / MANIFEST):  # the second: where versions before issue 29 kept it
        try:
            if path.is_symlink() or not path.is_file():
                continue
            record = json.loads(path.read_text())
        except (OSError, ValueError, RecursionError):
            continue  # unreadable, truncated or nested too deep: start anew
        if isinstance(record, dict) and isinstance(record.get("files", []), list):
            if path.name == MANIFEST:
                record["legacy"] = True
            return record
    return {}


def _write_record(copy: Path, record: dict) -> None:
    """Written whole or not at all (a temporary file renamed over it, never written through a link)."""
    path = record_path(copy)
    staged = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    staged.unlink(missing_ok=True)
    with open(staged, "x") as handle:
        json.dump(record, handle)
    os.replace(staged, path)


def _inside(copy: Path, rel: str) -> bool:
    """``rel`` names a path in ``copy`` reached through no link (nothing outside can be touched)."""
    parts = Path(rel).parts
    if not parts or Path(rel).is_absolute() or ".." in parts:
        return False
    parent = copy
    for part in parts[:-1]:
        parent = parent / part
        if parent.is_symlink() or not parent.is_dir():
            return False
    return True


def _real_folder(copy: Path, rel_dir: Path) -> Path:
    """``copy/rel_dir`` as a real folder: a link or file left there by an earlier state is removed, not followed."""
    folder = copy
    for part in rel_dir.parts:
        folder = folder / part
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            folder.unlink()
        folder.mkdir(exist_ok=True)
    return folder


def sync(checkout: Path, copy: Path) -> list[tuple[str, bool]]:
    """Make ``copy`` the checkout's files, writing and deleting only inside ``copy``, never through a link.

    The record of what was copied lies outside the copy (``record_path``): a checkout holding a file
    (or a link) of the record's name cannot make the backend write or delete anything elsewhere.
    """
    record = _read_record(copy)
    if record.get("checkout") != str(checkout) and (copy.exists() or copy.is_symlink()):
        # Another checkout's build outputs (setuptools' build/lib ...) would leak into this one's wheel.
        if copy.is_symlink() or not copy.is_dir():
            copy.unlink()
        else:
            shutil.rmtree(copy)
        record = {}
    copy.mkdir(parents=True, exist_ok=True)
    previous = {f for f in record.get("files", []) if isinstance(f, str)}
    current = set()
    copied = []
    for rel, source, is_link in _walk(checkout, exclude=copy):
        current.add(rel.as_posix())
        copied.append((rel.as_posix(), is_link))
        target = _real_folder(copy, rel.parent) / rel.name
        if target.is_symlink() or (target.exists() and target.is_dir()):
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink()
        if is_link:
            target.unlink(missing_ok=True)
            target.symlink_to(os.readlink(source))
        else:
            shutil.copy2(source, target)
    for gone in previous - current:
        path = copy / gone
        if _inside(copy, gone) and (path.is_symlink() or path.is_file()):  # a folder now: its files were synced
            path.unlink()
    if record.get("legacy") and MANIFEST not in current and not (copy / MANIFEST).is_symlink():
        (copy / MANIFEST).unlink(missing_ok=True)  # the record's old place, inside the tree
    _write_record(copy, {"checkout": str(checkout), "files": sorted(current)})
    return copied
