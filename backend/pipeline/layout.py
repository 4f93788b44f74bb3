"""Where a variant's files live: in the cache (shared downloads, per-variant trees) and the wheelhouse."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..recipes import Recipe
from ..settings import Settings, wheelhouse_root
from ..variants import Variant


@dataclasses.dataclass(frozen=True)
class Layout:
    cache: Path
    variant: Variant
    project_dir: Path
    settings: Settings

    @property
    def downloads(self) -> Path:
        return self.cache / "downloads"

    @property
    def variant_dir(self) -> Path:
        # Trees are per variant: setup.py builds write into the source tree.
        return self.cache / "work" / self.variant.name

    @property
    def env_dir(self) -> Path:
        return self.cache / "envs" / self.variant.name

    @property
    def python(self) -> Path:
        return self.env_dir / "bin" / "python"

    @property
    def compiler_cache_dir(self) -> Path:
        return self.cache / "compiler-cache"

    @property
    def wheelhouse(self) -> Path:
        return wheelhouse_root(self.settings, self.project_dir) / self.variant.name

    def source_workdir(self, recipe: Recipe) -> Path:
        return self.variant_dir / recipe.name

    def build_dir(self, recipe: Recipe) -> Path:
        return self.variant_dir / recipe.name / "_build"

    def wheel_dir(self, recipe: Recipe) -> Path:
        return self.variant_dir / recipe.name / "_wheels"

    def log_file(self, recipe: Recipe) -> Path:
        return self.variant_dir / "logs" / f"{recipe.name}.log"
