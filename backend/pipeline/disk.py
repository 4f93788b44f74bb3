"""Disk: is there room for the build before anything compiles, and what old build trees the cache holds.

The need is the recipes' ``disk_gb`` (build tree plus wheels at their
peak; torch's is the largest, the seed's whole variant takes about 30 GB) for
each planned component without a wheel in the wheelhouse yet; for a
``source.<component>`` tree, ten times the tree's size when that is less (a
stand-in or a trimmed checkout is no 30 GB torch).
``-C free-disk-gb=N`` sets the need by hand (0: no check).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from ..errors import BackendError

GB = 1e9


def _existing(path: Path) -> Path:
    path = Path(path).resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def needed_gb(plan) -> float:
    """The planned components' disk, less those whose wheels the wheelhouse already holds."""
    from ..wheels.wheelhouse import Wheelhouse

    if plan.settings.free_disk_gb is not None:
        return float(plan.settings.free_disk_gb)
    present = {entry.get("component") for entry in Wheelhouse(plan.layout.wheelhouse).manifest()["wheels"].values()}
    total = 0.0
    for step in plan.steps:
        if step.component in present:
            continue
        estimate = step.recipe.disk_gb
        local = plan.settings.sources.get(step.component)
        if local is not None:  # a local tree: its build takes about ten times its sources, up to the real one's
            estimate = min(estimate, LOCAL_TREE_FACTOR * tree_bytes(Path(local)) / GB)
        total += estimate
    return total


LOCAL_TREE_FACTOR = 10


def tree_bytes(root: Path, skip: tuple[str, ...] = (".git",)) -> int:
    """Bytes of the files below ``root`` (links not followed), leaving out folders named in ``skip``."""
    import os

    total = 0
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in skip]
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


def check(plan, say: Callable[[str], None]) -> None:
    """One line: needed, free, where; an error when it does not fit."""
    where = _existing(plan.layout.variant_dir)
    need = needed_gb(plan)
    free = shutil.disk_usage(where).free / GB
    others = other_variants(plan.layout.work, plan.variant.name)
    tail = (f"; the cache also keeps the build trees of {len(others)} other variant(s) "
            f"({', '.join(others[:3])}{', ...' if len(others) > 3 else ''}): python -m backend clean --all") if others else ""
    if need and free < need:
        raise BackendError(
            f"not enough disk space: the planned build needs about {need:.0f} GB in {where}, {free:.1f} GB are free"
            f"{tail or ''}; free space there, point -C cache-dir= at a larger disk, or set -C free-disk-gb=N"
        )
    say(f"   disk: needs about {need:.0f} GB, {free:.0f} GB free in {where}{tail}")


def other_variants(work: Path, current: str) -> list[str]:
    if not work.is_dir():
        return []
    return sorted(p.name for p in work.iterdir() if p.is_dir() and p.name != current)
