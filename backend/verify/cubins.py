"""Kernels that load their cubins at run time: is each one's cubin folder in a wheel of the wheelhouse?

flashinfer's trtllm-gen kernels (FMHA, batched GEMM, GEMM) and its cuDNN SDPA
kernels are compiled with the artifact folder of their cubins as a string
(``-DTLLM_GEN_FMHA_CUBIN_PATH="75d477a6.../fmha/trtllm-gen/"``,
flashinfer/jit/attention/modules.py:1793 at v0.6.1; jit/fused_moe.py:261,
jit/gemm/core.py:432, jit/attention/modules.py:1897).  At the first call they
ask ``get_cubin()`` (flashinfer/jit/cubin_loader.py:192-211) for
``<folder>/<kernel>.cubin``: from the installed ``flashinfer_cubin`` package
(flashinfer/jit/env.py:59-91), else downloaded from NVIDIA's artifact server.
So a module whose object names such a folder works offline only when some
wheel of the wheelhouse holds ``cubins/<folder>/checksums.txt``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# A commit-addressed artifact folder as flashinfer's artifacts.py:90-99 spells them, NUL-terminated in .rodata.
# Matched from its first '/' looking back at the 40 hex digits: the search then skips along '/' bytes, 30 times
# faster over a gigabyte of code and fatbins than trying each hex digit as the start.
_FOLDER = re.compile(rb"/(?<=[0-9a-f]{40}/)[A-Za-z0-9._/-]{1,200}\x00")
# Where a wheel holds a folder's cubins (flashinfer-cubin: flashinfer_cubin/cubins/<folder>/checksums.txt).
_CHECKSUMS = re.compile(r"/cubins/(.+)/checksums\.txt$")
# Folders that flashinfer-cubin 0.6.1 does not package (its build downloads only artifacts.py:149-154's four):
# the cuDNN SDPA cubins (artifacts.py:97) of the opt-in cudnn backend. No PyPI wheel has them: reported, not
# refused, and the plan says so (backend/recipes/flashinfer.py notes).
UNPACKAGED = {"a72d85b019dc125b9f711300cb989430f762f5a6/fmha/cudnn": "flashinfer's cuDNN SDPA cubins (backend='cudnn')"}


def folders_named(data) -> set[str]:
    """The artifact folders an object's bytes name (trailing '/' dropped)."""
    return {bytes(data[m.start() - 40:m.end() - 1]).decode().rstrip("/") for m in _FOLDER.finditer(data)}


def sources(named: set[str], wheels: Sequence) -> dict[str, str | None]:
    """For each folder the wheel's kernels load cubins from: the wheel that serves it (the first holding
    ``cubins/<folder>/checksums.txt``), or None (a download).  ``wheels``: their names as read for the
    metadata checks (``metadata.WheelInfo``: ``path`` and ``members``), so no wheel is opened again."""
    # reversed: the first wheel holding a folder wins
    served = {match[1]: wheel.path.name for wheel in reversed(wheels)
              for match in filter(None, map(_CHECKSUMS.search, wheel.members))}
    return {folder: served.get(folder) for folder in sorted(named)}
