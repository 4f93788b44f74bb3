"""Linking, torch ABI and metadata checks on small wheels built here around gcc-compiled libraries."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import pytest

from backend.verify import Expectation, verify_paths, verify_wheel
from backend.verify import linkage, metadata
from conftest import kept_unchanged, make_wheel

FIXTURES = Path(__file__).parent / "fixtures" / "verify"

GXX = shutil.which("g++")
pytestmark = pytest.mark.skipif(GXX is None, reason="needs g++")
LABEL = "cu130.sm90.avx2"
TORCH_VERSION = f"2.9.1+{LABEL}"
EXPECT = Expectation(sm="90", isa="avx2", cuda="13.0", label=LABEL, torch_version=TORCH_VERSION)
FLAGS = ["-mavx2", "-mfma", "-mf16c", "-frecord-gcc-switches"]


@pytest.fixture(scope="session")
def libs(tmp_path_factory) -> Mapping[str, Path]:
    out = tmp_path_factory.mktemp("libs")
    full, short = out / "full", out / "short"
    full.mkdir()
    short.mkdir()

    def cxx(*args):
        subprocess.run([GXX, "-O2", "-fPIC", *FLAGS, *map(str, args)], check=True)

    cxx("-shared", "-Wl,-soname,libtorch_cpu.so", "-o", full / "libtorch_cpu.so", FIXTURES / "torch_stub.cpp")
    cxx("-shared", "-Wl,-soname,libtorch_cpu.so", "-DDROP_SYMBOL", "-o", short / "libtorch_cpu.so", FIXTURES / "torch_stub.cpp")
    cxx("-shared", "-o", out / "_C.so", FIXTURES / "downstream.cpp", f"-L{full}", "-ltorch_cpu")
    # a library needing a soname that nobody ships, and one needing the CUDA runtime of an nvidia-* wheel
    (out / "gone").mkdir()
    cxx("-shared", "-Wl,-soname,libgone.so.3", "-o", out / "gone" / "libgone.so", FIXTURES / "torch_stub.cpp")
    cxx("-shared", "-o", out / "_needs_gone.so", FIXTURES / "downstream.cpp", f"-L{full}", "-ltorch_cpu",
        f"-L{out / 'gone'}", "-Wl,--no-as-needed", "-lgone")
    (out / "rt").mkdir()
    cxx("-shared", "-Wl,-soname,libcudart.so.13", "-o", out / "rt" / "libcudart.so", FIXTURES / "torch_stub.cpp")
    cxx("-shared", "-o", out / "_needs_cudart.so", FIXTURES / "downstream.cpp", f"-L{full}", "-ltorch_cpu",
        f"-L{out / 'rt'}", "-Wl,--no-as-needed", "-lcudart")
    with kept_unchanged(out):
        yield MappingProxyType({"torch": full / "libtorch_cpu.so", "torch_short": short / "libtorch_cpu.so",
                                "ext": out / "_C.so", "needs_gone": out / "_needs_gone.so",
                                "needs_cudart": out / "_needs_cudart.so"})


def _torch(folder: Path, lib: Path, version: str = TORCH_VERSION) -> Path:
    return make_wheel(folder, "torch", version, {"torch/__init__.py": b"", "torch/lib/libtorch_cpu.so": lib}, tag="cp311-cp311-linux_x86_64")


def _ext(folder: Path, lib: Path, requires=(f"torch=={TORCH_VERSION}",), version=f"1.0+{LABEL}", **kw) -> Path:
    return make_wheel(folder, "ext-ops", version, {"ext_ops/__init__.py": b"", "ext_ops/_C.so": lib}, requires=list(requires), **kw, tag="cp311-cp311-linux_x86_64")


def _errors(report, check=None):
    return [p for p in report.errors if check is None or p.check == check]


def test_good_wheelhouse(tmp_path, libs):
    _torch(tmp_path, libs["torch"])
    _ext(tmp_path, libs["ext"])
    report = verify_paths([tmp_path], EXPECT)
    assert report.ok, report.format_table()
    assert len(report.entries) == 2
    ext = next(e for e in report.entries if e.name == "ext-ops")
    assert ext.objects[0].needed["libtorch_cpu.so"] == "torch"
    assert ext.objects[0].flag_records == 1


def test_wheelhouse_torch_of_another_version_is_refused(tmp_path, libs):
    """A wheelhouse whose torch is not the variant's: torch's own entry and the extension's both fail."""
    _torch(tmp_path, libs["torch"], version=f"2.9.0+{LABEL}")
    _ext(tmp_path, libs["ext"])
    report = verify_paths([tmp_path], EXPECT)
    for name in ("torch", "ext-ops"):
        entry = next(e for e in report.entries if e.name == name)
        assert any(p.severity == "error" and p.check == "metadata" and f"torch is 2.9.0+{LABEL}" in p.message
                   and TORCH_VERSION in p.message for p in entry.problems), (name, report.format_table())


def test_abi_mismatch_names_the_missing_symbol(tmp_path, libs):
    torch = _torch(tmp_path, libs["torch_short"])
    ext = _ext(tmp_path, libs["ext"])
    report = verify_wheel(ext, EXPECT, companions=[torch])
    abi = _errors(report, "abi")
    assert len(abi) == 1 and "c10::version_string()" in abi[0].message and abi[0].message.startswith("1 symbols")
    # the same pair as loose objects
    loose = verify_paths([libs["torch_short"], libs["ext"]], Expectation())
    assert [p.check for p in loose.errors] == ["abi"]
    assert verify_paths([libs["torch"], libs["ext"]], Expectation()).ok


def test_wrong_record_hash(tmp_path, libs):
    torch = _torch(tmp_path, libs["torch"])
    ext = _ext(tmp_path, libs["ext"], corrupt="ext_ops/_C.so")
    report = verify_wheel(ext, EXPECT, companions=[torch])
    assert [p.message for p in _errors(report)] == ["RECORD hash does not match for ext_ops/_C.so"]


def test_library_nobody_provides(tmp_path, libs):
    torch = _torch(tmp_path, libs["torch"])
    ext = _ext(tmp_path, libs["needs_gone"])
    report = verify_wheel(ext, EXPECT, companions=[torch])
    link = _errors(report, "link")
    assert len(link) == 1 and "libgone.so.3" in link[0].message
    # the toolchain may declare it
    allowed = Expectation(**{**EXPECT.__dict__, "extra_allowed_libraries": ("libgone.so.*",)})
    assert verify_wheel(ext, allowed, companions=[torch]).ok


def test_library_from_a_declared_nvidia_requirement(tmp_path, libs):
    torch = _torch(tmp_path, libs["torch"])
    without = _ext(tmp_path / "a" if (tmp_path / "a").mkdir() is None else tmp_path, libs["needs_cudart"])
    assert any("libcudart.so.13" in p.message for p in _errors(verify_wheel(without, EXPECT, [torch]), "link"))
    with_req = _ext(tmp_path, libs["needs_cudart"], requires=(f"torch=={TORCH_VERSION}", "nvidia-cuda-runtime==13.0.96"))
    report = verify_wheel(with_req, EXPECT, [torch])
    assert report.ok, report.format_table()
    assert report.entries[0].objects[0].needed["libcudart.so.13"] == "requirement"


def test_torch_pin_and_label(tmp_path, libs):
    torch = _torch(tmp_path, libs["torch"])
    loose_pin = _ext(tmp_path / "x" if (tmp_path / "x").mkdir() is None else tmp_path, libs["ext"], requires=("torch>=2.9",))
    assert any("not exactly" in p.message for p in _errors(verify_wheel(loose_pin, EXPECT, [torch]), "metadata"))
    other_pin = _ext(tmp_path / "y" if (tmp_path / "y").mkdir() is None else tmp_path, libs["ext"], requires=("torch==2.9.0",))
    assert any("pins torch 2.9.0" in p.message for p in _errors(verify_wheel(other_pin, EXPECT, [torch]), "metadata"))
    unpinned = _ext(tmp_path / "z" if (tmp_path / "z").mkdir() is None else tmp_path, libs["ext"], requires=())
    assert any("does not require torch" in p.message for p in _errors(verify_wheel(unpinned, EXPECT, [torch]), "metadata"))
    unlabelled = _ext(tmp_path / "w" if (tmp_path / "w").mkdir() is None else tmp_path, libs["ext"], version="1.0")
    assert any("label" in p.message for p in _errors(verify_wheel(unlabelled, EXPECT, [torch]), "metadata"))
    wrong_torch = _torch(tmp_path / "v" if (tmp_path / "v").mkdir() is None else tmp_path, libs["torch"], version="2.9.1+cu129.sm90.avx2")
    assert not verify_wheel(wrong_torch, EXPECT).ok


def test_metadata_disagreeing_with_the_file_name(tmp_path, libs):
    ext = _ext(tmp_path, libs["ext"], metadata_version="1.1")
    report = verify_wheel(ext, Expectation())
    assert any("METADATA Version" in p.message for p in _errors(report, "metadata"))


def test_requirement_on_another_wheel_of_the_house(tmp_path, libs):
    _torch(tmp_path, libs["torch"])
    make_wheel(tmp_path, "torchvision", f"0.24.0+{LABEL}", {"torchvision/__init__.py": b""}, requires=[f"torch=={TORCH_VERSION}"], tag="cp311-cp311-linux_x86_64")
    make_wheel(tmp_path, "vllm", f"0.15.1+{LABEL}", {"vllm/__init__.py": b""},
               requires=[f"torch=={TORCH_VERSION}", "torchvision==0.24.1"], tag="cp311-cp311-linux_x86_64")
    report = verify_paths([tmp_path], EXPECT)
    assert [p.message for p in report.errors] == [f"requires torchvision==0.24.1, the wheelhouse has torchvision 0.24.0+{LABEL}"]


def test_command_line(tmp_path, libs, run_backend):
    _torch(tmp_path, libs["torch"])
    _ext(tmp_path, libs["ext"])
    good = run_backend("verify", str(tmp_path), "-C", "isa=avx2", "-C", "sm=90", "-C", "cuda=13.0")
    assert good.returncode == 0, good.stdout + good.stderr
    assert "ext_ops/_C.so" in good.stdout and "-> ok" in good.stdout
    as_json = run_backend("verify", str(tmp_path), "-C", "isa=avx512", "--json")
    assert as_json.returncode == 1
    data = json.loads(as_json.stdout)
    assert data["ok"] is False and data["errors"] >= 1
    assert {o["path"] for e in data["entries"] for o in e["objects"]} == {"ext_ops/_C.so", "torch/lib/libtorch_cpu.so"}
    missing = run_backend("verify", str(tmp_path / "nope.whl"))
    assert missing.returncode == 2 and missing.stderr.startswith("error: verify:")


def test_torch_symbol_names():
    assert linkage.is_torch_symbol("_ZN3c106detail14torchCheckFailEPKcS2_jRKSs")
    assert linkage.is_torch_symbol("_ZNK2at10TensorBase4sizeEl")
    assert linkage.is_torch_symbol("_ZTVN5torch8autograd4NodeE")
    assert linkage.is_torch_symbol("aoti_torch_empty_strided")
    assert not linkage.is_torch_symbol("_ZNSt6thread6_StateD2Ev")
    assert not linkage.is_torch_symbol("memcpy")
    assert linkage.is_torch_library("libtorch_cuda.so") and linkage.is_torch_library("libc10_cuda.so")
    assert not linkage.is_torch_library("libcudart.so.12")


def test_label_rules():
    assert metadata.label_matches("cu129.sm90.avx512", "cu129.sm90.avx512")
    assert metadata.label_matches("post1.cu129.sm90.avx512", "cu129.sm90.avx512")
    assert not metadata.label_matches("cu129", "cu129.sm90.avx512")
    assert not metadata.label_matches(None, "cu129.sm90.avx512")


def test_objects_deep_in_long_paths_are_checked(tmp_path, libs):
    """flashinfer-jit-cache's modules sit at paths whose flattened form exceeds NAME_MAX (seen on the H200)."""
    _torch(tmp_path, libs["torch"])
    module = "batch_prefill_with_kv_cache_dtype_q_f16_dtype_kv_f16_dtype_o_f16_dtype_idx_i32_head_dim_qk_128_" \
             "head_dim_vo_128_posenc_0_use_swa_False_use_logits_cap_False_f16qk_False_sm90"
    inner = f"ext_ops/jit_cache/{module}/{module}.so"
    assert len(inner.replace("/", "__")) > 255
    make_wheel(tmp_path, "ext-ops", f"1.0+{LABEL}", {"ext_ops/__init__.py": b"", inner: libs["ext"]},
               requires=[f"torch=={TORCH_VERSION}"])
    report = verify_paths([tmp_path], EXPECT)
    assert report.ok, report.format_table()
    ext = next(e for e in report.entries if e.name == "ext-ops")
    assert [o.path for o in ext.objects] == [inner]
