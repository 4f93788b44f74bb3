"""``python -m backend clean``: remove a variant's build trees and build environment (or every variant's).

Downloads stay unless ``--downloads`` is given (they are what an offline
build needs), the CUDA toolchains unless ``--toolchains`` is given (the PyPI
install roots and every symlink farm under ``<cache>/toolchains``, with the
Nix garbage-collector roots inside the farms: the Nix store itself is never
touched, ``nix-collect-garbage`` then frees its paths); the compiler cache and
the wheelhouses are never touched.

Nothing is removed from a folder that is not a cache the backend created (its marker,
``backend/cache_marker.py``): ``-C cache-dir=~`` is refused in one line. A link where
a cache folder should be is removed as a link, never followed.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable

from .. import cache_marker, project
from ..settings import Settings
from .disk import tree_bytes
from .layout import CacheLayout, cache_dir


def clean(settings: Settings, *, everything: bool, downloads: bool, toolchains: bool,
          say: Callable[[str], None] = print) -> int:
    """Remove every variant's trees and venvs, or the settings' variant's; downloads and CUDA toolchains on
    request."""
    layout = CacheLayout(cache_dir(settings)) if everything else project.make_plan(settings).layout
    found = [layout.work, layout.envs] if everything else [layout.variant_dir, layout.env_dir]
    found += ([layout.downloads] if downloads else []) + ([layout.toolchains] if toolchains else [])
    if layout.cache.is_dir():
        cache_marker.require_owned(layout.cache, "clean")  # before anything is deleted
    freed = 0
    for path in found:
        if path.is_symlink():
            path.unlink()
            say(f"{path}: a link, removed (what it points to is kept)")
            continue
        if not path.exists():
            say(f"{path}: not there")
            continue
        size = tree_bytes(path, skip=())
        shutil.rmtree(path)
        freed += size
        say(f"{path}: removed ({size / 1e9:.2f} GB)")
    kept = "" if downloads else "; downloads kept (--downloads removes them)"
    kept += ("; toolchain farms and their Nix GC roots removed: nix-collect-garbage frees the Nix store paths"
             if toolchains else "; CUDA toolchains kept (--toolchains removes them)")
    say(f"freed {freed / 1e9:.2f} GB{kept}")
    return 0
