"""Copies of local checkouts: unchanged files keep their mtime, another checkout starts clean."""

import os

from backend.pipeline import snapshot


def test_sync_keeps_mtimes_removes_deleted_and_hashes_content(tmp_path):
    checkout, copy = tmp_path / "checkout", tmp_path / "copy"
    (checkout / "pkg").mkdir(parents=True)
    (checkout / "pkg" / "a.cpp").write_text("int a;\n")
    (checkout / "pkg" / "b.cpp").write_text("int b;\n")
    (checkout / "build").mkdir()
    (checkout / "build" / "junk.o").write_text("x")
    snapshot.sync(checkout, copy)
    assert (copy / "pkg" / "a.cpp").read_text() == "int a;\n"
    assert not (copy / "build").exists()
    mtime = os.stat(copy / "pkg" / "a.cpp").st_mtime_ns
    digest = snapshot.tree_digest(checkout)

    (copy / "build" / "lib").mkdir(parents=True)
    (copy / "build" / "lib" / "out.so").write_text("built")  # a build output in the copy survives a re-sync
    (checkout / "pkg" / "b.cpp").unlink()
    snapshot.sync(checkout, copy)
    assert os.stat(copy / "pkg" / "a.cpp").st_mtime_ns == mtime
    assert not (copy / "pkg" / "b.cpp").exists()
    assert (copy / "build" / "lib" / "out.so").exists()
    assert snapshot.tree_digest(checkout) != digest


def test_another_checkout_starts_from_a_clean_copy(tmp_path):
    first, second, copy = tmp_path / "first", tmp_path / "second", tmp_path / "copy"
    for tree in (first, second):
        tree.mkdir()
        (tree / "setup.py").write_text(f"# {tree.name}\n")
    snapshot.sync(first, copy)
    (copy / "build").mkdir()
    (copy / "build" / "stale.so").write_text("from first")
    snapshot.sync(second, copy)
    assert not (copy / "build").exists()
    assert (copy / "setup.py").read_text() == "# second\n"
