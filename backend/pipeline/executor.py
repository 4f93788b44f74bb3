"""One step of a plan: its sources prepared, its commands run, its wheels relabelled, verified and added.

A step whose wheels with the same build key are already in the wheelhouse
is not rebuilt.  An in-place step (an editable install's) is the checkout's
own PEP 660 hook, called through ``pyproject_hooks`` with the same
environment, compiler-cache session and log; its editable wheel is
relabelled, not verified or added.  When the scheduler (``scheduler.py``)
decides to run it does not matter here; a step failing raises, and its
build directory and log stay for the next run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import time
from pathlib import Path

from pyproject_hooks import BackendUnavailable, BuildBackendHookCaller, HookMissing

from ..errors import BackendError
from ..sources import fetch, prepare
from ..verify import Expectation, verify_wheel
from ..verify.checks import torch_exports
from ..verify.features import asked_symbols, check_features
from ..wheels import built as built_wheel
from ..wheels import manylinux
from ..wheels import names as wheel_names
from ..wheels.relabel import metadata_editor, relabel
from ..wheels.requires import declared_requirements, is_generated
from . import compiler_cache, environment, existing_torch, reproducible
from .buildkey import build_key
from .pins import restored_requirements, stack_pins
from .plan import Plan, Step, isa_flag_statement
from .runner import CommandFailed, run_logged, say


@dataclasses.dataclass
class StepExecutor:
    """What every step of one build shares: the plan (its compiler cache too), the toolchain, the wheelhouse."""

    plan: Plan
    toolchain: object  # never None: a plan with steps compiles CUDA code (run.resolve_toolchain)
    house: object
    keys: dict[str, str] = dataclasses.field(default_factory=dict)  # build key of each step run so far
    cache_stats: dict[str, object] = dataclasses.field(default_factory=dict)  # compiler-cache session of each

    def execute(self, step: Step, label: str) -> tuple[list[Path], str]:
        """Build (or find built) one step's wheels; returns them and "built" or "cached"."""
        if step.in_place is not None:
            return self._build_in_place(step, label), "built"
        plan, toolchain, recipe, layout = self.plan, self.toolchain, step.recipe, self.plan.layout
        # the version its wheels carry: a checkout's own, not the lock's
        say(f"{label} preparing {step.component} {step.version} ({step.tree_from})")
        prepared = _prepare_source(plan, step)
        # What runs is the plan's: its environment and commands, in its tree.
        toolchain_id = f"{toolchain.provider}:{toolchain.version}"
        toolchain_id += manylinux.key_part(toolchain, plan.settings.manylinux)  # host g++ and the tag target
        key = self.keys[step.component] = build_key(
            recipe=recipe, source_key=prepared.build_key, env=dict(step.env), commands=[list(c) for c in step.commands],
            toolchain=toolchain_id, dependency_keys={d: self.keys[d] for d in step.depends if d in self.keys},
            torch_version=plan.torch_version, caller=environment.keyed_caller_variables(),
        )
        if cached := self.house.lookup(step.component, key):
            return cached, "cached"

        say(f"{label} building with {step.jobs.processes} job(s) x {step.jobs.nvcc_threads} nvcc thread(s): {step.jobs.reason}")
        say(f"{label} log: {layout.log_file(recipe)}")
        wheel_dir = _emptied(layout.wheel_dir(recipe))
        layout.build_dir(recipe).mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with self._runner(step, label, compiler_cache.base_dirs(layout), layout.specs_dir) as run:
            try:
                for command in step.commands:
                    run(command)
            except CommandFailed as failure:
                _after_failure(step, layout.build_dir(recipe), failure, label)
                raise
        if not (built := sorted(wheel_dir.glob("*.whl"))):
            raise BackendError(f"the build of {step.component} produced no wheel in {wheel_dir}")
        return self.finish(step, built, key, prepared, round(time.monotonic() - started, 1), label), "built"

    def finish(self, step: Step, built: list[Path], key: str, prepared, seconds: float, label: str) -> list[Path]:
        """A step's built wheels relabelled, pinned, tagged, made reproducible, verified, checked for their
        features and added to the wheelhouse with their manifest records; returns the added paths.
        ``prepared``: the step's prepared sources (origin, source_hash, patches) for the manifest.

        Each wheel is read once and written once (``wheels/built.py``): its package members as it is read,
        its .dist-info folder (METADATA with the version, pins and requirements, WHEEL with the tag, RECORD)
        when the records of its objects have decided them; verification, features and the manifest read
        those records.  The copy moves into the wheelhouse with the hash taken while writing it."""
        plan, toolchain, house, recipe = self.plan, self.toolchain, self.house, step.recipe
        staged_dir = _emptied(plan.layout.staged_dir(recipe))
        pins = stack_pins(plan, house.wheels()) if recipe.pins_torch else {}
        restored = restored_requirements(recipe.stack_requires, pins)
        exclude = manylinux.external_patterns(toolchain.runtime_libraries, house.wheels())
        shown = lambda line: say(f"{label} {line.strip()}")  # noqa: E731
        staged = []
        for wheel in built:
            # the recipe's graft_libraries (torchvision's codecs), as ``auditwheel repair`` does, before the one pass
            wheel = manylinux.graft(wheel, plan.variant.platform, exclude, recipe.graft_libraries(plan.variant), say=shown)
            # the wheel's own public version (a local tree's, a fork's) with the variant's label: the label is ours
            version = recipe.local_version(plan.variant, wheel_names.parse(wheel.name).version.public)
            one = built_wheel.read(wheel, into=staged_dir, version=version, epoch=int(step.env["SOURCE_DATE_EPOCH"]),
                                   scan_code=plan.settings.verify != "off", keep=is_generated,
                                   asked=asked_symbols(recipe.features) if recipe.features else {})
            try:
                requires = restored + declared_requirements(one, recipe, plan.variant, toolchain)
                files, tags = manylinux.tagged(one, plan.variant.platform, exclude, plan.settings.manylinux, shown)
                files["METADATA"] = metadata_editor(version, pins, requires)(one.files["METADATA"])
            except BaseException:
                one.discard()
                raise
            one.write(files, platform_tags=tags)
            staged.append(one)
        bundled = [_stage_bundled(plan, name, staged_dir) for name in recipe.bundled_wheels(plan.variant, plan.settings)]
        verified = _verify(plan, step, staged, house, toolchain, label, bundled)
        links: dict[str, dict[str, str]] = {}  # what each wheel links: BLAS provider, NVSHMEM with its pin ...
        features = check_features(recipe, plan.variant, staged, plan.settings.verify, links=links)
        found = {"features": features, **verified, "links": links}  # per manifest field, per wheel
        added = []
        for wheel in staged:
            added.append(house.add(wheel.path, {
                "component": step.component,
                "source": step.tree_from,
                "origin": prepared.origin,
                "source_hash": prepared.source_hash,
                "patches": [list(p) for p in prepared.patches],
                "patches_not_applied": [[p.name, p.why] for p in step.patches if not p.applied],
                "build_key": key,
                "seconds": seconds,
                "isa_flags": isa_flag_statement(recipe),
                **{field: of[wheel.name] for field, of in found.items() if wheel.name in of},
                **manylinux.manifest_record(wheel),
            }, move=True, sha256=wheel.sha256))
            if wheel_names.project(wheel.name) == "torch":  # later components check their symbols against it
                torch_exports(added[-1], wheel)
        for wheel, entry in bundled:
            added.append(house.add(wheel, {
                "component": step.component, "source": entry.url, "origin": BUNDLED,
                "source_hash": f"sha256:{entry.sha256}", "patches": [], "build_key": key, "seconds": 0.0,
            }, move=True))
        return added

    @contextlib.contextmanager
    def _runner(self, step: Step, label: str, base_dirs, specs_dir: Path | None = None):
        """Yields what runs the step's commands (pyproject_hooks' runner signature): in its process environment
        (``process_environment``, with ``base_dirs`` and ``specs_dir``) and the compiler cache's session, in the
        step's folder, into its log; the session's statistics are kept for the summary."""
        env = process_environment(step, self.toolchain, self.plan.compiler_cache, base_dirs, specs_dir=specs_dir)
        log = self.plan.layout.log_file(step.recipe)
        with self.plan.compiler_cache.session(env, log.with_suffix(".ccache-stats")) as session:
            self.cache_stats[step.component] = session  # its stats are set as it closes, the step done or failed

            def run(command, cwd=None, extra_environ=None):
                run_logged(command, env={**env, **session.env, **(extra_environ or {})}, cwd=cwd or step.tree,
                           log=log, label=label)
            yield run

    def _build_in_place(self, step: Step, label: str) -> list[Path]:
        """The checkout's PEP 660 hook, in the checkout: its build folders stay there, so the next install recompiles
        only what changed.  Its editable wheel gets the plan's version and torch pin; nothing is verified (the objects
        live in the checkout and change with it) and the wheelhouse is left alone.  Always run: what changed in the
        checkout is the hook's build system's to judge."""
        layout = self.plan.layout
        wheel_dir = _emptied(layout.wheel_dir(step.recipe))
        say(f"{label} building in place in {step.tree} with {step.in_place.backend} "
            f"(log: {layout.log_file(step.recipe)})")
        with self._runner(step, label, step.tree) as run:
            hooks = BuildBackendHookCaller(str(step.tree), step.in_place.backend,
                                           list(step.in_place.backend_path) or None, runner=run,
                                           python_executable=str(step.python))
            try:
                built = hooks.build_editable(str(wheel_dir))
            except (BackendUnavailable, HookMissing) as error:
                missing = "cannot be imported" if isinstance(error, BackendUnavailable) else "has no build_editable hook"
                raise BackendError(f"editable build of {step.component}: its build backend {step.in_place.backend} "
                                   f"{missing} in {step.python} ({step.tree}/pyproject.toml)") from None
        pins = stack_pins(self.plan, self.house.wheels()) if step.recipe.pins_torch else {}
        return [relabel(wheel_dir / built, layout.wheelhouse / "editable", version=step.version, pins=pins)]


def _emptied(folder: Path) -> Path:
    """``folder``, created empty (what an earlier, failed run left there is gone)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


BUNDLED = "lock-wheel"  # manifest origin of an upstream wheel the lock pins, added unchanged


def _stage_bundled(plan: Plan, name: str, staged_dir: Path):
    """The lock's wheel ``name`` (fetched and sha256-checked when the step's sources were prepared), unchanged,
    copied beside the step's staged wheels; returns it and its lock entry."""

    entry = plan.lock.entries[name]
    # copyfile returns the copy: the wheel's own file name (the lock entry's filename) in staged_dir
    return shutil.copyfile(fetch.cache_path(entry, plan.layout.cache), staged_dir / entry.filename), entry


# Below this, a failed step is taken for one the disk stopped.
DISK_FULL_BYTES = 256 << 20
_NO_SPACE = ("no space left on device", "enospc", "disk quota exceeded")


def _after_failure(step: Step, build_dir: Path, failure: CommandFailed, label: str) -> None:
    """What a failed step leaves must not poison the next run, and a full disk must be named.

    A CMake configure cut short (by a full disk, or any failure) leaves a binary
    folder whose cache holds wrong results (a library "not found" because its
    check could not write): the next run would reuse them and fail the same way
    after the cause is gone.  A binary folder with a ``CMakeFiles`` but without
    its generated ``build.ninja``/``Makefile`` (or without ``CMakeCache.txt``)
    never finished configuring: it is removed, so the next run configures
    afresh.  A finished configure's folder is kept (compiled objects resume).
    """
    discarded = [folder for root in (build_dir, step.tree / "build") for folder in _unfinished_configures(root)]
    for folder in discarded:
        shutil.rmtree(folder, ignore_errors=True)
    if discarded:
        say(f"{label} discarded {len(discarded)} folder(s) of an unfinished CMake configure "
            f"({', '.join(str(f) for f in discarded)}): the next run configures afresh")
    where, free = build_dir if build_dir.exists() else step.tree, None
    with contextlib.suppress(OSError):
        free = shutil.disk_usage(where).free
    said_full = any(any(mark in line.lower() for mark in _NO_SPACE) for line in failure.tail)
    if said_full or (free is not None and free < DISK_FULL_BYTES):
        raise BackendError(
            f"{step.component} failed (exit {failure.returncode}) because the disk holding {where} is full "
            f"({(free or 0) / 1e6:.0f} MB free"
            f"{'; the log says: No space left on device' if said_full else ''}); free space there (or set "
            f"-C cache-dir= on a larger disk) and run again; full log: {failure.log}") from None


def _unfinished_configures(root: Path) -> list[Path]:
    """CMake binary folders under ``root`` (3 levels down at most, not inside another one, no link followed)
    whose configure did not finish."""
    found: list[Path] = []
    for folder, subfolders, files in [] if root.is_symlink() else os.walk(root):
        if "CMakeCache.txt" in files or "CMakeFiles" in subfolders:
            if "CMakeCache.txt" not in files or not {"build.ninja", "Makefile"} & set(files):
                found.append(Path(folder))
            subfolders.clear()  # a binary folder: its subfolders belong to it
        elif len(Path(folder).relative_to(root).parts) == 3:
            subfolders.clear()
        subfolders.sort()
    return found


def process_environment(step: Step, toolchain, cache: compiler_cache.CompilerCache, base_dirs,
                        specs_dir: Path | None = None) -> dict[str, str]:
    """The environment a step's commands run in: the clean process environment of its build venv, the
    toolchain's and the compiler cache's variables, then the plan's (``step.env``, with the compiler
    cache's CFLAGS/CXXFLAGS, ``step.compiler_flags``), which win.
    Stack builds and in-place steps both start their commands from here.  ``specs_dir`` (stack builds):
    the build's folders are mapped to fixed names in what the compilers write (``reproducible.py``)."""
    caller = environment.caller_environ()
    env = environment.clean_environ(step.python, toolchain.env(caller) if toolchain is not None else caller)
    env.update(cache.env(base_dirs, env["PATH"], nvcc=env.get("CUDACXX")))
    env.update(step.env)
    maps = reproducible.prefix_maps(base_dirs) if specs_dir is not None else []
    # writes the specs file the plan's compiler_flags name, and finds it for GCC
    found = cache.flags(env, specs_dir=specs_dir, cc1_options=reproducible.gcc_options(maps))
    if found:  # else the compiler cannot read it (probed): the switch stays as it was, the build goes on
        env.update(found)
        env.update(step.compiler_flags)
    elif maps:  # and the maps join the flags (they then hold this machine's paths)
        for key in ("CFLAGS", "CXXFLAGS"):
            env[key] = " ".join([env.get(key, ""), *reproducible.gcc_options(maps)]).strip()
    env.update(reproducible.compile_env(env, maps))
    return env


def _prepare_source(plan: Plan, step: Step):
    """The step's trees, exactly where the plan says, with exactly the patches it lists."""

    settings = plan.settings
    prepared = prepare.prepare_for_build(
        step.component, cache_dir=plan.layout.cache, workdir=plan.layout.source_workdir(step.recipe),
        patches=step.patches, local=settings.sources.get(step.component), offline=settings.offline,
        allow_unverified=settings.allow_unverified, unused=step.unused_sources, lock=plan.lock,
    )
    if prepared.root != step.tree or dict(prepared.extras) != dict(step.extras):
        raise BackendError(f"{step.component}: the sources were prepared in {prepared.root} "
                           f"({', '.join(map(str, prepared.extras.values())) or 'no further trees'}), "
                           f"not where the plan builds them ({step.tree}); this is a bug in the backend")
    return prepared


def toolchain_roots(toolchain) -> tuple[str, ...]:
    """Absolute folders a built object's RUNPATH may name: the toolchain's CUDA_HOME and libraries, as linked
    and as resolved (a farm's links point into the Nix store or the PyPI root)."""
    folders = [Path(toolchain.cuda_home), *toolchain.library_dirs]
    return tuple(dict.fromkeys(str(p) for folder in folders for p in (folder, folder.resolve())))


def _verify(plan: Plan, step: Step, wheels: list, house, toolchain, label: str,
            bundled: list) -> dict[str, dict[str, object]]:
    """Verify the staged wheels, beside the wheelhouse's and the step's bundled upstream wheels (not checked
    themselves); return the manifest's fields, per wheel: ``ptx_jit``, its objects whose PTX the variant's GPU
    JIT-compiles (they need the toolkit's own driver, backend/cuda_driver.py), and ``cubins``, where its
    kernels' run-time cubins come from (a wheel of the wheelhouse; None: a download), where it loads some."""
    mode = plan.settings.verify
    found: dict[str, dict[str, object]] = {"ptx_jit": {}, "cubins": {}}
    if mode == "off":
        return found

    mine = [w.path for w in wheels] + [wheel for wheel, _entry in bundled]
    others = [w for w in house.wheels() if not any(wheel_names.same_project(w.name, x.name) for x in mine)]
    variant = plan.variant
    expect = Expectation(
        sm=variant.sm, isa=variant.isa, cuda=variant.cuda, label=variant.label,
        torch_version=plan.torch_version, by_design=step.recipe.gpu_code_by_design,
        manylinux=plan.settings.manylinux, runpath_roots=toolchain_roots(toolchain),
        extra_allowed_libraries=tuple(toolchain.runtime_libraries)
        + (existing_torch.libraries() if plan.settings.torch == "existing" else ()),
    )
    problems = []
    for wheel in wheels:
        report = verify_wheel(wheel, expect, companions=[c for c in others + mine if c != wheel.path])
        say(report.format_table())
        found["ptx_jit"][wheel.name] = report.ptx_jit(variant.sm)
        if report.entries[0].cubins:
            found["cubins"][wheel.name] = report.entries[0].cubins
        if not report.ok:
            problems.append(wheel.name)
    if problems and mode == "strict":
        raise BackendError(
            f"verification failed for {', '.join(problems)} (nothing was added to the wheelhouse; "
            "see the report above, or -C verify=warn to keep going)"
        )
    if problems:
        say(f"{label} verification problems (verify=warn): {', '.join(problems)}")
    return found

