"""The variant's ISA flags reach nvcc's host compiles where each upstream build reads a variable for them.

Issue 22 item 8.  CFLAGS/CXXFLAGS reach C/C++ compiles only: CMake never hands
CMAKE_C(XX)_FLAGS to nvcc, ``torch.utils.cpp_extension`` never hands CFLAGS to
nvcc, and flashinfer's AOT ninja files (``flashinfer/jit/cpp_ext.py``) take
neither.  So before this, the host half of every ``.cu`` file was compiled for
plain x86-64.  Each recipe now names the variable its upstream reads
(``Recipe.isa_flag_variables``) and the plan appends the variant's flags with
``-frecord-gcc-switches``, so the compile record verification already checks
(``backend/verify/isa.py``) exists for nvcc's host objects too.

Here a ``.cu`` file is compiled the way each upstream reads its variable, with
the real nvcc and CMake, from the plan's environment, and the host object's
compile record is read back:

* ``cmake-init``: CMake starts ``CMAKE_CUDA_FLAGS`` from ``CUDAFLAGS``
  (vLLM's, bitsandbytes' and torchaudio's CMake builds);
* ``cmake-append``: torch's ``cmake/Dependencies.cmake`` line
  ``string(APPEND CMAKE_CUDA_FLAGS " $ENV{TORCH_NVCC_FLAGS}")``;
* ``shlex``: ``shlex.split(os.getenv(VAR))`` added to nvcc's arguments
  (xformers' and torchvision's ``NVCC_FLAGS``, flashinfer's
  ``FLASHINFER_EXTRA_CUDAFLAGS``), or to the C++ compiler's (flashinfer's
  ``FLASHINFER_EXTRA_CFLAGS``).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from backend import recipes
from backend.pipeline.plan import isa_flag_statement, make_plan
from backend.settings import resolve
from backend.variants import Variant
from backend.verify import elf, isa as isa_scan
from standin_helpers import find_nvcc
from backend.pipeline.plan import isa_flag_env

GIB = 1 << 30
ISA = "avx512"
KERNEL = """
float host_sum(const float* v, int n) { float s = 0; for (int i = 0; i < n; ++i) s += v[i] * 2.0f; return s; }
__global__ void twice(float* x) { x[threadIdx.x] *= 2.0f; }
"""
# How each upstream build reads each variable (see the module docstring and the recipes' comments).
READERS = {
    ("torch", "TORCH_NVCC_FLAGS"): "cmake-append",
    ("vllm", "CUDAFLAGS"): "cmake-init",
    ("bitsandbytes", "CUDAFLAGS"): "cmake-init",
    ("torchaudio", "CUDAFLAGS"): "cmake-init",
    ("xformers", "NVCC_FLAGS"): "shlex",
    ("torchvision", "NVCC_FLAGS"): "shlex",
    ("flashinfer", "FLASHINFER_EXTRA_CUDAFLAGS"): "shlex",
    ("flashinfer", "FLASHINFER_EXTRA_CFLAGS"): "shlex-host",
}
NVCC = find_nvcc()
needs_nvcc = pytest.mark.skipif(NVCC is None or shutil.which("cmake") is None, reason="needs nvcc and cmake")


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    settings = resolve({"cache-dir": str(tmp_path_factory.mktemp("cache")), "cuda": "13.0"})
    variant = Variant(sm="90", isa=ISA, cuda="13.0")
    return make_plan(settings, variant, project_dir=tmp_path_factory.mktemp("project"), cores=16, memory_bytes=64 * GIB)


def test_every_cuda_component_passes_the_flags_to_nvcc_and_says_what_they_miss(plan):
    flags = plan.variant.isa_flags
    for step in plan.steps:
        recipe = recipes.get(step.component)
        nvcc_variables = [name for name, form in recipe.isa_flag_variables.items() if form == "nvcc"]
        assert nvcc_variables, f"{step.component}: no variable carries the ISA flags to nvcc's host compiles"
        for name in recipe.isa_flag_variables:
            assert (step.component, name) in READERS, f"{step.component}: {name} has no reader in this test"
            value = step.env[name]
            assert all(flag in value for flag in flags) and "-frecord-gcc-switches" in value, (name, value)
        note = next(n for n in step.notes if n.startswith("the ISA flags are passed"))
        assert all(name in note for name in recipe.isa_flag_variables) and "not reached:" in note
        assert isa_flag_statement(recipe)["variables"][2:] == list(recipe.isa_flag_variables)
    assert {(s.component, n) for s in plan.steps for n in recipes.get(s.component).isa_flag_variables} == set(READERS)


def test_a_recipe_that_sets_the_variable_itself_keeps_its_value(plan):
    env = isa_flag_env(recipes.get("torch"), plan.variant, {"TORCH_NVCC_FLAGS": "-Xfatbin -compress-all"})
    assert env["TORCH_NVCC_FLAGS"].startswith("-Xfatbin -compress-all -Xcompiler=-mavx512f,")


def _records(obj: Path) -> isa_scan.FlagCheck:
    return isa_scan.check_flags(elf.read_object(obj).compile_records, ISA)


def _compile(reader: str, variable: str, value: str, work: Path) -> Path:
    """The host object of KERNEL, compiled the way ``reader`` reads ``variable=value``."""
    work.mkdir(parents=True)
    source = work / "kernel.cu"
    source.write_text(KERNEL)
    env = {**os.environ, variable: value}
    if reader in ("shlex", "shlex-host"):
        obj = work / "kernel.o"
        if reader == "shlex-host":
            host = work / "host.cpp"
            host.write_text(KERNEL.split("__global__")[0])
            command = ["g++", "-c", str(host), "-o", str(obj), "-O2", *shlex.split(env[variable])]
        else:
            command = [NVCC, "-c", str(source), "-o", str(obj), "-arch=sm_90", "-O2", *shlex.split(env[variable])]
        subprocess.run(command, check=True, capture_output=True, env=env)
        return obj
    append = 'string(APPEND CMAKE_CUDA_FLAGS " $ENV{TORCH_NVCC_FLAGS}")\n' if reader == "cmake-append" else ""
    (work / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.22)\nproject(standin LANGUAGES CUDA)\n" + append
        + "add_library(kernel OBJECT kernel.cu)\nset_target_properties(kernel PROPERTIES CUDA_ARCHITECTURES 90-real)\n")
    build = work / "build"
    for command in (["cmake", "-S", str(work), "-B", str(build), f"-DCMAKE_CUDA_COMPILER={NVCC}"],
                    ["cmake", "--build", str(build)]):
        result = subprocess.run(command, capture_output=True, text=True, env=env)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return next(build.rglob("kernel.cu.o"))


@needs_nvcc
@pytest.mark.parametrize("reader", ["cmake-init", "cmake-append", "shlex", "shlex-host"])
def test_the_flags_reach_the_host_object_as_the_upstream_reads_them(plan, reader, tmp_path):
    component, variable = next(key for key, how in READERS.items() if how == reader)
    obj = _compile(reader, variable, plan.step(component).env[variable], tmp_path / "with")
    check = _records(obj)
    assert check.records >= 1 and not check.lacking, (component, variable, check)


@needs_nvcc
def test_without_the_variable_the_host_object_has_no_record_of_the_flags(plan, tmp_path):
    """The defect, reproduced: xformers' nvcc compile with the common CFLAGS/CXXFLAGS only (what the plan gave it)."""
    env_without = {k: v for k, v in plan.step("xformers").env.items() if k != "NVCC_FLAGS"}
    assert "-mavx512f" in env_without["CFLAGS"]
    obj = _compile("shlex", "NVCC_FLAGS", env_without.get("NVCC_FLAGS", ""), tmp_path / "without")
    check = _records(obj)
    assert check.records == 0  # the host compile saw neither the ISA flags nor the switch that records them
