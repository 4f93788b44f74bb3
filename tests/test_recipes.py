"""Each recipe's environment, commands and notes for a few real variants.

Values asserted here were read from the upstream trees at the pinned tags
(docs/COMPONENTS.md says where).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

from pathlib import Path
from types import SimpleNamespace

import pytest

from backend import recipes
from backend.recipes import BuildContext
from backend.recipes import flashinfer as flashinfer_recipe
from backend.recipes import torch as torch_recipe
from backend.recipes import torchvision as torchvision_recipe
from backend.recipes import vllm as vllm_recipe
from backend.pipeline.parallelism import JobChoice
from backend.pipeline.plan import common_env
from backend.project import load_settings
from backend.settings import Settings
from backend.variants import Variant, matrix, rule_violation

COMPONENTS = recipes.names()
SM90 = Variant(sm="90", isa="avx512", cuda="12.9", python="311")
SM61 = Variant(sm="61", isa="avx2", cuda="12.8", python="311")
SM61_AVX = Variant(sm="61", isa="avx", cuda="12.9", python="311")
SM103 = Variant(sm="103", isa="armv9", cuda="12.9", python="311")
SM103_13 = Variant(sm="103", isa="armv9", cuda="13.0", python="311")
SM120 = Variant(sm="120", isa="avx512", cuda="13.0", python="311")
VARIANTS = [SM90, SM61, SM61_AVX, SM103, SM103_13, SM120]


def ctx_for(recipe, variant: Variant, tmp_path: Path) -> BuildContext:
    work = tmp_path / variant.name / recipe.name
    return BuildContext(
        variant=variant,
        settings=Settings(sm=variant.sm, isa=variant.isa, cuda=variant.cuda),
        tree=work / recipe.lock_entries[0],
        extras={name: work / name for name in recipe.lock_entries[1:]},
        wheel_dir=work / "_wheels",
        build_dir=work / "_build",
        python="/env/bin/python",
    )


def test_the_variants_used_here_are_real_variants():
    for v in VARIANTS:
        assert rule_violation(v.sm, v.isa, v.cuda) is None, v
    assert SM90 in matrix(python="311")


def test_every_component_has_its_recipe_and_versions():
    from backend.sources import lock

    locked = lock.load()
    got = {r.name: r.version for r in recipes.all_recipes()}
    # every component of the lock has its recipe and the other way round; a recipe builds its main tree's version
    assert sorted(got) == sorted(locked.components)
    assert got == {name: locked.main_entry(name).version for name in got}
    assert tuple(got) == COMPONENTS
    # the stack this project pins (README): torch 2.9.1 and the vLLM built on it
    assert (got["torch"], got["vllm"]) == ("2.9.1", "0.15.1")


def test_dependencies_and_distributions():
    r = {x.name: x for x in recipes.all_recipes()}
    assert r["torch"].depends == () and r["torch"].pins_torch is False
    # bitsandbytes: no torch at build time, but its wheel still pins the variant's torch
    # (links no torch library; pinned so pip never mixes variants: the project's decision)
    assert r["bitsandbytes"].depends == () and r["bitsandbytes"].pins_torch is True
    for name in ("torchvision", "torchaudio", "xformers", "flashinfer", "vllm"):
        assert "torch" in r[name].depends and r[name].pins_torch is True, name
    assert r["vllm"].depends == ("torch", "flashinfer", "torchvision", "torchaudio")
    assert r["vllm"].stack_requires == ("torchvision", "torchaudio")
    assert r["flashinfer"].distributions == ("flashinfer-python", "flashinfer-jit-cache")
    assert r["xformers"].fixed_nvcc_threads == 4
    # every depends names a component that comes earlier in build order
    order = list(COMPONENTS)
    for recipe in r.values():
        for dep in recipe.depends:
            assert order.index(dep) < order.index(recipe.name), (recipe.name, dep)


def test_sources_are_lock_entries():
    from backend.sources import lock

    entries = lock.load().entries
    for recipe in recipes.all_recipes():
        for name in recipe.lock_entries:
            assert name in entries, (recipe.name, name)
            assert entries[name].component == recipe.name, (recipe.name, name)
        assert recipe.lock_entries[0] == recipe.name
    vllm_entries = {name for name, e in entries.items() if e.component == "vllm"}
    assert set(recipes.get("vllm").lock_entries) == vllm_entries
    # the tree that is built comes first, then the lock's order (vLLM's CMake sources, each CUTLASS after
    # the tree it goes into)
    assert recipes.get("vllm").lock_entries == (
        "vllm", "vllm-cutlass", "vllm-flash-attn", "vllm-flash-attn-cutlass", "flashmla", "flashmla-cutlass",
        "qutlass", "triton-kernels")
    assert recipes.get("flashinfer").lock_entries == ("flashinfer", "flashinfer-tag", "flashinfer-cubin")


def test_build_order_comes_from_depends_with_the_lock_breaking_ties():
    from backend.errors import BackendError

    assert COMPONENTS == ("torch", "torchvision", "torchaudio", "xformers", "flashinfer", "bitsandbytes", "vllm")
    r = {x.name: x for x in recipes.all_recipes()}
    # depends wins over the preferred order: vllm first in it still comes after all it needs
    assert recipes.build_order(r, ["vllm", "bitsandbytes"]) == (
        "bitsandbytes", "torch", "flashinfer", "torchaudio", "torchvision", "vllm", "xformers")
    assert recipes.build_order(r) == (
        "bitsandbytes", "torch", "flashinfer", "torchaudio", "torchvision", "vllm", "xformers")
    # build_order reads a recipe's name and depends only
    cyclic = {"a": SimpleNamespace(name="a", depends=("b",)), "b": SimpleNamespace(name="b", depends=("a",)),
              "c": SimpleNamespace(name="c", depends=())}
    with pytest.raises(BackendError, match=r"recipe dependency cycle: a -> b -> a"):
        recipes.build_order(cyclic)
    orphan = {"a": SimpleNamespace(name="a", depends=("nothing",))}
    with pytest.raises(BackendError, match=r"recipe 'a' depends on 'nothing', which has no recipe"):
        recipes.build_order(orphan)
    with pytest.raises(BackendError, match=r"no recipe for component 'base'"):
        recipes.get("base")


def test_build_requires_are_requirement_specifiers():
    from packaging.requirements import Requirement

    for recipe in recipes.all_recipes():
        for spec in recipe.build_requires:
            req = Requirement(spec)
            assert req.name.lower() != "torch", recipe.name
    vllm_reqs = {Requirement(s).name: str(Requirement(s).specifier) for s in recipes.get("vllm").build_requires}
    assert vllm_reqs["setuptools"] == "<81.0.0,>=77.0.3"
    assert "grpcio-tools" in vllm_reqs and "setuptools-scm" in vllm_reqs
    bnb = {Requirement(s).name for s in recipes.get("bitsandbytes").build_requires}
    assert {"scikit-build-core", "setuptools", "trove-classifiers"} <= bnb


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
@pytest.mark.parametrize("name", COMPONENTS)
def test_environment_and_commands_are_well_formed(name, variant, tmp_path):
    recipe = recipes.get(name)
    ctx = ctx_for(recipe, variant, tmp_path)
    env = recipe.environment(ctx)
    assert env and all(isinstance(k, str) and isinstance(v, str) and k for k, v in env.items())
    # the engine owns these
    assert not {"CFLAGS", "CXXFLAGS", "MAX_JOBS", "CUDA_HOME", "CUDACXX", "PATH"} & set(env)
    cmds = recipe.commands(ctx)
    assert cmds and all(isinstance(c, list) and c and all(isinstance(a, str) for a in c) for c in cmds)
    build = cmds[-1] if name != "flashinfer" else [c for c in cmds if "wheel" in c][0]
    assert build[:4] == ["/env/bin/python", "-m", "pip", "wheel"]
    assert "--no-build-isolation" in build and build[build.index("-w") + 1] == str(ctx.wheel_dir)
    assert build[-1] == str(ctx.tree)
    notes = recipe.notes(variant)
    assert all(isinstance(n, str) and n for n in notes)


def test_torch_sm90(tmp_path):
    env = recipes.get("torch").environment(ctx_for(recipes.get("torch"), SM90, tmp_path))
    assert "TORCH_CUDA_ARCH_LIST" not in env  # the engine's, from the variant's target (test_plan)
    assert env["USE_CUDNN"] == "1" and env["USE_CUDA"] == "1" and env["USE_NCCL"] == "1"
    assert env["BUILD_TEST"] == "0" and env["USE_DISTRIBUTED"] == "1" and env["CMAKE_GENERATOR"] == "Ninja"
    assert env["PYTORCH_BUILD_VERSION"] == "2.9.1+cu129.sm90.avx512"
    assert env["PYTORCH_BUILD_NUMBER"] == "0"
    assert "USE_FBGEMM" not in env
    # the cache entries setup.py cannot forward (NNPACK's six) travel in a CMake file, for every variant
    assert Path(env["CMAKE_PROJECT_INCLUDE_BEFORE"]).name == torch_recipe.CMAKE_FILE


def test_torch_names_its_blas_and_nvshmem(tmp_path):
    """BLAS named (so a missing MKL/OpenBLAS is a configure error) and NVSHMEM from torch's own requirement."""
    recipe = recipes.get("torch")
    env = recipe.environment(ctx_for(recipe, SM90, tmp_path))
    # MKL: the lock's mkl-static / mkl-include wheels, unpacked beside the tree (PyTorch's /opt/intel)
    assert env["BLAS"] == "MKL"
    assert env["CMAKE_LIBRARY_PATH"].endswith("/torch-mkl-static/mkl_static-2024.2.0.data/data/lib")
    assert env["CMAKE_INCLUDE_PATH"].endswith("/torch-mkl-include/mkl_include-2024.2.0.data/data/include")
    assert env["USE_NVSHMEM"] == "1"
    # the first command writes NVSHMEM_HOME into the CMake file from the wheel the build venv imports
    write, _build = recipe.commands(ctx_for(recipe, SM90, tmp_path))
    assert write[4] == "nvidia-nvshmem-cu12==3.3.20"
    no_site = subprocess.run([sys.executable, "-S", *write[1:]], capture_output=True, text=True)
    assert no_site.returncode != 0 and len(no_site.stderr.strip().splitlines()) == 1
    assert "cannot import six: install its build requirement six" in no_site.stderr
    assert recipe.build_requirements(SM90)[-1] == "nvidia-nvshmem-cu12==3.3.20"
    # what it is built against is what it requires at run time, for 12.9 (no PyTorch pin list) too
    assert "nvidia-nvshmem-cu12==3.3.20" in recipe.runtime_requires(SM90)
    assert recipe.build_requirements(SM120)[-1] == "nvidia-nvshmem-cu13==3.3.24" in recipe.runtime_requires(SM120)
    arm = recipe.environment(ctx_for(recipe, SM103, tmp_path))
    assert arm["BLAS"] == "OpenBLAS"
    assert recipe.unused_sources(SM103, Settings()) == torch_recipe.MKL_SOURCES
    assert recipe.unused_sources(SM90, Settings()) == ()
    sm61 = recipe.environment(ctx_for(recipe, SM61, tmp_path))
    assert sm61["USE_NVSHMEM"] == "0" and recipe.commands(ctx_for(recipe, SM61, tmp_path))[0][4] == ""
    assert not any("nvshmem" in r for r in recipe.build_requirements(SM61) + recipe.runtime_requires(SM61))


def test_torch_mkl_only_for_a_tree_that_configures_mkl(tmp_path):
    """A local tree without torch's FindMKL.cmake (a stand-in) neither fetches nor unpacks the MKL wheels."""
    recipe = recipes.get("torch")
    standin = tmp_path / "standin"
    standin.mkdir()
    assert recipe.unused_sources(SM90, Settings(sources={"torch": standin})) == torch_recipe.MKL_SOURCES
    (standin / "cmake" / "Modules").mkdir(parents=True)
    (standin / "cmake" / "Modules" / "FindMKL.cmake").write_text("# torch's\n")
    assert recipe.unused_sources(SM90, Settings(sources={"torch": standin})) == ()


def test_torch_nvshmem_does_not_depend_on_the_component_list():
    """The build venv holds the union of the planned components' requirements: with or without flashinfer,
    torch's NVSHMEM wheel is the one the lock pins for torch's requirement."""
    from backend.sources import buildreqs

    torch_only = set(recipes.get("torch").build_requirements(SM90))
    with_flashinfer = torch_only | set(recipes.get("flashinfer").build_requirements(SM90))
    chosen = []
    for wanted in (torch_only, with_flashinfer):
        lines = buildreqs.subset(wanted).splitlines()
        chosen.append([line for line in lines if line.startswith("nvidia-nvshmem-cu12==")])
    assert chosen[0] == chosen[1] == ["nvidia-nvshmem-cu12==3.3.20 \\"]


def test_torch_sm61_has_no_cudnn(tmp_path):
    recipe = recipes.get("torch")
    env = recipe.environment(ctx_for(recipe, SM61, tmp_path))
    assert env["USE_CUDNN"] == "0"
    assert env["PYTORCH_BUILD_VERSION"] == "2.9.1+cu128.sm61.avx2"
    assert any("cuDNN" in n for n in recipe.notes(SM61))


def test_torch_avx_switches_reach_cmake(tmp_path):
    recipe = recipes.get("torch")
    ctx = ctx_for(recipe, SM61_AVX, tmp_path)
    env = recipe.environment(ctx)
    assert env["USE_FBGEMM"] == "0" and env["USE_MKLDNN"] == "0" and env["USE_NNPACK"] == "0"
    # torch's setup.py forwards only BUILD_/USE_/CMAKE_ variables: the FOUND switches go in a file
    assert not {"CXX_AVX2_FOUND", "C_AVX512_FOUND"} & set(env)
    include = Path(env["CMAKE_PROJECT_INCLUDE_BEFORE"])
    assert include.parent == ctx.build_dir
    write, build = recipe.commands(ctx)
    assert build[-1] == str(ctx.tree)
    # run the writer for real and read what CMake would include
    import subprocess
    import sys

    subprocess.run([sys.executable, *write[1:]], check=True)
    text = include.read_text()
    for name in ("CXX_AVX2_FOUND", "C_AVX2_FOUND", "CXX_AVX512_FOUND", "C_AVX512_FOUND"):
        assert f"set({name} FALSE CACHE BOOL" in text and "FORCE" in text
    assert "set(CAFFE2_COMPILER_SUPPORTS_AVX512_EXTENSIONS OFF CACHE BOOL" in text


def test_torchvision_torchaudio(tmp_path):
    tv = recipes.get("torchvision").environment(ctx_for(recipes.get("torchvision"), SM120, tmp_path))
    assert tv == {"FORCE_CUDA": "1", "BUILD_VERSION": "0.24.1+cu130.sm120.avx512",
                  "TORCHVISION_USE_PNG": "1", "TORCHVISION_USE_JPEG": "1", "TORCHVISION_USE_WEBP": "1",
                  "TORCHVISION_USE_NVJPEG": "1"}
    ta = recipes.get("torchaudio").environment(ctx_for(recipes.get("torchaudio"), SM103, tmp_path))
    assert "TORCH_CUDA_ARCH_LIST" not in ta and ta["BUILD_VERSION"] == "2.9.1+cu129.sm103.armv9"
    # what the 2.9.1 wheel ships (rnnt_loss, alignment, CUDA CTC decoder): nothing switched off
    assert not [k for k in ta if k.startswith("BUILD_") and k != "BUILD_VERSION"]


def test_xformers_arch(tmp_path):
    xf = recipes.get("xformers")
    env90 = xf.environment(ctx_for(xf, SM90, tmp_path))
    assert env90["TORCH_CUDA_ARCH_LIST"] == "9.0a"  # FA3 (wgmma) needs sm_90a
    assert env90["FORCE_CUDA"] == "1" and env90["BUILD_VERSION"] == "0.0.33.post2+cu129.sm90.avx512"
    assert any("FlashAttention-3 kernels" in n or "FlashAttention-3 (Hopper" in n for n in xf.notes(SM90))
    assert "TORCH_CUDA_ARCH_LIST" not in xf.environment(ctx_for(xf, SM120, tmp_path))  # the engine's 12.0
    assert any("not built" in n for n in xf.notes(SM120))
    assert any("own FlashAttention-2 is not compiled" in n for n in xf.notes(SM61))


@pytest.mark.parametrize("variant,expected", [
    (SM90, "9.0a"), (SM103, "10.3a"), (SM103_13, "10.3a"), (SM120, "12.0f"),
    (Variant(sm="120", isa="avx2", cuda="12.8"), "12.0a"), (Variant(sm="100", isa="avx2", cuda="12.8"), "10.0a"),
    (Variant(sm="89", isa="avx2", cuda="12.9"), "8.9"), (Variant(sm="75", isa="avx2", cuda="13.0"), "7.5"),
])
def test_flashinfer_arch_list(variant, expected, tmp_path):
    fi = recipes.get("flashinfer")
    env = fi.environment(ctx_for(fi, variant, tmp_path))
    assert env["FLASHINFER_CUDA_ARCH_LIST"] == expected
    assert env["FLASHINFER_LOCAL_VERSION"] == variant.label


def test_flashinfer_jit_cache_from_a_local_tree_only_when_it_has_it(tmp_path):
    """A local tree (no lock tag entry prepared for it) gets the jit-cache wheel only if it has the folder."""
    fi = recipes.get("flashinfer")
    ctx = dataclasses.replace(ctx_for(fi, SM90, tmp_path), extras={})
    assert len(fi.commands(ctx)) == 1  # PyPI sdist layout: no flashinfer-jit-cache/
    (ctx.tree / flashinfer_recipe.JIT_CACHE_DIR).mkdir(parents=True)
    python_wheel, jit_cache = fi.commands(ctx)
    assert python_wheel[-1] == str(ctx.tree)
    assert jit_cache[-1] == str(ctx.tree / "flashinfer-jit-cache")
    # never for Pascal
    ctx61 = ctx_for(fi, SM61, tmp_path)
    (ctx61.tree / flashinfer_recipe.JIT_CACHE_DIR).mkdir(parents=True)
    assert len(fi.commands(ctx61)) == 1
    assert any("sm_61" in n for n in fi.notes(SM61))


def test_bitsandbytes_one_capability(tmp_path):
    bnb = recipes.get("bitsandbytes")
    ctx = ctx_for(bnb, SM103, tmp_path)
    assert bnb.environment(ctx) == {"CMAKE_ARGS": "-DCOMPUTE_BACKEND=cuda -DCOMPUTE_CAPABILITY=103",
                                    "SKBUILD_BUILD_DIR": str(ctx.build_dir / "cmake")}  # under the cache's base dirs
    (cmd,) = bnb.commands(ctx)
    assert "cmake.define.COMPUTE_CAPABILITY=103" in cmd and "cmake.define.COMPUTE_BACKEND=cuda" in cmd
    assert cmd[cmd.index("cmake.define.COMPUTE_CAPABILITY=103") - 1] == "-C"


def test_vllm_environment(tmp_path):
    v = recipes.get("vllm")
    ctx = ctx_for(v, SM90, tmp_path)
    env = v.environment(ctx)
    assert env["VLLM_TARGET_DEVICE"] == "cuda"
    assert "TORCH_CUDA_ARCH_LIST" not in env  # the engine's 9.0: vLLM's CMake reads it as torch's build does
    # setup.py's num_jobs = MAX_JOBS // NVCC_THREADS: the plan's common environment sets it for every step
    assert common_env(SM90, JobChoice(processes=1, nvcc_threads=2, max_jobs_env=2, reason=""))["NVCC_THREADS"] == "2"
    assert env["VLLM_VERSION_OVERRIDE"] == env["SETUPTOOLS_SCM_PRETEND_VERSION"] == "0.15.1+cu129.sm90.avx512"
    x = ctx.extras
    # No path in CMAKE_ARGS: setup.py splits it on spaces; CUTLASS goes through VLLM_CUTLASS_SRC_DIR.
    assert env["CMAKE_ARGS"] == "-DFETCHCONTENT_FULLY_DISCONNECTED=ON"
    assert env["VLLM_CUTLASS_SRC_DIR"] == str(x["vllm-cutlass"])
    assert env["VLLM_FLASH_ATTN_SRC_DIR"] == str(x["vllm-flash-attn"])
    assert env["FLASH_MLA_SRC_DIR"] == str(x["flashmla"])
    assert env["QUTLASS_SRC_DIR"] == str(x["qutlass"])
    assert env["TRITON_KERNELS_SRC_DIR"] == str(x["triton-kernels"] / "python" / "triton_kernels" / "triton_kernels")


def test_vllm_arch_intersection_as_its_cmake_does():
    assert vllm_recipe.vllm_archs(SM61) == []
    assert vllm_recipe.vllm_archs(SM90) == ["9.0"]
    assert vllm_recipe.vllm_archs(SM103) == ["10.1"]  # CUDA 12.x list has no 10.3
    assert vllm_recipe.vllm_archs(SM103_13) == ["10.0"]
    assert vllm_recipe.vllm_archs(SM120) == ["12.0"]
    assert vllm_recipe.vllm_archs(Variant(sm="75", isa="avx2", cuda="13.0")) == ["7.5"]


def test_vllm_notes():
    v = recipes.get("vllm")
    (pascal,) = [n for n in v.notes(SM61) if "Pascal" in n]
    assert "6.1" in pascal and "cannot serve" in pascal
    assert not any("qutlass" in n for n in v.notes(SM61))
    n103 = " ".join(v.notes(SM103))
    assert "sm_101a, which a B300 cannot load" in n103 and "generic kernels would be sm_101" in n103
    assert v.variant_problem(SM103).startswith("vllm 0.15.1 cannot be built for sm=103 with cuda=12.9:")
    assert v.variant_problem(SM103_13) is None and v.variant_problem(SM90) is None
    assert "builds its 10.0f" in " ".join(v.notes(SM103_13))
    assert any("qutlass" in n and "is built" in n for n in v.notes(SM120))
    assert any("9.0a" in n for n in v.notes(SM90))
    assert any("compiles nothing" in n for n in v.notes(SM90))


def test_torch_avx_script_is_cmake():
    text = torch_recipe.avx_only_script()
    assert text.count("set(") == len(torch_recipe.AVX_ONLY_CACHE)


def test_flashinfer_aot_from_the_lock_by_default(tmp_path):
    """The sdist gets the tag's jit-cache packaging, then both wheels; -C flashinfer-aot=false and SM61: JIT only."""
    fi = recipes.get("flashinfer")
    ctx = ctx_for(fi, SM90, tmp_path)
    overlay, python_wheel, jit_cache = fi.commands(ctx)
    assert overlay[:2] == ["/env/bin/python", "-c"] and overlay[-2:] == [str(ctx.extras["flashinfer-tag"]), str(ctx.tree)]
    assert python_wheel[-1] == str(ctx.tree) and jit_cache[-1] == str(ctx.tree / "flashinfer-jit-cache")
    off = dataclasses.replace(ctx, settings=Settings(sm="90", isa="avx512", cuda="12.9", flashinfer_aot=False))
    assert fi.commands(off) == [python_wheel]
    assert fi.commands(ctx_for(fi, SM61, tmp_path))[-1][-1] == str(ctx_for(fi, SM61, tmp_path).tree)
    assert len(fi.commands(ctx_for(fi, SM61, tmp_path))) == 1
    assert fi.build_requirements(SM90)[-1] == "nvidia-nvshmem-cu12"
    assert fi.build_requirements(SM120)[-1] == "nvidia-nvshmem-cu13>=3.3.24,<4"
    # The build-requirement lock pins the pypi toolchain's 3.3.24 for it.
    from backend.sources import buildreqs
    assert buildreqs.uncovered(fi.build_requirements(SM120)) == []
    assert not any("nvshmem" in r for r in fi.build_requirements(SM61))
    # the overlay itself: copies the packaging folder and version.txt, leaves a tree that has them alone
    tag, tree = tmp_path / "tag", tmp_path / "tree"
    (tag / "flashinfer-jit-cache/flashinfer_jit_cache").mkdir(parents=True)
    (tag / "flashinfer-jit-cache/build_backend.py").write_text("# backend\n")
    (tag / "version.txt").write_text("0.6.1\n")
    tree.mkdir()
    subprocess.run([sys.executable, "-c", overlay[2], str(tag), str(tree)], check=True)
    assert (tree / "flashinfer-jit-cache/build_backend.py").read_text() == "# backend\n"
    assert (tree / "version.txt").read_text() == "0.6.1\n"
    (tree / "version.txt").write_text("mine\n")
    subprocess.run([sys.executable, "-c", overlay[2], str(tag), str(tree)], check=True)
    assert (tree / "version.txt").read_text() == "mine\n"


def test_the_component_tables_of_the_docs_are_the_registry():
    from backend import doc_tables

    root = Path(__file__).resolve().parent.parent
    for document in doc_tables.DOCUMENTS:
        assert doc_tables.stale_tables(document, (root / document).read_text()) == [], (
            f"{document}: run python -m backend.doc_tables")
    assert [line.split(" | ")[0].lstrip("| ") for line in doc_tables.components_table().splitlines()[2:]] == list(
        COMPONENTS)
    # the hand-written per-component prose names registered components only, each with its recipe's version
    guide = (root / "docs" / "GUIDE.md").read_text()  # the README's second half, moved there (issue 27)
    prose = guide[guide.index("| component | targets from the variant |"):]
    prose = prose[:prose.index("\n\n")].splitlines()[2:]
    named = [n.strip().lower() for row in prose for n in row.split("|")[1].split(",")]
    assert named and set(named) <= set(COMPONENTS), named
    headings = [line[3:] for line in (root / "docs" / "COMPONENTS.md").read_text().splitlines()
                if line.startswith("## ") and line[3:].split()[0].rstrip(",").lower() in COMPONENTS]
    assert headings
    for heading in headings:
        for part in heading.split(" (")[0].split(", "):
            name, version = part.split()[:2]
            assert recipes.get(name.lower()).version == version, heading


def test_flashinfer_aot_config_narrows_the_module_set_through_the_tag_patch(tmp_path):
    """-C flashinfer-aot-config: checked, canonical JSON in FLASHINFER_AOT_CONFIG; the tag's build backend reads it."""
    from backend.settings import resolve

    fi = recipes.get("flashinfer")
    wanted = '{"fa2_head_dim": [[128, 128]], "f16_dtype": ["float16"], "add_moe": false}'
    settings = resolve({"sm": "90", "isa": "avx512", "flashinfer-aot-config": wanted})
    ctx = dataclasses.replace(ctx_for(fi, SM90, tmp_path), settings=settings)
    assert fi.environment(ctx)["FLASHINFER_AOT_CONFIG"] == '{"add_moe":false,"f16_dtype":["float16"],"fa2_head_dim":[[128,128]]}'
    # a file works too, relative to the project; "all" sets nothing (upstream's config=None)
    (tmp_path / "aot.json").write_text(wanted)
    from_file = load_settings({"sm": "90", "isa": "avx512", "flashinfer-aot-config": "aot.json"}, base_dir=tmp_path)
    assert from_file.flashinfer_aot_config == load_settings({"flashinfer-aot-config": wanted}).flashinfer_aot_config
    assert fi.environment(dataclasses.replace(ctx, settings=from_file)) == fi.environment(ctx)
    whole = resolve({"sm": "90", "isa": "avx512", "flashinfer-aot-config": "all"})
    assert "FLASHINFER_AOT_CONFIG" not in fi.environment(dataclasses.replace(ctx, settings=whole))
    # without the jit cache there is nothing to narrow
    off = resolve({"sm": "90", "isa": "avx512", "flashinfer-aot": "false", "flashinfer-aot-config": wanted})
    assert "FLASHINFER_AOT_CONFIG" not in fi.environment(dataclasses.replace(ctx, settings=off))
    # upstream's build backend gets the reader (a patch of the lock's tag entry, applied at prepare)
    patch = Path(__file__).resolve().parent.parent / "patches/flashinfer/flashinfer-tag/0001-aot-config-from-env.patch"
    text = patch.read_text()
    assert "+++ b/flashinfer-jit-cache/build_backend.py" in text and "FLASHINFER_AOT_CONFIG" in text
    assert "-        config=None,  # Use default config" in text and "+        config=config,  # None: the default config" in text


def _patch_functions():
    """The Python the tag patch adds to flashinfer-jit-cache/build_backend.py, as a namespace."""
    patch = Path(__file__).resolve().parent.parent / "patches/flashinfer/flashinfer-tag/0001-aot-config-from-env.patch"
    hunk = patch.read_text().split("@@ -77,6")[1].split("\n@@ ")[0].splitlines()[1:]
    added = "\n".join(line[1:] for line in hunk if line.startswith("+"))
    namespace = {"os": __import__("os")}
    exec(compile(added, str(patch), "exec"), namespace)
    return namespace


def test_flashinfer_default_aot_set_is_what_vllm_calls(tmp_path):
    """Default: vLLM 0.15.1's set (head dims 64/128/256, fp16/bf16, fp8 e4m3/e5m2 KV, no XQA/sinks/activations),
    and the patch's "drop" leaves out the modules vLLM never calls, by flashinfer's own name format."""
    from backend.recipes.flashinfer import vllm_aot_config
    from backend.settings import resolve
    from backend.variants import Variant

    fi = recipes.get("flashinfer")
    default = resolve({"sm": "90", "isa": "avx512"})
    assert default.flashinfer_aot_config is None
    env = fi.environment(dataclasses.replace(ctx_for(fi, SM90, tmp_path), settings=default))
    config = json.loads(env["FLASHINFER_AOT_CONFIG"])
    assert config["fa3_head_dim"] == config["fa2_head_dim"] == [[64, 64], [128, 128], [256, 256]]
    assert config["f8_dtype"] == ["float8_e4m3fn", "float8_e5m2"] and config["f16_dtype"] == ["float16", "bfloat16"]
    assert not config["add_xqa"] and not config["add_oai_oss"] and not config["add_act"] and config["add_moe"]
    assert env["FLASHINFER_AOT_CONFIG"] == vllm_aot_config(SM90)
    # the same JSON passes the setting's own check, so a user can start from it
    assert load_settings({"sm": "90", "isa": "avx512", "flashinfer-aot-config": env["FLASHINFER_AOT_CONFIG"]})
    # DeepSeek's MLA prefill (192/128) only where vLLM runs it: the SM100 family
    assert [192, 128] in json.loads(vllm_aot_config(Variant(sm="100", isa="avx512", cuda="12.9")))["fa2_head_dim"]
    assert [192, 128] not in config["fa2_head_dim"]

    patched = _patch_functions()
    spec = lambda name: type("JitSpec", (), {"name": name})()  # flashinfer's JitSpec, of which only .name is read
    uri = ("batch_prefill_with_kv_cache_dtype_q_{q}_dtype_kv_{kv}_dtype_o_{q}_dtype_idx_i32_head_dim_qk_128_"
           "head_dim_vo_128_posenc_0_use_swa_False_use_logits_cap_False_f16qk_False{fa3}")  # modules.py:384-395
    names = [uri.format(q="bf16", kv="bf16", fa3=""), uri.format(q="bf16", kv="bf16", fa3="_sm90"),
             uri.format(q="f16", kv="e4m3", fa3=""), uri.format(q="e4m3", kv="e4m3", fa3="_sm90"),
             "single_decode_with_kv_cache_dtype_q_f16_dtype_kv_f16_dtype_o_f16_head_dim_qk_128",
             "batch_decode_with_kv_cache_dtype_q_f16", "batch_attention_dtype_q_f16", "batch_mla_attention_dtype_q_f16",
             "sampling", "rope", "cascade", "norm", "page", "topk", "mamba_selective_state_update", "vllm_comm",
             "fused_moe_90", "gemm_sm90", "spdlog"]
    aot = type("aot", (), {"gen_all_modules": staticmethod(lambda *a, **k: [spec(n) for n in names])})
    patched["_drop"](aot, config["drop"])
    kept = [s.name for s in aot.gen_all_modules()]
    assert kept == names[:3] + ["sampling", "rope", "cascade", "norm", "fused_moe_90", "gemm_sm90", "spdlog"]


@pytest.mark.parametrize("value, words", [
    ('{"fa2_headdim": [[128, 128]]}', ["'fa2_headdim'", "fa2_head_dim", "did you mean 'fa2_head_dim'"]),
    ('{"f16_dtype": ["fp16"]}', ["f16_dtype=", "float16, bfloat16"]),
    ('{"fa3_head_dim": [128]}', ["fa3_head_dim=[128]", "[qk, vo]"]),
    ('{"add_moe": "no"}', ["add_moe=", "true or false"]),
    ('{"modules": []}', ["modules=[]", "list of module names"]),
    ('{"f16_dtype": []}', ["at least one of float16"]),
    ("[1, 2]", ["a JSON object"]),
    ("{not json", ["not JSON"]),
    ("missing.json", ["cannot read it"]),
    ("~no-such-user-here/aot.json", ["cannot read it"]),  # Path.expanduser raised RuntimeError: a traceback
])
def test_flashinfer_aot_config_bad_values_are_one_line(value, words, tmp_path):
    out = subprocess.run([sys.executable, "-m", "backend", "plan", "-C", "sm=90", "-C", "isa=avx512",
                          "-C", f"flashinfer-aot-config={value}"], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: setting 'flashinfer-aot-config'"), out.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_torchvision_codecs_are_on_grafted_and_checked_on_the_build_host(tmp_path, monkeypatch):
    """PNG/JPEG/WEBP on, as PyTorch's wheels; exactly the codec libraries are grafted (never torch's or CUDA's);
    a build host without the -dev packages is refused in one line naming them, before anything compiles."""
    recipe = recipes.get("torchvision")
    env = recipe.environment(ctx_for(recipe, SM90, tmp_path))
    assert (env["TORCHVISION_USE_PNG"], env["TORCHVISION_USE_JPEG"], env["TORCHVISION_USE_WEBP"]) == ("1", "1", "1")
    assert env["TORCHVISION_USE_NVJPEG"] == "1"
    assert recipe.features.promised(SM90) == ("png", "jpeg", "webp") and recipe.notes(SM90) == []
    assert not [p for p in recipe.graft_libraries(SM90) if p.startswith(("libtorch", "libc10", "libcu", "libnv"))]
    assert recipe.host_problem() is None  # this host has libpng-dev, libjpeg-dev, libwebp-dev (ci/apt/torchvision.txt)
    monkeypatch.setenv("PATH", str(tmp_path))  # no libpng-config
    monkeypatch.setattr(torchvision_recipe, "_include_folders", lambda: [str(tmp_path)])  # no jpeglib.h, webp/decode.h
    problem = recipe.host_problem()
    assert problem.startswith("torchvision's image codecs need on the build host: libpng-config (libpng-dev), "
                              "jpeglib.h (libjpeg-dev or libjpeg62-turbo-dev), webp/decode.h (libwebp-dev)")
    assert "\n" not in problem


def test_an_aarch64_torch_carries_the_hosts_openblas_and_x86_grafts_nothing():
    """aarch64 torch links the distribution's shared OpenBLAS (BLAS=OpenBLAS), which no wheel provides and the
    linkage check refuses: the wheel carries it and its Fortran runtime, as numpy's and scipy's wheels do.  On
    x86_64 MKL is static and nothing is grafted (no auditwheel pass over a 900 MB wheel)."""
    from backend.variants import Variant

    recipe = recipes.get("torch")
    arm = Variant(sm="90", isa="armv9", cuda="12.9")
    assert recipe.graft_libraries(arm) == ("libopenblas*.so*", "libgfortran.so*")
    assert recipe.graft_libraries(SM90) == ()
    assert recipe.environment(ctx_for(recipe, arm, Path("/nonexistent")))["BLAS"] == "OpenBLAS"
