"""One CUDA target per variant, every spelling of its SM derived from it, checked against nvcc 13 itself."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from backend.cuda_target import CudaTarget
from backend.variants import Variant, matrix
from backend.pipeline import existing_torch
from backend.verify import elf

NVCC = Path(os.environ.get("NVCC", "/usr/local/cuda-13.0/bin/nvcc"))
KERNEL = Path(__file__).parent / "fixtures" / "verify" / "kernel.cu"


@pytest.mark.parametrize("sm, cuda, spellings", [
    ("90", "12.9", ("9.0", "9.0a", None, "90", "90-real", "sm_90", "compute_90")),
    ("86", "12.8", ("8.6", None, None, "86", "86-real", "sm_86", "compute_86")),
    ("103", "13.0", ("10.3", "10.3a", "10.3f", "103", "103-real", "sm_103", "compute_103")),
    ("120", "12.8", ("12.0", "12.0a", None, "120", "120-real", "sm_120", "compute_120")),  # no 12.0f before 12.9
    ("120", "12.9", ("12.0", "12.0a", "12.0f", "120", "120-real", "sm_120", "compute_120")),
])
def test_every_spelling_from_one_value(sm, cuda, spellings):
    t = CudaTarget(sm=sm, cuda=cuda)
    assert (t.capability, t.arch_specific, t.family, t.cmake, t.cmake_real,
            t.cubin, t.ptx) == spellings
    assert t.gencode == ("-gencode", f"arch=compute_{sm},code=sm_{sm}")


def test_the_variant_makes_it_once():
    variant = Variant(sm="100", isa="avx512", cuda="12.9")
    assert variant.target is variant.target and variant.target == CudaTarget("100", "12.9")


def test_nvcc_knows_every_spelling_of_every_cuda13_row():
    """nvcc 13.0 lists the real and virtual name of each CUDA 13.0 row's SM (sm_61 and sm_70 have none)."""
    if not NVCC.exists():
        pytest.skip(f"nvcc not found at {NVCC} (set NVCC=...)")
    codes = set(subprocess.run([str(NVCC), "--list-gpu-code"], capture_output=True, text=True, check=True).stdout.split())
    archs = set(subprocess.run([str(NVCC), "--list-gpu-arch"], capture_output=True, text=True, check=True).stdout.split())
    targets = {v.target for v in matrix(cudas=("13.0",))}
    assert {t.sm for t in targets} >= {"75", "90", "100", "103", "120", "121"}
    for target in targets:
        assert target.cubin in codes and target.ptx in archs, target


@pytest.mark.parametrize("sm", ["90", "103"])
def test_gencode_builds_the_cubin_verification_expects(sm, tmp_path):
    if not NVCC.exists():
        pytest.skip(f"nvcc not found at {NVCC} (set NVCC=...)")
    target = CudaTarget(sm=sm, cuda="13.0")
    library = tmp_path / "libk.so"
    subprocess.run([str(NVCC), "-shared", "-Xcompiler", "-fPIC", "-o", str(library), str(KERNEL), *target.gencode],
                   check=True, capture_output=True)
    (section,) = elf.read_object(library).gpu
    assert {entry.target for entry in section.entries} == {target.cubin}


@pytest.mark.parametrize("gencode, runs_on, not_on", [
    ("arch=compute_100f,code=sm_100f", ("100", "103"), ("90", "120")),  # family code runs on later members
    ("arch=compute_90a,code=sm_90a", ("90",), ("100", "89")),
    ("arch=compute_80,code=[sm_80,compute_80]", ("80", "86", "90", "120"), ("75",)),  # PTX JITs upwards
])
def test_existing_torch_check_judges_gpu_code_as_verification(gencode, runs_on, not_on, tmp_path):
    """torch=existing reads a libtorch_cuda.so's fatbin and asks the variant's target, the same judgement
    verification makes: an sm_100f cubin runs on sm_103 (the check's own table refused it before)."""
    if not NVCC.exists():
        pytest.skip(f"nvcc not found at {NVCC} (set NVCC=...)")
    library = tmp_path / "libtorch_cuda.so"
    subprocess.run([str(NVCC), "-shared", "-Xcompiler", "-fPIC", "-o", str(library), str(KERNEL), "-gencode", gencode],
                   check=True, capture_output=True)
    cubins, ptx = existing_torch._gpu_targets(library)
    for sm in runs_on:
        assert CudaTarget(sm).runs(cubins, ptx), sm
    for sm in not_on:
        assert not CudaTarget(sm).runs(cubins, ptx), sm
