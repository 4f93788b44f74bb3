"""What a built wheel declares beyond its own METADATA: the CUDA libraries it links, and its recipe's pins.

Three sources, the first that names a distribution wins:

1. the toolchain's exact pins, when CUDA came from PyPI (what was built against);
2. what the recipe says the upstream wheel declares (torch: ``triton==3.5.1`` and
   PyTorch's own ``nvidia-*`` pins for that CUDA, from its release build's
   ``PYTORCH_EXTRA_INSTALL_REQUIREMENTS``);
3. the wheel's real DT_NEEDED entries (``libcublas.so.13`` -> ``nvidia-cublas>=13,<14``).

Markers are dropped: the wheel installs on its one platform only, and PyTorch's
``platform_machine == 'x86_64'`` would drop them on aarch64.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from . import names


def merge(toolchain_pins: Sequence[str], declared: Sequence[str], linked: Sequence[str]) -> list[str]:
    """One requirement per distribution, in the precedence above; declared order first."""
    pinned = {canonicalize_name(Requirement(p).name): p for p in toolchain_pins}
    out: dict[str, str] = {}
    for text in list(declared) + list(linked):
        requirement = Requirement(text)
        requirement.marker = None
        name = canonicalize_name(requirement.name)
        if name not in out:
            out[name] = pinned.get(name, str(requirement))
    return list(out.values())


def declared_requirements(wheel: Path, recipe, variant, toolchain) -> list[str]:
    """The Requires-Dist lines the pipeline adds to ``wheel`` (a wheel of ``recipe``)."""
    linked: list[str] = []
    pins: Sequence[str] = ()
    if toolchain is not None:
        from ..toolchains.runtime import needed_sonames, requirements_for

        pins = toolchain.requirements
        linked = requirements_for(needed_sonames(wheel), variant.cuda, pins)
    declared: Sequence[str] = ()
    if names.project(wheel.name) == canonicalize_name(recipe.distributions[0]):
        declared = recipe.runtime_requires(variant)
    return merge(pins, declared, linked)
