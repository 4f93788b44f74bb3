"""flashinfer on Blackwell (issue 22, items 1 and 2), with real nvcc and the flashinfer stand-in.

The stand-in's aot.py selects modules as flashinfer 0.6.1's does (its
docstring says how): an ordinary module for every listed arch, an sm_100a-only
fp4 module and the trtllm-gen FMHA launcher when compute_100 is listed (the
latter reading checksums.txt and its header through get_cubin first), an
sm_103a fp4 module when compute_103 is.  Each test runs it with the
environment the flashinfer recipe sets, then checks the result the way the
pipeline does (backend.verify).
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from backend import recipes, variants
from backend.errors import BackendError
from backend.pipeline.plan import make_plan
from backend.pipeline.run import check_offline_sources
from backend.recipes import flashinfer as fi
from backend.recipes.base import BuildContext
from backend.settings import Settings, resolve
from backend.sources import lock
from backend.verify import Expectation, verify_paths, verify_wheel
from conftest import make_wheel
from standin_helpers import cuda_home, find_nvcc, standin_tree

NVCC = find_nvcc()
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="needs nvcc (CUDA 12.9 or later: sm_103a)")
FMHA = "75d477a640f268ea9ad117cc596eb39245713b9e/fmha/trtllm-gen"
SM100 = variants.Variant(sm="100", isa="avx2", cuda="13.0")
SM103 = variants.Variant(sm="103", isa="avx2", cuda="13.0")


def recipe_env(variant, tmp: Path) -> dict[str, str]:
    """What the flashinfer recipe sets for the AOT build, the lock's cubin wheel unpacked at tmp/flashinfer-cubin."""
    recipe = recipes.get("flashinfer")
    ctx = BuildContext(variant=variant, settings=Settings(sm=variant.sm, isa=variant.isa, cuda=variant.cuda),
                       tree=tmp / "flashinfer", extras={name: tmp / name for name in recipe.lock_entries[1:]},
                       wheel_dir=tmp / "_wheels", build_dir=tmp / "_build", python=sys.executable)
    return recipe.environment(ctx)


def cubin_wheel_tree(tmp: Path) -> Path:
    """The flashinfer-cubin wheel's layout, as the lock's entry unpacks (flashinfer_cubin/cubins/<folder>/...)."""
    folder = tmp / "flashinfer-cubin" / fi.CUBIN_DIR / FMHA
    (folder / "include").mkdir(parents=True)
    (folder / "checksums.txt").write_text("0" * 64 + " include/flashInferMetaInfo.h\n")
    (folder / "include/flashInferMetaInfo.h").write_text("// meta info\n")
    return tmp / "flashinfer-cubin"


def run_aot(tmp: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """The stand-in's aot.compile_and_package_modules into tmp/out, with a HOME of its own (an empty cubin cache)."""
    fake = tmp / "fake-torch"
    (fake / "torch").mkdir(parents=True, exist_ok=True)
    (fake / "torch/__init__.py").write_text("class cuda:\n    is_available = staticmethod(lambda: False)\n")
    tree = standin_tree("flashinfer")
    code = (f"from flashinfer import aot; aot.compile_and_package_modules({str(tmp / 'out')!r}, "
            f"{str(tmp / 'build')!r}, {str(tree)!r})")
    base = {"PATH": f"{Path(NVCC).parent}:/usr/bin:/bin", "CUDA_HOME": cuda_home(NVCC), "HOME": str(tmp / "home"),
            "PYTHONPATH": f"{fake}:{tree}"}
    return subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True, cwd=tmp)


@needs_nvcc
def test_sm103_jit_cache_holds_only_code_that_loads_on_sm103(tmp_path):
    """Item 1: the recipe's sm103 list gives sm_103a modules only; the sm_100a-only ones upstream adds are left out."""
    env = recipe_env(SM103, tmp_path)
    result = run_aot(tmp_path, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["fp4_quantization_103", "standin_kernel"]
    report = verify_paths([tmp_path / "out"], Expectation(sm="103"))
    assert report.ok, report.format_table()
    targets = {e.target for entry in report.entries for o in entry.objects for s in o.gpu for e in s.entries}
    assert targets == {"sm_103a"}
    # The plan names what is left out and compiled at first use.
    notes = " ".join(fi.RECIPE.notes(SM103))
    assert "fmha_gen (trtllm-gen FMHA)" in notes and "fp4_quantization_100" in notes and "first use" in notes


@needs_nvcc
def test_sm100_aot_takes_cubin_headers_from_the_lock_not_the_artifact_server(tmp_path):
    """Item 2: the trtllm-gen FMHA spec reads checksums.txt and its header from the lock's flashinfer-cubin tree."""
    cubin_wheel_tree(tmp_path)
    env = recipe_env(SM100, tmp_path)
    assert env["FLASHINFER_CUBIN_DIR"] == env["FLASHINFER_CUBINS_REPOSITORY"] == str(tmp_path / "flashinfer-cubin" / fi.CUBIN_DIR)
    # Without it (upstream's defaults): the files would come from NVIDIA's server, and offline the spec asserts.
    upstream = run_aot(tmp_path / "upstream", {"FLASHINFER_CUDA_ARCH_LIST": env["FLASHINFER_CUDA_ARCH_LIST"]})
    assert upstream.returncode != 0
    assert "would download https://edge.urm.nvidia.com/" in upstream.stdout and "Failed to get checksums.txt" in upstream.stderr
    result = run_aot(tmp_path, env)
    assert result.returncode == 0, result.stdout + result.stderr
    fmha = tmp_path / "out/fmha_gen/fmha_gen.so"
    assert FMHA.encode() + b"\x00" in fmha.read_bytes().replace(b"/\x00", b"\x00")


@needs_nvcc
def test_verification_refuses_kernels_whose_cubins_would_download(tmp_path):
    """Item 2: a jit-cache whose trtllm-gen kernels find no flashinfer-cubin beside them is refused; with it, ok."""
    cubin_wheel_tree(tmp_path)
    env = {**recipe_env(SM100, tmp_path), "FLASHINFER_CUDA_ARCH_LIST": "10.0a"}
    result = run_aot(tmp_path, env)
    assert result.returncode == 0, result.stdout + result.stderr
    label = SM100.label
    jit = make_wheel(tmp_path / "wheels", "flashinfer-jit-cache", f"0.6.1+{label}",
                     {"flashinfer_jit_cache/jit_cache/fmha_gen/fmha_gen.so": tmp_path / "out/fmha_gen/fmha_gen.so"})
    expect = Expectation(sm="100", label=label)
    alone = verify_wheel(jit, expect)
    problems = [p for p in alone.entries[0].all_problems if p.check == "cubins"]
    assert not alone.ok and len(problems) == 1 and FMHA in problems[0].message and "without network" in problems[0].message
    assert alone.entries[0].cubins == {FMHA: None}
    cubin = make_wheel(tmp_path / "house", "flashinfer-cubin", "0.6.1", {
        f"flashinfer_cubin/cubins/{FMHA}/checksums.txt": b"0" * 64 + b" include/flashInferMetaInfo.h\n"})
    served = verify_wheel(jit, expect, companions=[cubin])
    assert not [p for p in served.entries[0].all_problems if p.check == "cubins"]
    assert served.entries[0].cubins == {FMHA: cubin.name}
    # A wheelhouse folder: the lock's wheel (manifest origin lock-wheel) is not checked itself, but serves.
    house = tmp_path / "house"
    shutil.copy(jit, house / jit.name)
    (house / "manifest.json").write_text(json.dumps({"wheels": {
        cubin.name: {"origin": "lock-wheel"}, jit.name: {"origin": "lock"}}}))
    folder = verify_paths([house], expect)
    assert [e.name for e in folder.entries] == ["flashinfer-jit-cache"]
    assert folder.entries[0].cubins == {FMHA: cubin.name}


def test_cubins_only_where_blackwell_loads_them(tmp_path):
    """flashinfer-cubin: fetched, bundled and required on SM100/SM103 only (its cubins are sm100a/100f/103a)."""
    recipe = recipes.get("flashinfer")
    sm90 = variants.Variant(sm="90", isa="avx2", cuda="13.0")
    assert "flashinfer-cubin" in recipe.unused_sources(sm90, None) and recipe.bundled_wheels(sm90, None) == ()
    assert "FLASHINFER_CUBIN_DIR" not in recipe_env(sm90, tmp_path) and recipe.runtime_requires(sm90) == ()
    for variant in (SM100, SM103):
        assert "flashinfer-cubin" not in recipe.unused_sources(variant, None)
        assert recipe.bundled_wheels(variant, None) == ("flashinfer-cubin",)
        assert recipe.runtime_requires(variant) == ("flashinfer-cubin==0.6.1",)
    entry = lock.load().entries["flashinfer-cubin"]
    assert entry.sha256 == "4fc4290169ba397e5b481d4d6daee1ec231743280e9232c8a92ec19dbce9c90b"
    assert entry.filename == "flashinfer_cubin-0.6.1-py3-none-any.whl" and entry.url.endswith("/" + entry.filename)


def test_offline_build_stops_before_compiling_naming_the_missing_cubin_wheel(tmp_path):
    """-C offline=true on SM100: what fetch has not downloaded is named in one line before any step runs."""
    settings = resolve({"sm": "100", "isa": "avx2", "cuda": "13.0", "offline": "true", "components": "flashinfer",
                        "cache-dir": str(tmp_path)})
    plan = make_plan(settings, variants.select(settings), project_dir=tmp_path, cores=16, memory_bytes=64 << 30)
    with pytest.raises(BackendError) as error:
        check_offline_sources(plan)
    message = str(error.value)
    assert message.startswith("offline: source torch 2.9.1 is not in the cache") and "\n" not in message
    assert message.endswith("flashinfer, flashinfer-tag, flashinfer-cubin")
    # Everything present: no complaint (the files' hashes are checked when each step prepares them).
    downloads = tmp_path / "downloads"
    downloads.mkdir(exist_ok=True)
    for step in plan.steps:
        for entry in lock.load().for_component(step.component):
            (downloads / entry.filename).write_bytes(b"x")
    check_offline_sources(plan)
