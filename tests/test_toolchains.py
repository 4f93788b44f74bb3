"""CUDA toolchain providers with real tools: nvcc from PyPI and the system, CMake, cuobjdump, Nix.

Expensive setup is shared: the PyPI CUDA 13.0 compiler wheels are installed
once per session into a temporary cache (compiler only, no libraries); the
Nix store paths of the stand-in flake (tests/fixtures/nixflake) are built once.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from backend import toolchains
from backend.errors import BackendError
from backend.settings import DEFAULT_NIXPKGS
from backend.toolchains import nix as nix_provider
from backend.toolchains import pypi as pypi_provider
from conftest import kept_unchanged, make_wheel

FIXTURES = Path(__file__).parent / "fixtures"
NIX_CONFIG = "sandbox = false\nbuild-users-group =\n"


# ---------------------------------------------------------------- shared tools

@pytest.fixture(scope="session")
def pypi_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("toolchain-cache")


@pytest.fixture(scope="session")
def pypi13(pypi_cache):
    """The PyPI CUDA 13.0 compiler (nvcc, nvvm, crt, cccl, cudart), installed once."""
    try:
        toolchain = toolchains.resolve("13.0", "pypi", cache_dir=pypi_cache, nixpkgs=DEFAULT_NIXPKGS, libraries=())
    except BackendError as error:
        if "pip could not install" in str(error):
            pytest.skip(f"PyPI unreachable: {error}")
        raise
    with kept_unchanged(toolchain.cuda_home):  # CUDA_HOME of many tests; the CLI's offline run shares the cache
        yield toolchain


@pytest.fixture(scope="session")
def cuobjdump():
    found = shutil.which("cuobjdump")
    if not found:
        for entry in sys.path:
            candidates = sorted(Path(entry or ".").glob("nvidia/cu*/bin/cuobjdump"))
            if candidates:
                found = str(candidates[-1])
                break
    if not found:
        pytest.skip("cuobjdump not found (pip install nvidia-cuda-cuobjdump)")
    return found


@pytest.fixture(scope="session")
def cmake():
    found = shutil.which("cmake")
    if not found:
        pytest.skip("cmake not found (pip install cmake)")
    return found


def compile_hello(toolchain, cmake, build: Path, arch: str = "90-real") -> Path:
    """Configure and build tests/fixtures/cuda_hello with the toolchain's environment only."""
    env = toolchain.env()
    env.pop("CUDAARCHS", None)
    configure = [cmake, "-S", str(FIXTURES / "cuda_hello"), "-B", str(build), f"-DCMAKE_CUDA_ARCHITECTURES={arch}"]
    if shutil.which("ninja"):
        configure += ["-G", "Ninja"]
    result = subprocess.run(configure, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"The CUDA compiler identification is NVIDIA {toolchain.version}" in result.stdout
    assert f"Found CUDAToolkit" in result.stdout
    assert f"nvcc {toolchain.nvcc} {toolchain.version}" in result.stdout
    result = subprocess.run([cmake, "--build", str(build)], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    library = build / "libhello.so"
    assert library.is_file()
    return library


def device_code(cuobjdump: str, library: Path) -> tuple[list[str], list[str]]:
    """(cubin names, PTX names) cuobjdump lists in a library, all sections."""
    elf = subprocess.run([cuobjdump, "-all", "--list-elf", str(library)], capture_output=True, text=True)
    ptx = subprocess.run([cuobjdump, "-all", "--list-ptx", str(library)], capture_output=True, text=True)
    assert elf.returncode == 0, elf.stderr
    cubins = [line.split(":", 1)[1].strip() for line in elf.stdout.splitlines() if line.startswith("ELF file")]
    ptxs = [line.split(":", 1)[1].strip() for line in ptx.stdout.splitlines() if line.startswith("PTX file")]
    return cubins, ptxs


# ---------------------------------------------------------------- pypi

def test_pypi_toolchain_compiles_sm90_only(pypi13, cmake, cuobjdump, tmp_path):
    assert pypi13.provider == "pypi"
    assert pypi13.version.startswith("13.0.")
    library = compile_hello(pypi13, cmake, tmp_path / "build")
    # CMake found the toolkit at the farm, and nothing in the shared install root behind it.
    cache = (tmp_path / "build" / "CMakeCache.txt").read_text()
    assert f"CUDA_cudart_LIBRARY:FILEPATH={pypi13.cuda_home}/lib/libcudart.so\n" in cache
    assert f"{pypi_provider.root_for(pypi13.cuda_home.parent.parent, '13.0')}/" not in cache
    cubins, ptxs = device_code(cuobjdump, library)
    assert len(cubins) == 1 and cubins[0].endswith(".sm_90.cubin"), cubins
    assert ptxs == []


def test_pypi_toolchain_layout_and_env(pypi13, pypi_cache):
    home = pypi13.cuda_home
    # Not the shared install root but the farm of this library set, next to it.
    assert home.parent == pypi_cache / "toolchains" and home.name.startswith("pypi-cu130-")
    assert (home / "bin" / "nvcc") == pypi13.nvcc and pypi13.nvcc.is_symlink()
    assert (home / "lib64").is_symlink() and os.readlink(home / "lib64") == "lib"
    assert (home / "lib" / "libcudart.so").resolve() == (home / "lib" / "libcudart.so.13").resolve()
    assert (home / "nvvm" / "bin" / "cicc").is_file()
    assert "libcudart.so.13" in pypi13.runtime_libraries
    assert pypi13.requirements == ("nvidia-cuda-runtime==13.0.96",)
    env = pypi13.env({"PATH": "/usr/bin:/bin", "LD_LIBRARY_PATH": "/opt/x"})
    assert env["CUDA_HOME"] == env["CUDA_PATH"] == str(home)
    assert env["CUDACXX"] == env["CUDA_NVCC_EXECUTABLE"] == str(pypi13.nvcc)
    assert env["PATH"] == f"{home / 'bin'}:/usr/bin:/bin"
    assert env["LD_LIBRARY_PATH"].split(":")[-1] == "/opt/x"
    assert str(home / "lib64") in env["LD_LIBRARY_PATH"].split(":")
    data = pypi13.to_json()
    assert json.loads(json.dumps(data)) == data and data["provider"] == "pypi" and data["version"] == pypi13.version


def test_pypi_toolchain_is_reused_from_the_cache(pypi13, pypi_cache):
    # A second resolve, offline, finds everything in the cache (no pip run).
    again = toolchains.resolve("13.0", "pypi", cache_dir=pypi_cache, nixpkgs=DEFAULT_NIXPKGS, offline=True,
                               libraries=())
    assert again == pypi13


CUDNN = pypi_provider.LIBRARIES["13.0"]["cudnn"]
NVTX = pypi_provider.LIBRARIES["13.0"]["nvtx"]
RUNTIME_VERSION = """#include <cstdio>
#include <cuda_runtime.h>
__global__ void scale(float *data, float factor) { data[threadIdx.x] *= factor; }
int main() {
  int version = 0;
  cudaError_t status = cudaRuntimeGetVersion(&version);
  std::printf("runtime %d\\n", version);
  return status == cudaSuccess ? 0 : 1;
}
"""


@pytest.fixture
def pypi_root_and_links(pypi13, pypi_cache, tmp_path, monkeypatch):
    """A cache whose PyPI root is the session's (hard links), and pip pointed at small stand-in wheels only.

    The stand-ins are real wheels of the pinned cuDNN and NVTX names, laid out as NVIDIA's are: cuDNN in
    its own ``nvidia/cudnn``, NVTX into ``nvidia/cu13`` beside nvcc.  pip installs them: no network.
    """
    cache = tmp_path / "cache"
    shutil.copytree(pypi_provider.root_for(pypi_cache, "13.0"), pypi_provider.root_for(cache, "13.0"),
                    symlinks=True, copy_function=os.link, ignore=shutil.ignore_patterns(".lock"))
    links = tmp_path / "links"
    name, version = CUDNN.split("==")
    make_wheel(links, name, version, {"nvidia/cudnn/__init__.py": b"",
                                      "nvidia/cudnn/include/cudnn.h": b"#define CUDNN_MAJOR 9\n",
                                      "nvidia/cudnn/lib/libcudnn.so.9": b"stand-in"})
    name, version = NVTX.split("==")
    make_wheel(links, name, version, {"nvidia/cu13/include/nvtx3/nvToolsExt.h": b"#define NVTX_VERSION 3\n"})
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    return cache


def nvcc_run(toolchain, folder: Path, source: str, *args: str) -> subprocess.CompletedProcess:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "main.cu").write_text(source)
    return subprocess.run([str(toolchain.nvcc), *args, "main.cu"], cwd=folder, env=toolchain.env(),
                          capture_output=True, text=True)


def test_pypi_each_library_set_gets_a_cuda_home_of_exactly_its_wheels(pypi_root_and_links, tmp_path):
    cache = pypi_root_and_links
    root = pypi_provider.root_for(cache, "13.0")
    larger = toolchains.resolve("13.0", "pypi", cache_dir=cache, nixpkgs=DEFAULT_NIXPKGS, libraries=("nvtx", "cudnn"))
    # Installed once, into the shared root: nvtx into nvidia/cu13 where nvcc lives.
    assert {CUDNN, NVTX} <= set(json.loads((root / "installed.json").read_text()))
    assert (root / "site" / "nvidia" / "cu13" / "include" / "nvtx3" / "nvToolsExt.h").is_file()
    home = larger.cuda_home
    assert (home / "include" / "cudnn.h").is_file() and (home / "include" / "nvtx3" / "nvToolsExt.h").is_file()
    assert os.readlink(home / "lib" / "libcudnn.so") == "libcudnn.so.9"
    assert "libcudnn.so.9" in larger.runtime_libraries and CUDNN in larger.requirements

    # The compiler alone, after the larger set went into the same root: none of its files.
    smaller = toolchains.resolve("13.0", "pypi", cache_dir=cache, nixpkgs=DEFAULT_NIXPKGS, offline=True, libraries=())
    assert smaller.cuda_home != home and smaller.cuda_home.parent == home.parent
    assert not [p for p in smaller.cuda_home.rglob("*")
                if p.name.startswith("libcudnn") or p.name in ("cudnn.h", "nvtx3", "nvToolsExt.h")]
    assert smaller.runtime_libraries == ("libcudart.so.13",)
    for toolchain, found in ((smaller, False), (larger, True)):
        # nvcc started through the farm takes its headers from the farm, not from the shared root.
        result = nvcc_run(toolchain, tmp_path / toolchain.cuda_home.name, "#include <nvtx3/nvToolsExt.h>\n"
                          "#include <cudnn.h>\n", "-E", "-o", "/dev/null")
        assert (result.returncode == 0) == found, result.stderr[-2000:]
        if not found:
            assert "nvToolsExt.h: No such file" in result.stderr

    # Offline, in any order, each set finds its own farm again.
    again = toolchains.resolve("13.0", "pypi", cache_dir=cache, nixpkgs=DEFAULT_NIXPKGS, offline=True,
                               libraries=("cudnn", "nvtx"))
    assert again == larger


def test_pypi_nvcc_compiles_and_links_cudart_through_the_farm(pypi13, tmp_path):
    home = pypi13.cuda_home
    dryrun = nvcc_run(pypi13, tmp_path, RUNTIME_VERSION, "--dryrun", "-arch=sm_90", "-o", "prog")
    assert f"#$ TOP={home}/bin/.." in dryrun.stderr  # nvcc's own paths (nvcc.profile, cicc, crt) start at the farm
    built = nvcc_run(pypi13, tmp_path, RUNTIME_VERSION, "-arch=sm_90", "-cudart", "shared", "-o", "prog")
    assert built.returncode == 0, built.stderr[-3000:]
    ldd = subprocess.run(["ldd", str(tmp_path / "prog")], env=pypi13.env(), capture_output=True, text=True)
    farm_cudart = rf"libcudart\.so\.13 => {re.escape(str(home))}/lib(64)?/libcudart\.so\.13 "
    assert re.search(farm_cudart, ldd.stdout), ldd.stdout
    # cudaRuntimeGetVersion needs no GPU: the program runs against the farm's libcudart.
    ran = subprocess.run([str(tmp_path / "prog")], env=pypi13.env(), capture_output=True, text=True)
    assert (ran.returncode, ran.stdout) == (0, "runtime 13000\n"), ran.stderr


def test_pypi_offline_without_cache_names_the_missing_wheels(tmp_path):
    with pytest.raises(BackendError, match=r"offline.*nvidia-cuda-nvcc==13\.0\.88.*run once with network"):
        toolchains.resolve("13.0", "pypi", cache_dir=tmp_path, nixpkgs=DEFAULT_NIXPKGS, offline=True)


@pytest.mark.parametrize("cuda", ["12.8", "12.9"])
def test_pypi_refuses_cuda_12_and_says_where_it_comes_from(cuda, tmp_path):
    with pytest.raises(BackendError) as info:
        toolchains.resolve(cuda, "pypi", cache_dir=tmp_path, nixpkgs=DEFAULT_NIXPKGS)
    message = str(info.value)
    assert "\n" not in message
    assert f"CUDA {cuda} cannot come from PyPI" in message and "no nvcc" in message
    assert f"cudaPackages_{cuda.replace('.', '_')}" in message and "toolchain=system" in message
    assert not list(tmp_path.iterdir())  # nothing was downloaded


def test_pypi_full_requirement_set_pins_every_runtime_library():
    everything, runtime = pypi_provider.requirements_for("13.0")
    assert all("==" in r for r in everything)
    names = {r.split("==")[0] for r in runtime}
    assert {"nvidia-cuda-runtime", "nvidia-cublas", "nvidia-cusparse", "nvidia-cudnn-cu13",
            "nvidia-nccl-cu13", "nvidia-cusparselt-cu13"} <= names
    # Compile-only wheels are not run-time requirements.
    assert not names & {"nvidia-cuda-nvcc", "nvidia-nvvm", "nvidia-cuda-crt", "nvidia-cuda-cccl"}
    with pytest.raises(BackendError, match="unknown CUDA library 'cublass'.*cublas"):
        pypi_provider.requirements_for("13.0", ["cublass"])


# ---------------------------------------------------------------- system

def test_system_toolchain_compiles_sm90_only(cmake, cuobjdump, tmp_path):
    try:
        system = toolchains.resolve("13.0", "system", cache_dir=tmp_path, nixpkgs=DEFAULT_NIXPKGS)
    except BackendError as error:
        pytest.skip(f"no installed CUDA 13.0 toolkit: {error}")
    assert system.provider == "system" and system.version.startswith("13.0.")
    library = compile_hello(system, cmake, tmp_path / "build")
    cubins, ptxs = device_code(cuobjdump, library)
    assert len(cubins) == 1 and cubins[0].endswith(".sm_90.cubin"), cubins
    assert ptxs == []


def test_system_uses_cuda_home(pypi13, monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_HOME", str(pypi13.cuda_home))
    system = toolchains.resolve("13.0", "system", cache_dir=tmp_path, nixpkgs=DEFAULT_NIXPKGS)
    assert (system.provider, system.cuda_home, system.version) == ("system", pypi13.cuda_home, pypi13.version)
    assert system.requirements == ()


def test_system_refuses_a_version_mismatch(pypi13, monkeypatch, tmp_path):
    # A real CUDA 13.0 nvcc, asked for 12.9.
    monkeypatch.setenv("CUDA_HOME", str(pypi13.cuda_home))
    with pytest.raises(BackendError) as info:
        toolchains.resolve("12.9", "system", cache_dir=tmp_path, nixpkgs=DEFAULT_NIXPKGS)
    message = str(info.value)
    assert "\n" not in message
    assert f"is CUDA {pypi13.version} but cuda=12.9 was asked for" in message
    assert "-C cuda=13.0" in message and "toolchain=nix" in message and "/usr/local/cuda-12.9" in message


def test_system_mismatch_through_path_names_both_versions(pypi13, monkeypatch, tmp_path):
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)
    monkeypatch.setenv("PATH", f"{pypi13.nvcc.parent}:/usr/bin:/bin")
    if Path("/usr/local/cuda-12.9").exists():
        pytest.skip("this machine has CUDA 12.9 installed")
    with pytest.raises(BackendError, match=r"cuda=12\.9 was asked for but the installed toolkits are CUDA 13\.0\.\d+"):
        toolchains.resolve("12.9", "system", cache_dir=tmp_path, nixpkgs=DEFAULT_NIXPKGS)


def test_system_toolkit_folder_without_nvcc(monkeypatch, tmp_path):
    fake = tmp_path / "cuda-12.9"
    (fake / "include").mkdir(parents=True)
    (fake / "lib64").mkdir()
    (fake / "lib64" / "libcudart.so.12").write_text("")
    monkeypatch.setenv("CUDA_HOME", str(fake))
    with pytest.raises(BackendError) as info:
        toolchains.resolve("12.9", "system", cache_dir=tmp_path, nixpkgs=DEFAULT_NIXPKGS)
    message = str(info.value)
    assert f"CUDA_HOME= {fake} has no bin/nvcc" in message and "ways out" in message and "\n" not in message


def test_system_cuda_home_that_does_not_exist(monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_HOME", str(tmp_path / "missing"))
    with pytest.raises(BackendError, match="is not a folder"):
        toolchains.resolve("13.0", "system", cache_dir=tmp_path, nixpkgs=DEFAULT_NIXPKGS)


# ---------------------------------------------------------------- auto, CLI, build requirements

def test_auto_prefers_an_installed_toolkit_of_the_exact_version(pypi13, monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_HOME", str(pypi13.cuda_home))
    chosen = toolchains.resolve("13.0", "auto", cache_dir=tmp_path, nixpkgs=DEFAULT_NIXPKGS)
    assert chosen.provider == "system" and chosen.cuda_home == pypi13.cuda_home


def test_auto_falls_back_to_pypi_for_13(pypi13, pypi_cache, monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_HOME", str(pypi_cache / "no-toolkit-here"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no nix, no nvcc
    chosen = toolchains.resolve("13.0", "auto", cache_dir=pypi_cache, nixpkgs=DEFAULT_NIXPKGS, offline=True,
                                libraries=())
    assert chosen.provider == "pypi" and chosen == pypi13


def test_auto_error_lists_what_was_tried(pypi13, monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_HOME", str(pypi13.cuda_home))
    monkeypatch.setenv("PATH", str(tmp_path))  # no nix
    with pytest.raises(BackendError) as info:
        toolchains.resolve("12.9", "auto", cache_dir=tmp_path, nixpkgs=DEFAULT_NIXPKGS)
    message = str(info.value)
    assert "\n" not in message
    assert "[system]" in message and "is CUDA 13.0" in message
    assert "[nix] nix is not on PATH" in message
    assert "[pypi] CUDA 12.9 has no nvcc on PyPI" in message


def test_unknown_provider_is_a_setting_error(tmp_path):
    with pytest.raises(BackendError, match="setting 'toolchain': bad value 'pip'; accepted: auto, nix, system, pypi"):
        toolchains.resolve("13.0", "pip", cache_dir=tmp_path, nixpkgs=DEFAULT_NIXPKGS)


def test_build_requirements():
    assert toolchains.build_requirements("13.0", "pypi") == ["pip"]
    assert toolchains.build_requirements("13.0", "auto") == ["pip"]
    assert toolchains.build_requirements("12.9", "auto") == []
    assert toolchains.build_requirements("12.9", "nix") == []
    assert toolchains.build_requirements("13.0", "system") == []


def test_cli_prints_the_toolchain(pypi13, run_backend):
    env = {"CUDA_HOME": str(pypi13.cuda_home)}
    result = run_backend("toolchain", "-C", "cuda=13.0", "-C", "toolchain=system", "--json", env=env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["provider"] == "system" and data["version"] == pypi13.version
    assert data["cuda_home"] == str(pypi13.cuda_home) and data["nvcc"] == str(pypi13.nvcc)
    result = run_backend("toolchain", "-C", "cuda=13.0", "-C", "toolchain=system", env=env)
    assert result.returncode == 0, result.stderr
    for text in ("provider", "system", "CUDA_HOME", str(pypi13.cuda_home), pypi13.version, "libcudart.so.13"):
        assert text in result.stdout


def test_cli_pypi_offline_from_cache(pypi13, pypi_cache, run_backend):
    # The cache holds the compiler only; the CLI asks for every library, so offline it must say what is missing.
    result = run_backend("toolchain", "-C", "cuda=13.0", "-C", "toolchain=pypi", "-C", "offline=true",
                         "-C", f"cache-dir={pypi_cache}")
    assert result.returncode == 2
    assert result.stderr.startswith("error: toolchain 'pypi': offline") and result.stderr.count("\n") == 1
    assert "nvidia-cudnn-cu13==" in result.stderr


def test_cli_error_is_one_line(run_backend):
    result = run_backend("toolchain", "-C", "cuda=12.9", "-C", "toolchain=pypi")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: toolchain 'pypi': CUDA 12.9 cannot come from PyPI")
    assert result.stderr.count("\n") == 1


@pytest.mark.slow
def test_cli_pypi_full_stack_set(run_backend, tmp_path, cmake, cuobjdump):
    """Every library a stack build links (about 3 GB): installs, arranges and compiles."""
    result = run_backend("toolchain", "-C", "cuda=13.0", "-C", "toolchain=pypi", "--json", "--install",
                         "-C", f"cache-dir={tmp_path / 'cache'}")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    for soname in ("libcudart.so.13", "libcublas.so.13", "libcusparse.so.12", "libcudnn.so.9", "libnccl.so.2",
                   "libcusparseLt.so.0"):
        assert soname in data["runtime_libraries"]
    home = Path(data["cuda_home"])
    for header in ("cublas_v2.h", "cudnn.h", "nccl.h", "cusparseLt.h"):
        assert (home / "include" / header).exists(), header
    assert set(data["requirements"]) == set(pypi_provider.requirements_for("13.0")[1])

    # A bitsandbytes build's set after it, offline from the same root: cuBLAS, no cuDNN, NCCL or cuSPARSELt.
    cache = tmp_path / "cache"
    small = toolchains.resolve("13.0", "pypi", cache_dir=cache, nixpkgs=DEFAULT_NIXPKGS, offline=True,
                               libraries=("cublas", "cusparse"))
    assert small.cuda_home != home and (small.cuda_home / "include" / "cublas_v2.h").exists()
    for header in ("cudnn.h", "nccl.h", "cusparseLt.h"):
        assert not (small.cuda_home / "include" / header).exists(), header
    optional = ("libcudnn", "libnccl", "libcusparseLt")
    assert not [p.name for p in (small.cuda_home / "lib").iterdir() if p.name.startswith(optional)]
    assert not [s for s in small.runtime_libraries if s.startswith(optional)]
    # The full set, offline, is the same farm with every library still there.
    full = toolchains.resolve("13.0", "pypi", cache_dir=cache, nixpkgs=DEFAULT_NIXPKGS, offline=True)
    assert full.cuda_home == home and "libcudnn.so.9" in full.runtime_libraries
    # nvcc through each farm: cuDNN compiles and links through the full one only.
    source = "#include <cudnn.h>\n#include <cublas_v2.h>\nint main() { return cudnnGetVersion() > 0 ? 0 : 1; }\n"
    for toolchain, found in ((full, True), (small, False)):
        result = nvcc_run(toolchain, tmp_path / toolchain.cuda_home.name, source, "-lcudnn", "-lcublas", "-o", "prog")
        assert (result.returncode == 0) == found, result.stderr[-2000:]


# ---------------------------------------------------------------- nix

def _nix_usable() -> str | None:
    if not shutil.which("nix"):
        return "nix not installed (apt-get install nix-bin)"
    store = Path("/nix")
    if not (os.access(store, os.W_OK) if store.exists() else os.access("/", os.W_OK)):
        return "/nix is not writable (the tests build as root into /nix/store)"
    return None


@pytest.fixture
def nix_flake(tmp_path, monkeypatch):
    why = _nix_usable()
    if why:
        pytest.skip(why)
    # Build as root without build users or a sandbox: the stand-ins run the host's /bin/sh.
    monkeypatch.setenv("NIX_CONFIG", NIX_CONFIG)
    flake = tmp_path / "flake"
    shutil.copytree(FIXTURES / "nixflake", flake)
    return f"path:{flake}"


@pytest.mark.parametrize("cuda,full", [("12.9", "12.9.86"), ("12.8", "12.8.93")])
def test_nix_realises_and_joins_the_package_set(nix_flake, tmp_path, cuda, full):
    toolchain = toolchains.resolve(cuda, "nix", cache_dir=tmp_path / "cache", nixpkgs=nix_flake, offline=True)
    assert (toolchain.provider, toolchain.cuda, toolchain.version) == ("nix", cuda, full)
    home = toolchain.cuda_home
    assert home.parent == tmp_path / "cache" / "toolchains"
    assert toolchain.nvcc == home / "bin" / "nvcc"
    assert os.path.realpath(toolchain.nvcc).startswith("/nix/store/")
    # Every output: cudnn's header is in its dev output, its library in lib.
    assert (home / "include" / "cudnn.h").exists() and (home / "include" / "nccl.h").exists()
    assert (home / "include" / "cuda_runtime.h").exists()
    assert (home / "lib64").is_symlink() and not (home / "nix-support").exists()
    assert toolchain.runtime_libraries == ("libcudart.so.12", "libcudnn.so.9", "libnccl.so.2", "libcusparseLt.so.0")
    assert toolchain.requirements == ()
    sources = (home / ".sources").read_text().split()
    assert all(s.startswith("/nix/store/") for s in sources) and any(s.endswith("-cudnn-9.10.2-dev") for s in sources)
    env = toolchain.env({"PATH": "/bin"})
    assert env["CUDACXX"] == str(toolchain.nvcc) and env["PATH"].startswith(str(home / "bin"))
    # Realised again: the same joined folder.
    again = toolchains.resolve(cuda, "nix", cache_dir=tmp_path / "cache", nixpkgs=nix_flake, offline=True)
    assert again == toolchain


def test_nix_auto_chooses_nix_for_12(nix_flake, pypi13, monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_HOME", str(pypi13.cuda_home))  # an installed 13.0: not the version asked for
    chosen = toolchains.resolve("12.9", "auto", cache_dir=tmp_path, nixpkgs=nix_flake, offline=True)
    assert chosen.provider == "nix" and chosen.version == "12.9.86"


def test_nix_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BackendError) as info:
        toolchains.resolve("12.9", "nix", cache_dir=tmp_path, nixpkgs=DEFAULT_NIXPKGS)
    message = str(info.value)
    assert message.startswith("toolchain 'nix': nix is not installed (no nix on PATH)")
    assert "apt-get install nix-bin" in message and "toolchain=system" in message and "\n" not in message


def test_nix_bad_flake_reference(nix_flake, tmp_path):
    with pytest.raises(BackendError) as info:
        toolchains.resolve("12.9", "nix", cache_dir=tmp_path, nixpkgs=f"path:{tmp_path / 'no-such-flake'}",
                           offline=True)
    message = str(info.value)
    assert "evaluating cudaPackages_12_9 from path:" in message and "nix exited with 1" in message
    assert "-C nixpkgs=" in message and "\n" not in message


def test_nix_missing_package_set(nix_flake, tmp_path):
    with pytest.raises(BackendError, match="does not provide attribute.*cudaPackages_12_4"):
        toolchains.resolve("12.4", "nix", cache_dir=tmp_path, nixpkgs=nix_flake, offline=True)


def test_nix_failing_build(nix_flake, tmp_path):
    with pytest.raises(BackendError) as info:
        toolchains.resolve("12.6", "nix", cache_dir=tmp_path, nixpkgs=nix_flake, offline=True)
    message = str(info.value)
    assert "nix build of cudaPackages_12_6.{cudatoolkit,cudnn,nccl,libcusparse_lt}" in message
    assert "cudatoolkit-broken.drv' failed" in message and "\n" not in message


def test_nix_toolkit_without_nvcc(nix_flake, tmp_path):
    with pytest.raises(BackendError, match=r"realised from path:.*#cudaPackages_12_5 at .* has no bin/nvcc"):
        toolchains.resolve("12.5", "nix", cache_dir=tmp_path, nixpkgs=nix_flake, offline=True)



def _plan(tmp_path, nixpkgs, **config):
    from backend.pipeline.plan import make_plan
    from backend.settings import resolve as resolve_settings
    from backend.variants import Variant

    settings = resolve_settings({"cache-dir": str(tmp_path / "cache"), "toolchain": "nix", "nixpkgs": nixpkgs,
                                 "offline": "true", "cuda": "12.9", **config})
    variant = Variant(sm="90", isa="avx512", cuda="12.9", python="313")
    return make_plan(settings, variant, project_dir=tmp_path, cores=16, memory_bytes=64 << 30)


def test_nix_realises_only_the_libraries_the_plan_links(nix_flake, tmp_path):
    from backend.pipeline.run import resolve_toolchain

    # In this copy of the stand-in flake, building cudnn, nccl or cuSPARSELt fails.
    (Path(nix_flake.removeprefix("path:")) / "refuse-libraries").write_text("")
    bitsandbytes = resolve_toolchain(_plan(tmp_path, nix_flake, components="bitsandbytes"))
    home = bitsandbytes.cuda_home
    assert bitsandbytes.version == "12.9.86" and bitsandbytes.runtime_libraries == ("libcudart.so.12",)
    assert not any((home / "include" / h).exists() for h in ("cudnn.h", "nccl.h"))
    sources = (home / ".sources").read_text().split()
    assert len(sources) == 1 and sources[0].endswith("-cudatoolkit-12.9.86")
    # A torch build asks for them, so here it fails on the first one.
    with pytest.raises(BackendError) as info:
        resolve_toolchain(_plan(tmp_path, nix_flake, components="torch"))
    message = str(info.value)
    assert "nix build of cudaPackages_12_9.{cudatoolkit,cudnn,nccl,libcusparse_lt}" in message
    assert "-refused.drv' failed" in message and "\n" not in message


def test_nix_torch_build_gets_every_library_and_not_a_smaller_farm(nix_flake, tmp_path):
    from backend.pipeline.run import resolve_toolchain

    smaller = resolve_toolchain(_plan(tmp_path, nix_flake, components="bitsandbytes"))
    torch = resolve_toolchain(_plan(tmp_path, nix_flake, components="torch"))
    assert torch.runtime_libraries == ("libcudart.so.12", "libcudnn.so.9", "libnccl.so.2", "libcusparseLt.so.0")
    for header in ("cudnn.h", "nccl.h", "cuda_runtime.h"):
        assert (torch.cuda_home / "include" / header).exists(), header
    # Both farms sit side by side, each named by what it joins: the later torch build did not reuse the smaller one.
    assert torch.cuda_home != smaller.cuda_home and smaller.runtime_libraries == ("libcudart.so.12",)
    assert sorted(p.name for p in torch.cuda_home.parent.iterdir()) == sorted([torch.cuda_home.name, smaller.cuda_home.name])


def test_nix_libraries_by_name(nix_flake, tmp_path):
    # cuSPARSELt alone, under 12.8's older attribute name; asked in any order, one farm.
    only = toolchains.resolve("12.8", "nix", cache_dir=tmp_path, nixpkgs=nix_flake, offline=True,
                              libraries=("cusparselt", "cublas"))
    assert only.runtime_libraries == ("libcudart.so.12", "libcusparseLt.so.0")
    both = [toolchains.resolve("12.9", "nix", cache_dir=tmp_path, nixpkgs=nix_flake, offline=True, libraries=names)
            for names in (("nccl", "cudnn"), ("cudnn", "nccl"))]
    assert both[0] == both[1] and both[0].runtime_libraries == ("libcudart.so.12", "libcudnn.so.9", "libnccl.so.2")
    with pytest.raises(BackendError) as info:  # the stand-in set has no cuFile
        toolchains.resolve("12.9", "nix", cache_dir=tmp_path, nixpkgs=nix_flake, offline=True, libraries=("cufile",))
    assert f"{nix_flake}#cudaPackages_12_9 has no libcufile; ways out:" in str(info.value)
    with pytest.raises(BackendError, match=r"^toolchain 'nix': unknown CUDA library 'cudnn9'; accepted: cudart, "):
        toolchains.resolve("12.9", "nix", cache_dir=tmp_path, nixpkgs=nix_flake, offline=True, libraries=("cudnn9",))


def test_nix_knows_every_library_a_recipe_may_name():
    assert list(nix_provider.LIBRARIES) == list(pypi_provider.LIBRARIES["13.0"])


# ---------------------------------------------------------------- farms: GC roots, staleness, layout, cleaning

def _nix_store(*args: str) -> subprocess.CompletedProcess:
    """Read-only garbage-collector queries (``--print-roots``, ``--print-dead``): nothing is deleted."""
    result = subprocess.run(["nix-store", *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def _roots() -> dict[str, str]:
    """Root link -> store path, as the garbage collector sees them now."""
    lines = _nix_store("--gc", "--print-roots").stdout.splitlines()
    return dict(line.split(" -> ", 1) for line in lines if " -> " in line)


def _dead() -> set[str]:
    return set(_nix_store("--gc", "--print-dead").stdout.split())


@pytest.fixture
def salted_flake(nix_flake, tmp_path):
    """The stand-in flake with store paths of this test alone: no other farm on the machine roots them."""
    (Path(nix_flake.removeprefix("path:")) / "salt").write_text(str(tmp_path))
    return nix_flake


def _delete_own_paths(paths) -> None:
    """Delete this test's salted store paths (dead by then): the machine's store is not collected."""
    subprocess.run(["nix-store", "--delete", *map(str, paths)], capture_output=True, text=True)


def test_nix_farm_roots_its_store_paths_for_as_long_as_it_lives(salted_flake, tmp_path):
    from backend.toolchains import farm as farm_module

    toolchain = toolchains.resolve("12.9", "nix", cache_dir=tmp_path / "cache", nixpkgs=salted_flake, offline=True)
    home = toolchain.cuda_home
    paths = (home / ".sources").read_text().split()
    assert len(paths) == 6 and all(p.startswith("/nix/store/") for p in paths)  # toolkit, cudnn x3, nccl, cusparselt
    # Every store path the farm joins is a root through a link inside the farm, so not garbage.
    roots = _roots()
    rooted = {target for link, target in roots.items() if link.startswith(f"{home}/.gcroots/")}
    assert rooted == set(paths), roots
    assert not set(paths) & _dead()
    # Reused, the farm registers its roots again (one nix-store call) and stays the same folder.
    shutil.rmtree(home / ".gcroots")
    assert set(paths) <= _dead()  # without the roots, the next nix-collect-garbage would delete them
    again = toolchains.resolve("12.9", "nix", cache_dir=tmp_path / "cache", nixpkgs=salted_flake, offline=True)
    assert again == toolchain and not set(paths) & _dead()

    # A farm whose store paths are gone is stale: not whole, so never reused as it is.
    shutil.rmtree(home / ".gcroots")
    _delete_own_paths(paths)
    assert not any(os.path.exists(p) for p in paths)
    assert not farm_module.is_whole(home)
    rebuilt = toolchains.resolve("12.9", "nix", cache_dir=tmp_path / "cache", nixpkgs=salted_flake, offline=True)
    assert rebuilt == toolchain and farm_module.is_whole(home) and os.path.exists(rebuilt.nvcc)
    shutil.rmtree(home / ".gcroots")
    _delete_own_paths(paths)


def test_clean_toolchains_removes_farms_and_their_gc_roots(salted_flake, tmp_path, run_backend):
    cache = tmp_path / "cache"
    toolchain = toolchains.resolve("12.9", "nix", cache_dir=cache, nixpkgs=salted_flake, offline=True)
    paths = (toolchain.cuda_home / ".sources").read_text().split()
    root = pypi_provider.root_for(cache, "13.0") / "site"
    root.mkdir(parents=True)
    (root / "wheel-file").write_bytes(b"x" * 2_000_000)
    assert not set(paths) & _dead()

    kept = run_backend("clean", "--all", "-C", f"cache-dir={cache}")
    assert kept.returncode == 0, kept.stderr
    assert "CUDA toolchains kept (--toolchains removes them)" in kept.stdout and toolchain.cuda_home.is_dir()

    result = run_backend("clean", "--all", "--toolchains", "-C", f"cache-dir={cache}")
    assert result.returncode == 0, result.stderr
    assert f"{cache / 'toolchains'}: removed (0.00 GB)" in result.stdout
    assert "nix-collect-garbage frees the Nix store paths" in result.stdout
    assert not (cache / "toolchains").exists()
    # The store is untouched, its paths no longer rooted: the next nix-collect-garbage may take them.
    assert all(os.path.exists(p) for p in paths) and set(paths) <= _dead()
    _delete_own_paths(paths)
    help_text = run_backend("clean", "--help").stdout
    assert "--toolchains" in help_text and "nix-collect-garbage" in help_text


def test_pypi_farm_of_a_moved_cache_is_made_again(pypi13, pypi_cache, tmp_path):
    """A farm whose install root is gone (here: the cache moved) is rebuilt, not reused with dangling links."""
    first, moved = tmp_path / "first", tmp_path / "moved"
    shutil.copytree(pypi_provider.root_for(pypi_cache, "13.0"), pypi_provider.root_for(first, "13.0"),
                    symlinks=True, copy_function=os.link, ignore=shutil.ignore_patterns(".lock"))
    before = toolchains.resolve("13.0", "pypi", cache_dir=first, nixpkgs=DEFAULT_NIXPKGS, offline=True, libraries=())
    assert os.path.realpath(before.nvcc).startswith(f"{first}/")
    os.rename(first, moved)
    after = toolchains.resolve("13.0", "pypi", cache_dir=moved, nixpkgs=DEFAULT_NIXPKGS, offline=True, libraries=())
    assert after.cuda_home.name == before.cuda_home.name and after.version == pypi13.version
    assert os.path.realpath(after.nvcc).startswith(f"{moved}/")
    assert not [p for p in after.cuda_home.rglob("*") if p.is_symlink() and not p.exists()]


def test_farm_layout_version_makes_new_farms(tmp_path, monkeypatch):
    from backend.toolchains import farm as farm_module

    filled: list[Path] = []

    def fill(folder: Path) -> None:
        filled.append(folder)
        farm_module.link(folder / "target", tmp_path)

    first = farm_module.farm(tmp_path / "farms", "t", ["a"], fill, needs=[tmp_path])
    assert farm_module.farm(tmp_path / "farms", "t", ["a"], fill, needs=[tmp_path]) == first and len(filled) == 1
    monkeypatch.setattr(farm_module, "LAYOUT", farm_module.LAYOUT + 1)
    second = farm_module.farm(tmp_path / "farms", "t", ["a"], fill, needs=[tmp_path])
    assert second != first and len(filled) == 2 and first.is_dir()
    # A need gone: the farm of the same name is made again in place.
    (second / ".needs").write_text(f"{tmp_path / 'gone'}\n")
    assert farm_module.farm(tmp_path / "farms", "t", ["a"], fill, needs=[tmp_path]) == second and len(filled) == 3
    assert farm_module.is_whole(second)
    assert sorted(p.name for p in (tmp_path / "farms").iterdir()) == sorted([first.name, second.name])


def test_a_local_nixpkgs_under_an_unknown_users_home_is_a_reason_not_a_traceback():
    # Path.expanduser raised RuntimeError for ~unknownuser: `python -m backend toolchain -C nixpkgs=path:~x/y`
    # printed a traceback where Nix was on PATH
    why = nix_provider.nixpkgs_unreachable("nix", "path:~no-such-user-here/nixpkgs")
    assert why == "nixpkgs path:~no-such-user-here/nixpkgs: ~no-such-user-here/nixpkgs does not exist"
