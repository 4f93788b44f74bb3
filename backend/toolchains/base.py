"""What every CUDA toolchain provider shares: the result type and the checks.

A provider turns a requested CUDA version (``"12.9"``) into a
:class:`Toolchain`: a toolkit folder (``CUDA_HOME``) whose ``bin/nvcc``
reports exactly that major.minor.  Failures are one-line
:class:`~backend.errors.BackendError` messages; commands are argument lists,
never shell strings.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import BackendError

PROVIDERS = ("system", "nix", "pypi")

# Libraries a wheel of the stack can link, in the order they are reported.
# The soname is lib<stem>.so.<major>.
RUNTIME_LIBRARY_STEMS = (
    "cudart", "cublas", "cublasLt", "cusparse", "cufft", "curand", "cusolver",
    "nvrtc", "nvJitLink", "cupti", "nvToolsExt", "cufile",
    "cudnn", "nccl", "cusparseLt", "nvshmem_host",
)

_NVCC_RELEASE = re.compile(r"release (\d+)\.(\d+), V(\d+\.\d+\.\d+)")


@dataclasses.dataclass(frozen=True)
class Toolchain:
    """A CUDA toolkit of one version, ready for CMake, setup.py and nvcc."""

    provider: str
    cuda: str
    version: str
    cuda_home: Path
    nvcc: Path
    runtime_libraries: tuple[str, ...] = ()
    requirements: tuple[str, ...] = ()
    host_compiler: str | None = None   # the g++ nvcc uses (backend.toolchains.hostcc)

    @property
    def library_dirs(self) -> tuple[Path, ...]:
        dirs = []
        for name in ("lib64", "lib"):
            path = self.cuda_home / name
            if path.is_dir() and path.resolve() not in [d.resolve() for d in dirs]:
                dirs.append(path)
        return tuple(dirs)

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: ``os.environ``) with this toolkit in front."""
        env = dict(os.environ if base is None else base)
        home = str(self.cuda_home)
        nvcc = str(self.nvcc)
        env["CUDA_HOME"] = home
        env["CUDA_PATH"] = home
        env["CUDA_ROOT"] = home
        env["CUDAToolkit_ROOT"] = home
        env["CUDACXX"] = nvcc
        env["CUDA_NVCC_EXECUTABLE"] = nvcc
        env["PATH"] = _prepend(str(self.nvcc.parent), env.get("PATH"))
        if self.host_compiler:
            env["CUDAHOSTCXX"] = self.host_compiler   # CMake's CUDA host compiler
            env["NVCC_CCBIN"] = self.host_compiler    # every other nvcc call
        for lib in reversed(self.library_dirs):
            env["LD_LIBRARY_PATH"] = _prepend(str(lib), env.get("LD_LIBRARY_PATH"))
        return env

    def to_json(self) -> dict:
        return {
            "provider": self.provider,
            "cuda": self.cuda,
            "version": self.version,
            "cuda_home": str(self.cuda_home),
            "nvcc": str(self.nvcc),
            "runtime_libraries": list(self.runtime_libraries),
            "requirements": list(self.requirements),
            "host_compiler": self.host_compiler,
        }


def _prepend(item: str, current: str | None) -> str:
    parts = [p for p in (current or "").split(os.pathsep) if p and p != item]
    return os.pathsep.join([item, *parts])


def run_tool(argv: Sequence[str], *, what: str, env: Mapping[str, str] | None = None,
             timeout: float | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run a command; a missing program or a failure becomes a one-line BackendError."""
    try:
        result = subprocess.run(list(argv), capture_output=True, text=True, env=dict(env) if env is not None else None,
                                timeout=timeout, cwd=cwd)
    except FileNotFoundError as error:
        raise BackendError(f"{what}: {argv[0]} not found ({error.strerror})") from None
    except PermissionError as error:
        raise BackendError(f"{what}: cannot run {argv[0]} ({error.strerror})") from None
    except subprocess.TimeoutExpired:
        raise BackendError(f"{what}: {argv[0]} did not finish within {timeout:.0f} s") from None
    if result.returncode != 0:
        raise BackendError(f"{what}: {Path(argv[0]).name} exited with {result.returncode}: {last_error_line(result.stderr or result.stdout)}")
    return result


def last_error_line(text: str) -> str:
    """The most telling line of a tool's error output, for a one-line message."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    for line in lines:
        if line.lower().startswith("error:"):
            return line[:400].rstrip(";")
    return (lines[-1] if lines else "no output")[:400].rstrip(";")


def nvcc_version(nvcc: Path) -> str:
    """The full version nvcc reports (``13.0.88``), read by running it."""
    result = run_tool([str(nvcc), "--version"], what=f"reading the version of {nvcc}", timeout=120)
    match = _NVCC_RELEASE.search(result.stdout)
    if not match:
        raise BackendError(f"reading the version of {nvcc}: no 'release X.Y, VX.Y.Z' line in its --version output")
    return match.group(3)


def major_minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def find_nvcc(cuda_home: Path) -> Path | None:
    nvcc = Path(cuda_home) / "bin" / "nvcc"
    return nvcc if nvcc.is_file() and os.access(nvcc, os.X_OK) else None


def runtime_sonames(cuda_home: Path, extra_dirs: Sequence[Path] = ()) -> tuple[str, ...]:
    """``lib<stem>.so.<major>`` for each known runtime library found in the toolkit."""
    found: dict[str, str] = {}
    pattern = re.compile(r"^lib(?P<stem>[A-Za-z_]+)\.so\.(?P<major>\d+)(\.[\d.]+)?$")
    dirs = [Path(cuda_home) / "lib64", Path(cuda_home) / "lib", *extra_dirs]
    for folder in dirs:
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            match = pattern.match(entry.name)
            if match and match.group("stem") in RUNTIME_LIBRARY_STEMS and match.group("stem") not in found:
                found[match.group("stem")] = f"lib{match.group('stem')}.so.{match.group('major')}"
    return tuple(found[stem] for stem in RUNTIME_LIBRARY_STEMS if stem in found)


def check_toolkit(cuda_home: Path, cuda: str, *, provider: str, origin: str, ways_out: str) -> tuple[Path, str]:
    """(nvcc, full version) of a toolkit folder, refusing a missing nvcc or another version."""
    cuda_home = Path(cuda_home)
    if not cuda_home.is_dir():
        raise BackendError(f"toolchain '{provider}': {origin} {cuda_home} is not a folder; {ways_out}")
    nvcc = find_nvcc(cuda_home)
    if nvcc is None:
        raise BackendError(
            f"toolchain '{provider}': {origin} {cuda_home} has no bin/nvcc (not a CUDA toolkit, "
            f"or only its runtime); {ways_out}"
        )
    version = nvcc_version(nvcc)
    if major_minor(version) != cuda:
        raise BackendError(
            f"toolchain '{provider}': {origin} {cuda_home} is CUDA {version} but cuda={cuda} was asked for "
            f"(-C cuda={major_minor(version)} would use it); {ways_out}"
        )
    return nvcc, version
