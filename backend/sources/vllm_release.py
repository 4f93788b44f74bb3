"""A vLLM release's lock, read from vLLM's own tree (``python -m backend lock --from-vllm``).

vLLM pins what its CMake fetches at configure time in its own files, and what
it runs with in its requirements:

- ``CMakeLists.txt``: ``set(CUTLASS_REVISION "v4.2.1")``, the CMake Pythons
  (``PYTHON_SUPPORTED_VERSIONS``) and torch (``TORCH_SUPPORTED_VERSION_CUDA``);
- ``cmake/external_projects/*.cmake``: each ``GIT_REPOSITORY`` / ``GIT_TAG``
  (a ``${VAR}`` tag resolved from the file's own ``set(VAR "...")``, as
  triton_kernels.cmake's ``DEFAULT_TRITON_KERNELS_TAG``) and the
  ``ENV{..._SRC_DIR}`` it reads instead of fetching;
- ``requirements/build.txt`` and ``requirements/cuda.txt``: torch, torchvision,
  torchaudio, flashinfer-python and (when pinned) xformers.

flash-attention and FlashMLA carry CUTLASS as a git submodule, empty in a
GitHub archive; its pin is the gitlink at the pinned commit, read with
``git ls-tree`` from a local mirror of the repository (``--git-mirrors``).

The lock written is an overlay (third_party/locks/vllm-<release>.lock): a
``[release]`` table with the line's facts, and ``[source.<name>]`` entries
that replace (by name) those of the hand-written third_party/sources.lock,
which is the 0.15.1 line.  Hashes come from where they are known: PyPI's
index (sha256 of sdists and wheels), the hand-written lock for the same URL
(its NAR hashes).  A GitHub archive neither knows is written without a hash
and its ``why`` says UNVERIFIED: ``python -m backend lock`` with network
records it (the lock refuses it until then, unless
``-C allow-unverified=<name>``).

What the generator cannot infer is reported, not guessed: a new or missing
external project, an environment variable the recipe does not set, a
submodule pin no mirror holds, a changed build file (against the nearest
release lock that recorded its build files).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import subprocess
import tempfile
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlparse

from .. import toml
from ..errors import BackendError, SettingError
from ..hashing import sha256_file
from . import fetch as fetch_mod
from . import lock as lock_mod
from .lock import Entry, Lock
from .nar import nar_hash
from .unpack import extract

LOCKS_DIR = lock_mod.PROJECT_ROOT / "third_party" / "locks"
BASE_RELEASE = "0.15.1"  # the line third_party/sources.lock holds, written by hand
PYPI_SIMPLE = "https://pypi.org/simple"
USER_AGENT = "vllm-stack-backend (lock --from-vllm)"


@dataclasses.dataclass(frozen=True)
class SideTree:
    """A tree vLLM's CMake fetches at configure time, as the vllm recipe passes it."""

    entry: str  # lock entry name
    cmake_file: str  # where its GIT_TAG is (relative to the vLLM tree)
    env: str  # the environment variable that replaces the fetch
    submodule: str | None = None  # its CUTLASS gitlink (path inside it), empty in an archive
    submodule_entry: str | None = None


# The 0.15.1 line's shape: what backend/recipes/vllm.py's environment() passes (tests check both agree).
KNOWN_SIDE_TREES = (
    SideTree("vllm-cutlass", "CMakeLists.txt", "VLLM_CUTLASS_SRC_DIR"),
    SideTree("vllm-flash-attn", "cmake/external_projects/vllm_flash_attn.cmake", "VLLM_FLASH_ATTN_SRC_DIR",
             "csrc/cutlass", "vllm-flash-attn-cutlass"),
    SideTree("flashmla", "cmake/external_projects/flashmla.cmake", "FLASH_MLA_SRC_DIR",
             "csrc/cutlass", "flashmla-cutlass"),
    SideTree("qutlass", "cmake/external_projects/qutlass.cmake", "QUTLASS_SRC_DIR"),
    SideTree("triton-kernels", "cmake/external_projects/triton_kernels.cmake", "TRITON_KERNELS_SRC_DIR"),
)
# NAR hashes of trees no mirror here can archive whole, from a reviewed recipe that pins the same tree.
KNOWN_NARS = {
    # CUTLASS e94e888d is tag v3.9.0 (git describe in a mirror); nixpkgs' vllm 0.11.2 recipe pins that tag's
    # fetchFromGitHub as 'cutlass-flashmla' with this hash (FlashMLA 46d64a8e's submodule, vllm issue 27425).
    ("https://github.com/NVIDIA/cutlass", "e94e888df3551224738bfa505787b515eae8352f"):
        ("sha256-Q6y/Z6vahASeSsfxvZDwbMFHGx8CnsF90IlveeVLO9g=", "nixpkgs' vllm 0.11.2 recipe ('cutlass-flashmla', tag v3.9.0 = this commit)"),
}
# The files whose change can change the recipe (configure steps, variables, sources compiled).
BUILD_FILES = ("CMakeLists.txt", "setup.py", "pyproject.toml", "cmake/utils.cmake")
# The seed's release lines (its README's branch table: release, Python); each line's torch is its lock's.
SEED_LINES = (("0.15.1", "3.13"), ("0.14.1", "3.12"), ("0.14.1", "3.11"), ("0.14.0", "3.12"), ("0.14.0", "3.11"),
              ("0.13.0", "3.12"))
# The 0.15.1 line's facts that third_party/sources.lock (entries only) does not hold.  The v0.15.1 tree could not be
# read here (docs/COMPONENTS.md, "vLLM 0.15.1"): its Pythons are those of the 0.14.1 and 0.16.0 sdists
# (CMakeLists.txt:37 in both); its FlashMLA is c2afa9cb, 0.16.0's pin, so the files vLLM's flashmla.cmake compiles
# are 0.16.0's (cmake/external_projects/flashmla.cmake:36-118 of the 0.16.0 sdist); the nvcc from which setup.py adds
# _flashmla_C is 12.3 in 0.14.1 (setup.py:924) and 12.9 in 0.16.0 (setup.py:980): unconfirmed for 0.15.1 (None).
BASE_FACTS = {
    "pythons": ["3.10", "3.11", "3.12", "3.13"],
    "flashmla_min_nvcc": None,
    "grpc_stubs": True,  # PyPI's 0.15.1 wheel ships vllm/grpc/vllm_engine_pb2*.py (docs/COMPONENTS.md)
    "flashmla_sources": [
        "flash_mla/flash_mla_interface.py", "csrc/torch_api.cpp",
        "csrc/smxx/decode/get_decoding_sched_meta/get_decoding_sched_meta.cu", "csrc/smxx/decode/combine/combine.cu",
        *(f"csrc/sm90/decode/dense/instantiations/{n}.cu" for n in ("fp16", "bf16")),
        *(f"csrc/sm90/decode/sparse_fp8/instantiations/{n}.cu" for n in (
            "model1_persistent_h64", "model1_persistent_h128", "v32_persistent_h64", "v32_persistent_h128")),
        "csrc/sm90/prefill/sparse/fwd.cu",
        *(f"csrc/sm90/prefill/sparse/instantiations/{n}.cu" for n in (
            "phase1_k512", "phase1_k512_topklen", "phase1_k576", "phase1_k576_topklen")),
        "csrc/sm100/prefill/dense/fmha_cutlass_fwd_sm100.cu",
        *(f"csrc/sm100/prefill/sparse/fwd/head{h}/instantiations/phase1_k{k}.cu" for h in (64, 128) for k in (512, 576)),
        "csrc/sm100/prefill/sparse/fwd_for_small_topk/head128/instantiations/phase1_prefill_k512.cu",
        "csrc/sm100/decode/head64/instantiations/v32.cu", "csrc/sm100/decode/head64/instantiations/model1.cu",
        "csrc/sm100/prefill/sparse/fwd_for_small_topk/head128/instantiations/phase1_decode_k512.cu",
        "csrc/extension/torch_api.cpp", "csrc/extension/sm90/dense_fp8/pybind.cpp",
        "csrc/extension/sm90/dense_fp8/flash_fwd_mla_fp8_sm90.cu", "csrc/extension/sm90/dense_fp8/flash_fwd_mla_metadata.cu",
    ],
    "where": {"pythons": "CMakeLists.txt:37 (0.14.1 and 0.16.0 sdists)",
              "flashmla_sources": "cmake/external_projects/flashmla.cmake:36-118 (0.16.0 sdist, the same FlashMLA pin)",
              "flashmla_min_nvcc": "setup.py: unconfirmed (0.14.1:924 says 12.3, 0.16.0:980 says 12.9)"},
}


@dataclasses.dataclass
class Pin:
    repo: str  # https://github.com/<owner>/<name>
    rev: str  # a tag or a commit
    where: str  # file:line


@dataclasses.dataclass
class Release:
    """What one vLLM tree pins."""

    version: str | None  # None: the tree does not state it (a git checkout)
    pythons: list[str]
    torch_cmake: str | None
    requirements: dict[str, str]  # distribution -> exact version (==)
    side_trees: dict[str, Pin]  # lock entry -> pin
    unknown_projects: dict[str, str]  # cmake file -> what it fetches (no side tree known for it)
    env_vars: dict[str, list[str]]  # cmake file -> ENV{...} it reads
    build_files: dict[str, str]  # relative path -> sha256
    problems: list[str]
    # The files of FlashMLA's tree that cmake/external_projects/flashmla.cmake compiles or reads, in its order
    flashmla_sources: list[str] = dataclasses.field(default_factory=list)
    # The nvcc from which setup.py adds the vllm._flashmla_C extension (0.14.1: 12.3, with FA3; 0.16.0: 12.9)
    flashmla_min_nvcc: str | None = None
    # setup.py generates vllm/grpc/*_pb2*.py with grpcio-tools (compile_grpc_protos: 0.14.0 on; 0.13.0 has none)
    grpc_stubs: bool | None = None  # None: no setup.py to read
    where: dict[str, str] = dataclasses.field(default_factory=dict)  # fact -> file:line it was read at


# --- reading a tree ---------------------------------------------------------

# A pin in a requirements file: name==version, before any marker or comment (read without `packaging`:
# plan and matrix run with nothing installed, and this module is part of the plan).
_EXACT_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*==\s*([A-Za-z0-9][A-Za-z0-9.+!_-]*)\s*(?:[;#].*)?$")


def release_key(version: str) -> tuple[int, ...] | None:
    """A plain release (0.14.1) as integers for ordering; None for anything else."""
    return tuple(int(p) for p in version.split(".")) if re.fullmatch(r"\d+(?:\.\d+)*", version) else None


_SET = re.compile(r'^\s*set\(\s*(\w+)\s+((?:"[^"]*"\s*)+)\)', re.M)
_GIT_REPO = re.compile(r"^\s*GIT_REPOSITORY\s+(\S+)", re.M)
_GIT_TAG = re.compile(r"^\s*GIT_TAG\s+(\S+)", re.M)
_ENV = re.compile(r"DEFINED\s+ENV\{(\w+)\}")
_FLASHMLA_FILE = re.compile(r"\$\{flashmla_SOURCE_DIR\}/([\w./-]+\.(?:cu|cpp|py))\b")
# setup.py: the nvcc condition of the block that adds CMakeExtension(name="vllm._flashmla_C")
_NVCC_AT_LEAST = re.compile(r'get_nvcc_cuda_version\(\)\s*>=\s*Version\("([\d.]+)"\)')
_FLASHMLA_EXT = re.compile(r'CMakeExtension\(\s*name\s*=\s*"vllm\._flashmla_C"')
_VAR = re.compile(r"\$\{(\w+)\}")


def _sets(text: str) -> dict[str, list[str]]:
    return {m.group(1): re.findall(r'"([^"]*)"', m.group(2)) for m in _SET.finditer(text)}


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _github(url: str) -> str:
    """``https://github.com/owner/name`` from a GIT_REPOSITORY (``.git`` and case of the host dropped)."""
    parsed = urlparse(url)
    path = parsed.path.strip("/").removesuffix(".git")
    if parsed.netloc.lower() != "github.com" or path.count("/") != 1:
        raise ValueError(url)
    return f"https://github.com/{path}"


def _project_pin(path: Path, rel: str, problems: list[str]) -> Pin | None:
    text = path.read_text(encoding="utf-8", errors="replace")
    values = _sets(text)
    repos = list(_GIT_REPO.finditer(text))
    tags = list(_GIT_TAG.finditer(text))
    if len(repos) != 1 or len(tags) != 1:
        problems.append(f"{rel}: {len(repos)} GIT_REPOSITORY and {len(tags)} GIT_TAG lines (expected one each); "
                        "its pin is not read, review the file")
        return None
    tag = tags[0].group(1)
    for name in _VAR.findall(tag):  # a tag given through a variable set in the same file
        if name not in values or len(values[name]) != 1:
            problems.append(f"{rel}:{_line(text, tags[0].start())}: GIT_TAG {tag} names {name}, not set in the file")
            return None
        tag = tag.replace("${" + name + "}", values[name][0])
    try:
        repo = _github(repos[0].group(1))
    except ValueError:
        problems.append(f"{rel}: GIT_REPOSITORY {repos[0].group(1)} is not a GitHub repository")
        return None
    return Pin(repo, tag, f"{rel}:{_line(text, tags[0].start())}")


def _flashmla_files(tree: Path, where: dict[str, str]) -> list[str]:
    rel = "cmake/external_projects/flashmla.cmake"
    path = tree / rel
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    found = list(_FLASHMLA_FILE.finditer(text))
    if found:
        where["flashmla_sources"] = f"{rel}:{_line(text, found[0].start())}-{_line(text, found[-1].start())}"
    return list(dict.fromkeys(m.group(1) for m in found))


def _flashmla_min_nvcc(tree: Path, where: dict[str, str]) -> str | None:
    path = tree / "setup.py"
    text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    added = _FLASHMLA_EXT.search(text)
    if added is None:
        return None
    before = list(_NVCC_AT_LEAST.finditer(text, 0, added.start()))
    if not before:
        return None
    where["flashmla_min_nvcc"] = f"setup.py:{_line(text, before[-1].start())}"
    return before[-1].group(1)


def _grpc_stubs(tree: Path, where: dict[str, str]) -> bool | None:
    path = tree / "setup.py"
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8", errors="replace")
    found = re.search(r"^def compile_grpc_protos\(", text, re.M)
    if found:
        where["grpc_stubs"] = f"setup.py:{_line(text, found.start())}"
    return found is not None


def _requirements(tree: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for rel in ("requirements/build.txt", "requirements/cuda.txt"):
        path = tree / rel
        if not path.is_file():
            continue
        for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
            match = _EXACT_PIN.match(raw.split(" #", 1)[0].strip())
            name = match.group(1).lower().replace("_", "-") if match else ""
            if name in ("torch", "torchvision", "torchaudio", "flashinfer-python", "xformers"):
                pins.setdefault(name, match.group(2))
    return pins


def _version(tree: Path) -> str | None:
    pkg_info = tree / "PKG-INFO"
    if pkg_info.is_file():
        match = re.search(r"^Version:\s*(\S+)", pkg_info.read_text(encoding="utf-8", errors="replace"), re.M)
        if match:
            return match.group(1)
    version_py = tree / "vllm" / "_version.py"
    if version_py.is_file():
        match = re.search(r"""^__version__\s*=\s*(?:version\s*=\s*)?['"]([^'"]+)['"]""",
                          version_py.read_text(encoding="utf-8", errors="replace"), re.M)
        if match:
            return match.group(1)
    return None  # a git checkout: its tags say it (checkout_version.py); a lock cannot be named after it


def read_tree(tree: Path) -> Release:
    """The pins of the vLLM tree at ``tree`` (an unpacked sdist or a checkout)."""
    tree = Path(tree)
    cmakelists = tree / "CMakeLists.txt"
    if not cmakelists.is_file():
        raise BackendError(f"lock --from-vllm: {tree} has no CMakeLists.txt; accepted: a vLLM sdist, its "
                           "unpacked tree, or a release version")
    problems: list[str] = []
    top = cmakelists.read_text(encoding="utf-8", errors="replace")
    values = _sets(top)
    side: dict[str, Pin] = {}
    revision = values.get("CUTLASS_REVISION")
    if revision and len(revision) == 1:
        match = re.search(r'set\(\s*CUTLASS_REVISION\b', top)
        side["vllm-cutlass"] = Pin("https://github.com/NVIDIA/cutlass", revision[0],
                                   f"CMakeLists.txt:{_line(top, match.start())}")
    else:
        problems.append("CMakeLists.txt: no set(CUTLASS_REVISION \"...\"); how CUTLASS is pinned changed, review it")
    env_vars = {"CMakeLists.txt": sorted(set(_ENV.findall(top)))}
    unknown: dict[str, str] = {}
    known_files = {t.cmake_file: t for t in KNOWN_SIDE_TREES}
    external = sorted((tree / "cmake" / "external_projects").glob("*.cmake"))
    for path in external:
        rel = path.relative_to(tree).as_posix()
        env_vars[rel] = sorted(set(_ENV.findall(path.read_text(encoding="utf-8", errors="replace"))))
        pin = _project_pin(path, rel, problems)
        known = known_files.get(rel)
        if known is None:
            unknown[rel] = f"{pin.repo} {pin.rev}" if pin else "(pin not read)"
        elif pin is not None:
            side[known.entry] = pin
    build_files = {}
    for rel in BUILD_FILES + tuple(p.relative_to(tree).as_posix() for p in external):
        path = tree / rel
        if path.is_file():
            build_files[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    torch_cmake = values.get("TORCH_SUPPORTED_VERSION_CUDA", [None])[0]
    where = {name: f"CMakeLists.txt:{_line(top, m.start())}" for name, variable in
             (("pythons", "PYTHON_SUPPORTED_VERSIONS"), ("torch_cmake", "TORCH_SUPPORTED_VERSION_CUDA"))
             if (m := re.search(rf"set\(\s*{variable}\b", top))}
    return Release(
        version=_version(tree), pythons=values.get("PYTHON_SUPPORTED_VERSIONS", []), torch_cmake=torch_cmake,
        requirements=_requirements(tree), side_trees=side, unknown_projects=unknown, env_vars=env_vars,
        build_files=build_files, problems=problems, flashmla_sources=_flashmla_files(tree, where),
        flashmla_min_nvcc=_flashmla_min_nvcc(tree, where), grpc_stubs=_grpc_stubs(tree, where), where=where,
    )


def shape_differences(release: Release) -> list[str]:
    """What the vllm recipe (0.15.1's shape) would not pass or not know for this tree."""
    out = list(release.problems)
    for rel, what in release.unknown_projects.items():
        out.append(f"new external project {rel} ({what}): the recipe passes no tree for it, so an offline "
                   "configure fails there; add a lock entry and its variable to backend/recipes/vllm.py")
    for known in KNOWN_SIDE_TREES:
        reads = release.env_vars.get(known.cmake_file)
        if reads is None:
            out.append(f"{known.cmake_file} is gone: the recipe still passes {known.env} for {known.entry}")
        elif known.env not in reads:
            out.append(f"{known.cmake_file} no longer reads ENV{{{known.env}}} (it reads: {', '.join(reads) or 'none'}); "
                       f"{known.entry} would be fetched at configure time: a renamed variable, review the file")
    return out


# --- submodule pins -----------------------------------------------------------


def _mirror_dirs(repo: str, mirrors: Sequence[Path]) -> list[Path]:
    """The git directories of ``repo`` under the mirror folders (GitHub names are case-insensitive)."""
    owner_name = urlparse(repo).path.strip("/").lower()
    found = []
    for root in mirrors:
        if not Path(root).is_dir():
            continue
        for child in sorted(Path(root).iterdir()):
            name = child.name.lower().replace("+", "/")
            if name == owner_name or name == owner_name.split("/")[1]:
                found += [d for d in (child / "repo", child) if (d / "HEAD").is_file()][:1]
    return found


def submodule_pin(repo: str, rev: str, path: str, mirrors: Sequence[Path]) -> str | None:
    """The gitlink at ``path`` in ``repo`` at ``rev``, from a local git mirror (None where none holds it)."""
    for git_dir in _mirror_dirs(repo, mirrors):
        result = subprocess.run(["git", "--git-dir", str(git_dir), "ls-tree", rev, "--", path],
                                capture_output=True, text=True, check=False)
        fields = result.stdout.split()
        if result.returncode == 0 and len(fields) >= 3 and fields[1] == "commit":
            return fields[2]
    return None


def mirror_nar(repo: str, rev: str, mirrors: Sequence[Path]) -> str | None:
    """The NAR hash of ``git archive <rev>`` from a local mirror: the tree GitHub's /archive/ of it holds
    (both apply the repository's export-ignore and export-subst attributes; submodules stay empty folders).
    None where no mirror holds the commit with every blob (a snapshot may lack its largest files)."""
    for git_dir in _mirror_dirs(repo, mirrors):
        with tempfile.TemporaryDirectory(prefix="lock-mirror-") as scratch:
            archive = Path(scratch) / "tree.tar"
            with archive.open("wb") as out:
                result = subprocess.run(["git", "--git-dir", str(git_dir), "-c", "core.autocrlf=false", "archive",
                                         "--format=tar", "--prefix=tree/", rev], stdout=out, stderr=subprocess.DEVNULL,
                                        check=False)
            if result.returncode != 0:
                continue
            extract(archive, Path(scratch) / "tree", strip=1, max_bytes=4000 * lock_mod.MB)
            return nar_hash(Path(scratch) / "tree")
    return None


# --- PyPI ---------------------------------------------------------------------


def pypi_files(project: str) -> dict[str, tuple[str, str]]:
    """filename -> (url, sha256) from PyPI's simple index (PEP 691 JSON)."""
    request = urllib.request.Request(f"{PYPI_SIMPLE}/{project}/", headers={
        "Accept": "application/vnd.pypi.simple.v1+json", "User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            data = json.load(response)
    except (OSError, ValueError) as error:
        raise BackendError(f"lock --from-vllm: PyPI's index for {project} cannot be read ({error})") from None
    return {f["filename"]: (f["url"], f.get("hashes", {}).get("sha256", "")) for f in data.get("files", [])}


def _archive_url(pin: Pin) -> str:
    if re.fullmatch(r"[0-9a-f]{40}", pin.rev):
        return f"{pin.repo}/archive/{pin.rev}.tar.gz"
    return f"{pin.repo}/archive/refs/tags/{pin.rev}.tar.gz"


def _pin_version(rev: str) -> str:
    return rev[1:] if re.fullmatch(r"v\d[\w.+-]*", rev) else rev


# --- the lock ---------------------------------------------------------------------


@dataclasses.dataclass
class Generated:
    release: Release
    entries: list[dict]  # ordered [source.<name>] tables, name under "name"
    differences: list[str]  # reviewed-by-a-person items
    unverified: list[str]
    origin: str


def _find_base(base: Lock, url: str) -> Entry | None:
    for entry in base.entries.values():
        if entry.url.lower() == url.lower():
            return entry
    return None


def _side_entry(name: str, pin: Pin, base: Lock, dest: str | None = None, why: str = "",
                mirrors: Sequence[Path] = ()) -> tuple[dict, bool]:
    url = _archive_url(pin)
    known = _find_base(base, url)
    table = {"name": name, "component": "vllm", "version": _pin_version(pin.rev), "url": known.url if known else url,
             "strip": 1}
    if known is not None and known.filename:
        table["filename"] = known.filename
    reference = base.entries.get(name)
    if reference is not None:
        table["max_mb"], table["max_unpacked_mb"] = reference.max_mb, reference.max_unpacked_mb
    if dest:
        table["dest"] = dest
    if known is not None and known.nar:
        table["nar"] = known.nar
        table["why"] = f"{why}{pin.where} pins {pin.rev}. NAR hash: third_party/sources.lock's {known.name}, the same URL."
        return table, True
    if (pin.repo, pin.rev) in KNOWN_NARS:
        table["nar"], source = KNOWN_NARS[(pin.repo, pin.rev)]
        table["why"] = f"{why}{pin.where} pins {pin.rev}. NAR hash: {source}."
        return table, True
    nar = mirror_nar(pin.repo, pin.rev, mirrors)
    if nar is not None:
        table["nar"] = nar
        table["why"] = (f"{why}{pin.where} pins {pin.rev}. NAR hash computed from `git archive {pin.rev[:12]}` of a "
                        "mirror of the repository (the tree GitHub's archive holds; reproduces the hand-written "
                        "lock's vllm-flash-attn hash the same way).")
        return table, True
    table["why"] = (f"{why}{pin.where} pins {pin.rev}. UNVERIFIED: a GitHub archive no known lock hashes; "
                    "needs `python -m backend lock` with network.")
    return table, False


def generate(tree: Path, *, origin: str, main_url: str | None, main_sha256: str | None,
             base: Lock, mirrors: Sequence[Path] = (), pypi: bool = True) -> Generated:
    """The release lock's entries and the differences from the hand-written 0.15.1 line."""
    release = read_tree(tree)
    differences = shape_differences(release)
    unverified: list[str] = []
    entries: list[dict] = []
    main = {"name": "vllm", "component": "vllm", "version": release.version or "unknown",
            "url": main_url or f"https://github.com/vllm-project/vllm/archive/refs/tags/v{release.version}.tar.gz",
            "strip": 1, "max_mb": 500, "max_unpacked_mb": 2000}
    if main_sha256:
        main["sha256"] = main_sha256
        main["why"] = f"PyPI sdist of vLLM {release.version}; sha256 from PyPI's index, checked on download. Generated from {origin}."
    else:
        main["why"] = f"Generated from {origin}. UNVERIFIED: needs `python -m backend lock` with network."
        unverified.append("vllm")
    entries.append(main)
    base_side = {e.name: e for e in base.for_component("vllm")}
    for known in KNOWN_SIDE_TREES:
        pin = release.side_trees.get(known.entry)
        if pin is None:
            continue
        table, ok = _side_entry(known.entry, pin, base, why=f"Env {known.env}. ", mirrors=mirrors)
        entries.append(table)
        if not ok:
            unverified.append(known.entry)
        reference = base_side.get(known.entry)
        if reference is not None and reference.version != _pin_version(pin.rev):
            differences.append(f"{known.entry}: {reference.version} in {BASE_RELEASE}, {_pin_version(pin.rev)} here ({pin.where})")
        if known.submodule is None:
            continue
        child = base_side.get(known.submodule_entry)
        parent_dest = f"{known.entry}/{known.submodule}"
        if reference is not None and reference.version == _pin_version(pin.rev) and child is not None:
            # The same commit as the reviewed line: its submodule entry (a reviewed choice) is kept.
            carried = {k: v for k, v in dataclasses.asdict(child).items()
                       if k in ("component", "version", "url", "sha256", "nar", "strip", "dest", "filename",
                                "max_mb", "max_unpacked_mb", "why") and v not in (None, "")}
            carried["name"] = child.name
            carried["why"] = f"As {BASE_RELEASE} (same {known.entry} commit): {child.why}"
            entries.append(carried)
            continue
        gitlink = submodule_pin(pin.repo, pin.rev, known.submodule, mirrors)
        if gitlink is None:
            differences.append(f"{known.submodule_entry}: the {known.submodule} gitlink of {pin.repo} at {pin.rev} "
                               "is unknown (no --git-mirrors copy holds that commit); the entry is left out, "
                               "add it by hand")
            continue
        if child is not None and child.why and gitlink[:8] in child.why and child.version != gitlink:
            # The reviewed line replaced the same gitlink with another CUTLASS (and a patch): kept, and said.
            carried = {k: v for k, v in dataclasses.asdict(child).items()
                       if k in ("component", "version", "url", "sha256", "nar", "strip", "dest", "filename",
                                "max_mb", "max_unpacked_mb") and v not in (None, "")}
            carried["name"] = child.name
            carried["why"] = (f"{known.entry} {pin.rev[:8]}'s {known.submodule} gitlink is {gitlink[:8]}, which "
                              f"{BASE_RELEASE}'s lock replaces with {child.version}: {child.why}")
            entries.append(carried)
            differences.append(f"{known.submodule_entry}: gitlink {gitlink[:8]} replaced by {child.version} as in "
                               f"{BASE_RELEASE} (its patches must apply to this release too)")
            continue
        sub_pin = Pin("https://github.com/NVIDIA/cutlass", gitlink, f"{known.entry} {pin.rev[:8]}:{known.submodule} (gitlink)")
        table, ok = _side_entry(known.submodule_entry, sub_pin, base, dest=parent_dest,
                                why=f"{known.entry}'s {known.submodule} submodule (empty in an archive). ",
                                mirrors=mirrors)
        entries.append(table)
        if not ok:
            unverified.append(known.submodule_entry)
        if child is not None and child.version != gitlink:
            differences.append(f"{known.submodule_entry}: {child.version} in {BASE_RELEASE}, {gitlink} here "
                               f"({known.entry} {pin.rev[:8]}'s gitlink)")
    entries += _companions(release, base, differences, unverified, pypi, mirrors)
    differences += fact_differences(release)
    if release.torch_cmake and not release.torch_cmake.startswith("2.9."):
        differences.append(f"torch {release.torch_cmake} (CMakeLists TORCH_SUPPORTED_VERSION_CUDA): the torch "
                           "recipe knows 2.9.x only; a new torch needs its own recipe facts")
    return Generated(release, entries, differences, unverified, origin)


def fact_differences(release: Release) -> list[str]:
    """The recipe facts read from vLLM's files that differ from the 0.15.1 line's (BASE_FACTS)."""
    out = []
    if release.pythons and release.pythons != BASE_FACTS["pythons"]:
        out.append(f"pythons: {', '.join(BASE_FACTS['pythons'])} in {BASE_RELEASE}, {', '.join(release.pythons)} here "
                   f"({release.where.get('pythons', 'CMakeLists.txt')})")
    ours, theirs = release.flashmla_sources, BASE_FACTS["flashmla_sources"]
    if ours and ours != theirs:
        gone = [f for f in theirs if f not in ours]
        new = [f for f in ours if f not in theirs]
        out.append(f"flashmla sources: {len(theirs)} files in {BASE_RELEASE}, {len(ours)} here "
                   f"({release.where.get('flashmla_sources')}): {len(new)} not in {BASE_RELEASE}'s list (first: "
                   f"{new[0] if new else '-'}), {len(gone)} of its files not here; the FlashMLA tree must hold them")
    if release.grpc_stubs is not None and release.grpc_stubs != BASE_FACTS["grpc_stubs"]:
        out.append(f"gRPC stubs: {BASE_RELEASE}'s setup.py generates vllm/grpc/*_pb2*.py, this one "
                   + (f"does too ({release.where.get('grpc_stubs')})" if release.grpc_stubs else
                      "has no compile_grpc_protos (no stubs, no protobuf/grpcio requirement from them)"))
    if release.flashmla_min_nvcc != BASE_FACTS["flashmla_min_nvcc"]:
        out.append(f"_flashmla_C: setup.py adds it from nvcc {release.flashmla_min_nvcc or '(no condition found)'} "
                   f"({release.where.get('flashmla_min_nvcc', 'setup.py')}); {BASE_RELEASE}: "
                   f"{BASE_FACTS['where']['flashmla_min_nvcc']}")
    return out


def _companions(release: Release, base: Lock, differences: list[str], unverified: list[str], pypi: bool,
                mirrors: Sequence[Path] = ()) -> list[dict]:
    """torch, torchvision, torchaudio and flashinfer entries where this release pins other versions."""
    out: list[dict] = []
    req = release.requirements
    for dist, name, url_for in (
        ("torch", "torch", lambda v: f"https://github.com/pytorch/pytorch/releases/download/v{v}/pytorch-v{v}.tar.gz"),
        ("torchvision", "torchvision", lambda v: f"https://github.com/pytorch/vision/archive/refs/tags/v{v}.tar.gz"),
        ("torchaudio", "torchaudio", lambda v: f"https://github.com/pytorch/audio/archive/refs/tags/v{v}.tar.gz"),
    ):
        want = req.get(dist)
        have = base.entries.get(name)
        if want is None or have is None or have.version == want:
            continue
        differences.append(f"{dist}: {have.version} in {BASE_RELEASE}, {want} here (requirements)")
        out.append({"name": name, "component": have.component, "version": want, "url": url_for(want), "strip": 1,
                    "max_mb": have.max_mb, "max_unpacked_mb": have.max_unpacked_mb,
                    "why": f"vLLM {release.version} requires {dist}=={want}. UNVERIFIED: needs `python -m backend lock` "
                           "with network."})
        unverified.append(name)
    want = req.get("flashinfer-python")
    have = base.entries.get("flashinfer")
    if want and have is not None and have.version != want:
        differences.append(f"flashinfer: {have.version} in {BASE_RELEASE}, {want} here (requirements/cuda.txt); "
                           "check its jit-cache config keys against the recipe's")
        files: dict[str, tuple[str, str]] = {}
        if pypi:
            files = pypi_files("flashinfer-python")
            files.update(pypi_files("flashinfer-cubin"))
        for name, filename, strip in (("flashinfer", f"flashinfer_python-{want}.tar.gz", 1),
                                      ("flashinfer-cubin", f"flashinfer_cubin-{want}-py3-none-any.whl", 0)):
            ref = base.entries[name]
            url, sha = files.get(filename, ("", ""))
            table = {"name": name, "component": "flashinfer", "version": want, "strip": strip,
                     "max_mb": ref.max_mb, "max_unpacked_mb": ref.max_unpacked_mb}
            if name == "flashinfer-cubin":
                table["filename"] = filename
            if url and sha:
                table.update(url=url, sha256=sha, why=f"PyPI {filename}; sha256 from PyPI's index.")
            else:
                table.update(url=f"https://files.pythonhosted.org/packages/source/f/flashinfer-python/{filename}"
                             if strip else ref.url.replace(have.version, want),
                             why=f"{filename}: not found in PyPI's index here. UNVERIFIED: needs `python -m backend lock` with network.")
                unverified.append(name)
            out.append(table)
        tag = base.entries.get("flashinfer-tag")
        if tag is not None:
            table = {"name": "flashinfer-tag", "component": "flashinfer", "version": want,
                     "url": f"https://github.com/flashinfer-ai/flashinfer/archive/refs/tags/v{want}.tar.gz",
                     "filename": f"flashinfer-v{want}-tag.tar.gz", "strip": 1, "max_mb": tag.max_mb,
                     "max_unpacked_mb": tag.max_unpacked_mb, "completes_main": True}
            nar = mirror_nar("https://github.com/flashinfer-ai/flashinfer", f"v{want}", mirrors)
            if nar is not None:
                table["nar"] = nar
                table["why"] = (f"Tag v{want}: its flashinfer-jit-cache/ folder and version.txt (as {BASE_RELEASE}). NAR "
                                f"hash computed from `git archive v{want}` of a mirror (reproduces {BASE_RELEASE}'s "
                                "flashinfer-tag hash the same way).")
            else:
                table["why"] = (f"Tag v{want}: its flashinfer-jit-cache/ folder and version.txt (as {BASE_RELEASE}). "
                                "UNVERIFIED: needs `python -m backend lock` with network.")
                unverified.append("flashinfer-tag")
            out.append(table)
    xformers = req.get("xformers")
    have = base.entries.get("xformers")
    if have is not None and xformers and xformers != have.version:
        differences.append(f"xformers: {have.version} in {BASE_RELEASE}, {xformers} here; not generated, review it")
    elif have is not None and not xformers and req.get("torch") and base.entries["torch"].version != req["torch"]:
        differences.append(f"xformers: vLLM {release.version} pins none; {BASE_RELEASE}'s {have.version} is built "
                           f"for torch {base.entries['torch'].version}, not {req['torch']}: review it")
    return out


def nearest_release_lock(version: str, folder: Path = LOCKS_DIR) -> tuple[str, dict] | None:
    """The checked-in release lock nearest to ``version`` that recorded its build files."""
    target = release_key(version)
    if target is None:
        return None
    found: dict[tuple[int, ...], tuple[str, dict]] = {}
    for path in sorted(folder.glob("vllm-*.lock")):
        info = toml.loads(path.read_text(encoding="utf-8")).get("release", {})
        other = release_key(str(info.get("vllm", "")))
        if other is not None and other != target and info.get("build_files"):
            found[other] = (str(info["vllm"]), info)
    older = [v for v in found if v < target]  # the release it grew from, else the one after it
    chosen = max(older) if older else min(found, default=None)
    return found[chosen] if chosen is not None else None


def build_file_differences(release: Release, folder: Path = LOCKS_DIR) -> list[str]:
    nearest = nearest_release_lock(release.version, folder)
    if nearest is None:
        return []
    other, info = nearest
    theirs = info["build_files"]
    changed = sorted(f for f in set(theirs) | set(release.build_files) if theirs.get(f) != release.build_files.get(f))
    return [f"{f}: {'new' if f not in theirs else 'gone' if f not in release.build_files else 'changed'} "
            f"since {other} (review what the recipe passes)" for f in changed]


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a TOML basic string


def render(generated: Generated, base: Lock) -> str:
    release = generated.release
    req = release.requirements
    lines = [
        f"# vLLM {release.version}'s release line: generated by `python -m backend lock --from-vllm` from",
        f"# {generated.origin}. Entries replace (by name) those of third_party/sources.lock",
        f"# (the {BASE_RELEASE} line); backend/sources/vllm_release.py says how each pin is read.",
        "# Review `differences` before building: they are what the generator could not infer.",
        "",
        f"format = {lock_mod.LOCK_FORMAT}",
        "",
        "[release]",
        f"vllm = {_toml_value(release.version)}",
        f"torch = {_toml_value(req.get('torch') or release.torch_cmake or '')}",
        f"torch_cmake = {_toml_value(release.torch_cmake or '')}",
        f"torchvision = {_toml_value(req.get('torchvision', ''))}",
        f"torchaudio = {_toml_value(req.get('torchaudio', ''))}",
        f"flashinfer = {_toml_value(req.get('flashinfer-python', ''))}",
        f"xformers = {_toml_value(req.get('xformers', base.entries['xformers'].version if 'xformers' in base.entries else ''))}",
        f"pythons = {_toml_value(release.pythons)}",
        f"flashmla_min_nvcc = {_toml_value(release.flashmla_min_nvcc or '')}",
        f"flashmla_sources = {_toml_value(release.flashmla_sources)}",
        f"grpc_stubs = {_toml_value(release.grpc_stubs is not False)}",
        f"recipe_gaps = {_toml_value(shape_differences(release))}",
        f"unverified = {_toml_value(generated.unverified)}",
        "differences = [",
        *[f"  {_toml_value(d)}," for d in generated.differences],
        "]",
        "",
        "[release.build_files]",
        *[f"{_toml_value(k)} = {_toml_value(v)}" for k, v in sorted(release.build_files.items())],
        "",
        "[release.where]",
        *[f"{_toml_value(k)} = {_toml_value(v)}" for k, v in sorted(release.where.items())],
    ]
    for table in generated.entries:
        lines += ["", f"[source.{table['name']}]"]
        for key in ("component", "version", "url", "filename", "sha256", "nar", "strip", "dest", "completes_main",
                    "max_mb", "max_unpacked_mb", "why"):
            if key in table:
                lines.append(f"{key} = {_toml_value(table[key])}")
    return "\n".join(lines) + "\n"


# --- where the tree comes from ----------------------------------------------------


def _sdist_tree(sdist: Path, scratch: Path) -> Path:
    tree = scratch / "tree"
    extract(sdist, tree, strip=1, max_bytes=2000 * lock_mod.MB)
    return tree


def lock_from_vllm(spec: str, *, cache_dir: Path, offline: bool, output: Path | None = None,
                   mirrors: Sequence[Path] = (), base_path: Path | None = None) -> tuple[Path, Generated]:
    """Write the release lock for ``spec``: an sdist file, an unpacked tree, or a release version."""
    base = lock_mod.load(base_path)
    path = Path(spec)
    main_url = main_sha = None
    with tempfile.TemporaryDirectory(prefix="lock-from-vllm-") as scratch_dir:
        scratch = Path(scratch_dir)
        if path.is_dir():
            tree, origin = path, f"the tree {path.name}"
        elif path.is_file():
            tree, origin = _sdist_tree(path, scratch), f"{path.name} (sha256 {sha256_file(path)})"
            main_sha = sha256_file(path)
        elif re.fullmatch(r"\d+\.\d+\.\d+(?:\.post\d+)?", spec):
            if offline:
                raise BackendError(f"lock --from-vllm {spec}: finding its sdist needs PyPI, which offline=true "
                                   "forbids; accepted offline: a vLLM sdist file or an unpacked tree")
            filename = f"vllm-{spec}.tar.gz"
            found = pypi_files("vllm").get(filename)
            if not found:
                raise BackendError(f"lock --from-vllm {spec}: PyPI has no sdist {filename} (0.15.x has none); "
                                   "accepted: a vLLM sdist file, an unpacked tree, or a release PyPI has an sdist of")
            main_url, main_sha = found
            entry = Entry(name="vllm", component="vllm", version=spec, url=main_url, sha256=main_sha,
                          filename=filename, max_mb=500)
            sdist = fetch_mod.ensure(entry, cache_dir=cache_dir, offline=False)
            tree, origin = _sdist_tree(sdist, scratch), f"{filename} from PyPI (sha256 {main_sha})"
        else:
            raise BackendError(f"lock --from-vllm: {spec!r} is neither a file, a folder nor a release version; "
                               "accepted: a vLLM sdist (.tar.gz), its unpacked tree, or a version such as 0.14.1")
        if main_sha and not main_url:
            files = {} if offline else pypi_files("vllm")
            url, sha = files.get(path.name, ("", ""))
            if sha == main_sha:
                main_url = url
            elif not offline:
                raise BackendError(f"lock --from-vllm: {path.name}'s sha256 {main_sha} is not PyPI's "
                                   f"({sha or 'no such file'}); accepted: PyPI's sdist as it was published")
            else:
                main_sha = None  # a file we cannot tie to a URL: the lock's entry must be hashed online
        if read_tree(tree).version is None:
            raise BackendError(f"lock --from-vllm: {tree} has no PKG-INFO or vllm/_version.py saying its version; "
                               "accepted: a vLLM sdist, its unpacked tree, or a release version")
        generated = generate(tree, origin=origin, main_url=main_url, main_sha256=main_sha, base=base,
                             mirrors=mirrors, pypi=not offline)
        generated.differences += build_file_differences(generated.release, (output.parent if output else LOCKS_DIR))
    output = output or LOCKS_DIR / f"vllm-{generated.release.version}.lock"
    output.parent.mkdir(parents=True, exist_ok=True)
    text = render(generated, base)
    lock_mod.parse(text, output)  # a valid lock before it is written
    output.write_text(text, encoding="utf-8")
    return output, generated


# --- a release line's whole lock -------------------------------------------------


def lines(folder: Path = LOCKS_DIR) -> tuple[str, ...]:
    """Every release line, oldest first: the hand-written lock's and one per release lock."""
    found = {BASE_RELEASE, *(p.stem.removeprefix("vllm-") for p in folder.glob("vllm-*.lock"))}
    return tuple(sorted(found, key=lambda v: release_key(v) or ()))


def checked_line(key: str, value: str) -> str:
    """``-C vllm`` (``v0.15.1`` too) as one of ``lines()``, or one line naming the setting."""
    if value.removeprefix("v") in lines():
        return value.removeprefix("v")
    raise SettingError(key, value, lines())


def release_lock_path(release: str, folder: Path = LOCKS_DIR) -> Path | None:
    """The checked-in lock of ``release`` (None for the hand-written line)."""
    if release == BASE_RELEASE:
        return None
    path = folder / f"vllm-{release}.lock"
    if not path.is_file():
        known = lines(folder)
        raise BackendError(f"vllm={release}: no lock for this release; accepted: {', '.join(known)} "
                           f"(python -m backend lock --from-vllm {release} writes one)")
    return path


def line_lock(release: str, base_path: Path | None = None, folder: Path = LOCKS_DIR) -> Lock:
    """The hand-written lock with the release lock's entries in place of the same names (new ones after
    their component's last entry): every source a build of that release line uses."""
    base = lock_mod.load(base_path)
    path = release_lock_path(release, folder)
    others = _other_lines(release, base, folder)
    if path is None:
        return dataclasses.replace(base, other_lines=others)
    overlay = lock_mod.load(path)
    entries = {name: overlay.entries.get(name, entry) for name, entry in base.entries.items()}
    for name, entry in overlay.entries.items():
        if name in entries:
            continue
        names = list(entries)
        last = max((i for i, n in enumerate(names) if entries[n].component == entry.component), default=len(names) - 1)
        names.insert(last + 1, name)
        entries = {n: entries.get(n, entry) for n in names}
    for tree in KNOWN_SIDE_TREES:  # a side tree of another commit whose submodule pin is unknown: not 0.15.1's
        if (tree.submodule_entry and tree.entry in overlay.entries and tree.submodule_entry not in overlay.entries
                and overlay.entries[tree.entry].version != base.entries[tree.entry].version):
            entries.pop(tree.submodule_entry, None)
    return Lock(entries=entries, path=path, release_line=release, other_lines=others)


def _other_lines(release: str, base: Lock, folder: Path) -> dict[str, frozenset[str]]:
    """Entry -> the versions the other release lines (the hand-written one and each release lock) pin of it."""
    found: dict[str, set[str]] = {}
    locks = [] if release == BASE_RELEASE else [base]
    locks += [lock_mod.load(p) for p in sorted(folder.glob("vllm-*.lock")) if p.stem != f"vllm-{release}"]
    for lock in locks:
        for name, entry in lock.entries.items():
            found.setdefault(name, set()).add(entry.version)
    return {name: frozenset(versions) for name, versions in found.items()}


def line_facts(release: str, base_path: Path | None = None, folder: Path = LOCKS_DIR) -> dict:
    """What the plan shows of a release line: its versions, Pythons, lock, differences and unverified entries."""
    lock = line_lock(release, base_path, folder)
    versions = {name: lock.entries[name].version for name in ("vllm", "torch", "torchvision", "torchaudio",
                                                              "flashinfer", "xformers") if name in lock.entries}
    if lock.path is None or lock.path == lock_mod.load(base_path).path:
        return {**versions, "pythons": [], "lock": str(lock.path), "differences": [], "unverified": []}
    info = toml.loads(lock.path.read_text(encoding="utf-8")).get("release", {})
    return {**versions, "pythons": list(info.get("pythons", [])), "lock": str(lock.path),
            "differences": list(info.get("differences", [])), "unverified": list(info.get("unverified", []))}


@dataclasses.dataclass(frozen=True)
class ReleaseLine:
    """What the recipes take from a vLLM release line: the versions its lock pins and the facts read from its
    files (the release lock's [release] table; BASE_FACTS for the hand-written 0.15.1 line)."""

    vllm: str
    versions: Mapping[str, str]  # lock entry -> version: every component's tree and every side tree
    pythons: tuple[str, ...]  # what its CMake accepts (PYTHON_SUPPORTED_VERSIONS)
    flashmla_sources: tuple[str, ...]  # FlashMLA's files its flashmla.cmake compiles or reads
    flashmla_min_nvcc: str | None  # setup.py adds _flashmla_C from this nvcc (None: unconfirmed)
    where: Mapping[str, str]  # fact -> the file:line it was read at
    torch_cmake: str | None = None  # TORCH_SUPPORTED_VERSION_CUDA
    recipe_gaps: tuple[str, ...] = ()  # what the vllm recipe would not pass to this tree (shape_differences)
    grpc_stubs: bool = True  # its setup.py generates vllm/grpc/*_pb2*.py (compile_grpc_protos)

    @property
    def base(self) -> bool:
        return self.vllm == BASE_RELEASE


def release_line(release: str, base_path: Path | None = None, folder: Path = LOCKS_DIR) -> ReleaseLine:
    """The recipe facts of a release line (-C vllm)."""
    lock = line_lock(release, base_path, folder)
    versions = {name: entry.version for name, entry in lock.entries.items()}
    path = release_lock_path(release, folder)
    info = BASE_FACTS if path is None else toml.loads(path.read_text(encoding="utf-8")).get("release", {})
    return ReleaseLine(
        vllm=versions["vllm"], versions=versions, pythons=tuple(info.get("pythons", ())),
        flashmla_sources=tuple(info.get("flashmla_sources", ())),
        flashmla_min_nvcc=info.get("flashmla_min_nvcc") or None, where=dict(info.get("where", {})),
        torch_cmake=info.get("torch_cmake") or None, recipe_gaps=tuple(info.get("recipe_gaps", ())),
        grpc_stubs=bool(info.get("grpc_stubs", True)))


def line_rows(folder: Path = LOCKS_DIR) -> list[tuple[str, str, dict]]:
    """(release, Python, facts) for the seed's lines, then each newer release lock's Pythons its CMake accepts."""
    rows = [(release, python, line_facts(release, folder=folder)) for release, python in SEED_LINES]
    seeded = {release for release, _ in SEED_LINES}
    for path in sorted(folder.glob("vllm-*.lock"), key=lambda p: release_key(p.stem.removeprefix("vllm-")) or ()):
        release = path.stem.removeprefix("vllm-")
        if release not in seeded:
            facts = line_facts(release, folder=folder)
            rows += [(release, python, facts) for python in facts["pythons"]]
    return rows


def local_tree_lock(lock: Lock, tree: Path, mirrors: Sequence[Path] = ()) -> tuple[Lock, list[str]]:
    """``lock`` with the side trees a local vLLM checkout pins in its own files (-C source.vllm=DIR).

    Only what the checkout pins is replaced: a side tree it pins the same as the lock keeps the lock's entry
    and hash, another commit gets an entry without a hash (fetching it needs -C allow-unverified=<name> or a
    `lock` run), and one it does not pin (no such file) stays the lock's.  Returns the differences too.
    """
    if not (Path(tree) / "CMakeLists.txt").is_file():
        return lock, []
    release = read_tree(Path(tree))
    if not release.side_trees:
        return lock, []
    generated = generate(Path(tree), origin=f"the checkout {tree}", main_url=None, main_sha256=None, base=lock,
                         mirrors=mirrors, pypi=False)
    side = [t for t in generated.entries if t["component"] == "vllm" and t["name"] != "vllm"]
    text = f"format = {lock_mod.LOCK_FORMAT}\n" + "".join(
        f"\n[source.{t['name']}]\n" + "".join(f"{k} = {_toml_value(t[k])}\n" for k in t if k != "name") for t in side)
    parsed = lock_mod.parse(text, lock.path or lock_mod.DEFAULT_LOCK).entries

    def same(a: Entry, b: Entry | None) -> bool:
        return b is not None and (a.url, a.sha256, a.nar, a.dest, a.version) == (b.url, b.sha256, b.nar, b.dest, b.version)

    replaced = {name: entry for name, entry in parsed.items() if not same(entry, lock.entries.get(name))}
    if not replaced:
        return lock, []
    entries = {name: replaced.get(name, entry) for name, entry in lock.entries.items()}
    for name, entry in replaced.items():
        entries.setdefault(name, entry)
    pinned = {t.submodule_entry for t in KNOWN_SIDE_TREES if t.entry in release.side_trees and t.submodule_entry}
    for name in pinned - set(parsed):  # a submodule pin that could not be read: not the lock's, for another commit
        if any(t.submodule_entry == name and lock.entries.get(t.entry) and entries[t.entry] != lock.entries[t.entry]
               for t in KNOWN_SIDE_TREES):
            entries.pop(name, None)
    differences = [d for d in generated.differences
                   if not d.startswith(("flashinfer:", "torch:", "torchvision:", "torchaudio:", "xformers:"))]
    return Lock(entries=entries, path=lock.path, release_line=lock.release_line,
                other_lines=lock.other_lines), differences


def lock_for(release: str, local_vllm: Path | None = None, mirrors: Sequence[Path] = ()) -> tuple[Lock, list[str]]:
    """The lock a build uses: the release line's, with a local vLLM checkout's own side-tree pins."""
    lock = line_lock(release)
    return local_tree_lock(lock, local_vllm, mirrors) if local_vllm is not None else (lock, [])
