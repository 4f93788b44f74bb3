"""The component registry: every module in this folder (``base`` aside) is a component and defines ``RECIPE``.

Adding a component is its recipe module here plus its entries in
``third_party/sources.lock``; the settings, ``matrix``, ``plan``, the build
and the README's tables read the list from here.  Build order: a component
comes after everything it ``depends`` on; where that leaves a choice, the
lock's order decides (its first entry naming the component), then the name.
"""

from __future__ import annotations

import functools
import graphlib
import importlib
import pkgutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import BackendError, SettingError
from ..settings import SOURCE_OPTION_KEY, SOURCE_PREFIX, check_path_characters
from ..sources.lock import load
from .base import BuildContext, Recipe, pip_wheel

__all__ = ["BuildContext", "Recipe", "pip_wheel", "get", "all_recipes", "names", "build_order", "chosen", "local_trees"]


@functools.cache
def _module_names() -> tuple[str, ...]:
    return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__)
                        # base: what a recipe is, not a component
                        if not m.ispkg and m.name != "base" and not m.name.startswith("_")))


@functools.cache
def get(name: str) -> Recipe:
    if name not in _module_names():
        raise BackendError(f"no recipe for component {name!r}; components: {', '.join(_module_names())}")
    module = importlib.import_module(f"{__name__}.{name}")
    recipe = getattr(module, "RECIPE", None)
    if not isinstance(recipe, Recipe):
        raise BackendError(f"{module.__file__}: defines no RECIPE (an instance of a Recipe subclass); every module of backend/recipes/ "
                           "but base.py is a component")
    if recipe.name != name:
        raise BackendError(f"{module.__file__}: RECIPE.name is {recipe.name!r}; a recipe is named as its module")
    return recipe


@functools.cache
def names() -> tuple[str, ...]:
    """Every component, in build order."""
    return build_order({name: get(name) for name in _module_names()}, load().components)


def chosen(given: Sequence[str] | None, key: str = "components") -> tuple[str, ...]:
    """``-C components`` (None: all) in build order, or one line naming what no recipe defines."""
    if given is None:
        return names()
    if not given:
        raise SettingError(key, "", ("a comma list of " + " ".join(names()), "all"), why="names no component")
    if "all" in given:  # alone, settings reads it as None; in a list the check below would offer it back
        raise SettingError(key, ",".join(given), ("all", "a comma list of " + " ".join(names())),
                           why="'all' already names every component: give it alone")
    if unknown := [name for name in given if name not in names()]:
        raise SettingError(key, unknown[0], names() + ("all",))
    return tuple(c for c in names() if c in given)


def local_trees(given: Mapping[str, Path]) -> dict[str, Path]:
    """``-C source.<component>``: each a registered component's existing folder, resolved (an editable build
    compiles in place: its real path reaches the compilers too), or one line."""
    trees: dict[str, Path] = {}
    for component, path in given.items():
        key, shown = SOURCE_PREFIX + component, str(path)
        if component not in names():
            raise SettingError(SOURCE_OPTION_KEY, component, names())
        check_path_characters(key, shown)  # before resolving: a NUL stops the file system calls
        trees[component] = path.resolve()
        check_path_characters(key, str(trees[component]), shown)
        if not trees[component].is_dir():
            raise BackendError(f"setting '{key}': path {shown!r} does not exist or is not a folder; "
                               f"accepted: a local source tree of {component}")
    return trees


def all_recipes() -> list[Recipe]:
    return [get(name) for name in names()]


def build_order(recipes: Mapping[str, Recipe], preferred: Sequence[str] = ()) -> tuple[str, ...]:
    """The names of ``recipes``, each after its ``depends``; ties in the order of ``preferred``, then by name."""
    for recipe in recipes.values():
        for dep in recipe.depends:
            if dep not in recipes:
                raise BackendError(f"recipe {recipe.name!r} depends on {dep!r}, which has no recipe; "
                                   f"components: {', '.join(sorted(recipes))}")
    rank = {name: index for index, name in enumerate(preferred)}
    waiting = sorted(recipes, key=lambda name: (rank.get(name, len(rank)), name))
    # graphlib names a cycle from the first recipe in it (in waiting's order), following dependents: reversed,
    # each name is followed by one it depends on
    try:
        graphlib.TopologicalSorter({name: recipes[name].depends for name in waiting}).prepare()
    except graphlib.CycleError as cycle:
        raise BackendError(f"recipe dependency cycle: {' -> '.join(reversed(cycle.args[1]))}") from None
    ordered: list[str] = []
    while waiting:  # without a cycle, some waiting recipe always has all it depends on ordered
        ready = next(n for n in waiting if all(d in ordered for d in recipes[n].depends))
        ordered.append(ready)
        waiting.remove(ready)
    return tuple(ordered)
