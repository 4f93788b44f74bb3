"""Small file helpers shared by the wheel modules: hashes, atomic writes, a wheelhouse's manifest read leniently."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from ..hashing import sha256_file  # noqa: F401  (re-exported)

CHUNK = 8 * 1024 * 1024


def read_manifest(wheelhouse: Path) -> dict[str, Any]:
    """A wheelhouse's ``manifest.json`` for readers that only look something up (verification, the smoke
    check): {} where there is none, or it is damaged, nested too deep, or not an object.  The wheelhouse's own
    reader (``Wheelhouse.manifest``) refuses such a file with the reason before a build writes to it."""
    try:
        data = json.loads((Path(wheelhouse) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def record_hash(data: bytes) -> str:
    """The hash as a wheel's RECORD writes it: sha256=<urlsafe base64, no padding>."""
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode("ascii")


def fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a folder be opened
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_output(target: Path, mode: int = 0o644) -> Iterator[BinaryIO]:
    """A temporary file beside ``target`` that replaces it only when the block succeeds.

    On any exception (Ctrl-C included) the temporary file is removed and
    ``target`` is left as it was.  The data is fsynced before the rename.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
    fsync_dir(target.parent)


def write_atomic(target: Path, data: bytes, mode: int = 0o644) -> None:
    with atomic_output(target, mode) as handle:
        handle.write(data)
