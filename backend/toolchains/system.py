"""``toolchain=system``: a CUDA toolkit installed on this machine.

Looked for in this order: ``CUDA_HOME``, ``CUDA_PATH`` (when one is set it is
the only place looked at: the user said which toolkit to use), else ``nvcc``
on ``PATH``, ``/usr/local/cuda-X.Y`` and ``/usr/local/cuda``.  The version is
what ``nvcc --version`` prints, never a folder name; a toolkit of another
major.minor is refused.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from ..errors import BackendError
from ..settings import check_path_characters
from .base import Toolchain, check_toolkit, find_nvcc, major_minor, nvcc_version, runtime_sonames

NAME = "system"


def ways_out(cuda: str, installed: str | None = None) -> str:
    other = f"-C cuda={installed} to build with the installed one" if installed else "-C cuda= an installed version"
    return (
        f"ways out: install CUDA {cuda} (e.g. at /usr/local/cuda-{cuda}) and point CUDA_HOME at it, "
        f"-C toolchain=nix (CUDA 12.8/12.9 from nixpkgs), -C toolchain=pypi (CUDA 13.x from PyPI), "
        f"or {other}"
    )


def nvcc_home(nvcc: Path) -> Path:
    """The toolkit folder of an nvcc found on PATH (through symlinks and wrapper scripts)."""
    real = Path(nvcc).resolve()
    home = real.parent.parent
    if (home / "include" / "cuda_runtime.h").is_file() or list(home.glob("targets/*/include/cuda_runtime.h")):
        return home
    try:
        result = subprocess.run([str(nvcc), "--dryrun", "-c", "-x", "cu", os.devnull, "-o", os.devnull],
                                capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return home
    match = re.search(r"^#\$ _HERE_=(.+)$", result.stderr + result.stdout, re.MULTILINE)
    return Path(match.group(1)).resolve().parent if match else home


def candidates(cuda: str, environ: Mapping[str, str] | None = None) -> list[tuple[str, Path]]:
    """(origin, folder) pairs to look at, in order."""
    environ = os.environ if environ is None else environ
    for key in ("CUDA_HOME", "CUDA_PATH"):
        if environ.get(key):
            check_path_characters(key, environ[key])  # nvcc's shell steps name the toolkit's folder
            return [(key, Path(environ[key]))]
    found: list[tuple[str, Path]] = []
    nvcc = shutil.which("nvcc", path=environ.get("PATH"))
    if nvcc:
        found.append(("nvcc on PATH at", nvcc_home(Path(nvcc))))
    for folder in (Path(f"/usr/local/cuda-{cuda}"), Path("/usr/local/cuda")):
        if folder.exists():
            found.append(("installed toolkit", folder))
    unique: list[tuple[str, Path]] = []
    for origin, folder in found:
        if folder.resolve() not in [f.resolve() for _, f in unique]:
            unique.append((origin, folder))
    return unique


def resolve(cuda: str, environ: Mapping[str, str] | None = None) -> Toolchain:
    places = candidates(cuda, environ)
    if not places:
        raise BackendError(
            f"toolchain 'system': no CUDA toolkit found (CUDA_HOME and CUDA_PATH unset, no nvcc on PATH, "
            f"no /usr/local/cuda-{cuda}); {ways_out(cuda)}"
        )
    if places[0][0] in ("CUDA_HOME", "CUDA_PATH"):
        origin, home = places[0]
        nvcc, version = check_toolkit(home, cuda, provider=NAME, origin=f"{origin}=", ways_out=ways_out(cuda))
        return _toolchain(cuda, home, nvcc, version)
    seen = []
    installed = None
    for origin, home in places:
        nvcc = find_nvcc(home)
        if nvcc is None:
            seen.append(f"{home} (no bin/nvcc)")
            continue
        version = nvcc_version(nvcc)
        if major_minor(version) == cuda:
            return _toolchain(cuda, home, nvcc, version)
        seen.append(f"CUDA {version} at {home}")
        installed = installed or major_minor(version)
    raise BackendError(
        f"toolchain 'system': cuda={cuda} was asked for but the installed toolkits are {', '.join(seen)}; "
        f"{ways_out(cuda, installed)}"
    )


def _toolchain(cuda: str, home: Path, nvcc: Path, version: str) -> Toolchain:
    home = Path(home)
    return Toolchain(
        provider=NAME, cuda=cuda, version=version, cuda_home=home, nvcc=nvcc,
        runtime_libraries=runtime_sonames(home), requirements=(),
    )
