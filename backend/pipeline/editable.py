"""Editable developer builds (PEP 660): ``pip install -e . -C source.vllm=PATH``.

The stack is built (or reused) as usual, except the components given with
``source.<component>``: those are built by their own PEP 660 hook in the
variant's build environment, in place in the developer's checkout, so Python
edits are live and the next install recompiles only what changed (their
build directories stay in the checkout).  The stack's wheels and the
components' editable wheels are then installed into the environment pip is
installing into, and the wheel returned to pip is the small variant wheel.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

from .. import recipes, toml, variants
from ..errors import BackendError
from ..settings import Settings
from ..wheels import names as wheel_names
from . import compiler_cache, environment, run
from .executor import process_environment
from .plan import Plan, make_plan
from .runner import CommandFailed, run_logged

DEFAULT_BACKEND = "setuptools.build_meta:__legacy__"


def _backend_of(tree: Path) -> tuple[str, list[str]]:
    pyproject = tree / "pyproject.toml"
    if not pyproject.is_file():
        return DEFAULT_BACKEND, []
    system = toml.loads(pyproject.read_text()).get("build-system", {})
    return system.get("build-backend", DEFAULT_BACKEND), list(system.get("backend-path", []))


# Runs inside the build environment's interpreter: call one PEP 660 hook, in process.
HOOK_SCRIPT = """
import importlib, json, os, sys
backend_name, wheel_dir, config = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
for p in reversed(json.loads(sys.argv[4])):
    sys.path.insert(0, os.path.abspath(p))
module, _, obj = backend_name.partition(":")
backend = importlib.import_module(module)
for part in filter(None, obj.split(".")):
    backend = getattr(backend, part)
print("EDITABLE_WHEEL=" + backend.build_editable(wheel_dir, config or None))
"""


def _clean_env_for_target() -> dict[str, str]:
    """The environment for installing into the interpreter pip runs, outside pip's build isolation."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") and k not in ("PYTHONPATH", "PYTHONNOUSERSITE", "PYTHONNOUSERSITE")}
    return env


def build_editable(wheel_directory: Path, settings: Settings, target_python: str | None = None) -> str:
    from ..wheels import meta
    from ..wheels.relabel import relabel

    editable = [c for c in settings.selected_components if c in settings.sources]
    if not editable:
        raise BackendError(
            "an editable install needs -C source.<component>=PATH for the component(s) you develop; "
            "accepted: source.vllm=..., source.torch=..., any of the components"
        )
    from .. import project

    variant = variants.select(settings)
    full_plan = make_plan(settings, variant, project_dir=project.PROJECT_DIR, in_place=editable)
    stack_settings = dataclasses.replace(
        settings,
        components=tuple(c for c in settings.selected_components if c not in editable),
        sources={k: v for k, v in settings.sources.items() if k not in editable},
    )
    stack_wheels: list[Path] = []
    if stack_settings.components:
        stack_plan = make_plan(stack_settings, variant, project_dir=project.PROJECT_DIR)
        stack_plan = dataclasses.replace(stack_plan, steps=tuple(s for s in stack_plan.steps if s.component not in editable))
        if stack_plan.steps:
            stack_wheels = run.build(stack_plan).wheels()

    layout = full_plan.layout
    python = environment.ensure(layout.env_dir)
    environment.install_wheels(python, [w for w in stack_wheels if _dist(w) == "torch"])
    toolchain = run.resolve_toolchain(full_plan)
    cache = full_plan.compiler_cache
    editable_dir = layout.wheelhouse / "editable"
    editable_dir.mkdir(parents=True, exist_ok=True)
    editable_wheels = []
    requirements = sorted({r for c in editable for r in recipes.get(c).build_requirements(full_plan.variant)})
    with run.build_environment(python, requirements, settings):
        for component in editable:
            step = full_plan.step(component)
            editable_wheels += _build_one(full_plan, step, toolchain, cache, editable_dir, relabel)

    target = target_python or sys.executable
    _install_into_target(target, stack_wheels, editable_wheels)
    return meta.build(
        Path(wheel_directory), name=variant.name, version=meta.stack_version(), requires=[],
        summary=f"Editable vLLM stack for {variant.name}: {', '.join(editable)} from local checkouts",
    )


def _dist(wheel: Path) -> str:
    return wheel_names.project(wheel.name)


def in_place_env(env: dict[str, str]) -> dict[str, str]:
    """The plan's environment for an in-place build: no switch record.

    In-place objects are not verified, and the switch record holds the -o
    path, which setuptools' PEP 660 build draws anew each time: without it
    a second install is all compiler-cache hits.
    """
    out = dict(env)
    for key in ("CFLAGS", "CXXFLAGS"):
        out[key] = " ".join(flag for flag in out.get(key, "").split() if flag != compiler_cache.RECORD_SWITCHES)
    return out


def editable_wheel_dir(layout, recipe) -> Path:
    return layout.variant_dir / recipe.name / "_editable"


def hook_command(layout, recipe, checkout: Path) -> list[str]:
    """The build venv's python calling the checkout's own PEP 660 hook, in the checkout."""
    import json

    backend, backend_path = _backend_of(checkout)
    return [str(layout.python), "-c", HOOK_SCRIPT, backend, str(editable_wheel_dir(layout, recipe)), json.dumps({}),
            json.dumps(backend_path)]


def unapplied(component: str, checkout: Path, tree_version: str | None, lock) -> list:
    """Every main-tree patch of the component, none applied: an editable build works in the checkout itself."""
    import dataclasses as dc

    from ..sources import patches

    return [dc.replace(d, applied=False, why="an editable build works in your checkout itself, which is never patched")
            for d in patches.decide_local(component, checkout, tree_version, lock.main_entry(component).version)]


def _build_one(plan: Plan, step, toolchain, cache, editable_dir: Path, relabel) -> list[Path]:
    recipe = recipes.get(step.component)
    layout = plan.layout
    env = process_environment(step, toolchain, cache, step.tree)
    wheel_dir = editable_wheel_dir(layout, recipe)
    wheel_dir.mkdir(parents=True, exist_ok=True)
    for old in wheel_dir.glob("*.whl"):
        old.unlink()
    label = f"[editable {step.component}]"
    print(f"{label} building in place in {step.tree} (log: {layout.log_file(recipe)})", file=sys.stderr, flush=True)
    try:
        with cache.session(env, layout.log_file(recipe).with_suffix(".ccache-stats")) as session:
            for command in step.commands:
                run_logged(command, env={**env, **session.env}, cwd=step.cwd, log=layout.log_file(recipe), label=label)
    except CommandFailed as error:
        tail = "\n".join(f"  | {line}" for line in error.tail[-20:])
        print(tail, file=sys.stderr)
        raise BackendError(f"editable build of {step.component} failed (exit {error.returncode}); full log: {error.log}") from None
    built = sorted(wheel_dir.glob("*.whl"))
    from .pins import stack_pins

    pins = stack_pins(plan, ()) if step.pins_torch else {}
    return [relabel(w, editable_dir, version=step.version, pins=pins) for w in built]


def _install_into_target(python: str, stack: list[Path], editable: list[Path]) -> None:
    env = _clean_env_for_target()
    base = [python, "-m", "pip", "install", "-q", "--no-deps", "--no-index"]
    for wheels, extra in ((stack, []), (editable, ["--force-reinstall"])):
        if not wheels:
            continue
        result = subprocess.run(base + extra + [str(w) for w in wheels], env=env)
        if result.returncode != 0:
            raise BackendError(f"could not install {', '.join(w.name for w in wheels)} into {python}")
