"""The headline command, cold, under every frontend users run.

``pip wheel .``, ``python -m build --wheel`` and ``uv build --wheel``, with
and without build isolation, each on an empty cache and an empty wheelhouse
(nothing built before: every component compiles under that frontend).  Each
builds three stand-ins that cover the three kinds of component build:

- torch (tests/fixtures/standins/torch): setuptools with no ``pyproject.toml``
  at all, so no ``backend-path``;
- bitsandbytes: scikit-build-core (CMake + nvcc);
- flashinfer: an in-tree backend with ``backend-path = ["."]``.

The pip runs use a frontend venv made from this interpreter, whose pip is the
same release as the build venv's (both come from ``ensurepip``): the case
where the outer and the inner pip read the same hook variables.

``test_real_flashinfer_from_the_lock`` builds the real flashinfer-python
0.6.1 sdist from the lock through ``pip wheel .`` (``torch=existing``, a CPU
torch from PyPI in a venv of its own).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from standin_helpers import find_nvcc, host_isa, runtime_links, standin_runtime_requirements, standin_tree
from conftest import kept_unchanged

ROOT = Path(__file__).resolve().parent.parent
NVCC = find_nvcc()
ISA = host_isa()
VARIANT = f"vllm-python{sys.version_info.major}{sys.version_info.minor}-cuda13_0-sm90-{ISA}"
COMPONENTS = ("torch", "bitsandbytes", "flashinfer")

pytestmark = pytest.mark.skipif(NVCC is None, reason="needs a CUDA 13 nvcc (system /usr/local/cuda-13.0 or PyPI)")


def _settings(tmp: Path, components=COMPONENTS, sources=True, **extra: str) -> list[str]:
    pairs = {
        "sm": "90", "isa": ISA, "cuda": "13.0", "toolchain": "system", "components": ",".join(components),
        "cache-dir": str(tmp / "cache"), "wheelhouse": str(tmp / "wheelhouse"), "jobs": "2",
        **({f"source.{c}": str(standin_tree(c)) for c in components} if sources else {}),
        **extra,
    }
    return [arg for key, value in pairs.items() for arg in ("-C", f"{key}={value}")]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(NVCC).parent}{os.pathsep}{env['PATH']}"
    env.pop("VLLM_STACK_CACHE_DIR", None)
    return env


@pytest.fixture(scope="module")
def frontend_venv(tmp_path_factory) -> Path:
    """The user's environment: a venv of this interpreter (its pip from ensurepip), seeing the
    system site-packages (build, cmake, scikit-build-core, ... for --no-build-isolation)."""
    path = tmp_path_factory.mktemp("frontend") / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=True, clear=True).create(path)
    with kept_unchanged(path):  # every frontend's build must leave the user's environment as it was
        yield path / "bin" / "python"


def _command(frontend: str, python: Path, isolated: bool, out: Path, settings: list[str]) -> list[str]:
    if frontend == "pip":
        return [str(python), "-m", "pip", "wheel", str(ROOT), "-w", str(out), "-v",
                *([] if isolated else ["--no-build-isolation"]), *settings]
    if frontend == "build":
        return [str(python), "-m", "build", "--wheel", "--outdir", str(out), str(ROOT),
                # -x: without isolation build checks the frontend env for the build requirements;
                # this user has not installed them, and the backend installs them into its own venv.
                *([] if isolated else ["--no-isolation", "--skip-dependency-check"]), *settings]
    uv = shutil.which("uv")
    return [uv, "build", "--wheel", "--out-dir", str(out), "--python", str(python), str(ROOT),
            *([] if isolated else ["--no-build-isolation"]), *settings]


def _pip_version(python: Path) -> str:
    out = subprocess.run([str(python), "-m", "pip", "--version"], capture_output=True, text=True, check=True)
    return out.stdout.split()[1]


@pytest.mark.parametrize("isolated", [True, False], ids=["isolated", "no-isolation"])
@pytest.mark.parametrize("frontend", ["pip", "build", "uv"])
def test_cold_build_under_every_frontend(frontend, isolated, frontend_venv, tmp_path):
    if frontend == "uv" and shutil.which("uv") is None:
        pytest.fail("uv is not installed: ci/requirements/core.txt lists it")
    out = tmp_path / "dist"
    # The headline run keeps every default (runtime closure, smoke check); the others build
    # wheels only, which is what differs between frontends, and keeps the suite fast.
    # The headline run resolves the stand-in torch's triton and nvidia-* pins from a stand-in index built here.
    extra = ({"runtime-find-links": str(runtime_links(tmp_path / "links", standin_runtime_requirements()))}
             if (frontend, isolated) == ("pip", True) else {"runtime-deps": "none", "smoke": "off"})
    result = subprocess.run(_command(frontend, frontend_venv, isolated, out, _settings(tmp_path, **extra)),
                            capture_output=True, text=True, env=_env(), cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    for broken in ("BackendInvalid", "Error in sitecustomize", "Traceback"):
        assert broken not in output, output[-6000:]

    returned = sorted(out.glob("*.whl"))
    assert [w.name.split("-")[0] for w in returned] == [VARIANT.replace("-", "_")]
    house = tmp_path / "wheelhouse" / VARIANT
    manifest = json.loads((house / "manifest.json").read_text())
    built = {entry["component"] for entry in manifest["wheels"].values() if entry.get("origin") != "runtime"}
    assert built == set(COMPONENTS)
    for name in manifest["wheels"]:
        assert (house / name).is_file()
    with zipfile.ZipFile(returned[0]) as archive:
        meta = archive.read(next(n for n in archive.namelist() if n.endswith("METADATA"))).decode()
    for name in ("torch", "bitsandbytes", "flashinfer-python"):
        assert f"Requires-Dist: {name}==" in meta

    # Every component compiled here, under this frontend, on the empty cache.
    logs = tmp_path / "cache" / "work" / VARIANT / "logs"
    assert sorted(p.stem for p in logs.glob("*.log")) == sorted(COMPONENTS)
    # The build env borrowed from the frontend only for this build: nothing points at its folders now.
    env_dir = tmp_path / "cache" / "envs" / VARIANT
    assert not list(env_dir.glob("lib/python*/site-packages/_vllm_stack_borrowed.pth"))
    assert not (env_dir / "bin" / "cmake").exists()
    if frontend == "pip":
        # The case that broke: the frontend's pip and the build venv's pip are one release.
        assert _pip_version(frontend_venv) == _pip_version(env_dir / "bin" / "python")


@pytest.mark.slow
def test_headline_command_with_cuda_from_pypi(frontend_venv, tmp_path):
    """The README's first command as written (-C toolchain=pypi): pip wheel . on an empty backend cache.

    CUDA 13.0 comes from NVIDIA's wheels (about 3 GB; pip's own download cache may hold them), joined into
    the library set's CUDA_HOME farm, and the three build kinds compile with that nvcc, not the system's.
    """
    out = tmp_path / "dist"
    # The built wheels require the toolchain's own CUDA wheels (the releases they were compiled with).
    from backend.toolchains import pypi

    wanted = standin_runtime_requirements() + pypi.requirements_for("13.0")[1]
    settings = _settings(tmp_path, toolchain="pypi", **{"runtime-find-links": str(runtime_links(tmp_path / "links", wanted))})
    env = _env()
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not (Path(p) / "nvcc").exists())
    result = subprocess.run(_command("pip", frontend_venv, True, out, settings),
                            capture_output=True, text=True, env=env, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "Traceback" not in output
    farms = [p for p in (tmp_path / "cache" / "toolchains").glob("pypi-cu130-*") if (p / ".complete").is_file()]
    assert len(farms) == 1 and (farms[0] / "bin" / "nvcc").is_symlink()
    house = tmp_path / "wheelhouse" / VARIANT
    manifest = json.loads((house / "manifest.json").read_text())
    assert {e["component"] for e in manifest["wheels"].values() if e.get("origin") != "runtime"} == set(COMPONENTS)
    logs = tmp_path / "cache" / "work" / VARIANT / "logs"
    bitsandbytes_log = (logs / "bitsandbytes.log").read_text()
    assert str(farms[0]) in bitsandbytes_log, "bitsandbytes did not compile with the farm's nvcc"


def test_component_environment_drops_frontend_variables(tmp_path):
    """What each frontend sets for its hook process (read off pip 23.2, pip 25, build 1.x and uv 0.9)."""
    from backend.pipeline.environment import caller_environ, clean_environ

    python = tmp_path / "env" / "bin" / "python"
    outer = {
        "PATH": "/tmp/pip-build-env-x/overlay/bin:/usr/bin",
        "PEP517_BUILD_BACKEND": "backend", "PEP517_BACKEND_PATH": "/src",
        "_PYPROJECT_HOOKS_BUILD_BACKEND": "backend", "_PYPROJECT_HOOKS_BACKEND_PATH": "/src",
        "_PYPROJECT_HOOKS_BACKEND_PATH_JSON": '["/src"]', "UV_INTERNAL__BUILD_DIR": "/src",
        "PYTHONPATH": "/tmp/pip-build-env-x/site", "PIP_BUILD_TRACKER": "/tmp/t", "PIP_TARGET": "/elsewhere",
        "PIP_NO_BUILD_ISOLATION": "0", "PIP_REQUIRE_VIRTUALENV": "1", "VIRTUAL_ENV": "/tmp/build-env",
        "PIP_INDEX_URL": "https://mirror.example/simple", "PIP_CERT": "/etc/ca.pem", "HOME": "/root",
    }
    env = clean_environ(python, caller_environ(outer))  # as the executor makes it
    assert env["PIP_INDEX_URL"] == "https://mirror.example/simple" and env["PIP_CERT"] == "/etc/ca.pem"
    assert env["HOME"] == "/root"
    for key in ("PEP517_BUILD_BACKEND", "PEP517_BACKEND_PATH", "_PYPROJECT_HOOKS_BUILD_BACKEND",
                "_PYPROJECT_HOOKS_BACKEND_PATH", "_PYPROJECT_HOOKS_BACKEND_PATH_JSON", "UV_INTERNAL__BUILD_DIR",
                "PYTHONPATH", "PIP_BUILD_TRACKER", "PIP_TARGET", "PIP_NO_BUILD_ISOLATION", "PIP_REQUIRE_VIRTUALENV"):
        assert key not in env, key
    assert env["VIRTUAL_ENV"] == str(python.parent.parent)
    assert env["PATH"].split(os.pathsep)[0] == str(python.parent)


@pytest.fixture(scope="module")
def torch_python() -> Path:
    """A venv with a CPU torch from PyPI (the build machine's own torch for torch=existing).

    Kept between runs in the user's cache: it is the user's environment here, not
    the backend's cache, which every test starts empty.
    """
    from platformdirs import user_cache_dir

    path = Path(user_cache_dir("vllm-stack-tests")) / f"torch-venv-py{sys.version_info.major}{sys.version_info.minor}"
    python = path / "bin" / "python"
    probe = [str(python), "-c", "import torch, pip"]
    if not (python.exists() and subprocess.run(probe, capture_output=True).returncode == 0):
        venv.EnvBuilder(with_pip=True, system_site_packages=True, clear=True).create(path)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "torch==2.13.0"], check=True)
    with kept_unchanged(path):  # kept between runs: a change would outlive this one
        yield python


def test_real_flashinfer_from_the_lock(torch_python, tmp_path):
    """The real flashinfer-python 0.6.1 sdist (downloaded and hash-checked from the lock), built by
    ``pip wheel . --no-build-isolation`` on an empty cache against the machine's own torch."""
    out = tmp_path / "dist"
    command = _command("pip", torch_python, False, out,
                       # Built wheels only: flashinfer's runtime closure (nvidia-cutlass-dsl, ...) is 300 MB.
                       # JIT only: the AOT kernels need the v0.6.1 tag from GitHub, which CI cannot reach,
                       # and an hour of nvcc.
                       _settings(tmp_path, components=("flashinfer",), sources=False, torch="existing",
                                 # a CPU torch 2.13: the build would stop before compiling (it does not fit)
                                 **{"runtime-deps": "none", "smoke": "off", "flashinfer-aot": "false",
                                    "existing-torch": "accept"}))
    result = subprocess.run(command, capture_output=True, text=True, env=_env(), cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    house = tmp_path / "wheelhouse" / VARIANT
    manifest = json.loads((house / "manifest.json").read_text())
    (name, entry), = [(n, e) for n, e in manifest["wheels"].items() if e.get("origin") != "runtime"]
    assert name.startswith("flashinfer_python-0.6.1+cu130.sm90.") and entry["origin"] == "lock"
    with zipfile.ZipFile(house / name) as archive:
        names = archive.namelist()
    assert "flashinfer/__init__.py" in names
    # JIT only: the tag tree the AOT kernels need is neither fetched nor unpacked.
    assert [p.name for p in (tmp_path / "cache" / "downloads").glob("*.tar.gz")] == ["flashinfer-0.6.1.tar.gz"]
    assert any(n.startswith("flashinfer/") and n.endswith(".py") for n in names if n != "flashinfer/__init__.py")


def _cuda_torch() -> str | None:
    """Why the running torch cannot build a CUDA extension here, or None when it can."""
    try:
        import torch
    except ImportError:
        return "no torch is importable (torch=existing)"
    if not torch.version.cuda:
        return f"torch {torch.__version__} is a CPU build"
    if NVCC is None:
        return "no nvcc"
    release = subprocess.run([NVCC, "--version"], capture_output=True, text=True).stdout
    if f"release {torch.version.cuda.split('.')[0]}." not in release:
        return f"torch {torch.__version__} is built for CUDA {torch.version.cuda}, nvcc is another major release"
    return None


@pytest.mark.slow
def test_real_xformers_sdist_for_one_sm(tmp_path):
    """The real xformers sdist, through ``pip wheel . --no-build-isolation`` on an empty cache, for sm_90.

    ``VLLM_STACK_XFORMERS_SDIST``: the xformers release that matches the running
    torch (on the H200 image, torch 2.11: xformers 0.0.34). Flash attention is
    left out (``XFORMERS_DISABLE_FLASH_ATTN=1``: the FA3 units take most of the
    hour a full build needs); the memory-efficient kernels are built.  Strict
    verification inside the build refuses any GPU code but sm_90.
    """
    import tarfile

    why = _cuda_torch()
    if why:
        pytest.skip(f"needs a CUDA torch matching nvcc's major release: {why}")
    sdist = os.environ.get("VLLM_STACK_XFORMERS_SDIST")
    if not sdist or not Path(sdist).is_file():
        pytest.skip("set VLLM_STACK_XFORMERS_SDIST to the xformers sdist that matches the running torch")
    tree = tmp_path / "xformers"
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp_path / "unpacked", filter="data")
    (tmp_path / "unpacked").iterdir().__next__().rename(tree)
    env = _env()
    env["XFORMERS_DISABLE_FLASH_ATTN"] = "1"
    out = tmp_path / "dist"
    command = [sys.executable, "-m", "pip", "wheel", str(ROOT), "-w", str(out), "-v", "--no-build-isolation",
               *_settings(tmp_path, components=("xformers",), sources=False, torch="existing",
                          **{"source.xformers": str(tree), "jobs": str(os.cpu_count() or 2),
                             "existing-torch": "accept",  # the machine's torch release, not the stack's 2.9.1
                             # The compile is what this test is about; it runs on machines with no network
                             # (the H200), where the runtime closure and the smoke install cannot resolve.
                             "runtime-deps": "none", "smoke": "off",
                             # and the build requirements come from the environment (no index there either)
                             "offline": "true"})]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)
    output = result.stdout + result.stderr
    errors = [line for line in output.splitlines() if "error" in line.lower()]
    assert result.returncode == 0, "\n".join(errors[-20:]) + output[-3000:]
    house = tmp_path / "wheelhouse" / VARIANT
    manifest = json.loads((house / "manifest.json").read_text())
    (name, entry), = manifest["wheels"].items()
    assert name.startswith("xformers-") and entry["component"] == "xformers"
    assert "verification: 1 checked, 0 errors" in output
    with zipfile.ZipFile(house / name) as archive:
        assert any(n.startswith("xformers/_C") and n.endswith(".so") for n in archive.namelist())
