"""The host C++ compiler nvcc uses: one its CUDA release supports, chosen before anything compiles.

nvcc refuses a gcc newer than its release supports (``#error -- unsupported
GNU version!`` from ``crt/host_config.h``), hours into a torch build.  So the
limit is read from the toolkit's own ``host_config.h`` (``#if __GNUC__ > N``),
with a table of the releases the matrix uses as the fallback, and a supported
g++ is chosen up front: ``CUDAHOSTCXX`` when set (the user's choice: checked,
never replaced), else ``$CXX`` or ``g++`` when supported, else the newest
supported ``g++-N`` on PATH, else the newest supported RHEL gcc-toolset
(``/opt/rh/gcc-toolset-N``, as in PyPA's manylinux images).  The choice reaches CMake as ``CUDAHOSTCXX`` and
every nvcc as ``NVCC_CCBIN``.  No minimum is enforced: the headers state none.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
import shutil
import subprocess
from pathlib import Path

from ..errors import BackendError
from ..settings import check_path_characters

# Newest gcc major nvcc accepts, from `#if __GNUC__ > N` in crt/host_config.h of
# nvidia-cuda-nvcc-cu12 12.8.93 and 12.9.86 (PyPI) and of the CUDA 13.0.88 toolkit.
MAX_GCC = {"12.8": 14, "12.9": 14, "13.0": 15}
_GUARD = re.compile(rb"#if __GNUC__ > (\d+)")


@dataclasses.dataclass(frozen=True)
class HostCompiler:
    path: str
    version: str          # 12.2.0
    major: int
    limit: int            # newest gcc major this nvcc accepts
    limit_source: str     # the header it was read from, or "table"

    def describe(self) -> str:
        return f"g++ {self.version} ({self.path}); nvcc takes gcc <= {self.limit} ({self.limit_source})"


def header_limit(cuda_home: Path) -> tuple[int, str] | None:
    """(newest gcc major, header path) from the toolkit's host_config.h, when it has one."""
    home = Path(cuda_home)
    for header in [home / "include" / "crt" / "host_config.h", *sorted(home.glob("targets/*/include/crt/host_config.h"))]:
        try:
            match = _GUARD.search(header.read_bytes())
        except OSError:
            continue
        if match:
            return int(match.group(1)), str(header)
    return None


def gnu_version(compiler: str) -> tuple[int, str] | None:
    """(major, full version) of a GNU C++ compiler, from its predefined macros; None for clang or a failure."""
    try:
        result = subprocess.run([compiler, "-x", "c++", "-E", "-dM", "-"], input="", capture_output=True,
                                text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    macros = dict(re.findall(r"#define (__\w+__) (\S+)", result.stdout))
    if result.returncode != 0 or "__GNUC__" not in macros or "__clang__" in macros:
        return None
    parts = [macros.get(m, "0") for m in ("__GNUC__", "__GNUC_MINOR__", "__GNUC_PATCHLEVEL__")]
    return int(parts[0]), ".".join(parts)


def _candidates(env: dict[str, str]) -> list[str]:
    names = [env.get("CXX"), "g++"] + [f"g++-{n}" for n in range(20, 6, -1)]
    found: list[str] = []
    for name in names:
        if not name:
            continue
        path = shutil.which(name, path=env.get("PATH"))
        if path and os.path.realpath(path) not in {os.path.realpath(f) for f in found}:
            found.append(path)
    # RHEL's gcc-toolset / devtoolset (PyPA's manylinux images, PyTorch's builders), newest first
    toolsets = [p for pattern in ("/opt/rh/gcc-toolset-*/root/usr/bin/g++", "/opt/rh/devtoolset-*/root/usr/bin/g++")
                for p in glob.glob(pattern)]
    for path in sorted(toolsets, key=lambda p: -int(re.search(r"-(\d+)/root", p).group(1))):
        if os.path.realpath(path) not in {os.path.realpath(f) for f in found}:
            found.append(path)
    return found


def choose(cuda: str, cuda_home: Path | None, env: dict[str, str] | None = None) -> HostCompiler:
    """A g++ the CUDA release supports, or a one-line BackendError naming the versions."""
    env = dict(os.environ if env is None else env)
    read = header_limit(cuda_home) if cuda_home else None
    limit, source = read if read else (MAX_GCC.get(cuda), "table")
    if limit is None:
        raise BackendError(f"host compiler: no known gcc limit for CUDA {cuda}; known: {', '.join(MAX_GCC)}")
    explicit = env.get("CUDAHOSTCXX")
    if explicit:
        check_path_characters("CUDAHOSTCXX", explicit)  # nvcc names it in the commands its shell runs
        version = gnu_version(explicit)
        if version is None:
            raise BackendError(f"host compiler: CUDAHOSTCXX={explicit} is not a GNU C++ compiler that runs; "
                               f"accepted: a g++ of major version <= {limit} for CUDA {cuda}")
        if version[0] > limit:
            raise BackendError(f"host compiler: CUDAHOSTCXX={explicit} is gcc {version[1]}, CUDA {cuda}'s nvcc "
                               f"accepts gcc <= {limit} ({source}); set CUDAHOSTCXX to a g++-{limit} or older")
        return HostCompiler(explicit, version[1], version[0], limit, source)
    seen = []
    for path in _candidates(env):
        version = gnu_version(path)
        if version is None:
            continue
        seen.append(f"{path} ({version[1]})")
        if version[0] <= limit:
            check_path_characters("host compiler (found on PATH or CXX)", path)
            return HostCompiler(path, version[1], version[0], limit, source)
    found = ", ".join(seen) or "no g++ on PATH"
    raise BackendError(f"host compiler: CUDA {cuda}'s nvcc accepts gcc <= {limit} ({source}); found {found}; "
                       f"install g++-{limit} (or older) or set CUDAHOSTCXX to one")


def apply(toolchain, say=None):
    """``toolchain`` with a supported host compiler; None (no CUDA step) stays None."""
    if toolchain is None:
        return None
    chosen = choose(toolchain.cuda, toolchain.cuda_home)
    if say is not None:
        say(f"   host compiler: {chosen.describe()}")
    return dataclasses.replace(toolchain, host_compiler=chosen.path)
