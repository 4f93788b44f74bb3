"""The build key: what must be equal for a wheel in the wheelhouse to be reused."""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Mapping, Sequence

from ..recipes import Recipe

# Values that vary between runs without changing what gets built.
VOLATILE_ENV = frozenset({
    "PATH", "CCACHE_DIR", "SCCACHE_DIR", "CCACHE_BASEDIR", "SCCACHE_BASEDIRS", "CC", "CXX",
    "CMAKE_C_COMPILER_LAUNCHER", "CMAKE_CXX_COMPILER_LAUNCHER", "CMAKE_CUDA_COMPILER_LAUNCHER",
    "MAX_JOBS", "CMAKE_BUILD_PARALLEL_LEVEL", "NVCC_THREADS", "CCACHE_MAXSIZE", "CCACHE_NOHASHDIR",
    "CCACHE_COMPILERCHECK", "CCACHE_SLOPPINESS", "PIP_NO_INPUT", "SKBUILD_BUILD_DIR",
})


def recipe_fingerprint(recipe: Recipe) -> str:
    """The recipe's own code: a changed recipe rebuilds its component."""
    module = inspect.getmodule(recipe.environment)
    try:
        text = inspect.getsource(module) if module else repr(recipe)
    except (OSError, TypeError):
        text = repr(recipe)
    return hashlib.sha256(text.encode()).hexdigest()


def build_key(
    *,
    recipe: Recipe,
    source_key: str,
    env: Mapping[str, str],
    commands: Sequence[Sequence[str]],
    toolchain: str,
    dependency_keys: Mapping[str, str],
    torch_version: str,
    caller: Mapping[str, str] | None = None,
) -> str:
    """``caller``: the caller's variables the build sees that change what it makes (environment.CALLER_KEYED)."""
    payload = {
        "recipe": recipe_fingerprint(recipe),
        "source": source_key,
        "env": {k: v for k, v in sorted(env.items()) if k not in VOLATILE_ENV},
        # Commands name the interpreter and the wheel folder; those paths do not change what is built.
        "commands": [[part for part in command[1:] if not part.startswith("/")] for command in commands],
        "toolchain": toolchain,
        "dependencies": dict(sorted(dependency_keys.items())),
        "torch": torch_version,
        **({"caller": dict(sorted(caller.items()))} if caller else {}),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]
