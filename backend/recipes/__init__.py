"""One module per component; each defines ``RECIPE``."""

from __future__ import annotations

import importlib

from ..settings import COMPONENTS
from .base import BuildContext, Recipe, pip_wheel

__all__ = ["BuildContext", "Recipe", "pip_wheel", "get", "all_recipes"]


def get(name: str) -> Recipe:
    module = importlib.import_module(f"{__name__}.{name}")
    recipe = module.RECIPE
    assert recipe.name == name, (name, recipe.name)
    return recipe


def all_recipes() -> list[Recipe]:
    return [get(name) for name in COMPONENTS]
