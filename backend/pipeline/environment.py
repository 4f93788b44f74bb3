"""The build environment of a variant: a venv from the running interpreter.

The venv sees the packages of the environment the backend runs in (the
frontend's isolated build env with the requirements
``get_requires_for_build_wheel`` asked for, or the user's env under
``--no-build-isolation``) through a ``.pth`` file, after its own
site-packages: a torch installed into the venv (ours) wins over any other.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
import sysconfig
import venv
from collections.abc import Sequence
from pathlib import Path

from ..errors import BackendError

PTH_NAME = "_vllm_stack_outer_env.pth"


def _outer_site_dirs() -> list[str]:
    """Every import path of the running interpreter except the standard library."""
    stdlib = {os.path.realpath(p) for p in (sysconfig.get_paths().get("stdlib"), sysconfig.get_paths().get("platstdlib")) if p}
    stdlib.add(os.path.realpath(os.path.join(sysconfig.get_paths()["stdlib"], "lib-dynload")))
    paths: list[str] = []
    candidates = list(sys.path) + [sysconfig.get_paths().get("purelib"), sysconfig.get_paths().get("platlib")]
    if site.ENABLE_USER_SITE:
        candidates.append(site.getusersitepackages())
    for path in candidates:
        if not path or not os.path.isdir(path):
            continue
        real = os.path.realpath(path)
        if real in stdlib or real in paths or real == os.path.realpath(os.getcwd()):
            continue
        if os.path.isfile(os.path.join(real, "os.py")):
            continue
        paths.append(real)
    return paths


def venv_site_packages(env_dir: Path) -> Path:
    return env_dir / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


def ensure(env_dir: Path) -> Path:
    """Create (once) and refresh the venv; return its interpreter."""
    python = env_dir / "bin" / "python"
    if not python.exists():
        env_dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            venv.EnvBuilder(with_pip=True, clear=True, symlinks=True).create(env_dir)
        except (OSError, subprocess.CalledProcessError) as error:
            raise BackendError(f"could not create the build environment {env_dir}: {error}") from None
    site_packages = venv_site_packages(env_dir)
    outer = [p for p in _outer_site_dirs() if Path(p).resolve() != site_packages.resolve()]
    pth = site_packages / PTH_NAME
    text = "".join(f"{p}\n" for p in outer)
    if not pth.exists() or pth.read_text() != text:
        pth.write_text(text)
    return python


def missing_requirements(python: Path, requirements: Sequence[str]) -> list[str]:
    """Requirements the venv does not satisfy (checked by the venv's own interpreter)."""
    if not requirements:
        return []
    script = (
        "import sys\n"
        "from importlib import metadata\n"
        "from packaging.requirements import Requirement\n"
        "for line in sys.argv[1:]:\n"
        "    r = Requirement(line)\n"
        "    if r.marker and not r.marker.evaluate(): continue\n"
        "    try: v = metadata.version(r.name)\n"
        "    except metadata.PackageNotFoundError: print(line); continue\n"
        "    if r.specifier and not r.specifier.contains(v, prereleases=True): print(line)\n"
    )
    result = subprocess.run([str(python), "-c", script, *requirements], capture_output=True, text=True)
    if result.returncode != 0:
        return list(requirements)
    return [line for line in result.stdout.splitlines() if line.strip()]


def install_requirements(python: Path, requirements: Sequence[str], *, offline: bool) -> None:
    missing = missing_requirements(python, requirements)
    if not missing:
        return
    if offline:
        raise BackendError(
            f"offline build: the build environment lacks {', '.join(missing)}; "
            "build through pip (which installs them), or install them and use --no-build-isolation"
        )
    print(f"installing build requirements into {python.parent.parent}: {', '.join(missing)}", file=sys.stderr, flush=True)
    result = subprocess.run([str(python), "-m", "pip", "install", "-q", *missing])
    if result.returncode != 0:
        raise BackendError(f"could not install build requirements {', '.join(missing)} (pip exit {result.returncode})")


def install_wheels(python: Path, wheels: Sequence[Path]) -> None:
    """Put our own wheels (torch first of all) into the build environment, unless already there."""
    from ..hashing import sha256_file

    marks = python.parent.parent / "installed-wheels"
    pending = []
    for wheel in wheels:
        digest = sha256_file(Path(wheel))
        mark = marks / Path(wheel).name.split("-")[0]
        if not (mark.exists() and mark.read_text() == digest):
            pending.append((wheel, mark, digest))
    if not pending:
        return
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", "--no-index",
         *(str(w) for w, _, _ in pending)],
    )
    if result.returncode != 0:
        raise BackendError(f"could not install {', '.join(Path(w).name for w, _, _ in pending)} into the build environment")
    marks.mkdir(exist_ok=True)
    for _, mark, digest in pending:
        mark.write_text(digest)
