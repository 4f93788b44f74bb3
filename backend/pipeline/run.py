"""Run a plan: each component prepared, built, relabelled, verified and added to the wheelhouse.

Torch first; it goes into the variant's build environment and everything
after it builds with ``--no-build-isolation`` against it.  A component whose
wheels with the same build key are already in the wheelhouse is not rebuilt;
a failed one keeps its build directory and log, and the next run continues.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import shutil
import sys
import threading
import time
from pathlib import Path

from .. import recipes
from ..errors import BackendError
from ..recipes import BuildContext
from ..report_table import table
from ..sources import buildreqs
from ..toolchains import hostcc
from ..wheels import manylinux
from . import compiler_cache, disk, environment
from .buildkey import build_key
from .plan import Plan, Step, common_env
from .runner import CommandFailed, run_logged
from .sccache_server import CacheStats


@dataclasses.dataclass
class StepResult:
    component: str
    version: str
    status: str  # built, cached, failed, not run
    seconds: float = 0.0
    wheels: list[Path] = dataclasses.field(default_factory=list)
    cache: CacheStats | None = None  # compiler-cache hits and lookups of this build; None when nothing compiled

    @property
    def size(self) -> int:
        return sum(w.stat().st_size for w in self.wheels if w.exists())


@dataclasses.dataclass
class BuildResult:
    plan: Plan
    steps: list[StepResult]
    wheelhouse: Path
    runtime: list[Path] = dataclasses.field(default_factory=list)  # the bundled runtime dependencies

    @property
    def ok(self) -> bool:
        return all(s.status in ("built", "cached") for s in self.steps)

    def wheels(self) -> list[Path]:
        return [w for s in self.steps for w in s.wheels]


GIB = 1 << 30


_SAY_LOCK = threading.Lock()


def say(message: str) -> None:
    """One whole line (or block) to stderr: components building side by side do not interleave mid-line."""
    with _SAY_LOCK:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n else "-"


def summary(result: BuildResult) -> str:
    rows = [
        [s.component, s.version, s.status, f"{s.seconds / 60:.1f}", _size(s.size), str(s.cache or "-")]
        for s in result.steps
    ]
    return table(["component", "version", "status", "minutes", "wheel size", "cache hits"], rows)


def resolve_toolchain(plan: Plan):
    if not any(step.uses_cuda for step in plan.steps):
        return None
    from .. import toolchains
    from ..settings import cache_dir

    settings = plan.settings
    return toolchains.resolve(
        settings.cuda, settings.toolchain, cache_dir=cache_dir(settings),
        nixpkgs=settings.nixpkgs, offline=settings.offline, libraries=cuda_libraries(plan),
    )


def cuda_libraries(plan: Plan) -> tuple[str, ...] | None:
    """What the PyPI toolchain must install for these steps: None for everything (torch links it all)."""
    wanted: list[str] = []
    for step in plan.steps:
        recipe = recipes.get(step.component)
        if not recipe.uses_cuda:
            continue
        if recipe.cuda_libraries is None:
            return None
        wanted += [name for name in recipe.cuda_libraries if name not in wanted]
    return tuple(wanted)


def _prepare_source(plan: Plan, recipe: recipes.Recipe):
    from ..sources import patches
    from ..sources import prepare as sources_prepare
    from ..settings import cache_dir
    from . import snapshot

    settings = plan.settings
    layout = plan.layout
    workdir = layout.source_workdir(recipe)
    local = settings.sources.get(recipe.name)
    unused = recipe.unused_sources(plan.variant, settings)
    if local is None:
        return sources_prepare.prepare(
            recipe.name, cache_dir=cache_dir(settings), workdir=workdir,
            offline=settings.offline, allow_unverified=settings.allow_unverified, unused=unused,
        )
    # Builds write into their tree and patches must not touch the checkout:
    # build a per-variant copy, with the component's patches applied to it.
    copy = workdir / "local-tree"
    prepared = sources_prepare.prepare(
        recipe.name, cache_dir=cache_dir(settings), workdir=workdir, offline=settings.offline,
        allow_unverified=settings.allow_unverified, local=local, patch_local=True, unused=unused,
    )
    snapshot.sync(local, copy)
    applied = patches.apply(copy, recipe.name)
    key = hashlib.sha256(json.dumps([prepared.build_key, applied]).encode()).hexdigest()[:32]
    return dataclasses.replace(prepared, root=copy, patches=applied + prepared.patches, build_key=key)


def _context(plan: Plan, step: Step, prepared, python: Path) -> BuildContext:
    recipe = recipes.get(step.component)
    layout = plan.layout
    return BuildContext(
        variant=plan.variant,
        settings=plan.settings,
        source=prepared.root,
        extras=dict(prepared.extras),
        wheel_dir=layout.wheel_dir(recipe),
        build_dir=layout.build_dir(recipe),
        python=str(python),
        jobs=step.jobs.processes,
        nvcc_threads=step.jobs.nvcc_threads,
        tree_version=recipe.tree_version(prepared.root) if prepared.origin == "local" else None,
    )


def _expectation(plan: Plan, step: Step, toolchain):
    from ..verify import Expectation

    return Expectation(
        sm=plan.variant.sm if step.uses_cuda else None,
        isa=plan.variant.isa,
        cuda=plan.variant.cuda,
        ptx=False,
        label=plan.variant.label,
        torch_version=plan.torch_version,
        extra_allowed_libraries=(tuple(toolchain.runtime_libraries) if toolchain else ())
        + (existing_torch_libraries() if plan.settings.torch == "existing" else ()),
        by_design=recipes.get(step.component).gpu_code_by_design,
        manylinux=plan.settings.manylinux,
    )


@contextlib.contextmanager
def build_environment(python: Path, requirements: list[str], settings):
    """The venv ready for one build: what it borrows from the frontend, and its build requirements
    (the lock's, or the recipes' ranges). Stack builds and editable builds both go through here."""
    with environment.borrowing(python, requirements, torch=settings.torch == "existing"):
        buildreqs.install_for_build(python, requirements, settings, say)
        yield


def build(plan: Plan) -> BuildResult:
    """Build the plan; a second build of the same variant waits for the first, then reuses its wheels."""
    from ..settings import cache_dir, writable_folder
    from .variant_lock import hold

    writable_folder("cache-dir", cache_dir(plan.settings))
    writable_folder("wheelhouse", plan.layout.wheelhouse)
    with hold(plan.layout.variant_dir, say):
        return _build_locked(plan)


def _build_locked(plan: Plan) -> BuildResult:
    from ..wheels.wheelhouse import Wheelhouse

    settings = plan.settings
    layout = plan.layout
    results = [StepResult(s.component, s.version, "not run") for s in plan.steps]
    result = BuildResult(plan=plan, steps=results, wheelhouse=layout.wheelhouse)

    say(f"== {plan.variant.name}: {len(plan.steps)} component(s) -> {layout.wheelhouse}")
    toolchain = hostcc.apply(resolve_toolchain(plan), say)
    manylinux.check_host(settings.manylinux, plan.variant.platform)
    if toolchain is not None:
        say(f"   toolchain: {toolchain.provider}, CUDA {toolchain.version}, {toolchain.nvcc}")
        if not any(name.startswith("libcublas.so") for name in toolchain.runtime_libraries):
            say(f"   note: {toolchain.cuda_home} has nvcc but no cuBLAS; components that link CUDA libraries "
                "(torch, bitsandbytes, vLLM) will fail to configure: install a complete toolkit"
                + (", or use -C toolchain=pypi" if not settings.cuda.startswith("12.") else ""))
    cache = compiler_cache.choose(settings.compiler_cache, layout.compiler_cache_dir, url=settings.compiler_cache_url)
    say(f"   compiler cache: {cache.describe()}")
    house = Wheelhouse(
        layout.wheelhouse,
        variant=plan.variant.name,
        toolchain=toolchain.provider if toolchain else "none",
        toolchain_version=toolchain.version if toolchain else None,
        flags={
            "sm": plan.variant.sm, "isa": plan.variant.isa, "cuda": plan.variant.cuda,
            "label": plan.variant.label, "torch": plan.torch_version,
            "CFLAGS": common_env(plan.variant, plan.steps[0].jobs)["CFLAGS"] if plan.steps else "",
            "TORCH_CUDA_ARCH_LIST": plan.variant.arch,
        },
    )
    disk.check(plan, say)
    python = environment.ensure(layout.env_dir)
    requirements = sorted({r for s in plan.steps for r in recipes.get(s.component).build_requirements(plan.variant)})
    with build_environment(python, requirements, settings):
        failures = _run_steps(plan, results, python=python, toolchain=toolchain, cache=cache, house=house)

    say("")
    say(summary(result))
    if failures:
        raise BackendError(_report_failures(failures))
    from ..verify import smoke
    from ..wheels import closure

    result.runtime = closure.for_build(plan, result, python, say)
    smoke.for_build(plan, result, say)
    if settings.wheel_variants:
        _write_variant_wheels(result)
    say(f"wheelhouse: {layout.wheelhouse}")
    return result


def _write_variant_wheels(result: BuildResult) -> None:
    """PEP 825 (draft) copies beside the wheelhouse: today's pip cannot install them."""
    from ..wheels import variant as variant_wheels

    out = result.wheelhouse / "variants"
    for wheel in result.wheels():
        written = variant_wheels.write_variant_wheel(wheel, out, result.plan.variant)
        variant_wheels.write_index_variants_json(out, written.name.split("-")[0], [result.plan.variant])
    say(f"variant wheels: {out}")


def _memory_need(step: Step) -> float:
    return step.jobs.processes * recipes.get(step.component).mem_per_job_gb * (1 + 0.25 * (step.jobs.nvcc_threads - 1)) * GIB


def _run_steps(plan: Plan, results: list[StepResult], *, python, toolchain, cache, house):
    """Build the steps in dependency order; independent ones side by side while memory allows.

    Each step's job count already assumes it has the machine to itself, so a
    step starts beside others only if the memory all of them plan to use
    fits in what is free.  Returns every failure as (component, error), in the order they happened.
    """
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    from .. import host as host_info
    from .runner import allow_builds, stop_all

    steps = list(plan.steps)
    total = len(steps)
    keys: dict[str, str] = {}
    cache_stats: dict = {}
    needed_later = {d for s in steps for d in s.depends}
    finished: set[str] = set()
    pending = list(range(total))
    running: dict = {}  # future -> (index, start time)
    budget = host_info.available_memory_bytes()
    failure = None
    failures: list[tuple[str, Exception]] = []
    allow_builds()

    def launch(index: int):
        step = steps[index]
        label = f"[{index + 1}/{total} {step.component}]"
        return pool.submit(
            _build_step, plan, step, python=python, toolchain=toolchain, cache=cache, house=house, keys=keys, label=label,
            cache_stats=cache_stats,
        )

    with ThreadPoolExecutor(max_workers=max(1, total)) as pool:
        try:
            while pending or running:
                for index in list(pending):
                    if failure is not None:
                        break
                    step = steps[index]
                    if not all(d in finished for d in step.depends):
                        continue
                    in_use = sum(_memory_need(steps[i]) for i, _ in running.values())
                    if running and in_use + _memory_need(step) > budget:
                        continue
                    pending.remove(index)
                    running[launch(index)] = (index, time.monotonic())
                if not running:
                    break
                # A timeout, so that Ctrl-C is seen at once even when the kernel hands
                # the signal to a worker thread (Python runs handlers in the main thread only).
                done, _ = wait(list(running), timeout=0.2, return_when=FIRST_COMPLETED)
                for future in done:
                    index, started = running.pop(future)
                    outcome, step = results[index], steps[index]
                    outcome.seconds = time.monotonic() - started
                    outcome.cache = getattr(cache_stats.get(step.component), "stats", None)
                    try:
                        outcome.wheels, outcome.status = future.result()
                    except (CommandFailed, BackendError) as error:
                        outcome.status = "failed"
                        failure = failure or error
                        failures.append((step.component, error))
                        continue
                    label = f"[{index + 1}/{total} {step.component}]"
                    say(f"{label} {outcome.status} in {outcome.seconds / 60:.1f} min: "
                        f"{', '.join(w.name for w in outcome.wheels)}")
                    if step.component in needed_later:
                        environment.install_wheels(python, outcome.wheels)
                    finished.add(step.component)
        except BaseException:
            stop_all()  # Ctrl-C: the builds run in their own sessions
            raise
    return failures


def _report_failures(failures: list[tuple[str, Exception]]) -> str:
    """Each failed component's own log tail, then one line naming every failure with its own log."""
    parts = []
    for component, failure in failures:
        if isinstance(failure, CommandFailed):
            say("")
            say(f"last lines of {failure.log} ({component}):")
            for line in failure.tail[-25:]:
                say(f"  | {line}")
            hint = "; the compiler was killed (out of memory?): lower -C jobs" if failure.killed else ""
            parts.append(f"{component} failed (exit {failure.returncode}); full log: {failure.log}{hint}")
        else:
            parts.append(f"{component} failed: {failure}")
    return parts[0] + "".join(f"; also {p}" for p in parts[1:])


def _build_step(plan, step, *, python, toolchain, cache, house, keys, label, cache_stats):
    from ..wheels.relabel import relabel
    from ..verify.features import check_features
    from .pins import restored_requirements, stack_pins

    recipe = recipes.get(step.component)
    layout = plan.layout
    say(f"{label} preparing {step.component} {recipe.version} ({step.source})")
    prepared = _prepare_source(plan, recipe)
    ctx = _context(plan, step, prepared, python)
    env_vars = common_env(plan.variant, step.jobs)
    env_vars.update(recipe.environment(ctx))
    commands = recipe.commands(ctx)
    toolchain_id = f"{toolchain.provider}:{toolchain.version}" if toolchain else "none"
    toolchain_id += manylinux.key_part(toolchain, plan.settings.manylinux)  # host g++ and the tag target
    key = build_key(
        recipe=recipe, source_key=prepared.build_key, env=env_vars, commands=commands, toolchain=toolchain_id,
        dependency_keys={d: keys[d] for d in step.depends if d in keys}, torch_version=plan.torch_version,
    )
    keys[step.component] = key

    cached = _lookup(house, step, key)
    if cached:
        return cached, "cached"

    full_env = environment.clean_environ(python, toolchain.env() if toolchain is not None else None)
    full_env.update(cache.env(compiler_cache.base_dirs(layout), full_env["PATH"], nvcc=full_env.get("CUDACXX")))
    full_env.update(env_vars)

    say(f"{label} building with {step.jobs.processes} job(s) x {step.jobs.nvcc_threads} nvcc thread(s): {step.jobs.reason}")
    say(f"{label} log: {layout.log_file(recipe)}")
    wheel_dir = ctx.wheel_dir
    if wheel_dir.exists():
        shutil.rmtree(wheel_dir)
    wheel_dir.mkdir(parents=True)
    ctx.build_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with cache.session(full_env, layout.log_file(recipe).with_suffix(".ccache-stats")) as session:
        try:
            for command in commands:
                run_logged(command, env={**full_env, **session.env}, cwd=ctx.source, log=layout.log_file(recipe), label=label)
        finally:
            cache_stats[step.component] = session

    seconds = round(time.monotonic() - started, 1)
    built = sorted(wheel_dir.glob("*.whl"))
    if not built:
        raise BackendError(f"the build of {step.component} produced no wheel in {wheel_dir}")

    staged_dir = layout.variant_dir / step.component / "_staged"
    if staged_dir.exists():
        shutil.rmtree(staged_dir)
    staged_dir.mkdir(parents=True)
    pins = stack_pins(plan, house.wheels()) if step.pins_torch else {}
    restored = restored_requirements(recipe.stack_requires, pins)
    staged = [
        relabel(wheel, staged_dir, version=_labelled_version(wheel, plan), pins=pins,
                add_requires=restored + _cuda_requirements(wheel, plan, toolchain, step.component))
        for wheel in built
    ]
    staged = _platform_tags(plan, staged, house, toolchain, label)
    _verify(plan, step, staged, house, toolchain, label)
    features = check_features(recipe, plan.variant, staged, plan.settings.verify)

    added = []
    for wheel in staged:
        added.append(house.add(wheel, {
            "component": step.component,
            "source": step.source if prepared.origin == "local" else f"lock:{recipe.sources[0]}",
            "origin": prepared.origin,
            "source_hash": prepared.source_hash,
            "patches": [list(p) for p in prepared.patches],
            "build_key": key,
            "seconds": seconds,
            **({"features": features[wheel.name]} if wheel.name in features else {}),
            **manylinux.manifest_record(wheel),
        }))
    return added, "built"


def _platform_tags(plan: Plan, wheels: list[Path], house, toolchain, label: str) -> list[Path]:
    """The manylinux tag auditwheel finds for each wheel; torch's, CUDA's and the wheelhouse's libraries stay external."""
    exclude = manylinux.external_patterns(toolchain.runtime_libraries if toolchain else (), house.wheels())
    return manylinux.tag_wheels(wheels, plan.variant.platform, plan.settings.manylinux, exclude,
                                say=lambda line: say(f"{label} {line.strip()}"))


def _labelled_version(wheel: Path, plan: Plan) -> str:
    """The wheel's own public version plus the variant's label.

    A local tree (a fork, a newer release) keeps its real version; only the
    label is ours.
    """
    from packaging.version import Version

    public = Version(wheel.name.split("-")[1]).public
    return f"{public}+{plan.variant.label}"


def _cuda_requirements(wheel: Path, plan: Plan, toolchain, component: str) -> list[str]:
    """The nvidia-* wheels of the CUDA libraries this wheel links, and what its recipe declares (torch: triton)."""
    from ..wheels.requires import declared_requirements

    return declared_requirements(wheel, recipes.get(component), plan.variant, toolchain)


def existing_torch_libraries() -> tuple[str, ...]:
    """Sonames of the torch the build env imports (torch=existing): they satisfy torch's DT_NEEDED."""
    import importlib.util

    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return ()
    lib = Path(list(spec.submodule_search_locations)[0]) / "lib"
    return tuple(sorted(p.name for p in lib.glob("*.so*"))) if lib.is_dir() else ()


def _lookup(house, step: Step, key: str) -> list[Path]:
    """Every wheel of the component with this build key, intact; else [] (rebuild)."""
    from ..verify.metadata import read_wheel
    from ..wheels.files import sha256_file

    found = []
    for name, entry in sorted(house.manifest()["wheels"].items()):
        if entry.get("component") != step.component or entry.get("build_key") != key:
            continue
        path = house.root / name
        if not path.is_file() or sha256_file(path) != entry.get("sha256"):
            return []
        if read_wheel(path, check_record=False).holds_only_metadata():
            return []  # an empty wheel an older, unlocked race left behind: rebuild it
        found.append(path)
    return found


def _verify(plan: Plan, step: Step, wheels: list[Path], house, toolchain, label: str) -> None:
    mode = plan.settings.verify
    if mode == "off":
        return
    from ..verify import verify_wheel

    companions = [w for w in house.wheels() if not any(_same_dist(w, x) for x in wheels)] + wheels
    expect = _expectation(plan, step, toolchain)
    problems = []
    for wheel in wheels:
        report = verify_wheel(wheel, expect, companions=[c for c in companions if c != wheel])
        say(report.format_table())
        if not report.ok:
            problems.append(wheel.name)
    if problems and mode == "strict":
        raise BackendError(
            f"verification failed for {', '.join(problems)} (nothing was added to the wheelhouse; "
            "see the report above, or -C verify=warn to keep going)"
        )
    if problems:
        say(f"{label} verification problems (verify=warn): {', '.join(problems)}")


def _same_dist(a: Path, b: Path) -> bool:
    return a.name.split("-")[0].lower() == b.name.split("-")[0].lower()
