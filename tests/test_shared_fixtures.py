"""The guard on fixtures that several tests share (conftest.kept_unchanged): a change made under it fails."""

import os

import pytest

from conftest import kept_unchanged


def _shared(tmp_path):
    tree = tmp_path / "shared"
    (tree / "lib").mkdir(parents=True)
    (tree / "lib" / "libx.so").write_bytes(b"\x7fELF one")
    (tree / "house.lock").write_text("")
    return tree


@pytest.mark.parametrize("change", ["rewrite", "add", "remove", "append"])
def test_a_change_under_the_guard_fails_naming_the_path(tmp_path, change):
    tree = _shared(tmp_path)
    library = tree / "lib" / "libx.so"
    with pytest.raises(AssertionError, match=r"changed the shared fixture tree .*(lib/libx\.so|lib/new\.so)"):
        with kept_unchanged(tree):
            if change == "rewrite":  # same size, new content: the modification time tells
                stamp = library.stat().st_mtime_ns
                library.write_bytes(b"\x7fELF two")
                os.utime(library, ns=(stamp + 1_000_000, stamp + 1_000_000))
            elif change == "add":
                (tree / "lib" / "new.so").write_bytes(b"")
            elif change == "remove":
                library.unlink()
            else:
                with library.open("ab") as handle:
                    handle.write(b"!")


def test_reading_bytecode_and_ignored_names_pass(tmp_path):
    tree = _shared(tmp_path)
    with kept_unchanged(tree, ignore=("*.lock",)):
        assert (tree / "lib" / "libx.so").read_bytes() == b"\x7fELF one"
        (tree / "lib" / "__pycache__").mkdir()
        (tree / "lib" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"")
        (tree / "house.lock").write_text("held")
        (tree / "other.lock").write_text("")
