"""The NAR hash against Nix's own tools, and against hashes nixpkgs publishes."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from backend.sources import nar

NIX_HASH = shutil.which("nix-hash")
BNB_MIRROR = Path("/work/.mirror/bitsandbytes-foundation+bitsandbytes/repo")
needs_nix_hash = pytest.mark.skipif(NIX_HASH is None, reason="nix-hash not installed (Debian: apt-get install nix-bin)")


def nix_hash(path: Path, *extra: str) -> str:
    return subprocess.run([NIX_HASH, "--type", "sha256", *extra, str(path)], check=True, capture_output=True,
                          text=True).stdout.strip()


def build_tree(root: Path) -> Path:
    """Executables, symlinks (relative, absolute, dangling, to a folder), empty folders, odd names."""
    root.mkdir()
    (root / "plain.txt").write_text("hello\n")
    (root / "empty-file").write_bytes(b"")
    (root / "eight-bytes").write_bytes(b"12345678")  # no padding
    (root / "seven").write_bytes(b"1234567")  # padding of 1
    (root / "bin").mkdir()
    (root / "bin/tool").write_text("#!/bin/sh\necho tool\n")
    os.chmod(root / "bin/tool", 0o755)
    (root / "bin/group-exec-only").write_text("x")
    os.chmod(root / "bin/group-exec-only", 0o654)  # only the owner's x bit counts
    (root / "empty-dir").mkdir()
    (root / "nested/deeper/empty").mkdir(parents=True)
    os.symlink("../plain.txt", root / "bin/link-rel")
    os.symlink("/nonexistent/target", root / "dangling-abs")
    os.symlink("bin", root / "dir-link")
    (root / "B-upper").write_text("sorted bytewise: upper case first")
    (root / "a-lower").write_text("a")
    (root / "ünïcode name").write_text("u")
    (root / "big.bin").write_bytes(os.urandom(3 * (1 << 20) + 5))
    return root


@needs_nix_hash
def test_nar_hash_matches_nix_hash_on_a_tree(tmp_path):
    tree = build_tree(tmp_path / "tree")
    ours = nar.nar_digest(tree)
    assert ours.hex() == nix_hash(tree)
    assert nar.parse_sha256(nix_hash(tree, "--base32")) == ours
    assert nar.nar_hash(tree) == "sha256-" + base64.b64encode(ours).decode()


@needs_nix_hash
@pytest.mark.parametrize("kind", ["file", "exe", "symlink", "empty-dir"])
def test_nar_hash_matches_nix_hash_on_single_nodes(tmp_path, kind):
    path = tmp_path / "node"
    if kind in ("file", "exe"):
        path.write_bytes(b"abc" * 1000)
        os.chmod(path, 0o755 if kind == "exe" else 0o644)
    elif kind == "symlink":
        os.symlink("somewhere/else", path)
    else:
        path.mkdir()
    assert nar.nar_digest(path).hex() == nix_hash(path)


@needs_nix_hash
def test_digest_is_that_of_nix_store_dump(tmp_path):
    nix_store = shutil.which("nix-store")
    if nix_store is None:
        pytest.skip("nix-store not installed")
    tree = build_tree(tmp_path / "tree")
    theirs = subprocess.run([nix_store, "--dump", str(tree)], check=True, capture_output=True).stdout
    assert nar.nar_digest(tree) == hashlib.sha256(theirs).digest()


def test_hash_spellings_round_trip():
    digest = bytes(range(32))
    sri = nar.to_sri(digest)
    for spelling in (sri, digest.hex(), "sha256:" + digest.hex()):
        assert nar.parse_sha256(spelling) == digest
        assert nar.normalize(spelling) == sri
    with pytest.raises(ValueError):
        nar.parse_sha256("sha256-AAAA")


def test_known_nix_base32_value():
    # nix-hash --type sha256 --to-base32 of the SHA-256 of the empty string (Nix manual / nixpkgs).
    empty = bytes.fromhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    for spelling in ("0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73",
                     "sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73"):
        assert nar.parse_sha256(spelling) == empty
        assert nar.normalize(spelling) == nar.to_sri(empty)


def _git_archive(tag: str, dest: Path) -> Path:
    """The tree GitHub's archive of ``tag`` has (eol rules applied: core.autocrlf=false)."""
    data = subprocess.run(["git", "-c", "core.autocrlf=false", "--git-dir", str(BNB_MIRROR), "archive", "--format=tar", tag],
                          check=True, capture_output=True).stdout
    dest.mkdir()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="tar")
    return dest


@pytest.mark.skipif(not (BNB_MIRROR / "HEAD").exists() or shutil.which("git") is None,
                    reason="no local git mirror of bitsandbytes (fetch github:bitsandbytes-foundation/bitsandbytes)")
@pytest.mark.parametrize("tag, expected", [
    # nixpkgs' fetchFromGitHub hash of bitsandbytes 0.48.2
    ("0.48.2", "sha256-gtNOMxLeYTCZK5MVdpjOFOw6rxvqS+XJmY1Meiuz0Rw="),
    # the hash in third_party/sources.lock for 0.49.1
    ("0.49.1", "sha256-nNhxDJITXNIZMXuZdzpF5dl1K1kFEVQ0gbTqZnOf/sI="),
])
def test_reproduces_bitsandbytes_tree_hash_from_the_real_tag(tmp_path, tag, expected):
    from backend.sources import lock

    tree = _git_archive(tag, tmp_path / tag)
    assert nar.nar_hash(tree) == expected
    if tag == "0.49.1":
        assert lock.load().entries["bitsandbytes"].nar == expected
