"""The stand-in fixture trees build like the real components' build interfaces.

Each stand-in (tests/fixtures/standins/<component>) is built the way the
pipeline builds it: ``pip wheel --no-build-isolation`` in a build venv, with
the variant's environment.  torch is built and installed first; the rest are
built against it.  Checks: versions from the env vars, CUDA code for exactly
the requested archs (cuobjdump), CPU code compiled with the ISA flags
(.GCC.command.line), and the built extensions load and call torch's CPU code.

Whole file: about 1 minute on 2 cores (nvcc 13, one arch per build).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from types import MappingProxyType

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import standin_helpers as h  # noqa: E402

from backend import cpu_isa, recipes  # noqa: E402
from backend.errors import BackendError  # noqa: E402
from backend.recipes.torchvision import GRAFT_LIBRARIES  # noqa: E402
from backend.variants import Variant  # noqa: E402
from backend.verify import Expectation, verify_wheel  # noqa: E402
from backend.verify.features import check_features  # noqa: E402
from backend.wheels import manylinux  # noqa: E402

NVCC = h.find_nvcc()
pytestmark = pytest.mark.skipif(NVCC is None or shutil.which("g++") is None or shutil.which("readelf") is None,
                                reason="needs nvcc (CUDA 13), g++ and readelf")

ISA = h.host_isa()
ISA_CFLAGS = " ".join(cpu_isa.get(ISA).flags)
LABEL = f"cu130.sm90.{ISA}"
TORCH_VERSION = f"2.9.1+{LABEL}"


@pytest.fixture(scope="session")
def cuobjdump():
    tool = h.find_cuobjdump(NVCC)
    if tool is None:
        pytest.skip("no cuobjdump (pip install nvidia-cuda-cuobjdump)")
    return tool


@pytest.fixture(scope="session")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("standins")


@pytest.fixture(scope="session")
def build_python(work):
    return h.make_build_venv(work / "venv")


@pytest.fixture(scope="session")
def base_env(build_python):
    home = h.cuda_home(NVCC)
    env = dict(os.environ)
    for key in ("PYTORCH_BUILD_VERSION", "BUILD_VERSION", "FORCE_CUDA", "VLLM_VERSION_OVERRIDE", "CMAKE_ARGS",
                "FLASHINFER_LOCAL_VERSION", "FLASHINFER_CUDA_ARCH_LIST", "PYTORCH_VERSION", "NVCC_THREADS"):
        env.pop(key, None)
    env.update({
        "CUDA_HOME": home,
        "CUDACXX": NVCC,
        "PATH": os.pathsep.join([str(build_python.parent), str(Path(NVCC).parent), env.get("PATH", "")]),
        "CFLAGS": f"{ISA_CFLAGS} -frecord-gcc-switches",
        "CXXFLAGS": f"{ISA_CFLAGS} -frecord-gcc-switches",
        "TORCH_CUDA_ARCH_LIST": "9.0",
        "MAX_JOBS": "2",
        "PIP_NO_INDEX": "1",
    })
    return MappingProxyType(env)  # every build's base: a test that needs another environment passes its own


class Builder:
    def __init__(self, work, python, env):
        self.work, self.python, self.env, self.count = work, python, env, 0

    def build(self, component, env=None, *extra, subdir=None, expect_ok=True):
        """Copy the stand-in to a fresh tree, build it; returns (wheels, pip result)."""
        self.count += 1
        tree = self.work / f"{component}-{self.count}"
        shutil.copytree(h.standin_tree(component), tree)
        out = self.work / f"wheels-{self.count}"
        result = h.pip_wheel(self.python, tree / subdir if subdir else tree, out, {**self.env, **(env or {})}, *extra)
        if expect_ok:
            assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
        return sorted(out.glob("*.whl")), result

    def install(self, *wheels):
        subprocess.run([str(self.python), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall",
                        *map(str, wheels)], check=True, env=self.env)

    def site(self, package):
        r = h.python_in(self.python, f"import importlib.util,os;print(os.path.dirname(importlib.util.find_spec({package!r}).origin))",
                        self.work)
        assert r.returncode == 0, r.stderr
        return Path(r.stdout.strip())


@pytest.fixture(scope="session")
def builder(work, build_python, base_env):
    return Builder(work, build_python, base_env)


@pytest.fixture(scope="session")
def torch_wheel(builder):
    wheels, _ = builder.build("torch", {"PYTORCH_BUILD_VERSION": TORCH_VERSION, "PYTORCH_BUILD_NUMBER": "0"})
    assert len(wheels) == 1
    builder.install(wheels[0])
    return wheels[0]


# ---- torch ------------------------------------------------------------------

def test_torch_wheel_version_and_layout(torch_wheel, builder):
    meta = h.wheel_metadata(torch_wheel)
    assert (meta["name"], meta["version"]) == ("torch", TORCH_VERSION)
    assert torch_wheel.name.startswith(f"torch-{TORCH_VERSION}-cp3")
    lib = builder.site("torch") / "lib"
    assert {p.name for p in lib.glob("*.so")} == {"libc10.so", "libtorch_cpu.so", "libtorch_cuda.so"}
    assert (builder.site("torch") / "include" / "torch" / "standin.h").exists()


def test_torch_cuda_lib_holds_only_the_requested_arch(torch_wheel, builder, cuobjdump):
    assert h.cuda_targets(cuobjdump, builder.site("torch") / "lib" / "libtorch_cuda.so") == (["sm_90"], [])


def test_torch_cpu_libs_compiled_with_isa_flags(torch_wheel, builder):
    for name in ("libc10.so", "libtorch_cpu.so"):
        recorded = h.gcc_command_line(builder.site("torch") / "lib" / name)
        for flag in cpu_isa.get(ISA).flags:
            assert flag in recorded, (name, flag, recorded)


def test_torch_imports_without_gpu_and_calls_its_libraries(torch_wheel, builder):
    r = h.python_in(builder.python, "import torch; print(torch.__version__, torch.cuda_arch_list(), torch.add_one(41), "
                    "torch.scale([1.0, 2.0], 3.0), torch.version.cuda, torch.backends.cuda.is_built()); "
                    "torch.cuda.is_available(); import torch.utils.cpp_extension as c; print(c.include_paths()[0])",
                    builder.work)
    assert r.returncode == 0, r.stderr
    first, include = r.stdout.splitlines()
    assert first == f"{TORCH_VERSION} ['sm_90'] 42 [3.0, 6.0] 13.0 True"
    assert include.endswith("torch/include")


def test_torch_arch_list_suffixes_ptx_and_several(builder, cuobjdump, work):
    wheels, _ = builder.build("torch", {"TORCH_CUDA_ARCH_LIST": "9.0a;10.0+PTX"})
    dest = work / "torch-multi"
    zipfile.ZipFile(wheels[0]).extractall(dest)
    assert h.cuda_targets(cuobjdump, dest / "torch" / "lib" / "libtorch_cuda.so") == (["sm_100", "sm_90a"], ["sm_100"])
    assert "2.9.1-" in wheels[0].name  # no PYTORCH_BUILD_VERSION: the fallback


@pytest.mark.parametrize("arch_list, message", [(None, "TORCH_CUDA_ARCH_LIST is not set"),
                                                ("10.0f", "Unknown CUDA arch (10.0f)")])
def test_torch_rejects_missing_or_unknown_arch_list(builder, arch_list, message):
    env = {key: value for key, value in builder.env.items() if key != "TORCH_CUDA_ARCH_LIST"}
    if arch_list:
        env["TORCH_CUDA_ARCH_LIST"] = arch_list
    # a builder of its own (own folder, own environment): the shared one stays as the other tests see it
    own = Builder(builder.work / f"arch-list-{arch_list or 'unset'}", builder.python, env)
    _, result = own.build("torch", expect_ok=False)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


# ---- torchvision, torchaudio, xformers ---------------------------------------

DOWNSTREAM = {"torchvision": "0.24.1", "torchaudio": "2.9.1", "xformers": "0.0.33.post1"}


@pytest.fixture(scope="session")
def downstream(builder, torch_wheel):
    built = {}
    for name, version in DOWNSTREAM.items():
        wheels, _ = builder.build(name, {"BUILD_VERSION": f"{version}+{LABEL}", "FORCE_CUDA": "1"})
        assert len(wheels) == 1
        built[name] = wheels[0]
    builder.install(*built.values())
    return built


@pytest.mark.parametrize("name", DOWNSTREAM)
def test_downstream_wheel(name, downstream, builder, cuobjdump):
    meta = h.wheel_metadata(downstream[name])
    assert meta["version"] == f"{DOWNSTREAM[name]}+{LABEL}"
    assert meta["requires"] == ["torch==2.9.1"]
    if name == "xformers":
        assert "-cp39-abi3-" in downstream[name].name
    ext = next((builder.site(name)).glob("_C*.so"))
    assert h.cuda_targets(cuobjdump, ext) == (["sm_90"], [])
    recorded = h.gcc_command_line(ext)
    assert all(flag in recorded for flag in cpu_isa.get(ISA).flags), recorded
    r = h.python_in(builder.python, f"import {name}, {name}._C as C; print(C.add_one(1), C.scaled_sum(8, 2.5), "
                    f"C.cuda_built(), {name}.__version__)", builder.work)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["2", "20.0", "True", f"{DOWNSTREAM[name]}+{LABEL}"]


def test_torchvision_image_codecs_as_its_setup_py_finds_them(downstream, builder, torch_wheel):
    """image.so links libpng, libjpeg and libwebp where setup.py finds them (ci/apt/torchvision.txt) and
    verification records them; with TORCHVISION_USE_PNG/_JPEG/_WEBP=0 it has none, and verification refuses
    that wheel, as the recipe asks for all three."""
    torchvision = recipes.get("torchvision")
    sm90 = Variant(sm="90", isa=ISA, cuda="13.0")
    assert torchvision.features.promised(sm90) == ("png", "jpeg", "webp")
    links: dict[str, dict[str, str]] = {}
    check_features(torchvision, sm90, [downstream["torchvision"]], "strict", links=links)
    found = links[downstream["torchvision"].name]
    assert (found["png"], found["jpeg"], found["webp"]) == ("libpng16.so.16", "libjpeg.so.62", "libwebp.so.7"), found
    wheels, result = builder.build("torchvision", {"FORCE_CUDA": "1", "TORCHVISION_USE_PNG": "0",
                                                   "TORCHVISION_USE_JPEG": "0", "TORCHVISION_USE_WEBP": "0"})
    with pytest.raises(BackendError, match="built without png, jpeg, webp, which the variant"):
        check_features(torchvision, sm90, wheels, "strict")


def test_torchvision_codecs_are_grafted_as_auditwheel_repair_does(downstream, builder, torch_wheel, work):
    """auditwheel's repair grafts exactly the host's libpng/libjpeg/libwebp into torchvision.libs under hashed
    sonames (torch's libraries stay external), image.so needs those and finds them through
    RUNPATH $ORIGIN/../torchvision.libs, verification still reads the codecs, and the grafted image.so loads."""
    wheel = work / "graft" / downstream["torchvision"].name
    wheel.parent.mkdir(exist_ok=True)
    shutil.copy2(downstream["torchvision"], wheel)
    lines: list[str] = []
    assert manylinux.graft(wheel, "x86_64", manylinux.external_patterns(), GRAFT_LIBRARIES, say=lines.append) == wheel
    assert "grafted into torchvision: libjpeg.so.62" in lines[0] and "/libpng16.so.16" in lines[0], lines
    with zipfile.ZipFile(wheel) as archive:
        grafted = sorted(n.split("/", 1)[1] for n in archive.namelist() if n.startswith("torchvision.libs/") and n[-1] != "/")
        archive.extractall(work / "graft" / "tree")
    assert [n.split("-")[0] for n in grafted] == ["libjpeg", "libpng16", "libwebp"], grafted
    image = work / "graft" / "tree" / "torchvision" / "image.so"
    dynamic = subprocess.run(["readelf", "-d", str(image)], capture_output=True, text=True, check=True).stdout
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", dynamic)
    assert set(grafted) <= set(needed) and "libpng16.so.16" not in needed, needed
    extension = next((work / "graft" / "tree" / "torchvision").glob("_C*.so"))
    extension_needs = subprocess.run(["readelf", "-d", str(extension)], capture_output=True, text=True).stdout
    assert "[libc10.so]" in extension_needs and "[libtorch_cpu.so]" in extension_needs  # torch's stay external
    assert "$ORIGIN/../torchvision.libs" in dynamic
    links: dict[str, dict[str, str]] = {}
    check_features(recipes.get("torchvision"), Variant(sm="90", isa=ISA, cuda="13.0"), [wheel], "strict", links=links)
    assert links[wheel.name]["png"] == next(n for n in grafted if n.startswith("libpng16")), links
    r = h.python_in(builder.python, f"import ctypes, torch; print(ctypes.CDLL({str(image)!r}).standin_image_codecs())",
                    builder.work)
    assert r.returncode == 0 and r.stdout.split() == ["7"], r.stdout + r.stderr
    # the linkage check: the host's libpng16.so.16 (the wheel before grafting) is refused, the grafted ones are not
    def link_errors(checked):
        entry = verify_wheel(checked, Expectation(), companions=[torch_wheel]).entries[0]
        return [p.message for p in entry.all_problems if p.check == "link"]
    assert any("needs libpng16.so.16" in m for m in link_errors(downstream["torchvision"])), link_errors(downstream["torchvision"])
    assert link_errors(wheel) == []


def test_xformers_without_force_cuda_skips_cuda_silently(builder, torch_wheel, work):
    wheels, result = builder.build("xformers")
    assert "building without CUDA" in result.stdout + result.stderr
    dest = work / "xformers-cpu"
    zipfile.ZipFile(wheels[0]).extractall(dest)
    assert "cuda = False" in (dest / "xformers" / "version.py").read_text()


# ---- flashinfer --------------------------------------------------------------

def test_flashinfer_python_and_jit_cache(builder, torch_wheel, cuobjdump, work):
    env = {"FLASHINFER_LOCAL_VERSION": LABEL, "FLASHINFER_CUDA_ARCH_LIST": "9.0a"}
    (py,), _ = builder.build("flashinfer", env)
    assert py.name == f"flashinfer_python-0.6.1+{LABEL}-py3-none-any.whl"
    assert h.wheel_metadata(py)["requires"] == ["torch"]
    (jit,), _ = builder.build("flashinfer", env, subdir="flashinfer-jit-cache")
    assert jit.name == f"flashinfer_jit_cache-0.6.1+{LABEL}-cp39-abi3-manylinux_2_28_x86_64.whl" or "aarch64" in jit.name
    builder.install(py, jit)
    so = Path(h.python_in(builder.python, "import flashinfer_jit_cache as j; print(j.get_jit_cache_dir())",
                          builder.work).stdout.strip()) / "standin_kernel" / "standin_kernel.so"
    assert h.cuda_targets(cuobjdump, so) == (["sm_90a"], [])
    r = h.python_in(builder.python, "import flashinfer, flashinfer_jit_cache as j; print(flashinfer.__version__, "
                    "j.load().flashinfer_standin_device_count() >= 0)", builder.work)
    assert r.stdout.split() == [f"0.6.1+{LABEL}", "True"], r.stderr


def test_flashinfer_jit_cache_requires_arch_list(builder, torch_wheel):
    _, result = builder.build("flashinfer", subdir="flashinfer-jit-cache", expect_ok=False)
    assert result.returncode != 0
    assert "FLASHINFER_CUDA_ARCH_LIST" in result.stdout + result.stderr


# ---- bitsandbytes ------------------------------------------------------------

def test_bitsandbytes_compute_capability(builder, torch_wheel, cuobjdump, work):
    (wheel,), result = builder.build("bitsandbytes", None, "-C", "cmake.define.COMPUTE_BACKEND=cuda",
                                     "-C", "cmake.define.COMPUTE_CAPABILITY=80;90")
    assert wheel.name == "bitsandbytes-0.49.1-py3-none-linux_x86_64.whl" or "aarch64" in wheel.name
    builder.install(wheel)
    lib = builder.site("bitsandbytes") / "libbitsandbytes_cuda130.so"
    # every selected capability as a cubin, PTX for the highest only: the real CMakeLists' rule
    assert h.cuda_targets(cuobjdump, lib) == (["sm_80", "sm_90"], ["sm_90"])
    recorded = h.gcc_command_line(lib)
    assert all(flag in recorded for flag in cpu_isa.get(ISA).flags), recorded
    r = h.python_in(builder.python, "import bitsandbytes as b; print(b.quantize([1.0, -2.0, 0.5]), b.lib.cbackend_is_cuda())",
                    builder.work)
    assert r.stdout.strip() == "(2.0, [63, -127, 31]) 1", r.stderr


# ---- vllm --------------------------------------------------------------------

def test_vllm(builder, downstream, cuobjdump, work):
    cutlass = work / "cutlass-src"
    cutlass.mkdir()
    env = {"VLLM_VERSION_OVERRIDE": f"0.15.1+{LABEL}", "NVCC_THREADS": "2", "VLLM_TARGET_DEVICE": "cuda",
           "CMAKE_ARGS": f"-DFETCHCONTENT_SOURCE_DIR_CUTLASS={cutlass}", "VLLM_FLASH_ATTN_SRC_DIR": str(work)}
    (wheel,), result = builder.build("vllm", env)
    assert "Using MAX_JOBS=1 as the number of jobs, NVCC_THREADS=2" in result.stdout + result.stderr
    meta = h.wheel_metadata(wheel)
    assert meta["version"] == f"0.15.1+{LABEL}" and "-cp39-abi3-" in wheel.name
    assert {"torch==2.9.1", "torchvision==0.24.1", "flashinfer-python==0.6.1"} <= set(meta["requires"])
    builder.install(wheel)
    ext = builder.site("vllm") / "_C.abi3.so"
    # plain 9.0 also gets vLLM's Hopper (9.0a) kernels
    assert h.cuda_targets(cuobjdump, ext) == (["sm_90", "sm_90a"], [])
    assert all(flag in h.gcc_command_line(ext) for flag in cpu_isa.get(ISA).flags)
    r = h.python_in(builder.python, "import vllm, json; i = vllm.build_info(); "
                    "print(vllm.__version__, vllm._C.add_one(2), vllm._C.scaled_sum(4, 0.5), json.dumps(i['external']))",
                    builder.work)
    assert r.returncode == 0, r.stderr
    version, three, total, external = r.stdout.split(" ", 3)
    assert (version, three, total) == (f"0.15.1+{LABEL}", "3", "2.0")
    assert f'"FETCHCONTENT_SOURCE_DIR_CUTLASS": "{cutlass}"' in external
    assert f'"VLLM_FLASH_ATTN_SRC_DIR": "{work}"' in external


def test_vllm_missing_source_dir_fails_clearly(builder, torch_wheel, work):
    _, result = builder.build("vllm", {"FLASH_MLA_SRC_DIR": str(work / "absent")}, expect_ok=False)
    assert result.returncode != 0
    output = " ".join((result.stdout + result.stderr).split())  # CMake wraps long messages
    assert "FLASH_MLA_SRC_DIR" in output and "is not a directory" in output


def test_torch_blas_and_nvshmem_as_torchs_cmake_decides(torch_wheel, builder, work):
    """No BLAS named (torch's CMake then falls back to no BLAS when MKL is missing) leaves no BLAS/LAPACK entry
    point in libtorch_cpu.so and, without NVSHMEM, no libtorch_nvshmem.so: verification refuses that torch.
    BLAS=MKL stands for MKL found and linked statically, and the NVSHMEM_HOME of the recipe's CMake file
    (set(ENV{NVSHMEM_HOME} ...), included through CMAKE_PROJECT_INCLUDE_BEFORE) gives libtorch_nvshmem.so."""
    sm90 = Variant(sm="90", isa=ISA, cuda="13.0")
    torch_recipe = recipes.get("torch")
    with pytest.raises(BackendError, match="built without blas, lapack, mkl, nvshmem, which the variant"):
        check_features(torch_recipe, sm90, [torch_wheel], "strict")
    home = work / "nvshmem-home"
    (home / "include").mkdir(parents=True)
    (home / "include" / "nvshmem.h").write_text("/* stand-in */\n")
    (home / "lib").mkdir()
    (home / "lib" / "libnvshmem_host.so.3").write_bytes(b"")
    include = work / "vllm-stack-torch.cmake"
    include.write_text(f'set(ENV{{NVSHMEM_HOME}} "{home}")\n')
    wheels, _ = builder.build("torch", {"BLAS": "MKL", "CMAKE_PROJECT_INCLUDE_BEFORE": str(include)})
    links: dict[str, dict[str, str]] = {}
    check_features(torch_recipe, sm90, wheels, "strict", links=links)  # passes: raises otherwise
    assert links[wheels[0].name]["mkl"] == "static: defines mkl_get_version_string"
    assert links[wheels[0].name]["lapack"] == "static: defines dgetrf_"
    assert links[wheels[0].name]["nvshmem"] == "calls nvshmem_init"
