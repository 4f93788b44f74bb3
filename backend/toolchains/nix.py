"""``toolchain=nix``: CUDA from nixpkgs' ``cudaPackages_X_Y``, as the seed did.

Realises the toolkit (``cudatoolkit``: nvcc plus cuBLAS, cuSPARSE, cuFFT,
cuRAND, cuSOLVER, NVRTC, CUPTI, NVTX, nvJitLink) and only those further
libraries the build links (``libraries``, in the PyPI provider's names; see
``LIBRARIES``): a bitsandbytes build realises no cuDNN, NCCL or cuSPARSELt, a
torch build (``libraries=None``) realises all three.  They come from the flake
reference ``-C nixpkgs=`` (default: the seed's nixpkgs revision); every output
of those derivations is joined into one CUDA_HOME: a symlink farm under the
cache folder (``farm.py``), named by a hash of the store paths it joins (so a farm without
cuDNN is never the one a build that needs cuDNN gets), which holds its store
paths as garbage-collector roots (``add_gc_roots``).

Works with Debian's Nix 2.8 and newer Nix: ``nix build --no-link --json``
(2.8 has no ``--print-out-paths``), flakes enabled per command with
``--extra-experimental-features``, CUDA's unfree licence accepted with
``NIXPKGS_ALLOW_UNFREE=1`` plus ``--impure``.  A flake attribute builds only
its default output, so each derivation is built again by its ``.drv`` path
for all its outputs (headers live in ``dev``, libraries in ``lib``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import BackendError
from .base import Toolchain, check_toolkit, run_tool, runtime_sonames
from .farm import farm, link

NAME = "nix"
FEATURES = ["--extra-experimental-features", "nix-command flakes"]
# Package-set attributes, each as its alternatives (names moved between nixpkgs revisions; first present wins).
TOOLKIT = ("cudatoolkit",)
# CUDA library (the PyPI provider's name, as recipes declare it) -> the attribute that carries it;
# () where nixpkgs' cudatoolkit (its redist-wrapper.nix symlinkJoin) already holds it.
LIBRARIES: dict[str, tuple[str, ...]] = {
    "cudart": (), "nvrtc": (), "cupti": (), "nvtx": (), "nvjitlink": (),
    "cublas": (), "cufft": (), "curand": (), "cusolver": (), "cusparse": (),
    "cufile": ("libcufile",),
    "cudnn": ("cudnn",),
    "nccl": ("nccl",),
    "cusparselt": ("libcusparse_lt", "cusparselt"),
    "nvshmem": ("libnvshmem",),
    "nvjpeg": ("libnvjpeg",),
}
# What a build that links every library (libraries=None: torch) gets: the seed's set. cuFile and NVSHMEM
# stay out as the seed left them (flashinfer installs the NVSHMEM wheel into its build environment).
EVERY_LIBRARY = ("cudnn", "nccl", "cusparselt")


def ways_out(cuda: str) -> str:
    return (
        f"ways out: -C nixpkgs=<flake ref> (a mirror or local checkout of nixpkgs), "
        f"-C toolchain=system with an installed CUDA {cuda}, or -C toolchain=pypi with -C cuda=13.0"
    )


def attribute_set(cuda: str) -> str:
    return "cudaPackages_" + cuda.replace(".", "_")


def find_nix(environ: Mapping[str, str] | None = None) -> str | None:
    environ = os.environ if environ is None else environ
    return shutil.which("nix", path=environ.get("PATH"))


def _endpoint(nixpkgs: str) -> tuple[str, int] | None:
    """The (host, port) a flake reference is fetched from; None for a local one (path:, /dir)."""
    kind, _, rest = nixpkgs.partition(":")
    if kind in ("github", "gitlab", "sourcehut"):
        return {"github": "github.com", "gitlab": "gitlab.com", "sourcehut": "git.sr.ht"}[kind], 443
    if kind in ("path", "git+file", "file") or nixpkgs.startswith("/"):
        return None
    parsed = urlsplit(nixpkgs.split("+", 1)[1] if "+" in kind else nixpkgs)
    if parsed.hostname is None:
        return None
    return parsed.hostname, parsed.port or (80 if parsed.scheme in ("http", "git") else 443)


def nixpkgs_unreachable(nix: str, nixpkgs: str, environ: Mapping[str, str] | None = None,
                        timeout: float = 3.0) -> str | None:
    """Why ``nixpkgs`` cannot be had here, or None: a local tree that exists, a flake Nix already has
    (``nix flake metadata --offline``), or a host that accepts a connection.  Nothing is downloaded."""
    endpoint = _endpoint(nixpkgs)
    if endpoint is None:
        # os.path leaves an unknown ~user as written, where Path.expanduser raises
        local = Path(os.path.expanduser(nixpkgs.split(":", 1)[1] if ":" in nixpkgs else nixpkgs))
        return None if local.exists() else f"nixpkgs {nixpkgs}: {local} does not exist"
    try:
        socket.create_connection(endpoint, timeout=timeout).close()
        return None
    except OSError as error:
        reason = error.strerror or str(error) or type(error).__name__
    env = dict(os.environ if environ is None else environ)
    try:
        cached = subprocess.run([nix, "flake", "metadata", *FEATURES, "--offline", "--json", nixpkgs],
                                capture_output=True, text=True, env=env, timeout=30)
        if cached.returncode == 0:
            return None
    except (OSError, subprocess.TimeoutExpired):
        pass
    return (f"nixpkgs {nixpkgs} is neither in the Nix store nor reachable ({endpoint[0]}:{endpoint[1]}: {reason}); "
            "-C nixpkgs= names a mirror or a local checkout")


def nix_version(nix: str) -> tuple[int, ...]:
    result = run_tool([nix, "--version"], what="toolchain 'nix': reading the Nix version", timeout=60)
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", result.stdout)
    return tuple(int(g) for g in match.groups() if g is not None) if match else (0,)


def _options(offline: bool) -> list[str]:
    options = [*FEATURES, "--impure"]
    if offline:
        options += ["--offline", "--option", "substituters", ""]
    return options


def packages_for(libraries: Sequence[str] | None) -> list[tuple[str, ...]]:
    """The attributes (each as its alternatives) to realise for these libraries; None: every library."""
    names = EVERY_LIBRARY if libraries is None else libraries
    unknown = [n for n in names if n not in LIBRARIES]
    if unknown:
        raise BackendError(
            f"toolchain 'nix': unknown CUDA library {unknown[0]!r}; accepted: {', '.join(LIBRARIES)}"
        )
    # In the table's order, whatever order they were asked in: the same set joins into the same farm.
    return list(dict.fromkeys([TOOLKIT, *(LIBRARIES[n] for n in LIBRARIES if n in names and LIBRARIES[n])]))


def resolve(cuda: str, *, cache_dir: Path, nixpkgs: str, offline: bool = False,
            environ: Mapping[str, str] | None = None, libraries: Sequence[str] | None = None) -> Toolchain:
    """The toolkit plus the attributes ``libraries`` need (None: every library torch links)."""
    packages = packages_for(libraries)
    environ = dict(os.environ if environ is None else environ)
    nix = find_nix(environ)
    if nix is None:
        raise BackendError(
            "toolchain 'nix': nix is not installed (no nix on PATH); install Nix (Debian: apt-get install nix-bin; "
            f"elsewhere https://nixos.org/download), or {ways_out(cuda).removeprefix('ways out: ')}"
        )
    environ["NIXPKGS_ALLOW_UNFREE"] = "1"
    pset = attribute_set(cuda)
    options = _options(offline)

    # Which of the wanted attributes this package set has (names moved between nixpkgs revisions).
    names = sorted({n for alternatives in packages for n in alternatives})
    apply = "p: builtins.filter (n: builtins.hasAttr n p) [ " + " ".join(json.dumps(n) for n in names) + " ]"
    result = _run([nix, "eval", *options, "--json", f"{nixpkgs}#{pset}", "--apply", apply],
                  what=f"toolchain 'nix': evaluating {pset} from {nixpkgs} failed", cuda=cuda, env=environ)
    try:
        present = set(json.loads(result.stdout))
    except ValueError:
        raise BackendError(f"toolchain 'nix': nix eval printed no JSON list for {pset} from {nixpkgs}") from None
    attributes = []
    for alternatives in packages:
        found = [n for n in alternatives if n in present]
        if not found:
            raise BackendError(
                f"toolchain 'nix': {nixpkgs}#{pset} has no {' or '.join(alternatives)}; {ways_out(cuda)}"
            )
        attributes.append(found[0])

    installables = [f"{nixpkgs}#{pset}.{a}" for a in attributes]
    built = _build(nix, options, installables, environ, cuda=cuda,
                   what=f"toolchain 'nix': nix build of {pset}.{{{','.join(attributes)}}} from {nixpkgs} failed")
    # Every output of each derivation (a flake attribute builds only the default one).
    drvs = [entry["drvPath"] for entry in built if entry.get("drvPath")]
    all_outputs = "^*" if nix_version(nix) >= (2, 13) else ""
    if drvs:
        built = _build(nix, options, [d + all_outputs for d in drvs], environ, cuda=cuda,
                       what=f"toolchain 'nix': building every output of {pset} failed")
    paths = _store_paths(built, order=drvs)
    home = farm(Path(cache_dir) / "toolchains", f"nix-cu{cuda.replace('.', '')}", [str(p) for p in paths],
                lambda folder: _join_all(paths, folder), needs=paths)
    add_gc_roots(nix, home, paths, environ)
    nvcc, version = check_toolkit(home, cuda, provider=NAME,
                                  origin=f"the toolkit realised from {nixpkgs}#{pset} at", ways_out=ways_out(cuda))
    return Toolchain(provider=NAME, cuda=cuda, version=version, cuda_home=home, nvcc=nvcc,
                     runtime_libraries=runtime_sonames(home), requirements=())


def gc_roots(home: Path) -> Path:
    return home / ".gcroots"


def add_gc_roots(nix: str, home: Path, paths: Sequence[Path], environ: Mapping[str, str]) -> None:
    """Keep the farm's store paths alive as long as the farm: indirect GC roots inside it.

    ``nix build --no-link`` leaves no root, so ``nix-collect-garbage`` could delete a toolkit a farm
    (or a build running with it) points into.  ``nix-store --add-root <farm>/.gcroots/root --realise
    PATH...`` (Nix 2.8 and newer; roots outside the store's gcroots folder are indirect, linked from
    ``/nix/var/nix/gcroots/auto``) makes ``root``, ``root-2`` ... in the farm: removing the farm
    (``python -m backend clean --toolchains``) releases them, and the next ``nix-collect-garbage``
    deletes the store paths.  Run on every resolve, also of a reused farm (one call, no build).
    """
    nix_store = shutil.which("nix-store", path=environ.get("PATH")) or str(Path(nix).with_name("nix-store"))
    folder = gc_roots(home)
    folder.mkdir(exist_ok=True)
    run_tool([nix_store, "--add-root", str(folder / "root"), "--realise", *map(str, paths)],
             what=f"toolchain 'nix': registering the store paths of {home} as garbage-collector roots failed",
             env=dict(environ), timeout=600)


def _run(argv: list[str], *, what: str, cuda: str, env: dict[str, str]):
    try:
        return run_tool(argv, what=what, env=env)
    except BackendError as error:
        raise BackendError(f"{error}; {ways_out(cuda)}") from None


def _build(nix: str, options: list[str], installables: list[str], environ: dict[str, str], *,
           what: str, cuda: str) -> list[dict]:
    result = _run([nix, "build", *options, "--no-link", "--json", *installables], what=what, cuda=cuda, env=environ)
    try:
        data = json.loads(result.stdout)
    except ValueError:
        raise BackendError(f"{what}: nix build printed no JSON") from None
    if not isinstance(data, list):
        raise BackendError(f"{what}: nix build printed unexpected JSON")
    return data


def _store_paths(built: list[dict], order: list[str]) -> list[Path]:
    """Output paths, derivation by derivation in the order asked for, 'out' first."""
    rank = {d: i for i, d in enumerate(order)}
    paths: list[Path] = []
    for entry in sorted(built, key=lambda e: rank.get(e.get("drvPath", ""), len(rank))):
        outputs = entry.get("outputs") or {}
        for name in sorted(outputs, key=lambda n: (n != "out", n)):
            path = Path(outputs[name])
            if path not in paths:
                paths.append(path)
    if not paths:
        raise BackendError("toolchain 'nix': nix build reported no output paths")
    return paths


def _join_all(paths: list[Path], target: Path) -> None:
    for store_path in paths:
        _join(store_path, target)


def _join(source: Path, target: Path) -> None:
    if not source.is_dir():
        return
    for folder, dirs, files in os.walk(source, followlinks=True):
        relative = Path(folder).relative_to(source)
        if relative.parts[:1] == ("nix-support",):
            dirs[:] = []
            continue
        (target / relative).mkdir(parents=True, exist_ok=True)
        for name in list(dirs):
            # Keep in-package folder links (lib64 -> lib) as links rather than copies.
            path = Path(folder) / name
            if path.is_symlink() and not os.path.isabs(os.readlink(path)):
                inside = Path(os.path.realpath(path))
                if inside.is_relative_to(os.path.realpath(source)):
                    dirs.remove(name)
                    link(target / relative / name, os.readlink(path))
        for name in files:
            link(target / relative / name, Path(folder) / name)
