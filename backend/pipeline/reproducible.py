"""What makes a component's build independent of when and in which folder it runs (docs/WHEELS.md).

- ``SOURCE_DATE_EPOCH`` for every step (the plan's environment): setuptools'
  and scikit-build-core's wheel writers take member times from it, GCC takes
  ``__DATE__``/``__TIME__`` from it.  The user's own value is kept (and so
  recorded in the plan and the build key), else a fixed one.
- The build's folders (the cache, the variant's build venv, the variant's
  trees) mapped to fixed names in every path a compiler writes: GCC reads
  ``-ffile-prefix-map`` from the specs file that already carries
  ``-frecord-gcc-switches`` (``compiler_cache.CompilerCache.flags``), so the
  maps, which hold this machine's paths, never reach CFLAGS (torch records
  CXX_FLAGS in its binaries) nor a compiler cache's key; nvcc's host
  compiles get them through ``NVCC_APPEND_FLAGS``; nvcc's own path-derived
  names through ``nvcc_launcher.py`` (CMake's CUDA launcher, ``PYTORCH_NVCC``).
- What nvcc leaves that no flag reaches (its ``tmpxft_<pid>_...`` temporary
  names) is removed from the finished wheel (``wheels/reproducible.py``).
"""

from __future__ import annotations

import functools
import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import BackendError
from . import nvcc_launcher

# 1980-01-01T00:00:00Z: the earliest time a zip member can carry.
DEFAULT_SOURCE_DATE_EPOCH = 315532800
LAUNCHER = Path(nvcc_launcher.__file__).resolve()
# What the build's folders are called in the objects: the longest (most specific) folder is mapped last.
FIXED_NAMES = ("/vllm-stack/cache", "/vllm-stack/env", "/vllm-stack/work")
# The folder every nvcc works in, as nvcc sees it (nvcc_launcher.py): an empty mount point, shared by all.
# /tmp itself, not $TMPDIR: its name goes into nvcc's module ids, so it must be the same in every build.
NVCC_FOLDER = "/tmp/vllm-stack-nvcc-folder"


def source_date_epoch(environ: Mapping[str, str] | None = None) -> str:
    """The user's ``SOURCE_DATE_EPOCH`` when set, else the fixed default; one line when it is not a time."""
    environ = os.environ if environ is None else environ
    value = environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not value:
        return str(DEFAULT_SOURCE_DATE_EPOCH)
    if not value.isdigit() or int(value) < DEFAULT_SOURCE_DATE_EPOCH:
        raise BackendError(f"environment variable 'SOURCE_DATE_EPOCH': bad value {value!r}; accepted: whole seconds "
                           f"since 1970 from {DEFAULT_SOURCE_DATE_EPOCH} (1980-01-01, the earliest zip time) on")
    return value


def prefix_maps(folders: Sequence[Path]) -> list[tuple[str, str]]:
    """``(folder, fixed name)`` for the cache, the build venv and the trees (``compiler_cache.base_dirs``,
    longest first), as GCC applies them: the last matching one wins.  A folder reached through a symlink
    is mapped by both names (nvcc's paths are real paths)."""
    pairs: list[tuple[str, str]] = []
    for folder, name in zip(reversed(list(folders)), FIXED_NAMES):
        for spelling in dict.fromkeys((str(folder), os.path.realpath(folder))):
            pairs.append((spelling, name))
    return pairs


def gcc_options(maps: Sequence[tuple[str, str]]) -> list[str]:
    return [f"-ffile-prefix-map={old}={new}" for old, new in maps]


@functools.cache
def nvcc_namespace() -> str:
    """``NVCC_FOLDER`` where nvcc can run in a namespace of its own (unprivileged user namespaces allowed,
    util-linux ``unshare`` and ``mount`` present: tried once), else ``""``."""
    os.makedirs(NVCC_FOLDER, exist_ok=True)
    os.makedirs(nvcc_launcher.temporary_folder(NVCC_FOLDER), exist_ok=True)
    probe = nvcc_launcher.in_namespace(["true"], os.getcwd(), NVCC_FOLDER)
    try:
        done = subprocess.run(probe, capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return NVCC_FOLDER if done.returncode == 0 else ""


def compile_env(env: Mapping[str, str], maps: Sequence[tuple[str, str]]) -> dict[str, str]:
    """nvcc's share of the maps and its launcher, over a step's final environment ``env``."""
    if not maps:
        return {}
    host = ",".join(gcc_options(maps))
    appended = " ".join(p for p in (env.get("NVCC_APPEND_FLAGS", ""), f"-Xcompiler={host}") if p)
    inner = [p for p in env.get("CMAKE_CUDA_COMPILER_LAUNCHER", "").split(";") if p]
    if len(inner) > 1:  # a list of the user's: the launcher runs one program before nvcc; keep theirs
        return {"NVCC_APPEND_FLAGS": appended}
    out = {
        "NVCC_APPEND_FLAGS": appended,
        nvcc_launcher.PREFIX_MAP_VARIABLE: nvcc_launcher.PREFIX_MAP_SEPARATOR.join(f"{o}={n}" for o, n in maps),
        nvcc_launcher.INNER_LAUNCHER_VARIABLE: inner[0] if inner else "",
        nvcc_launcher.NAMESPACE_VARIABLE: nvcc_namespace(),
        "CMAKE_CUDA_COMPILER_LAUNCHER": str(LAUNCHER),
    }
    nvcc = env.get("PYTORCH_NVCC") or env.get("CUDACXX")
    if nvcc:
        out["PYTORCH_NVCC"] = shlex.join([str(LAUNCHER), "--", *shlex.split(nvcc)])
    return out
