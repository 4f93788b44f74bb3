"""The wheelhouse's runtime closure: every dependency of the built wheels, resolved once, hash-pinned.

After the build, pip (a well-kept resolver, in the variant's build venv, so
markers are evaluated for the variant's Python and platform) resolves the
exact pins of the built wheels against the wheelhouse plus the index pip is
configured with (``pip.conf``, ``PIP_INDEX_URL``, ``PIP_FIND_LINKS``: a
mirror works as it does for pip), writing ``--report``.  Every distribution
that is not one of ours is then downloaded by ``pip wheel --no-deps
--require-hashes`` at exactly the file the resolver chose (an sdist-only one
is built into a wheel here, so the target needs no compiler), added to the
wheelhouse and its manifest (``origin: runtime``, its URL and sha256), and
``requirements.txt`` beside them pins every wheel with its hash.  Then

    pip install --no-index --find-links wheelhouse/<variant> <returned wheel>

installs the whole stack on a machine without network.  A dependency nobody
serves fails the build here, naming it, not the install months later.  The
resolution is redone only when the built wheels change.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import unquote, urlparse

from packaging.utils import canonicalize_name

from ..errors import BackendError
from ..hashing import sha256_file
from ..pipeline.environment import clean_environ
from ..settings import redact_url
from . import meta, names
from .files import write_atomic
from .wheelhouse import Wheelhouse

ORIGIN = "runtime"
LOCK_FILE = "requirements.txt"
STATE_FILE = ".runtime-closure.json"


@dataclasses.dataclass(frozen=True)
class Resolved:
    name: str
    version: str
    url: str
    sha256: str
    requested_by_us: bool  # one of our pins (else a dependency of one)

    @property
    def line(self) -> str:
        return f"{self.name}=={self.version} --hash=sha256:{self.sha256}"


def _pip(python: Path, args: Sequence[str], cwd: Path, *, isolated: bool = False) -> subprocess.CompletedProcess:

    # Without the frontend's hook variables: an sdist-only dependency is built by this pip.
    env = clean_environ(python)
    if isolated:  # a given folder only: neither pip.conf nor PIP_* may add an index or links
        env = {k: v for k, v in env.items() if not k.startswith("PIP_")}
        env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return subprocess.run([str(python), "-m", "pip", *args], cwd=cwd, env=env, capture_output=True, text=True)


def _pip_error(result: subprocess.CompletedProcess) -> str:
    lines = [line.strip() for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    errors = [line.removeprefix("ERROR: ") for line in lines if line.startswith("ERROR:")]
    # pip's own account of a conflict ("X depends on torch==...", "The user requested (constraint) ..."): the cause
    causes = [line for line in lines if " depends on " in line or line.startswith("The user requested")]
    return "; ".join(errors[:1] + causes[:4] + errors[1:3]) or (lines[-1] if lines else f"pip exit {result.returncode}")


def _index_args(house: Path, offline: bool, links: Path | None) -> list[str]:
    extra = ["--no-index", "--find-links", str(links)] if links else (["--no-index"] if offline else [])
    return ["--prefer-binary", "--find-links", str(house), *extra]


def resolve(python: Path, pins: Sequence[str], house: Path, *, offline: bool, scratch: Path,
            links: Path | None = None) -> list[Resolved]:
    """What pip installs for ``pins`` (every distribution, ours included), with URL and sha256."""
    report = scratch / "report.json"
    result = _pip(python, [
        "install", "--dry-run", "--ignore-installed", "--report", str(report),  # not --quiet: it hides a conflict's cause
        *_index_args(house, offline, links), *pins,
    ], cwd=scratch, isolated=links is not None)
    if result.returncode != 0:
        where = (f"the wheelhouse and {links} (runtime-find-links)" if links else
                 "the wheelhouse (offline=true)" if offline else "the wheelhouse and the index pip is configured with")
        raise BackendError(
            f"the runtime dependencies of the built wheels cannot be resolved from {where}: {_pip_error(result)}; "
            "nothing of them was added (-C runtime-deps=none keeps a wheelhouse of the built wheels only)"
        )
    resolved = []
    for item in json.loads(report.read_text())["install"]:
        info = item.get("download_info") or {}
        name, version, url = item["metadata"]["name"], item["metadata"]["version"], info.get("url", "")
        if "archive_info" not in info:
            raise BackendError(
                f"runtime dependency {name} {version} comes from {url or 'a direct reference'} (a folder or VCS "
                "checkout), which cannot be hash-pinned; publish it as a wheel on the index or in --find-links"
            )
        digest = (info["archive_info"].get("hashes") or {}).get("sha256")
        if digest is None and url.startswith("file:"):
            digest = sha256_file(Path(unquote(urlparse(url).path)))
        if digest is None:
            raise BackendError(f"runtime dependency {name} {version}: the index gives no sha256 for {url}")
        resolved.append(Resolved(name, version, url, digest, bool(item.get("requested"))))
    return resolved


def _inputs_key(built: Sequence[Path], offline: bool, links: Path | None) -> str:
    # Content, not size and mtime: bytes swapped in place keep both (os.utime restores the mtime).
    digest = hashlib.sha256()
    for wheel in sorted(built, key=lambda p: p.name):
        digest.update(f"{wheel.name}\0{sha256_file(wheel)}\n".encode())
    digest.update(f"{offline}\0{links}".encode())
    return digest.hexdigest()


def _still_closed(house, state_path: Path, key: str) -> list[Path] | None:
    """The runtime wheels of the last closure, when its inputs are unchanged and its files are all there."""
    try:
        state = json.loads(state_path.read_text())
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(state, dict) or not isinstance(state.get("wheels", []), list):
        return None  # not the shape this backend writes: resolve anew
    if state.get("inputs") != key:
        return None
    entries = house.manifest()["wheels"]
    paths = []
    for name in state.get("wheels", []):
        path = house.root / name
        entry = entries.get(name)
        if entry is None or not path.is_file() or sha256_file(path) != entry.get("sha256"):
            return None  # gone, or not the bytes the manifest pinned
        paths.append(path)
    if not (house.root / LOCK_FILE).is_file():
        return None
    return paths


def _listed_wheels(house, folder: Path) -> Path:
    """A folder only the backend writes: the wheelhouse's wheels its manifest lists, with the listed bytes.

    pip is never pointed at the wheelhouse itself: a wheel dropped there by hand (an unlisted
    ``packaging-99.0``) would win the resolution, be pinned and imported by the smoke check. A listed
    wheel whose bytes are not the manifest's sha256 is left out too (it is downloaded again, or the
    resolution names it missing).
    """
    folder.mkdir(parents=True, exist_ok=True)
    for name, entry in house.manifest()["wheels"].items():
        path = house.root / name
        if not path.is_file() or path.is_symlink() or "/" in name:
            continue
        # A copy, hashed after copying: a hard link would share later writes to the wheelhouse's file.
        shutil.copyfile(path, folder / name)
        if sha256_file(folder / name) != entry.get("sha256"):
            (folder / name).unlink()
    return folder


def close(
    house,
    built: Sequence[Path],
    *,
    python: Path,
    offline: bool,
    links: Path | None = None,
    say: Callable[[str], None] = print,
) -> list[Path]:
    """Put every runtime dependency of ``built`` into ``house``; return their wheels.

    ``links``: resolve from the wheelhouse and this folder only (``-C runtime-find-links``).
    """
    built = [Path(w) for w in built]
    ours = {names.project(w.name) for w in built}
    state_path = house.root / STATE_FILE
    key = _inputs_key(built, offline, links)
    kept = _still_closed(house, state_path, key)
    if kept is not None:
        say(f"runtime dependencies: unchanged, {len(kept)} wheel(s) in the wheelhouse")
        return kept
    pins = meta.pins_for(built)
    cache_root = house.root.parent / ".runtime-scratch"
    cache_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"{house.root.name}-", dir=cache_root) as tmp:
        scratch = Path(tmp)
        say(f"runtime dependencies: resolving {len(pins)} built wheel(s) with pip")
        listed = _listed_wheels(house, scratch / "listed")
        resolved = resolve(python, pins, listed, offline=offline, scratch=scratch, links=links)
        foreign = [r for r in resolved if canonicalize_name(r.name) not in ours]
        previous = house.manifest()["wheels"]
        wanted = _download(python, foreign, listed, offline=offline, scratch=scratch, links=links)
        added = []
        for item, wheel in wanted:
            pinned = previous.get(wheel.name, {}).get("sha256")
            kept = house.root / wheel.name
            if kept.is_file() and pinned == sha256_file(wheel) == sha256_file(kept):
                added.append(house.root / wheel.name)
                continue
            source = previous.get(wheel.name, {}).get("source") if item.url.startswith("file:") else None
            added.append(house.add(wheel, {
                "component": None,
                "origin": ORIGIN,
                "source": source or redact_url(item.url),  # an index URL may hold credentials
                "source_hash": f"sha256:{item.sha256}",
                "build_key": None,
                "seconds": None,
            }, move=True))
    stale = [name for name, entry in house.manifest()["wheels"].items()
             if entry.get("origin") == ORIGIN and house.root / name not in added]
    if stale:
        house.remove(stale)
    _write_lock(house)
    write_atomic(state_path, (json.dumps({"inputs": key, "wheels": sorted(p.name for p in added)}, indent=1) + "\n").encode())
    size = sum(p.stat().st_size for p in added)
    say(f"runtime dependencies: {len(added)} wheel(s), {size / 1e6:.1f} MB, hash-pinned in {house.root / LOCK_FILE}")
    return added


def _download(python: Path, items: Sequence[Resolved], house: Path, *, offline: bool, scratch: Path,
              links: Path | None = None):
    """Each resolved distribution as a wheel (downloaded, or built from its sdist), pip checking its hash."""
    if not items:
        return []
    requirements = scratch / "runtime.txt"
    requirements.write_text("".join(item.line + "\n" for item in items))
    out = scratch / "wheels"
    result = _pip(python, [
        "wheel", "--no-deps", "--require-hashes", "--quiet", *_index_args(house, offline, links),
        "-r", str(requirements), "-w", str(out),
    ], cwd=scratch, isolated=links is not None)
    if result.returncode != 0:
        raise BackendError(f"downloading the runtime dependencies failed: {_pip_error(result)}; "
                           "nothing of them was added")
    by_name = {}
    for wheel in out.glob("*.whl"):
        by_name[names.project(wheel.name)] = wheel
    pairs = []
    for item in items:
        wheel = by_name.get(canonicalize_name(item.name))
        if wheel is None:
            raise BackendError(f"pip wheel wrote no wheel for runtime dependency {item.name} {item.version}")
        pairs.append((item, wheel))
    return pairs


def install_command(wheelhouse: Path, *, bundled: bool, torch_existing: str | None = None) -> str:
    """The command that installs a wheelhouse, as its build wrote it (printed at the end of every build)."""
    lock = Path(wheelhouse) / LOCK_FILE
    if bundled:
        return f"pip install --no-index --find-links {wheelhouse} --require-hashes -r {lock}"
    command = f"pip install --find-links {wheelhouse} -r {lock}"
    if torch_existing:
        return (f"{command} (into an environment with torch {torch_existing}, the one the build used: "
                "torch and the other dependencies come from there and from the index)")
    return f"{command} (runtime-deps=none: the index serves the dependencies)"


def write_built_requirements(house) -> None:
    """``requirements.txt`` of a wheelhouse without its runtime dependencies: the built wheels, pinned by version.

    No hashes: pip's hash-checking mode would then demand a hash for every dependency the index serves.
    ``SHA256SUMS`` still holds each wheel's hash.
    """
    lines = [
        "# The wheels built here, pinned (written by the vllm-stack backend); their dependencies are not in this",
        "# folder (torch=existing or runtime-deps=none). Install into the environment the build used with:",
        "#   pip install --find-links . -r requirements.txt",
    ]
    built = [entry for entry in house.manifest()["wheels"].values() if entry.get("origin") != ORIGIN]
    for entry in sorted(built, key=lambda e: canonicalize_name(e["distribution"])):
        lines.append(f"{entry['distribution']}=={entry['version']}")
    write_atomic(house.root / LOCK_FILE, ("\n".join(lines) + "\n").encode())


def _write_lock(house) -> None:
    """``requirements.txt``: every wheel of the wheelhouse, pinned with its sha256 (pip --require-hashes)."""
    lines = [
        "# Every wheel of this wheelhouse, pinned by hash (written by the vllm-stack backend). Install with:",
        "#   pip install --no-index --find-links . --require-hashes -r requirements.txt",
    ]
    for name, entry in sorted(house.manifest()["wheels"].items(), key=lambda kv: canonicalize_name(kv[1]["distribution"])):
        lines.append(f"{entry['distribution']}=={entry['version']} --hash=sha256:{entry['sha256']}")
    write_atomic(house.root / LOCK_FILE, ("\n".join(lines) + "\n").encode())


def for_build(plan, result, python: Path, say: Callable[[str], None]) -> list[Path]:
    """The engine's call: close the wheelhouse of a finished build as its settings ask."""

    settings = plan.settings
    house = Wheelhouse(plan.layout.wheelhouse, variant=plan.variant.name)
    if settings.runtime_deps == "none":
        write_built_requirements(house)
        say("runtime dependencies: not bundled (runtime-deps=none); installing needs an index")
        return []
    if settings.torch == "existing":
        write_built_requirements(house)
        say("runtime dependencies: not bundled (torch=existing: torch and its dependencies are your environment's)")
        return []
    # Every built wheel of the wheelhouse, not only this build's: the folder stays installable as a whole.
    built = [house.root / name for name, entry in sorted(house.manifest()["wheels"].items())
             if entry.get("origin") != ORIGIN and (house.root / name).is_file()]
    return close(house, built, python=python, offline=settings.offline, links=settings.runtime_find_links, say=say)
