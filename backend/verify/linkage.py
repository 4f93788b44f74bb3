"""Linking and ABI: who provides each DT_NEEDED library, and torch's symbols.

A needed library is satisfied, in this order: by a file of the same wheel; by
a file of another wheel of the wheelhouse; by a requirement the wheelhouse
declares (the ``nvidia-*`` wheels); by the libraries the toolchain declares
(``Expectation.extra_allowed_libraries``); by the system allowlist (glibc,
the GCC runtime, the driver's libcuda.so.1 and libnvidia-ml.so.1).  Names are
matched as sonames, as the dynamic loader does; patterns use fnmatch.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

SYSTEM_LIBRARIES = (
    # glibc
    "libc.so.6", "libm.so.6", "libdl.so.2", "librt.so.1", "libpthread.so.0", "libutil.so.1",
    "libresolv.so.2", "libnsl.so.1", "libanl.so.1", "libcrypt.so.1", "libmvec.so.1",
    "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1", "linux-vdso.so.1",
    # GCC runtime (torch from source links the system's libgomp)
    "libstdc++.so.6", "libgcc_s.so.1", "libgomp.so.1", "libatomic.so.1",
    # the NVIDIA driver
    "libcuda.so.1", "libnvidia-ml.so.1",
    # zlib (in every manylinux policy)
    "libz.so.1",
)

from ..toolchains.runtime import REQUIREMENT_LIBRARIES  # noqa: E402  (one table for both)

TORCH_LIBRARY = re.compile(r"^lib(torch|c10)[\w.-]*\.so")
# Mangled names of torch's namespaces (at, c10, torch, caffe2) and its C entry points.
_TORCH_MANGLED = re.compile(
    r"^_Z(?:T[VITSH]|GV|ZN)?(?:N[KVrRO]*)?(?:St)?(?:2at|3c10|5torch|6caffe2)"
    r"|^_Z\d+THP|^THP|^aoti_torch_|^torch_"
)


def requirement_library_patterns(requirements: Iterable[Requirement]) -> list[str]:
    patterns: list[str] = []
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        for prefix, sonames in REQUIREMENT_LIBRARIES.items():
            if name == prefix or name.startswith(prefix + "-"):
                patterns.extend(sonames)
    return patterns


def matches(soname: str, patterns: Iterable[str]) -> bool:
    return any(soname == p or fnmatch.fnmatchcase(soname, p) for p in patterns)


def provider(
    soname: str,
    inside: set[str],
    wheelhouse: dict[str, str],
    requirement_patterns: Iterable[str],
    extra: Iterable[str],
) -> str | None:
    """Where a needed library comes from, or None when nobody provides it."""
    if soname in inside:
        return "wheel"
    if soname in wheelhouse:
        return wheelhouse[soname]
    if matches(soname, requirement_patterns):
        return "requirement"
    if matches(soname, extra):
        return "toolchain"
    if matches(soname, SYSTEM_LIBRARIES):
        return "system"
    return None


def is_torch_library(soname: str) -> bool:
    return bool(TORCH_LIBRARY.match(soname))


def is_torch_symbol(name: str) -> bool:
    return bool(_TORCH_MANGLED.match(name))


def missing_torch_symbols(undefined: Iterable[str], torch_exports: set[str], own_exports: set[str]) -> list[str]:
    """Symbols an object expects from torch that neither torch nor its own wheel exports."""
    return sorted(
        name for name in undefined
        if is_torch_symbol(name) and name not in torch_exports and name not in own_exports
    )


def demangle(names: list[str]) -> list[str]:
    """C++ names for a message, through c++filt when it is there."""
    import shutil
    import subprocess

    tool = shutil.which("c++filt")
    if not tool or not names:
        return names
    try:
        result = subprocess.run([tool], input="\n".join(names), capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return names
    lines = result.stdout.splitlines()
    return lines if len(lines) == len(names) else names
