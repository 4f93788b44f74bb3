"""``toolchain=auto`` and the dispatch to one provider."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import BackendError, SettingError
from ..settings import DEFAULT_NIXPKGS, TOOLCHAINS
from . import nix, pypi, system
from .base import Toolchain


def resolve(cuda: str, provider: str = "auto", *, cache_dir: Path, nixpkgs: str, offline: bool = False,
            libraries: Sequence[str] | None = None) -> Toolchain:
    """The toolkit for CUDA ``cuda`` (major.minor) from ``provider``.

    ``libraries`` names the CUDA libraries the build links beyond the compiler
    (None: all a stack build links); the PyPI provider installs only their
    wheels (``pypi.LIBRARIES``), the Nix provider realises only their
    attributes (``nix.LIBRARIES``).  The system provider fetches nothing: it
    takes the installed toolkit as it is.
    """
    cache_dir = Path(cache_dir)
    if provider == "system":
        return system.resolve(cuda)
    if provider == "nix":
        return nix.resolve(cuda, cache_dir=cache_dir, nixpkgs=nixpkgs, offline=offline, libraries=libraries)
    if provider == "pypi":
        return pypi.resolve(cuda, cache_dir=cache_dir, offline=offline, libraries=libraries)
    if provider != "auto":
        raise SettingError("toolchain", provider, TOOLCHAINS)

    tried: list[str] = []
    try:
        return system.resolve(cuda)
    except BackendError as error:
        tried.append(f"[system] {_short(error)}")
    if nix.find_nix() is not None:
        try:
            return nix.resolve(cuda, cache_dir=cache_dir, nixpkgs=nixpkgs, offline=offline, libraries=libraries)
        except BackendError as error:
            tried.append(f"[nix] {_short(error)}")
    else:
        tried.append("[nix] nix is not on PATH")
    if cuda.startswith("12."):
        tried.append(f"[pypi] CUDA {cuda} has no nvcc on PyPI (only 13.x)")
    else:
        try:
            return pypi.resolve(cuda, cache_dir=cache_dir, offline=offline, libraries=libraries)
        except BackendError as error:
            tried.append(f"[pypi] {_short(error)}")
    raise BackendError(
        f"toolchain 'auto': no CUDA {cuda} toolkit found; tried {' '.join(tried)}; "
        f"install CUDA {cuda} (CUDA_HOME), install Nix (CUDA 12.8/12.9 from nixpkgs), or use cuda=13.0 "
        f"(from PyPI)"
    )


def _short(error: BackendError) -> str:
    """A provider's error without its own ways-out tail (auto lists them once)."""
    text = str(error)
    for marker in ("; ways out:", " (ways out:"):
        if marker in text:
            text = text.split(marker)[0]
    return text.rstrip(";").rstrip() + ";"


def build_requirements(cuda: str, provider: str) -> list[str]:
    """What the frontend installs into the build environment for this provider.

    The PyPI provider installs the CUDA wheels with pip into the cache (not into
    the build environment), so it needs pip there (uv's build environments have
    none).  The others need nothing from PyPI.
    """
    if provider == "pypi" or (provider == "auto" and not cuda.startswith("12.")):
        return ["pip"]
    return []


def incomplete(toolchain: Toolchain) -> str | None:
    """Why a toolkit cannot build the stack although it has nvcc (no cuBLAS), or None: one judgement, said
    the same way by detect, toolchain and the build."""
    if any(name.startswith("libcublas.so") for name in toolchain.runtime_libraries):
        return None
    return f"the CUDA {toolchain.version} toolkit at {toolchain.cuda_home} has nvcc but no cuBLAS"


def incomplete_note(toolchain: Toolchain) -> str | None:
    """``incomplete`` with its consequence and the way out, for toolchain and the build."""
    why = incomplete(toolchain)
    if why is None:
        return None
    return (f"{why}; components that link CUDA libraries (torch, bitsandbytes, vLLM) will fail to configure: "
            "install a complete toolkit" + ("" if toolchain.cuda.startswith("12.") else ", or use -C toolchain=pypi"))


def available(cuda: str, environ: Mapping[str, str] | None = None,
              nixpkgs: str = DEFAULT_NIXPKGS) -> tuple[str | None, str]:
    """(provider, why) that could give CUDA ``cuda`` on this machine, without downloading anything.

    A system toolkit counts only when it is complete (``incomplete``); Nix
    counts for 12.x when ``nix`` is on PATH and ``nixpkgs`` can be had
    (``nix.nixpkgs_unreachable``); PyPI always counts for 13.x.  ``why`` says
    what was found or missing, the toolkits passed over included.
    """
    try:
        toolkit = system.resolve(cuda, environ)
    except BackendError:
        toolkit = None
    if toolkit is not None and incomplete(toolkit) is None:
        return "system", f"CUDA {toolkit.version} at {toolkit.cuda_home}"
    passed_over = f"{incomplete(toolkit)}; " if toolkit else ""
    if cuda.startswith("12."):
        found = nix.find_nix(environ)
        if found is None:
            return None, f"{passed_over or f'no CUDA {cuda} toolkit installed; '}no nix on PATH"
        unreachable = nix.nixpkgs_unreachable(found, nixpkgs, environ)
        if unreachable:
            return None, f"{passed_over or f'no CUDA {cuda} toolkit installed; '}nix on PATH, but {unreachable}"
        return "nix", f"{passed_over}CUDA {cuda} from nixpkgs (nix on PATH)"
    return "pypi", f"{passed_over}CUDA {cuda} from PyPI"
