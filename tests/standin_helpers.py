"""Helpers to build and inspect the stand-in fixture trees (tests/fixtures/standins).

Shared by tests/test_standins.py and usable by pipeline tests: the stand-ins'
complete source trees (``standin_tree``), where nvcc and cuobjdump are, which
ISA this host can run, a build venv that has the stand-ins' build
requirements, and readers for wheels and ELF sections.
"""

from __future__ import annotations

import atexit
import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import venv
import zipfile
from email.parser import Parser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STANDIN_PARTS = ROOT / "tests" / "fixtures" / "standins"
# What several stand-ins share, written once (a folder of STANDIN_PARTS), and the stand-ins it completes:
# the C++/CUDA extension <name>._C (its build names the symbols: -DSTANDIN_NAME=<name>), and the setup.py
# helper of the three setuptools ones.  A tree cannot reach a shared part by a relative path or a link: a
# local tree is copied into the cache with its symlinks as they are (backend/pipeline/snapshot.py), so
# anything out of the tree would dangle.
SHARED_PARTS = {
    "_extension": ("torchvision", "torchaudio", "xformers", "vllm"),
    "_setup": ("torchvision", "torchaudio", "xformers"),
}
REQUIREMENTS = ROOT / "ci" / "requirements" / "standins.txt"
BUILD_MODULES = ("setuptools", "wheel", "packaging", "cmake", "ninja", "scikit_build_core")


def materialise_standins(dest: Path) -> Path:
    """Every stand-in as a complete, self-contained source tree ``dest/<component>``, as a user's checkout is.

    Each checked-in tree gets the ``SHARED_PARTS`` it uses copied in.  What building in place leaves
    behind (build/, *.so, *.egg-info) is not copied.
    """
    leftovers = shutil.ignore_patterns("build", "__pycache__", "*.egg-info", "*.so")
    for part in sorted(STANDIN_PARTS.iterdir()):
        if part.is_dir() and part.name not in SHARED_PARTS:
            shutil.copytree(part, dest / part.name, ignore=leftovers)
    for shared, components in SHARED_PARTS.items():
        for component in components:
            shutil.copytree(STANDIN_PARTS / shared, dest / component, ignore=leftovers, dirs_exist_ok=True)
    return dest


@functools.cache
def standin_trees() -> Path:
    """The folder of every stand-in's complete tree: materialised once per process, removed at its exit.

    Every test of the process shares it (conftest.py guards it): a caller that changes a tree works on a copy.
    """
    folder = Path(tempfile.mkdtemp(prefix="standins-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return materialise_standins(folder)


def standin_tree(component: str) -> Path:
    """The complete source tree of one stand-in, for ``-C source.<component>=`` (in ``standin_trees()``)."""
    return standin_trees() / component


def find_nvcc() -> str | None:
    candidates = [os.environ.get("CUDACXX")]
    if os.environ.get("CUDA_HOME"):
        candidates.append(str(Path(os.environ["CUDA_HOME"]) / "bin" / "nvcc"))
    candidates += ["/usr/local/cuda-13.0/bin/nvcc", shutil.which("nvcc")]
    for c in candidates:
        if c and Path(c).is_file():
            return c
    return None


def cuda_home(nvcc: str) -> str:
    if os.environ.get("CUDA_HOME"):
        return os.environ["CUDA_HOME"]
    return str(Path(nvcc).resolve().parent.parent)


def find_cuobjdump(nvcc: str | None = None) -> str | None:
    candidates = []
    if nvcc:
        candidates.append(Path(cuda_home(nvcc)) / "bin" / "cuobjdump")
    try:
        import nvidia

        for base in nvidia.__path__:
            candidates += sorted(Path(base).glob("*/bin/cuobjdump"))
    except ImportError:
        pass
    which = shutil.which("cuobjdump")
    if which:
        candidates.append(Path(which))
    return next((str(c) for c in candidates if c.is_file()), None)


def host_isa() -> str:
    """The widest x86 ISA of backend.variants this host can run (tests run the code they build)."""
    flags = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    if {"avx512f", "avx512dq", "avx512vl", "avx512bw", "fma"} <= flags:
        return "avx512"
    if {"avx2", "fma", "f16c"} <= flags:
        return "avx2"
    return "avx"


def make_build_venv(path: Path) -> Path:
    """A venv seeing the system site-packages, with the stand-ins' build needs installed if missing."""
    venv.EnvBuilder(system_site_packages=True, with_pip=True, clear=True).create(path)
    python = path / "bin" / "python"
    probe = ("import importlib.util, sys, setuptools;"
             f"missing=[m for m in {BUILD_MODULES!r} if importlib.util.find_spec(m) is None];"
             "old=int(setuptools.__version__.split('.')[0]) < 70;"
             "sys.exit(1 if missing or old else 0)")
    if subprocess.run([str(python), "-c", probe]).returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)], check=True)
    return python


def pip_wheel(python: Path, tree: Path, out: Path, env: dict, *extra: str) -> subprocess.CompletedProcess:
    """The pipeline's build command for one tree."""
    return subprocess.run(
        [str(python), "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "--no-cache-dir", "-v",
         "-w", str(out), *extra, str(tree)],
        env=env, capture_output=True, text=True)


def wheel_metadata(wheel: Path) -> dict:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        msg = Parser().parsestr(zf.read(name).decode())
    return {"name": msg["Name"], "version": msg["Version"], "requires": msg.get_all("Requires-Dist") or []}


def gcc_command_line(lib: Path) -> str:
    return subprocess.run(["readelf", "-p", ".GCC.command.line", str(lib)], capture_output=True, text=True).stdout


def cuda_targets(cuobjdump: str, lib: Path) -> tuple[list[str], list[str]]:
    """(cubin archs, PTX archs) of a library: (['sm_90'], []) for a plain sm_90 build."""
    out = subprocess.run([cuobjdump, "--list-elf", "--list-ptx", str(lib)], capture_output=True, text=True).stdout
    elf = sorted(set(re.findall(r"\.(sm_\w+?)\.cubin", out)))
    ptx = sorted(set(re.findall(r"\.(sm_\w+?)\.ptx", out)))
    return elf, ptx


def python_in(python: Path, code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), "-c", code], cwd=cwd, capture_output=True, text=True)


def runtime_links(folder: Path, requirements) -> Path:
    """A --find-links folder standing in for PyPI: one small wheel per runtime requirement of the stand-ins.

    ``packaging`` is the real one (this interpreter's installed copy, re-wheeled);
    the others (triton, nvidia-* at PyTorch's pins) are empty packages of the
    pinned name and version, so resolving the stand-in stack needs no network.
    """
    import importlib.util

    from packaging.requirements import Requirement

    from conftest import make_wheel

    folder.mkdir(parents=True, exist_ok=True)
    for text in requirements:
        requirement = Requirement(text)
        pinned = [s.version for s in requirement.specifier if s.operator in ("==", ">=")]
        version = pinned[0] if pinned else "1.0"
        parts = requirement.name.replace("-", "_").split("_", 1) if requirement.name.startswith("nvidia-") else [requirement.name.replace("-", "_")]
        package = "/".join(parts)
        files = {f"{package}/__init__.py": f'"""Stand-in for the {requirement.name} {version} wheel."""\n__version__ = "{version}"\n'.encode()}
        if requirement.name == "packaging":
            import packaging

            source = Path(packaging.__file__).parent
            version = packaging.__version__
            files = {f"packaging/{p.relative_to(source)}": p for p in source.rglob("*.py")}
        make_wheel(folder, requirement.name, version, files, tag="py3-none-any")
    return folder


def hermetic_pip_env(links: Path, base: dict | None = None) -> dict:
    """pip sees only ``links``: no configured index, mirror or find-links of this machine."""
    env = {k: v for k, v in (base if base is not None else os.environ).items() if not k.startswith("PIP_")}
    env.update({"PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(links),
                "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    return env


def standin_runtime_requirements(cuda: str = "13.0") -> list[str]:
    """What the stand-in stack's wheels require from outside it: torch's declared pins, bitsandbytes' packaging."""
    from backend.recipes import get
    from backend.variants import Variant

    return [*get("torch").runtime_requires(Variant(sm="90", isa=host_isa(), cuda=cuda)), "packaging>=24"]


if __name__ == "__main__":  # pragma: no cover
    print(find_nvcc(), find_cuobjdump(find_nvcc()), host_isa(), sys.executable)
