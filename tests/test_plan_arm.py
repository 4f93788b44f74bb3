"""The ARM rows of the matrix (GH200, GB200, GB300, Altra with A100/H100) against the seed's aarch64 table.

Each plan is checked for the flags every component gets, the arch lists the
GPU builds get, and what those flags really switch on in Debian's aarch64 cross
compiler (its predefined __ARM_FEATURE_* macros), against the extensions the
seed names for each ISA.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from backend import variants
from backend.errors import BackendError
from backend.host import Host
from backend.pipeline.plan import make_plan
from backend.settings import resolve
from backend import cpu_isa
from backend.variants import Variant

SEED = Path(__file__).resolve().parent / "data" / "seed_build_matrix.md"
GIB = 1 << 30
CC = shutil.which("aarch64-linux-gnu-gcc")
GRACE_HOST = Host("aarch64", frozenset("fp asimd asimdhp asimddp sve sve2 svebf16 svei8mm".split()))
# The seed README, "Choose your CPU ISA": armv9 "SVE2, BF16, I8MM"; armv8_2 "fp16, dotprod".
SEED_EXTENSIONS = {
    "armv9": {"__ARM_FEATURE_SVE2", "__ARM_FEATURE_BF16_VECTOR_ARITHMETIC",
              "__ARM_FEATURE_SVE_MATMUL_INT8", "__ARM_FEATURE_MATMUL_INT8"},
    "armv8_2": {"__ARM_FEATURE_FP16_VECTOR_ARITHMETIC", "__ARM_FEATURE_DOTPROD"},
}


def seed_arm_rows() -> list[tuple[str, str, str]]:
    """(sm, isa, cuda) of every row of the seed's aarch64-linux table."""
    arm = SEED.read_text().split("### aarch64-linux")[1].split("### Total")[0]
    rows = []
    for line in arm.splitlines():
        found = re.findall(r"`sm(\d+)-(\w+)`", line)
        if found:
            sm, isa = found[0]
            rows += [(sm, isa, cuda) for cuda in re.findall(r"12\.\d", line.split("|")[-2])]
    return rows


ROWS = seed_arm_rows()


def test_the_seed_has_nine_arm_variants_and_the_matrix_has_them():
    assert len(ROWS) == 9  # 2 CUDA releases for four rows, 12.9 only for SM103
    ours = {(v.sm, v.isa, v.cuda) for v in variants.matrix(python="313") if v.platform == "aarch64" and v.seed}
    assert ours == set(ROWS)


@pytest.mark.parametrize("sm, isa, cuda", ROWS, ids=[f"sm{s}-{i}-{c}" for s, i, c in ROWS])
def test_arm_plan(tmp_path, sm, isa, cuda):
    config = {"cache-dir": str(tmp_path), "sm": sm, "isa": isa, "cuda": cuda}
    assert variants.host_violation(isa, GRACE_HOST) is None
    variant = Variant(sm=sm, isa=isa, cuda=cuda, python="313")
    if sm == "103" and cuda.startswith("12."):
        # vLLM 0.15.1's CMake gives sm_101a kernels for 10.3 with nvcc 12.x: the plan refuses it, in one line
        with pytest.raises(BackendError, match="vllm 0.15.1 cannot be built for sm=103"):
            make_plan(resolve(config), variant, project_dir=tmp_path, cores=72, memory_bytes=480 * GIB)
        config["components"] = "torch,torchvision,torchaudio,xformers,flashinfer,bitsandbytes"
    plan = make_plan(resolve(config), variant, project_dir=tmp_path, cores=72, memory_bytes=480 * GIB)
    assert plan.to_json()["platform"] == "aarch64"
    assert plan.variant.name == f"vllm-python313-cuda{cuda.replace('.', '_')}-sm{sm}-{isa}"
    arch = f"{sm[:-1]}.{sm[-1]}"
    for step in plan.steps:
        env = step.env
        assert env["CFLAGS"] == env["CXXFLAGS"] == f"{cpu_isa.get(isa).flags[0]} -frecord-gcc-switches", step.component
        assert not any(flag.startswith("-m") and not flag.startswith("-march") for flag in env["CXXFLAGS"].split())
        assert env["TORCH_CUDA_ARCH_LIST"].rstrip("af") == arch  # vLLM's sm_90a / sm_100a kernels
    torch = plan.step("torch").env
    assert torch["TORCH_CUDA_ARCH_LIST"] == arch
    assert torch["PYTORCH_BUILD_VERSION"] == f"2.9.1+cu{cuda.replace('.', '')}.sm{sm}.{isa}"
    assert plan.step("bitsandbytes").env["CMAKE_ARGS"].endswith(f"-DCOMPUTE_CAPABILITY={sm}")
    flashinfer = plan.step("flashinfer").env["FLASHINFER_CUDA_ARCH_LIST"]
    assert flashinfer.split()[-1].rstrip("af") == arch  # SM103 also gets 10.0a (flashinfer's own rule)


@pytest.mark.skipif(CC is None, reason="needs g++-aarch64-linux-gnu (ci/apt/arm.txt)")
@pytest.mark.parametrize("isa", ["armv8_2", "armv9"])
def test_the_isa_flags_switch_on_what_the_seed_names(isa):
    macros = subprocess.run([CC, *cpu_isa.get(isa).flags, "-E", "-dM", "-x", "c", "-"], input="", capture_output=True,
                            text=True, check=True).stdout
    defined = set(re.findall(r"#define (__ARM_FEATURE_\w+)", macros))
    assert SEED_EXTENSIONS[isa] <= defined
    if isa == "armv8_2":
        assert not {m for m in defined if m.startswith("__ARM_FEATURE_SVE")}  # Altra has no SVE


def test_gb10_and_v100_plans(tmp_path):
    """sm_121 (GB10, armv9): vLLM's 12.1 -> 12.0 mapping and flashinfer's 12.1a; sm_70 refuses flashinfer."""
    config = {"cache-dir": str(tmp_path), "sm": "12.1", "isa": "armv9", "cuda": "12.9"}
    plan = make_plan(resolve(config), Variant(sm="121", isa="armv9", cuda="12.9", python="313"),
                     project_dir=tmp_path, cores=20, memory_bytes=120 * GIB)
    assert plan.step("torch").env["TORCH_CUDA_ARCH_LIST"] == "12.1"
    assert plan.step("flashinfer").env["FLASHINFER_CUDA_ARCH_LIST"] == "12.1a"
    assert plan.step("bitsandbytes").env["CMAKE_ARGS"].endswith("-DCOMPUTE_CAPABILITY=121")
    notes = " ".join(plan.step("vllm").notes)
    assert "maps 12.1 to the 12.0 kernels" in notes and "12.0a kernels" in notes and "dropped" in notes
    v100 = Variant(sm="70", isa="avx512", cuda="12.9", python="313")
    with pytest.raises(BackendError, match="flashinfer 0.6.1 cannot be built for sm=70"):
        make_plan(resolve({"cache-dir": str(tmp_path), "sm": "70", "isa": "avx512", "cuda": "12.9"}), v100,
                  project_dir=tmp_path, cores=16, memory_bytes=120 * GIB)
    plan = make_plan(resolve({"cache-dir": str(tmp_path), "sm": "70", "isa": "avx512", "cuda": "12.9",
                              "components": "torch,torchvision,torchaudio,xformers,bitsandbytes"}), v100,
                     project_dir=tmp_path, cores=16, memory_bytes=120 * GIB)
    assert plan.step("torch").env["TORCH_CUDA_ARCH_LIST"] == "7.0"
    assert plan.step("bitsandbytes").env["CMAKE_ARGS"].endswith("-DCOMPUTE_CAPABILITY=70")
    # torch 2.9.1's cpp_extension knows 7.0 and 12.1: xformers and torchvision plan for both, unrefused
    assert plan.step("xformers").env["TORCH_CUDA_ARCH_LIST"] == "7.0"
    assert plan.step("torchvision").env["TORCH_CUDA_ARCH_LIST"] == "7.0"


def test_cpp_extension_components_refuse_an_arch_torch_291_does_not_know():
    """xformers and torchvision compile through torch.utils.cpp_extension, which stops at an arch outside its list
    (torch 2.9.1: 10.1, Thor's number before CUDA 13, is not in it): the plan says so in one line, before any build;
    every SM the settings accept passes."""
    from types import SimpleNamespace

    from backend import recipes
    from backend.settings import SMS

    thor = SimpleNamespace(sm="101", target=SimpleNamespace(capability="10.1", arch_specific="10.1a"))
    for component in ("xformers", "torchvision"):
        problem = recipes.get(component).variant_problem(thor)
        assert problem and problem.startswith(f"{component} cannot be built for TORCH_CUDA_ARCH_LIST=10.1")
        assert "knows no 10.1 (cpp_extension.py:2407-2411)" in problem
        for sm in SMS:
            assert recipes.get(component).variant_problem(Variant(sm=sm, isa="avx512", cuda="12.9")) is None, sm
