"""What a wheel of the stack must require of the other members: their exact versions in this wheelhouse.

Every ``Requires-Dist`` on a distribution of the stack (torch, torchvision,
flashinfer-python ...) is pinned to the version this variant's wheelhouse
holds, so pip cannot mix in a PyPI build of a member.  A recipe also names
members its wheel requires that a patch removed (vLLM's unpin patch drops
torchvision and torchaudio with torch); they are added back, pinned.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from packaging.utils import canonicalize_name

from .. import recipes
from ..wheels import names as wheel_names


def stack_pins(plan, wheels: Iterable[Path]) -> dict[str, str]:
    """Canonical name -> exact version of every stack member: the plan's steps, then what the wheelhouse holds."""
    members = {canonicalize_name(d) for recipe in recipes.all_recipes() for d in recipe.distributions}
    pins: dict[str, str] = {}
    for step in plan.steps:
        for dist in step.recipe.distributions:
            pins[canonicalize_name(dist)] = step.version
    for wheel in wheels:  # the wheelhouse's runtime wheels (triton, nvidia-*) keep their own requirements
        parsed = wheel_names.parse(Path(wheel).name)
        if parsed.project in members:
            pins[parsed.project] = str(parsed.version)
    pins["torch"] = plan.torch_version
    return pins


def restored_requirements(stack_requires: Iterable[str], pins: dict[str, str]) -> list[str]:
    """The recipe's required members, pinned where the wheelhouse has them, else as upstream names them (any version)."""
    out = []
    for dist in stack_requires:
        version = pins.get(canonicalize_name(dist))
        out.append(f"{dist}=={version}" if version else dist)
    return out
