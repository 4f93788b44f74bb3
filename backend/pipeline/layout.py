"""Where a variant's files live: in the cache (shared downloads, per-variant trees) and the wheelhouse.

The cache's and the wheelhouse's defaults, where no setting names them, are found here too (the settings
model reads no file system), as is the check that a folder can be written before a build starts.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

from ..errors import BackendError
from ..recipes import Recipe
from ..settings import Settings, check_output_folder
from ..variants import Variant


@dataclasses.dataclass(frozen=True)
class CacheLayout:
    """The cache's folders that every variant shares (``clean --all`` removes them)."""

    cache: Path

    @property
    def downloads(self) -> Path:
        """Every download (sources, build requirements): what an offline build needs."""
        return self.cache / "downloads"

    @property
    def work(self) -> Path:
        """Every variant's build folders."""
        return self.cache / "work"

    @property
    def envs(self) -> Path:
        """Every variant's build venv."""
        return self.cache / "envs"

    @property
    def toolchains(self) -> Path:
        """The CUDA toolchains: PyPI install roots and symlink farms (with their Nix GC roots)."""
        return self.cache / "toolchains"

    @property
    def compiler_cache_dir(self) -> Path:
        return self.cache / "compiler-cache"


@dataclasses.dataclass(frozen=True)
class Layout(CacheLayout):
    """One variant's folders, in the cache and the wheelhouse."""

    variant: Variant
    project_dir: Path
    settings: Settings

    @property
    def variant_dir(self) -> Path:
        # Trees are per variant: setup.py builds write into the source tree.
        return self.work / self.variant.name

    @property
    def specs_dir(self) -> Path:
        """The compiler cache's GCC specs files (the build's prefix maps)."""
        return self.variant_dir / "specs"

    @property
    def smoke_dir(self) -> Path:
        return self.variant_dir / "smoke"

    @property
    def env_dir(self) -> Path:
        return self.envs / self.variant.name

    @property
    def python(self) -> Path:
        return self.env_dir / "bin" / "python"

    @property
    def wheelhouse(self) -> Path:
        root = self.settings.wheelhouse or check_output_folder(
            "wheelhouse (default, in the project folder)", self.project_dir / "wheelhouse")
        return root / self.variant.name

    def source_workdir(self, recipe: Recipe) -> Path:
        return self.variant_dir / recipe.name

    def build_dir(self, recipe: Recipe) -> Path:
        return self.variant_dir / recipe.name / "_build"

    def wheel_dir(self, recipe: Recipe) -> Path:
        return self.variant_dir / recipe.name / "_wheels"

    def staged_dir(self, recipe: Recipe) -> Path:
        """Its built wheels, relabelled, tagged and verified here before they join the wheelhouse."""
        return self.variant_dir / recipe.name / "_staged"

    def log_file(self, recipe: Recipe) -> Path:
        return self.variant_dir / "logs" / f"{recipe.name}.log"


def default_cache_dir() -> Path:
    """Where the cache goes when no -C cache-dir (or VLLM_STACK_CACHE_DIR, read by the settings) says."""
    try:
        import platformdirs
    except ImportError:  # pragma: no cover - platformdirs is a build requirement
        found = Path.home() / ".cache" / "vllm-stack"
    else:
        found = Path(platformdirs.user_cache_dir("vllm-stack"))
    # The default comes from HOME (or XDG_CACHE_HOME): the same characters are refused there.
    origin = "XDG_CACHE_HOME" if os.environ.get("XDG_CACHE_HOME") else "HOME"
    return check_output_folder(f"cache-dir (default, from {origin})", found)


def cache_dir(settings: Settings) -> Path:
    return settings.cache_dir or default_cache_dir()


def writable_folder(key: str, path: Path) -> None:
    """Create ``path`` when missing and prove a file can be written there, or stop in one line."""
    check_output_folder(key, path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise BackendError(
            f"setting '{key}': cannot write into {path} ({error.strerror or error}); "
            "accepted: a folder you can write to"
        ) from None
