"""The plan: ordered steps with each component's environment, command and jobs."""

import json
import re
import shutil
from pathlib import Path

import pytest

from backend import recipes
from backend.errors import BackendError
from backend.pipeline.parallelism import choose_jobs
from backend.pipeline.plan import InPlaceHook, closure, make_plan
from backend.settings import resolve
from backend.variants import Variant
from standin_helpers import standin_tree

GIB = 1 << 30
ROOT = Path(__file__).resolve().parent.parent


def plan_for(tmp_path, **config):
    settings = resolve({"cache-dir": str(tmp_path), **config})
    variant = Variant(sm=settings.sm or "90", isa=settings.isa or "avx512", cuda=settings.cuda, python="313")
    return make_plan(settings, variant, project_dir=tmp_path, cores=64, memory_bytes=128 * GIB)


def test_order_torch_first_and_dependencies(tmp_path):
    plan = plan_for(tmp_path)
    names = [s.component for s in plan.steps]
    assert names[0] == "torch"
    assert names.index("flashinfer") < names.index("vllm")
    assert plan.step("vllm").depends == ("torch", "flashinfer", "torchvision", "torchaudio")


def test_components_subset_pulls_in_dependencies(tmp_path):
    # vLLM's wheel requires torchvision and torchaudio: they are built with it, against the same torch, in the
    # registry's build order (recipes.names(): the order of a build of every component)
    assert [r.name for r in closure(resolve({"components": "vllm"}))] == [
        "torch", "torchvision", "torchaudio", "flashinfer", "vllm"]
    assert [r.name for r in closure(resolve({"components": "vllm", "torch": "existing"}))] == [
        "torchvision", "torchaudio", "flashinfer", "vllm"]
    assert [r.name for r in closure(resolve({"components": "bitsandbytes"}))] == ["bitsandbytes"]


def test_targets_from_one_variant(tmp_path):
    plan = plan_for(tmp_path, sm="90", isa="avx512", cuda="12.9")
    torch = plan.step("torch").env
    assert torch["TORCH_CUDA_ARCH_LIST"] == "9.0"
    assert torch["PYTORCH_BUILD_VERSION"] == "2.9.1+cu129.sm90.avx512" and torch["PYTORCH_BUILD_NUMBER"] == "0"
    assert torch["CFLAGS"] == torch["CXXFLAGS"]
    assert "-mavx512f" in torch["CXXFLAGS"].split() and "-frecord-gcc-switches" in torch["CXXFLAGS"].split()
    assert plan.step("flashinfer").env["FLASHINFER_CUDA_ARCH_LIST"] == "9.0a"
    # one TORCH_CUDA_ARCH_LIST from the engine for every torch extension; xformers' FA3 asks for the 9.0a spelling
    assert {s.component: s.env["TORCH_CUDA_ARCH_LIST"] for s in plan.steps} == {
        "torch": "9.0", "torchvision": "9.0", "torchaudio": "9.0", "xformers": "9.0a", "flashinfer": "9.0",
        "bitsandbytes": "9.0", "vllm": "9.0"}
    assert plan.step("bitsandbytes").env["CMAKE_ARGS"] == "-DCOMPUTE_BACKEND=cuda -DCOMPUTE_CAPABILITY=90"
    assert "cmake.define.COMPUTE_CAPABILITY=90" in plan.step("bitsandbytes").commands[0]
    assert plan.step("vllm").env["VLLM_VERSION_OVERRIDE"] == "0.15.1+cu129.sm90.avx512"
    assert plan.torch_version == "2.9.1+cu129.sm90.avx512"


def test_sm61_plan_says_what_the_user_gets(tmp_path):
    plan = plan_for(tmp_path, sm="61", isa="avx2", cuda="12.8")
    assert plan.step("torch").env["USE_CUDNN"] == "0"
    assert any("Pascal" in n and "sm_61" in n for n in plan.step("vllm").notes)


def test_avx_torch_really_runs_on_avx_only_cpus(tmp_path):
    step = plan_for(tmp_path, sm="80", isa="avx").step("torch")
    env = step.env
    assert env["CXXFLAGS"].split()[0] == "-mavx"
    assert env["USE_FBGEMM"] == env["USE_MKLDNN"] == env["USE_NNPACK"] == "0"
    # torch forwards only BUILD_/USE_/CMAKE_ variables: the FindAVX switches travel in a CMake file.
    script = env["CMAKE_PROJECT_INCLUDE_BEFORE"]
    writer = next(c for c in step.commands if script in c)
    text = writer[-1]
    assert "set(CXX_AVX2_FOUND FALSE" in text and "set(CAFFE2_COMPILER_SUPPORTS_AVX512_EXTENSIONS OFF" in text


def test_avx_plan_says_exactly_what_the_avx_promise_is(tmp_path):
    """Issue 22.7: the note said an avx torch carries no AVX2/AVX-512 kernels, while XNNPACK (never turned off)
    carries them behind cpuinfo dispatch.  The note must name every library the environment leaves on with
    dispatched kernels, every one it turns off, and the promise itself."""
    step = plan_for(tmp_path, sm="80", isa="avx").step("torch")
    note = next(n for n in step.notes if "isa=avx" in n)
    assert "no instruction beyond AVX on any code path an AVX-only CPU runs" in note
    assert "must not carry" not in note and "no AVX2" not in note
    library_switch = {"FBGEMM": "USE_FBGEMM", "oneDNN": "USE_MKLDNN", "NNPACK": "USE_NNPACK", "XNNPACK": "USE_XNNPACK"}
    for library, switch in library_switch.items():
        off = step.env.get(switch) == "0"
        said = re.search(rf"\b{library}\b[^;]*", note)
        assert said, f"the avx note does not say what becomes of {library}"
        if not off:  # left on: its AVX2/AVX-512 code must be named as dispatched
            assert "dispatch" in note.split(library, 1)[1], f"{library} stays on; the note must say it dispatches"
    assert "sleef" in note


def test_commands_are_argument_lists(tmp_path):
    for step in plan_for(tmp_path).steps:
        for command in step.commands:
            assert all(isinstance(part, str) for part in command)
            assert command[1:5] == ("-m", "pip", "wheel", "--no-build-isolation") or command[1] == "-c"


def test_jobs_are_bounded_by_memory_and_cores():
    vllm = recipes.get("vllm")
    by_memory = choose_jobs(vllm, resolve({}), cores=64, memory_bytes=30 * GIB)
    assert by_memory.processes == 2 and "memory" in by_memory.reason
    # the H200 machine (16 cores, 128 GiB): 12 jobs, whose measured peaks (10.38 GiB each) fit
    h200 = choose_jobs(vllm, resolve({}), cores=16, memory_bytes=128 * GIB)
    assert h200.processes == 12 and h200.processes * 10.38 < 128
    by_cores = choose_jobs(recipes.get("torch"), resolve({}), cores=8, memory_bytes=500 * GIB)
    assert by_cores.processes == 8 and "cores" in by_cores.reason
    threads = choose_jobs(vllm, resolve({"nvcc-threads": "4"}), cores=64, memory_bytes=500 * GIB)
    assert threads.processes == 16 and threads.max_jobs_env == 64  # vLLM divides MAX_JOBS by NVCC_THREADS
    xformers = choose_jobs(recipes.get("xformers"), resolve({}), cores=16, memory_bytes=500 * GIB)
    assert xformers.nvcc_threads == 4 and xformers.processes == 4
    forced = choose_jobs(vllm, resolve({"jobs": "64"}), cores=64, memory_bytes=30 * GIB)
    assert forced.processes == 64 and "warning" in forced.reason


def test_plan_json_from_the_cli(run_backend):
    out = run_backend("plan", "-C", "sm=sm_90", "-C", "isa=avx2", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["variant"].endswith("-cuda12_9-sm90-avx2")
    for step in data["steps"]:
        assert {"component", "version", "env", "command"} <= set(step)
    table = run_backend("plan", "-C", "sm=90", "-C", "isa=avx2")
    assert "MAX_JOBS=" in table.stdout and "jobs:" in table.stdout


def test_a_local_tree_keeps_its_own_version(tmp_path):
    """A fork or another release given with source.<component> is stamped with its version.txt, plus the label."""
    tree = tmp_path / "xformers"
    tree.mkdir()
    (tree / "version.txt").write_text("0.0.34\n")
    plan = plan_for(tmp_path, components="xformers", **{"source.xformers": str(tree)})
    assert plan.step("xformers").env["BUILD_VERSION"] == "0.0.34+cu129.sm90.avx512"
    assert plan.step("xformers").version == "0.0.34+cu129.sm90.avx512"
    assert plan.step("torch").version == "2.9.1+cu129.sm90.avx512"  # from the lock: the recipe's pin


def test_the_toolchain_provides_only_what_the_steps_link(tmp_path, run_backend):
    assert plan_for(tmp_path, components="bitsandbytes").cuda_libraries == ("cublas", "cusparse")
    assert plan_for(tmp_path, components="bitsandbytes,torch").cuda_libraries is None  # torch links every library
    shown = run_backend("plan", "-C", "sm=90", "-C", "isa=avx2", "-C", "components=bitsandbytes", "-C", "toolchain=nix")
    assert "cuda     12.9 from -C toolchain=nix; libraries besides the compiler: cublas, cusparse\n" in shown.stdout
    data = json.loads(run_backend("plan", "-C", "sm=90", "-C", "isa=avx2", "--json").stdout)
    assert (data["toolchain"], data["cuda_libraries"]) == ("auto", None)


def test_python_vllm_cannot_build_is_refused_before_anything_runs(tmp_path):
    settings = resolve({"cache-dir": str(tmp_path), "sm": "90", "isa": "avx512"})
    with pytest.raises(BackendError, match=r"^vllm 0\.15\.1 supports Python 3\.10, 3\.11, 3\.12, 3\.13, and this build runs on "
                                           r"Python 3\.14: .* leave vllm out of -C components$"):
        make_plan(settings, Variant(sm="90", isa="avx512", cuda="12.9", python="314"), project_dir=tmp_path,
                  cores=8, memory_bytes=64 * GIB)
    alone = resolve({"cache-dir": str(tmp_path), "sm": "90", "isa": "avx512", "components": "bitsandbytes"})
    plan = make_plan(alone, Variant(sm="90", isa="avx512", cuda="12.9", python="314"), project_dir=tmp_path,
                     cores=8, memory_bytes=64 * GIB)
    assert [s.component for s in plan.steps] == ["bitsandbytes"]
    assert plan_for(tmp_path).step("vllm")  # 3.13 is accepted


def test_sm103_on_cuda_12_refuses_vllm_but_builds_the_rest(tmp_path):
    """vLLM's CMake (0.16.0's cuda_archs_loose_intersection, run with CMake) gives sm_101a Blackwell kernels."""
    settings = resolve({"cache-dir": str(tmp_path), "sm": "103", "isa": "avx512", "cuda": "12.9"})
    with pytest.raises(BackendError, match=r"^vllm 0\.15\.1 cannot be built for sm=103 with cuda=12\.9: .*-C cuda=13\.0"):
        make_plan(settings, Variant(sm="103", isa="avx512", cuda="12.9"), project_dir=tmp_path, cores=8, memory_bytes=64 * GIB)
    rest = resolve({"cache-dir": str(tmp_path), "sm": "103", "isa": "avx512", "cuda": "12.9", "components": "torch,xformers"})
    assert make_plan(rest, Variant(sm="103", isa="avx512", cuda="12.9"), project_dir=tmp_path, cores=8,
                     memory_bytes=64 * GIB).step("xformers")
    ok = resolve({"cache-dir": str(tmp_path), "sm": "103", "isa": "avx512", "cuda": "13.0"})
    assert make_plan(ok, Variant(sm="103", isa="avx512", cuda="13.0"), project_dir=tmp_path, cores=8,
                     memory_bytes=64 * GIB).step("vllm")


def test_a_local_tree_is_planned_as_the_copy_the_build_runs_in(tmp_path):
    """plan -C source.xformers=DIR shows the per-variant copy that is built, not DIR; a lock tree its unpacked tree."""
    tree = tmp_path / "xformers"
    tree.mkdir()
    (tree / "version.txt").write_text("0.0.34\n")
    plan = plan_for(tmp_path, components="xformers", **{"source.xformers": str(tree)})
    step = plan.step("xformers")
    copy = plan.layout.source_workdir(recipes.get("xformers")) / "local-tree"
    assert step.tree == Path(step.to_json()["cwd"]) == copy and step.tree_from == str(tree)
    assert step.commands[-1][-1] == str(copy) and not any(str(tree) in part for c in step.commands for part in c)
    assert step.commands[-1][0] == str(step.python) == str(plan.layout.python)
    torch = plan.step("torch")
    assert torch.tree == plan.layout.source_workdir(recipes.get("torch")) / "torch" and torch.tree_from == "lock:torch"
    data = plan.to_json()["steps"][1]
    assert data["cwd"] == str(copy) and data["python"] == str(plan.layout.python) and data["patches"] == []


def test_patch_conditions_are_pep440_or_an_exact_commit():
    from backend.sources.patches import matches

    assert matches("==0.49.1", "0.49.1") and not matches("==0.49.1", "0.50.0")
    assert matches(">=0.15.1,<0.16", "0.15.2") and not matches(">=0.15.1,<0.16", "0.16.0")
    assert matches("==188be165", "188be165") and not matches("==188be165", "188be166")


def test_an_editable_step_is_planned_as_its_hook_in_the_checkout(tmp_path):
    """pip install -e: the plan's step for the developed component is the checkout's own PEP 660 hook, in the checkout."""
    tree = tmp_path / "bitsandbytes"
    shutil.copytree(standin_tree("bitsandbytes"), tree)
    settings = resolve({"cache-dir": str(tmp_path / "cache"), "components": "bitsandbytes", "source.bitsandbytes": str(tree)})
    plan = make_plan(settings, Variant(sm="90", isa="avx2", cuda="13.0"), project_dir=tmp_path, cores=8,
                     memory_bytes=64 * GIB, in_place=("bitsandbytes",))
    step = plan.step("bitsandbytes")
    assert step.tree == Path(step.to_json()["cwd"]) == tree and step.extras == {}
    assert step.commands == () and step.in_place == InPlaceHook("scikit_build_core.build", ())
    assert step.to_json()["in_place"] == {"backend": "scikit_build_core.build", "backend_path": []}
    assert "-frecord-gcc-switches" not in step.env["CXXFLAGS"] and step.compiler_flags == {}
    assert [(p.name, p.applied) for p in step.patches] == [("0001-real-cubins-only.patch", False)]
    assert "never patched" in step.patches[0].why
