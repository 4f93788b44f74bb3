"""The one place settings are turned into a checked variant and a plan."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import settings as settings_mod
from . import recipes, variants
from .recipes import flashinfer
from .sources import vllm_release
from .pipeline.plan import Plan
from .pipeline.plan import make_plan as _make_plan
from .settings import Settings

PROJECT_DIR = Path(__file__).resolve().parent.parent


def load_settings(config_settings: Mapping[str, Any] | None, base_dir: Path | None = None) -> Settings:
    """-C (``config_settings``) wins over the environment (``VLLM_STACK_<KEY>``), which wins over pyproject.toml.

    The settings model checks each value's form; what only another module knows is checked here, by that
    module, with the same one-line errors: the component names (recipes), the local trees, flashinfer's AOT
    config (its recipe reads the JSON or the file) and the vLLM release line (its locks).
    """
    base = Path(base_dir or Path.cwd()).resolve()
    given = settings_mod.resolve(config_settings, settings_mod.read_pyproject_table(PROJECT_DIR), base, os.environ)
    return dataclasses.replace(
        given,
        components=recipes.chosen(given.components, given.named("components")),
        sources=recipes.local_trees(given.sources),
        flashinfer_aot_config=given.flashinfer_aot_config and flashinfer.aot_config(
            given.named("flashinfer-aot-config"), given.flashinfer_aot_config, base),
        vllm=vllm_release.checked_line(given.named("vllm"), given.vllm),
    )


def owned_words() -> dict[str, tuple[str, ...]]:
    """The words of the settings whose words other modules own, for --help and the README's table."""
    return {"components": recipes.names(), "vllm": vllm_release.lines()}


def load_settings_from_cli(pairs: Sequence[str]) -> Settings:
    return load_settings(settings_mod.parse_cli_pairs(list(pairs)))


def make_plan(settings: Settings, in_place: Collection[str] = ()) -> Plan:
    # Planning already runs tools (patch --dry-run), and builds run nvcc: TMPDIR and the like are checked first.
    settings_mod.check_path_variables()
    return _make_plan(settings, variants.select(settings), project_dir=PROJECT_DIR, in_place=in_place)
