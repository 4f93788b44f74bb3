"""The one place settings are turned into a checked variant and a plan."""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import settings as settings_mod
from . import variants
from .pipeline.plan import Plan
from .pipeline.plan import make_plan as _make_plan
from .settings import Settings

PROJECT_DIR = Path(__file__).resolve().parent.parent


def load_settings(config_settings: Mapping[str, Any] | None, base_dir: Path | None = None) -> Settings:
    """-C (``config_settings``) wins over the environment (``VLLM_STACK_<KEY>``), which wins over pyproject.toml."""
    return settings_mod.resolve(
        config_settings,
        settings_mod.read_pyproject_table(PROJECT_DIR),
        base_dir=base_dir or Path.cwd(),
        environ=os.environ,
    )


def load_settings_from_cli(pairs: Sequence[str]) -> Settings:
    return load_settings(settings_mod.parse_cli_pairs(list(pairs)))


def make_plan(settings: Settings, in_place: Collection[str] = ()) -> Plan:
    # Planning already runs tools (patch --dry-run), and builds run nvcc: TMPDIR and the like are checked first.
    settings_mod.check_path_variables()
    variant = variants.select(settings)
    return _make_plan(settings, variant, project_dir=PROJECT_DIR, in_place=in_place)
