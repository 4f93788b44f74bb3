"""The build-requirement lock: what the build venv installs, pinned by hash (``third_party/build-requirements.lock``).

The recipes state ranges (``setuptools>=77.0.3,<81``, ``numpy``); the lock
pins one version of each, and of what they need, for Python 3.10 to 3.13 on
every platform (``uv pip compile --universal --generate-hashes``, run by
``python -m backend lock --build-requirements``), so the numpy torch is built
against (part of its ABI) and every other tool are the same on every build.
The build venv installs the part its components need (their lines and,
through uv's ``# via`` notes, what those require) with pip's hash-checking
mode (``--require-hashes --no-deps``: a file whose hash differs is refused); ``python -m backend
fetch`` downloads its files into ``<cache>/downloads/build-requirements``, and
an offline build installs from there alone.  A requirement the lock does not
cover (a recipe changed since the lock was written) is installed unpinned,
with a line saying so.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from .. import recipes
from ..errors import BackendError
from ..pipeline.environment import clean_environ, install_requirements, missing_requirements
from ..pipeline.layout import CacheLayout, cache_dir
from ..settings import CUDAS
from ..variants import Variant
from .lock import PROJECT_ROOT

# What every build of the stack runs besides the recipes' own requirements (pep517 asks the frontend for them).
BUILD_TOOLS = ("cmake>=3.26", "ninja")
DEFAULT_LOCK = PROJECT_ROOT / "third_party" / "build-requirements.lock"
PYTHONS = ("3.10", "3.11", "3.12", "3.13")
FOLDER = "build-requirements"  # in the cache's downloads: what fetch puts there, an offline build installs from


@dataclasses.dataclass(frozen=True)
class Pinned:
    """One block of the lock: ``name==version ; marker`` with its hashes, and the names uv's ``# via`` gives."""

    name: str  # canonical
    version: str
    marker: Marker | None
    text: str  # the block's lines as the lock has them, its comments left out
    required_by: frozenset[str]

    def holds(self, environment: dict | None = None) -> bool:
        """Whether its marker holds in ``environment`` (over this interpreter's, as packaging evaluates it)."""
        return not self.marker or self.marker.evaluate(environment)


def _pinned(lock: Path) -> list[Pinned]:
    """The lock's blocks: a requirement line, its ``--hash`` continuation lines, then uv's ``# via`` comments."""
    try:
        text = Path(lock).read_text()
    except OSError as error:
        raise BackendError(f"build-requirement lock {lock}: unreadable ({error})") from None
    blocks: list[list[str]] = []
    for line in text.splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            blocks.append([line])
        elif blocks and line.strip():
            blocks[-1].append(line)
    out = []
    for block in blocks:
        code = [line for line in block if not line.strip().startswith("#")]
        line = " ".join(part for part in " ".join(code).split() if part != "\\" and not part.startswith("--hash="))
        try:
            requirement = Requirement(line)
        except InvalidRequirement as error:
            raise BackendError(f"build-requirement lock {lock}: bad line {line!r} ({error})") from None
        pin = next(iter(requirement.specifier), None)
        if len(requirement.specifier) != 1 or pin.operator != "==":
            raise BackendError(f"build-requirement lock {lock}: {line!r} is not pinned with ==")
        # "# via requests", or "# via" then one name per comment line; "a recipe" and "-r" are the input
        via = [line.strip().lstrip("#").strip().removeprefix("via").strip() for line in block if line not in code]
        parents = frozenset(canonicalize_name(v.split()[0]) for v in via if v and v != "a recipe" and v[:2] != "-r")
        text = "\n".join(code).rstrip("\\ ") + "\n"
        out.append(Pinned(canonicalize_name(requirement.name), pin.version, requirement.marker, text, parents))
    return out


def pins(lock: Path = DEFAULT_LOCK, environment: dict | None = None) -> dict[str, str]:
    """Canonical name -> pinned version, for the lines whose marker holds in ``environment`` (this one)."""
    return {pinned.name: pinned.version for pinned in _pinned(lock) if pinned.holds(environment)}


def _needed(requirements: Iterable[str], lock: Path) -> list[Pinned]:
    """The lock's blocks that ``requirements`` need: their own and, transitively, what those require."""
    blocks = _pinned(lock)
    chosen = {canonicalize_name(Requirement(text).name) for text in requirements}
    while grown := {block.name for block in blocks if block.name not in chosen and block.required_by & chosen}:
        chosen |= grown
    return [block for block in blocks if block.name in chosen]


def subset(requirements: Iterable[str], lock: Path = DEFAULT_LOCK) -> str:
    """The lock's lines that ``requirements`` need (``_needed``), as a requirements file."""
    return "".join(block.text for block in _needed(requirements, lock))


def uncovered(requirements: Iterable[str], lock: Path = DEFAULT_LOCK, environment: dict | None = None) -> list[str]:
    """The requirements the lock's pins (for ``environment``) do not satisfy."""
    pinned = pins(lock, environment)

    def covered(requirement: Requirement) -> bool:
        version = pinned.get(canonicalize_name(requirement.name))
        return version is not None and requirement.specifier.contains(version, prereleases=True)

    return [text for text in requirements if not covered(Requirement(text))]


def _pip(python: Path, args: Sequence[str]) -> subprocess.CompletedProcess:
    env = clean_environ(python)  # the user's index settings, not the frontend's hook variables
    env.pop("PYTHONPATH", None)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return subprocess.run([str(python), "-m", "pip", *args], env=env, capture_output=True, text=True)


def _error(result: subprocess.CompletedProcess) -> str:
    lines = [line.strip() for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    if any("DO NOT MATCH THE HASHES" in line for line in lines):
        bad = [line for line in lines if line.startswith(("Expected sha256", "Got")) or " from " in line]
        names = [line.split(" from ")[0].strip() for line in lines if " from " in line and "==" in line.split(" from ")[0]]
        return f"a file does not match its hash in the lock ({', '.join(names) or ' '.join(bad[:2])}): refused"
    errors = [line.removeprefix("ERROR: ") for line in lines if line.startswith("ERROR:")]
    return "; ".join(errors[:2]) or (lines[-1] if lines else f"pip exit {result.returncode}")


def install(
    python: Path,
    requirements: Sequence[str],
    *,
    cache: Path,
    offline: bool,
    lock: Path = DEFAULT_LOCK,
    say: Callable[[str], None] = print,
) -> None:
    """Put the locked build requirements into the venv of ``python`` (hash-checked), then any the lock lacks."""
    needed = _needed(requirements, lock)
    wanted = [f"{block.name}=={block.version}" for block in needed if block.holds()]
    if wanted and missing_requirements(python, wanted):
        links = CacheLayout(cache).downloads / FOLDER
        if offline and not links.is_dir():
            # What the environment has may still build; say what is not pinned and how to pin it.
            say(f"offline build: the locked build requirements are not in {links} (python -m backend fetch "
                "with network puts them there); using the environment's, unpinned")
            install_requirements(python, requirements, offline=True)
            return
        part = python.parent.parent / "build-requirements.txt"
        part.write_text("".join(block.text for block in needed))
        args = ["install", "-q", "--require-hashes", "--no-deps", "-r", str(part),
                *(["--find-links", str(links)] if links.is_dir() else []), *(["--no-index"] if offline else [])]
        say(f"installing the locked build requirements ({lock.name}) into {python.parent.parent}")
        result = _pip(python, args)
        if result.returncode != 0:
            raise BackendError(f"could not install the locked build requirements from {lock}: {_error(result)}")
    if rest := uncovered(requirements, lock):
        say(f"build requirements not in {lock.name} (installed unpinned; python -m backend lock --build-requirements "
            f"records them): {', '.join(rest)}")
        install_requirements(python, rest, offline=offline)


def fetch(cache: Path, *, lock: Path = DEFAULT_LOCK, python: str = sys.executable) -> Path:
    """Download the lock's files for this Python and platform into the cache (hash-checked)."""
    out = CacheLayout(cache).downloads / FOLDER
    out.mkdir(parents=True, exist_ok=True)
    result = _pip(Path(python), ["download", "-q", "--require-hashes", "--no-deps", "-r", str(lock), "-d", str(out)])
    if result.returncode != 0:
        raise BackendError(f"could not download the locked build requirements: {_error(result)}")
    return out


def all_build_requirements() -> list[str]:
    """What the lock must cover: every recipe's build requirements and the backend's build tools."""
    variants = [Variant(sm="90", isa="avx512", cuda=cuda) for cuda in CUDAS]  # what one adds (nvshmem for its CUDA)
    wanted = [text for recipe in recipes.all_recipes() for v in variants for text in recipe.build_requirements(v)]
    return list(dict.fromkeys([*wanted, *BUILD_TOOLS]))


def write_lock(lock: Path = DEFAULT_LOCK, say: Callable[[str], None] = print) -> int:
    """Resolve every build requirement for Python 3.10 to 3.13, every platform, with hashes (uv)."""
    uv = shutil.which("uv")
    if uv is None:
        raise BackendError("lock --build-requirements needs uv on PATH (pip install uv)")
    header = (
        "# The build venv's requirements, pinned by hash for Python 3.10 to 3.13 (every platform).\n"
        "# Written by: python -m backend lock --build-requirements (uv pip compile --universal --generate-hashes)\n"
        "# from every recipe's build_requires; installed with pip --require-hashes --no-deps.\n"
    )
    result = subprocess.run(
        [uv, "pip", "compile", "--universal", "--generate-hashes", "--no-header", "--python-version", PYTHONS[0], "-"],
        input="\n".join(all_build_requirements()) + "\n", capture_output=True, text=True,
    )
    if result.returncode != 0:
        raise BackendError(f"uv pip compile failed: {result.stderr.strip().splitlines()[-1] if result.stderr.strip() else result.returncode}")
    body = result.stdout.replace("# via -r -", "# via a recipe").replace("-r -", "a recipe")
    lock.write_text(header + body)
    say(f"{lock}: {len(_pinned(lock))} pinned line(s)")
    return 0


def install_for_build(python: Path, requirements: Sequence[str], settings, say: Callable[[str], None]) -> None:
    """The engine's call: the lock (``-C build-requirements=locked``), or the recipes' ranges as before."""
    if settings.build_requirements == "ranges":
        install_requirements(python, requirements, offline=settings.offline)
        return
    install(python, requirements, cache=cache_dir(settings), offline=settings.offline, say=say)
