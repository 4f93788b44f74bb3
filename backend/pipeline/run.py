"""Build a plan: the toolchain, the build venv and the wheelhouse set up, the steps run, the stack checked.

Torch first; it goes into the variant's build environment and everything
after it builds with ``--no-build-isolation`` against it.  The order and
what runs side by side is ``scheduler.py``'s; one step (prepare, build,
relabel, verify, add) is ``executor.py``'s.  A failed component keeps its
build directory and log, and the next run continues.  Afterwards the
runtime closure, the smoke check and the variant wheels.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from .. import cache_marker, cuda_driver, toolchains
from ..errors import BackendError
from ..report_table import table
from ..sources import buildreqs, fetch, prepare
from ..toolchains import hostcc
from ..toolchains.select import incomplete_note
from ..verify import smoke
from ..wheels import closure, deploy_notes, manylinux
from ..wheels import variant as variant_wheels
from ..wheels import names as wheel_names
from ..wheels.wheelhouse import Wheelhouse
from ..settings import as_config as settings_as_config
from . import disk, environment, existing_torch, reproducible
from .executor import StepExecutor
from .layout import writable_folder
from .plan import Plan, Step, common_env
from .runner import CommandFailed, say
from .scheduler import run_steps
from .variant_lock import hold
from .sccache_server import CacheStats


@dataclasses.dataclass
class StepResult:
    step: Step  # an in-place one's (an editable install's) wheel is no wheel of the wheelhouse
    status: str  # built, cached, failed, not run
    seconds: float = 0.0
    wheels: list[Path] = dataclasses.field(default_factory=list)
    cache: CacheStats | None = None  # compiler-cache hits and lookups of this build; None when nothing compiled


@dataclasses.dataclass
class BuildResult:
    plan: Plan
    steps: list[StepResult]
    runtime: list[Path] = dataclasses.field(default_factory=list)  # the bundled runtime dependencies

    def wheels(self, in_place: bool = False) -> list[Path]:
        """The wheelhouse's wheels this build holds; ``in_place``: the editable wheels of its in-place steps."""
        return [w for s in self.steps if (s.step.in_place is not None) == in_place for w in s.wheels]


def summary(result: BuildResult) -> str:
    rows = []
    for s in result.steps:
        size = sum(w.stat().st_size for w in s.wheels if w.exists())
        shown = f"{size / 1e6:.1f} MB" if size else "-"
        step = s.step
        rows.append([step.component, step.version, s.status, f"{s.seconds / 60:.1f}", shown, str(s.cache or "-")])
    return table(["component", "version", "status", "minutes", "wheel size", "cache hits"], rows)


def resolve_toolchain(plan: Plan):
    if not plan.steps:
        return None
    settings = plan.settings
    return toolchains.resolve(
        settings.cuda, settings.toolchain, cache_dir=plan.layout.cache,
        nixpkgs=settings.nixpkgs, offline=settings.offline, libraries=plan.cuda_libraries,
    )


def check_offline_sources(plan: Plan) -> None:
    """offline=true: every source a step would prepare is in the cache already, checked before anything compiles
    (else the build would stop at the first component whose source is missing, after hours of the others)."""

    cache = plan.layout.cache
    missing = [entry for step in plan.steps for entry in prepare.missing_offline(
        step.component, cache_dir=cache, local=step.component in plan.settings.sources, unused=step.unused_sources,
        lock=plan.lock)]
    if missing:
        also = f"; also missing: {', '.join(e.name for e in missing[1:])}" if missing[1:] else ""
        raise BackendError(f"{fetch.offline_missing(missing[0], fetch.cache_path(missing[0], cache))}{also}")


def build(plan: Plan) -> BuildResult:
    """Build the plan; a second build of the same variant waits for the first, then reuses its wheels."""
    if plan.release_problem:  # another vLLM line's plan is shown, not built (docs/RELEASES.md)
        raise BackendError(plan.release_problem)
    writable_folder(plan.settings.named("cache-dir"), plan.layout.cache)  # VLLM_STACK_CACHE_DIR, if set so
    if not cache_marker.claim(plan.layout.cache):
        say(f"cache: {plan.layout.cache} holds what the backend did not put there; builds write only "
            "their own folders in it, and clean refuses it (a cache-dir of its own avoids both)")
    writable_folder(plan.settings.named("wheelhouse"), plan.layout.wheelhouse)
    existing_torch.check(plan, say)  # before anything is downloaded or compiled
    with hold(plan.layout.variant_dir, say):
        return _build_locked(plan)


def _build_locked(plan: Plan) -> BuildResult:
    settings = plan.settings
    layout = plan.layout
    result = BuildResult(plan=plan, steps=[StepResult(s, "not run") for s in plan.steps])

    say(f"== {plan.variant.name}: {len(plan.steps)} component(s) -> {layout.wheelhouse}")
    toolchain = hostcc.apply(resolve_toolchain(plan), say)
    manylinux.check_host(settings.manylinux, plan.variant.platform, named=settings.named("manylinux"))
    for step in plan.steps:  # a missing -dev package stops here in one line, not as a late compile error
        if problem := step.recipe.host_problem():
            raise BackendError(problem)
    if toolchain is not None:
        say(f"   toolchain: {toolchain.provider}, CUDA {toolchain.version}, {toolchain.nvcc}")
        if note := incomplete_note(toolchain):
            say(f"   note: {note}")
    say(f"   compiler cache: {plan.compiler_cache.describe()}")
    house = Wheelhouse(
        layout.wheelhouse,
        variant=plan.variant.name,
        toolchain=toolchain.provider if toolchain else "none",
        toolchain_version=toolchain.version if toolchain else None,
        flags={
            "sm": plan.variant.sm, "isa": plan.variant.isa, "cuda": plan.variant.cuda,
            "label": plan.variant.label, "torch": plan.torch_version,
            "CFLAGS": common_env(plan.variant, plan.steps[0].jobs)["CFLAGS"] if plan.steps else "",
            "TORCH_CUDA_ARCH_LIST": plan.variant.target.capability,
            # what `python -m backend rebuild-check` builds again from (docs/WHEELS.md)
            "SOURCE_DATE_EPOCH": reproducible.source_date_epoch(),
            "settings": {**settings_as_config(settings), "cache-dir": str(layout.cache)},
        },
    )
    disk.check(plan, say)
    if settings.offline:
        check_offline_sources(plan)
    # Wheels of other components the closure, the pins and the smoke check will use: as written, or stop.
    house.refuse_changed(skip_components=[s.component for s in plan.steps])
    python = environment.ensure(layout.env_dir)
    requirements = sorted({r for s in plan.steps for r in s.recipe.build_requirements(plan.variant)})
    executor = StepExecutor(plan, toolchain=toolchain, house=house)
    with environment.borrowing(python, requirements, torch=settings.torch == "existing"):
        buildreqs.install_for_build(python, requirements, settings, say)  # the lock's, or the recipes' ranges
        failures = run_steps(plan, result.steps, executor.execute, cache_stats=executor.cache_stats,
                             on_built=lambda step, wheels: environment.install_wheels(python, wheels))

    say("\n" + summary(result))
    if failures:
        raise BackendError(_report_failures(failures))
    if all(s.in_place for s in plan.steps):  # an editable install of components alone: the wheelhouse is not touched
        return result
    house.refuse_changed()  # every listed wheel, this build's included, before the closure and the smoke check
    driver = cuda_driver.driver_need(plan.variant.cuda, plan.variant.sm, house.manifest())
    house.record_driver(dataclasses.asdict(driver))  # the manifest stores its reasons as a list
    say(f"driver: the wheelhouse needs NVIDIA driver {driver.minimum}+ ({driver.reasons[-1]})")
    result.runtime = closure.for_build(plan, result, python, say)

    def write_notes() -> Path:
        return deploy_notes.write(layout.wheelhouse, plan.variant, [s.component for s in plan.steps if not s.in_place],
                                  house.manifest(), f"{plan.variant.python[0]}.{plan.variant.python[1:]}")

    say(f"host requirements: {write_notes()}")
    smoke.for_build(plan, result, say)
    write_notes()  # again: the smoke check may have prebuilt Triton's cuda_utils beside the wheels
    if settings.wheel_variants:
        _write_variant_wheels(result)
    say(f"wheelhouse: {layout.wheelhouse}")
    say("install: " + closure.install_command(
        layout.wheelhouse, bundled=settings.runtime_deps == "bundle" and settings.torch != "existing",
        torch_existing=plan.torch_version if settings.torch == "existing" else None))
    return result


def _write_variant_wheels(result: BuildResult) -> None:
    """PEP 825 (draft) copies beside the wheelhouse: today's pip cannot install them."""
    out = result.plan.layout.wheelhouse / "variants"
    for wheel in result.wheels():
        written = variant_wheels.write_variant_wheel(wheel, out, result.plan.variant)
        variant_wheels.write_index_variants_json(out, wheel_names.parse(written.name).distribution, [result.plan.variant])
    say(f"variant wheels: {out}")


def _report_failures(failures: list[tuple[str, Exception]]) -> str:
    """Each failed component's own log tail, then one line naming every failure with its own log."""
    parts = []
    for component, failure in failures:
        if isinstance(failure, CommandFailed):  # one block: a build still running beside it does not cut in
            tail = [f"  | {line}" for line in failure.tail[-25:]]
            say("\n".join(["", f"last lines of {failure.log} ({component}):", *tail]))
            hint = "; the compiler was killed (out of memory?): lower -C jobs" if failure.killed else ""
            parts.append(f"{component} failed (exit {failure.returncode}); full log: {failure.log}{hint}")
        else:
            parts.append(f"{component} failed: {failure}")
    return "; also ".join(parts)
