"""``DEPLOY.md`` beside a wheelhouse: what a host needs before the stack is installed on it.

An operator reads this before installing on a fleet.  Everything in it comes from the manifest
(the driver record, each wheel's platform tags) and the plan (variant, components); the
first-use needs (compilers, headers) are the upstream projects' own behaviour:

* Triton compiles a small launcher module with the host C compiler and Python's headers
  the first time a kernel runs (``triton/runtime/build.py``: ``cc``/``gcc``/``clang``,
  ``Python.h`` from ``sysconfig``); torch.compile's Inductor does the same for its CPU
  kernels with a C++ compiler.
* flashinfer compiles any kernel outside its AOT set (``flashinfer-jit-cache``) with nvcc
  and ninja at the first call (``flashinfer/jit/core.py``), and downloads Blackwell cubins
  that ``flashinfer-cubin`` does not hold.

Triton's fixed ``cuda_utils`` module can ship prebuilt (``triton_cache.py``, written by the smoke
check); its per-signature launchers cannot, so the C compiler stays a first-use need either way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..verify import elf
from . import triton_cache
from .files import write_atomic
from .manylinux import highest
from .names import parse

DEPLOY = "DEPLOY.md"


def _manylinux(manifest: dict[str, Any]) -> str | None:
    """The newest glibc any wheel's platform tag asks for, as its tag (manylinux_2_34_x86_64)."""
    best: tuple[tuple[int, int], str] | None = None
    for name in manifest.get("wheels", {}):
        for tag in parse(name).platform_tags:
            if tag.startswith("manylinux_"):
                major, minor = tag.split("_")[1:3]
                key = (int(major), int(minor))
                if best is None or key > best[0]:
                    best = (key, tag)
    return best[1] if best else None


def _prebuilt_line(modules: list[Path]) -> str:
    glibc = max((highest(elf.read_object(m, gpu=False).versions).get("GLIBC", "") for m in modules),
                key=lambda v: tuple(int(n) for n in v.split(".") if n.isdigit()))
    return (f"- **Triton's `cuda_utils` ships prebuilt** in `{triton_cache.FOLDER}/` (built from Triton's own "
            "`driver.c` by the Triton and Python installed here; it needs glibc "
            f"{glibc or 'any'} and the driver's `libcuda.so.1`). Copy it into the Triton cache of each user that "
            f"runs the stack before the first kernel: `mkdir -p ~/.triton/cache && cp -r {triton_cache.FOLDER}/. "
            "~/.triton/cache/` (or into `$TRITON_CACHE_DIR`); Triton then loads it instead of compiling it. "
            f"It holds {len(modules)} cache key(s): Triton's key holds `platform.architecture()`, which differs "
            "on hosts with and without the `file` command. Each kernel's launcher (one per argument signature) "
            "is still compiled at that kernel's first call, so the C compiler and headers above stay needed.")


def text(variant, components: list[str], manifest: dict[str, Any], python: str, pinned: bool,
         prebuilt: list[Path] = ()) -> str:
    driver = manifest.get("driver") or {}
    lines = [f"# Deploying {variant.name}", "",
             "What a host needs before `pip install --no-index --find-links` of this folder:", "",
             f"- **GPU**: compute capability {variant.target.capability} ({variant.target.cubin}); the wheels hold code for that GPU only.",
             f"- **NVIDIA driver {driver.get('minimum', 'unknown')} or newer**"
             + "".join(f"\n  - {reason}" for reason in driver.get("reasons", []))
             + "\n  - `python -m backend detect --driver VERSION` tells which CUDA release a driver runs.",
             f"- **CPU**: {variant.isa} ({variant.platform}); the compiled CPU code uses its instructions.",
             f"- **Python {python}**."]
    glibc = _manylinux(manifest)
    if glibc:
        lines.append(f"- **glibc**: the wheels are tagged up to `{glibc}`; pip refuses them on an older glibc.")
    lines += ["", "## At first use, not at install", "",
              "- **A C compiler and Python's headers** (`gcc`, `python3-dev` or the same from your distribution): "
              "Triton builds a small launcher with them the first time a GPU kernel runs, and torch.compile "
              "needs a C++ compiler for its CPU kernels. Without them the first kernel fails, not the install."]
    if prebuilt:
        lines.append(_prebuilt_line(list(prebuilt)))
    if "flashinfer" in components:
        lines.append("- **flashinfer**: kernels outside its ahead-of-time set (`flashinfer-jit-cache`) are compiled "
                     "at their first call with nvcc and ninja; a host without them fails at that call. "
                     "The set built here is listed in the build's plan (`-C flashinfer-aot-config`).")
    lines += ["", "Every wheel is listed, with its sha256, in `manifest.json`"
              + (" and, with the runtime dependencies, in `requirements.txt`" if pinned else "")
              + "; `sha256sum -c SHA256SUMS` checks the folder.", ""]
    return "\n".join(lines)


def write(wheelhouse: Path, variant, components: list[str], manifest: dict[str, Any], python: str) -> Path:
    path = wheelhouse / DEPLOY
    lock = wheelhouse / "requirements.txt"
    # Hash-pinned only when the runtime dependencies are bundled (closure.write_built_requirements has no hashes).
    pinned = lock.is_file() and "--hash=sha256:" in lock.read_text()
    data = text(variant, components, manifest, python, pinned, triton_cache.shipped(wheelhouse)).encode("utf-8")
    if not (path.is_file() and not path.is_symlink() and path.read_bytes() == data):  # unchanged: left alone
        write_atomic(path, data)
    return path
