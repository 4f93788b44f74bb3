"""torch's optional libraries, read from a real libtorch_cuda.so-shaped object built here with gcc.

The objects stand for torch's ``torch/lib/libtorch_cuda.so``: one links a
(stub) ``libcudnn.so.9`` as torch does when CMake found cuDNN, one only calls
into NCCL (an undefined symbol), one has neither.
"""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from backend.errors import BackendError
from backend.recipes import get
from backend.variants import Variant
from backend.verify.features import check_features, read_features

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
TORCH = get("torch")


def _so(tmp: Path, name: str, source: str, *link: str) -> Path:
    (tmp / f"{name}.c").write_text(source)
    out = tmp / f"{name}.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(out), str(tmp / f"{name}.c"), *link], check=True)
    return out


def _wheel(tmp: Path, name: str, library: Path | None) -> Path:
    wheel = tmp / f"torch-2.9.1+{name}-cp311-cp311-linux_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("torch/__init__.py", "")
        if library is not None:
            archive.write(library, "torch/lib/libtorch_cuda.so")
    return wheel


@pytest.fixture
def wheels(tmp_path):
    stub = tmp_path / "stub"
    stub.mkdir()
    _so(stub, "libcudnn", "int cudnnCreate(void **h) { return 0; }", "-Wl,-soname,libcudnn.so.9")
    full = _so(tmp_path, "full", "int cudnnCreate(void **);\nint ncclCommInitRank(void *);\n"
               "int use(void) { return cudnnCreate(0) + ncclCommInitRank(0); }",
               f"-L{stub}", "-Wl,--no-as-needed", "-lcudnn")
    nccl_only = _so(tmp_path, "nccl", "int ncclCommInitRank(void *) __attribute__((weak));\n"
                    "int use(void) { return ncclCommInitRank ? ncclCommInitRank(0) : 1; }")
    bare = _so(tmp_path, "bare", "int use(void) { return 1; }")
    return {name: _wheel(tmp_path, name, lib) for name, lib in
            (("full", full), ("nccl", nccl_only), ("bare", bare), ("cpu", None))}


def test_features_are_read_from_links_and_calls(wheels):
    full = read_features(wheels["full"], TORCH.features)
    assert full == {"cudnn": True, "cusparselt": False, "cudss": False, "nccl": True}
    assert read_features(wheels["nccl"], TORCH.features)["nccl"] is True
    assert not any(read_features(wheels["bare"], TORCH.features).values())
    assert read_features(wheels["cpu"], TORCH.features) is None


def test_a_torch_without_what_the_variant_promises_is_refused(wheels, capsys):
    sm90 = Variant(sm="90", isa="avx512", cuda="13.0")
    recorded = check_features(TORCH, sm90, [wheels["full"]], "strict")
    assert recorded[wheels["full"].name]["cudnn"] is True
    with pytest.raises(BackendError) as error:
        check_features(TORCH, sm90, [wheels["nccl"]], "strict")
    text = str(error.value)
    assert "\n" not in text and "built without cudnn, which the variant" in text and "sm90" in text
    assert check_features(TORCH, sm90, [wheels["bare"]], "warn")[wheels["bare"].name]["nccl"] is False
    assert "built without cudnn, nccl" in capsys.readouterr().out
    # SM61 gets no cuDNN (cuDNN 9.11+ dropped it): NCCL alone is promised there
    sm61 = Variant(sm="61", isa="avx2", cuda="12.9")
    assert check_features(TORCH, sm61, [wheels["nccl"]], "strict")
    assert check_features(TORCH, sm90, [wheels["bare"]], "off") == {}
