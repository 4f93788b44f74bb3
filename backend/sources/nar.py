"""Nix archive (NAR) serialisation of a file tree, and the hash encodings Nix uses.

``fetchFromGitHub`` in nixpkgs pins a source by the SHA-256 of the NAR
serialisation of the unpacked tree (top-level folder stripped), written as an
SRI string (``sha256-<base64>``) or, in older recipes, in Nix's own base32.
That lets us verify a GitHub archive without trusting its (unstable) tarball
bytes: unpack, serialise, hash, compare.

The format (Eelco Dolstra's thesis, section 5.2.1; ``nix-store --dump``):
every string is a little-endian u64 length, the bytes, and zero padding to a
multiple of 8.  A node is ``( type regular [executable ""] contents <bytes> )``,
``( type symlink target <target> )`` or ``( type directory entry ( name <n>
node <node> ) ... )`` with entries sorted bytewise by name.  Only the owner's
execute bit is recorded; times, owners and other permission bits are not.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import stat
from pathlib import Path

from ..errors import BackendError

_BLOCK = 1 << 20
# Nix's base32 alphabet: no e, o, u, t.
_B32 = "0123456789abcdfghijklmnpqrsvwxyz"


def _str(sink, data: bytes) -> None:
    sink.update(len(data).to_bytes(8, "little"))
    sink.update(data)
    pad = (-len(data)) % 8
    if pad:
        sink.update(b"\0" * pad)


def _node(sink, path: bytes) -> None:
    info = os.lstat(path)
    _str(sink, b"(")
    _str(sink, b"type")
    if stat.S_ISLNK(info.st_mode):
        _str(sink, b"symlink")
        _str(sink, b"target")
        _str(sink, os.readlink(path))
    elif stat.S_ISREG(info.st_mode):
        _str(sink, b"regular")
        if info.st_mode & stat.S_IXUSR:
            _str(sink, b"executable")
            _str(sink, b"")
        _str(sink, b"contents")
        size = info.st_size
        sink.update(size.to_bytes(8, "little"))
        done = 0
        with open(path, "rb") as handle:
            while True:
                block = handle.read(_BLOCK)
                if not block:
                    break
                done += len(block)
                sink.update(block)
        if done != size:
            raise BackendError(f"NAR hash: {os.fsdecode(path)} changed size while being read")
        pad = (-size) % 8
        if pad:
            sink.update(b"\0" * pad)
    elif stat.S_ISDIR(info.st_mode):
        _str(sink, b"directory")
        for name in sorted(os.listdir(path)):
            _str(sink, b"entry")
            _str(sink, b"(")
            _str(sink, b"name")
            _str(sink, name)
            _str(sink, b"node")
            _node(sink, os.path.join(path, name))
            _str(sink, b")")
    else:
        raise BackendError(f"NAR hash: {os.fsdecode(path)} is not a file, folder or symlink")
    _str(sink, b")")


def nar_digest(path: Path) -> bytes:
    """The raw SHA-256 of the NAR serialisation of ``path``."""
    sink = hashlib.sha256()
    _str(sink, b"nix-archive-1")
    _node(sink, os.fsencode(path))
    return sink.digest()


def nar_hash(path: Path) -> str:
    """``sha256-<base64>``, as ``nix hash path`` / ``nix-hash --type sha256 --sri`` print it."""
    return to_sri(nar_digest(Path(path)))


def to_sri(digest: bytes) -> str:
    return "sha256-" + base64.b64encode(digest).decode()


def from_nix_base32(text: str) -> bytes:
    size = len(text) * 5 // 8
    out = bytearray(size)
    for n, char in enumerate(reversed(text)):
        digit = _B32.find(char)
        if digit < 0:
            raise ValueError(f"not Nix base32: {text!r}")
        bit = n * 5
        i, j = divmod(bit, 8)
        out[i] |= (digit << j) & 0xFF
        if i + 1 < size:
            out[i + 1] |= digit >> (8 - j)
        elif digit >> (8 - j):
            raise ValueError(f"not Nix base32: {text!r}")
    return bytes(out)


def parse_sha256(text: str) -> bytes:
    """A SHA-256 digest written any way Nix or nixpkgs writes it.

    ``sha256-<base64>`` (SRI), ``sha256:<base32|hex|base64>``, or a bare
    64-character hex or 52-character Nix base32 string.
    """
    value = text.strip()
    if value.startswith("sha256-"):
        try:
            digest = base64.b64decode(value[7:], validate=True)
        except ValueError as exc:
            raise ValueError(f"bad SRI hash {text!r}") from exc
    else:
        value = value.removeprefix("sha256:")
        if re.fullmatch(r"[0-9a-fA-F]{64}", value):
            digest = bytes.fromhex(value)
        elif re.fullmatch(f"[{_B32}]{{52}}", value):
            digest = from_nix_base32(value)
        else:
            try:
                digest = base64.b64decode(value, validate=True)
            except ValueError as exc:
                raise ValueError(f"unrecognised SHA-256 hash {text!r}") from exc
    if len(digest) != 32:
        raise ValueError(f"not a SHA-256 hash (wrong length): {text!r}")
    return digest


def normalize(text: str) -> str:
    """Any accepted spelling of a SHA-256 hash, as SRI."""
    return to_sri(parse_sha256(text))
