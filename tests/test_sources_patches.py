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
    "0.14.1": ("https://files.pythonhosted.org/packages/f0/67/ecb9458e58658b0ff47d6342265c3d46d7ba952c59bcffe50f19823be445/vllm-0.14.1.tar.gz", None),
    "0.16.0": ("https://files.pythonhosted.org/packages/e6/fa/ab31c88afd21b69a46c3cc80d4017a2d5045a30cc4862dba6eae6eca7865/vllm-0.16.0.tar.gz", None),
}
NEEDED = ("pyproject.toml", "requirements/cuda.txt", "requirements/build.txt")


def test_every_patch_has_a_header_saying_why():
    for path in sorted((ROOT / "patches").glob("*/*.patch")):
        text = path.read_text()
        header = text.split("\n--- ", 1)[0]
        assert "Why:" in header or "why" in header.lower(), path
        assert len(header.strip().splitlines()) >= 3, path


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
@pytest.mark.parametrize("version", sorted(VLLM_SDISTS))
def test_vllm_patch_applies_to_neighbouring_releases(tmp_path, version):
    tree = _sdist_tree(version, tmp_path / version)
    cuda = tree / "requirements/cuda.txt"
    cuda.write_text(re.sub(r"(?m)^flashinfer-python==.*$", "flashinfer-python==0.6.1", cuda.read_text()))
    applied = patches.apply(tree, "vllm")
    assert [name for name, _ in applied] == ["0001-unpin-torch.patch"]
    for name in NEEDED:
        lines = (tree / name).read_text().splitlines()
        assert not [l for l in lines if re.match(r'\s*"?torch(vision|audio)?\s*==', l)], name
    assert "flashinfer-python==0.6.1" in cuda.read_text()


@pytest.mark.slow
def test_vllm_patch_refuses_a_tree_it_was_not_written_for(tmp_path):
    tree = _sdist_tree("0.14.1", tmp_path / "t")  # flashinfer 0.5.3: not vLLM 0.15.1
    with pytest.raises(BackendError, match=r"0001-unpin-torch.patch does not apply to vllm: failed: hunk #1 of requirements/cuda.txt"):
        patches.apply(tree, "vllm")
