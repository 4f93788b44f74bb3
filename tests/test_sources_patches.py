"""The committed patches against real upstream files (downloaded at test time, never committed)."""

from __future__ import annotations

import io
import re
import tarfile
import urllib.request
from pathlib import Path

import pytest

from backend.errors import BackendError
from backend.sources import patches

ROOT = Path(__file__).resolve().parent.parent

# vLLM 0.15.1 has no sdist on PyPI and GitHub may be out of reach: the sdists of
# the releases either side of it hold the same lines around every hunk (the
# patch header explains the one difference), with cuda.txt's flashinfer pin set
# to 0.6.1 as in the 0.15.1 wheel's metadata.
VLLM_SDISTS = {
    "0.13.0": ("https://files.pythonhosted.org/packages/11/12/b922f96778d07df1c28dfa9a81fbc9706c13c5d0a4e8d154060818a79705/vllm-0.13.0.tar.gz", None),
    "0.14.0": ("https://files.pythonhosted.org/packages/01/fd/abb7391e8cb5cb729ae770946b4f61b9e9b56bac8805e7baeaed651378d5/vllm-0.14.0.tar.gz", None),
    "0.14.1": ("https://files.pythonhosted.org/packages/f0/67/ecb9458e58658b0ff47d6342265c3d46d7ba952c59bcffe50f19823be445/vllm-0.14.1.tar.gz", None),
    "0.16.0": ("https://files.pythonhosted.org/packages/e6/fa/ab31c88afd21b69a46c3cc80d4017a2d5045a30cc4862dba6eae6eca7865/vllm-0.16.0.tar.gz", None),
}
NEEDED = ("pyproject.toml", "requirements/cuda.txt", "requirements/build.txt")


def test_every_patch_has_a_header_saying_why():
    for path in sorted((ROOT / "patches").glob("**/*.patch")):
        text = path.read_text()
        header = text.split("\n--- ", 1)[0]
        assert "Why:" in header or "why" in header.lower(), path
        assert len(header.strip().splitlines()) >= 3, path


def test_every_patch_says_it_is_for_the_release_a_line_pins():
    """Each committed patch has its own When: line, and it names the locked release of the tree it patches in
    one of the vLLM release lines (the hand-written lock or a third_party/locks/ lock; docs/RELEASES.md)."""
    from backend.sources import vllm_release

    lines = [vllm_release.line_lock(line) for line in ("0.15.1", "0.13.0", "0.14.0", "0.14.1", "0.16.0")]
    found = sorted((ROOT / "patches").glob("**/*.patch"))
    assert found
    for path in found:
        component, *entry = path.relative_to(ROOT / "patches").parts[:-1]
        when = patches.when_of(path)
        pinned = {(lock.entries[entry[0]] if entry else lock.main_entry(component)).version for lock in lines}
        assert when and any(patches.matches(when, version) for version in pinned), (path, when, pinned)
        if when.startswith("=="):  # an exact pin names one release exactly as the lock writes it
            assert when[2:] in pinned, (path, when)


def _sdist_tree(version: str, dest: Path) -> Path:
    url, _ = VLLM_SDISTS[version]
    data = urllib.request.urlopen(url, timeout=120).read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for name in NEEDED:
            member = tar.getmember(f"vllm-{version}/{name}")
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(member).read())
    return dest


@pytest.mark.slow
@pytest.mark.parametrize("version", ["0.14.1", "0.16.0"])  # the releases either side of 0.15.1
def test_vllm_patch_applies_to_neighbouring_releases(tmp_path, version):
    tree = _sdist_tree(version, tmp_path / version)
    cuda = tree / "requirements/cuda.txt"
    cuda.write_text(re.sub(r"(?m)^flashinfer-python==.*$", "flashinfer-python==0.6.1", cuda.read_text()))
    applied = patches.apply(tree, "vllm", version="0.15.1")
    assert [name for name, _ in applied] == ["0001-unpin-torch.patch"]
    for name in NEEDED:
        lines = (tree / name).read_text().splitlines()
        assert not [l for l in lines if re.match(r'\s*"?torch(vision|audio)?\s*==', l)], name
    assert "flashinfer-python==0.6.1" in cuda.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("version,patch", [("0.13.0", "0001-unpin-torch-0.13.patch"), ("0.14.0", "0001-unpin-torch-0.14.patch"),
                                           ("0.14.1", "0001-unpin-torch-0.14.patch")])
def test_each_release_line_gets_its_own_unpin_patch(tmp_path, version, patch):
    """The real sdist of each seed line: exactly its own patch applies (by When:) and removes every torch pin."""
    tree = _sdist_tree(version, tmp_path / version)
    assert [name for name, _ in patches.apply(tree, "vllm", version=version)] == [patch]
    for name in NEEDED:
        lines = (tree / name).read_text().splitlines()
        assert not [l for l in lines if re.match(r'\s*"?torch(vision|audio)?\s*==', l)], name


@pytest.mark.slow
def test_vllm_patch_refuses_a_tree_it_was_not_written_for(tmp_path):
    tree = _sdist_tree("0.14.1", tmp_path / "t")  # flashinfer 0.5.3: not vLLM 0.15.1
    with pytest.raises(BackendError, match=r"0001-unpin-torch.patch does not apply to vllm: failed: hunk #1 of requirements/cuda.txt"):
        patches.apply(tree, "vllm", version="0.15.1")


# flash-attention 188be165's hopper/epilogue_fwd.hpp, the file the FA3 patch fixes.
FLASH_ATTN_EPILOGUE = ("https://raw.githubusercontent.com/vllm-project/flash-attention/"
                       "188be16520ceefdc625fdf71365585d2ee348fe2/hopper/epilogue_fwd.hpp")


@pytest.mark.slow
def test_fa3_patch_applies_to_the_locked_flash_attention(tmp_path):
    try:
        text = urllib.request.urlopen(FLASH_ATTN_EPILOGUE, timeout=60).read()
    except OSError as exc:
        pytest.skip(f"flash-attention not reachable: {exc}")
    (tmp_path / "hopper").mkdir()
    (tmp_path / "hopper/epilogue_fwd.hpp").write_bytes(text)
    applied = patches.apply(tmp_path, "vllm", entry="vllm-flash-attn", version="188be16520ceefdc625fdf71365585d2ee348fe2")
    assert [name for name, _ in applied] == ["0001-fa3-cutlass-4.2-epilogue-tile.patch"]
    patched = (tmp_path / "hopper/epilogue_fwd.hpp").read_text()
    assert "sm90_get_smem_store_op_for_accumulator<StrideO, Element, EpilogueTile_MN>()" in patched
    assert "using EpilogueTile_MN = decltype(select<0, 1>(TileShape_MNK_PV{}));" in patched
