"""The plan: the ordered build steps of one variant, before anything runs.

The plan is the program.  Each step holds what its build runs, exactly: the
tree that is built (the lock's unpacked tree, or the per-variant copy of a
``source.<component>`` checkout) and the command's working folder, the
further lock trees, the build venv's interpreter, the environment the plan
sets (``common_env`` plus the recipe's), the commands, and every patch with
whether it is applied and why.  ``python -m backend plan`` prints it; the
engine (``run.py``, ``executor.py``) runs those commands with that
environment in that folder and nothing else.  What is known only after
preparing (a source hash, the build key) is computed when the step runs.

The plan is data derived from settings, the variant, the recipes, the lock,
the patches and the host's size; the only thing it runs is ``patch
--dry-run`` on a local checkout (read only), to say which patches fit it.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Collection, Mapping
from importlib import metadata
from pathlib import Path

from .. import host as host_info
from .. import recipes, toml
from ..errors import BackendError
from ..recipes import BuildContext, Recipe
from ..report_table import table
from ..settings import Settings
from ..sources import patches as sources_patches
from ..sources import prepare as sources_prepare
from ..sources import vllm_release
from ..sources.lock import Lock
from ..variants import Variant
from .compiler_cache import RECORD_SWITCHES, CompilerCache
from . import compiler_cache, reproducible
from .layout import Layout, cache_dir
from .parallelism import JobChoice, choose_jobs


@dataclasses.dataclass(frozen=True)
class InPlaceHook:
    """An editable install's step: the checkout's own PEP 660 ``build_editable``, called in the checkout
    (its ``[build-system]``, as a frontend reads it; setuptools' legacy backend when it names none)."""

    backend: str
    backend_path: tuple[str, ...]

    @classmethod
    def of(cls, checkout: Path) -> InPlaceHook:
        pyproject = checkout / "pyproject.toml"
        system = toml.loads(pyproject.read_text()).get("build-system", {}) if pyproject.is_file() else {}
        return cls(system.get("build-backend", "setuptools.build_meta:__legacy__"),
                   tuple(system.get("backend-path", ())))


@dataclasses.dataclass(frozen=True)
class Step:
    recipe: Recipe
    version: str  # the local version its wheels carry
    tree_from: str  # where the tree comes from: "lock:<entry>" or the local checkout's path
    depends: tuple[str, ...]
    env: Mapping[str, str]  # what the plan sets, over the clean process environment, toolchain and compiler cache
    # env's CFLAGS/CXXFLAGS as the compiler cache rewrites them (ccache: a specs file); they run where the
    # step's compiler reads that file (probed when the step runs, executor.process_environment), else env's own do
    compiler_flags: Mapping[str, str]
    commands: tuple[tuple[str, ...], ...]
    jobs: JobChoice
    notes: tuple[str, ...]
    tree: Path  # the tree that is built, and the commands' working folder
    extras: Mapping[str, Path]  # the component's further lock trees, by entry name
    python: Path  # the build venv's interpreter
    patches: tuple[sources_patches.PatchDecision, ...]  # every patch it meets: applied or not, and why
    unused_sources: tuple[str, ...]  # lock entries this build neither fetches nor unpacks
    in_place: InPlaceHook | None = None  # set: an editable install's step, run in the checkout instead of commands

    @property
    def component(self) -> str:
        return self.recipe.name

    def to_json(self) -> dict:
        return {
            "component": self.component,
            "version": self.version,
            "distributions": list(self.recipe.distributions),
            "source": self.tree_from,
            "depends": list(self.depends),
            "tree": str(self.tree),
            "extras": {name: str(path) for name, path in self.extras.items()},
            "python": str(self.python),
            "cwd": str(self.tree),
            "env": dict(self.env),
            "compiler_cache_env": dict(self.compiler_flags),
            "command": [list(c) for c in self.commands],
            "patches": [p.to_json() for p in self.patches],
            "jobs": self.jobs.to_json(),
            "notes": list(self.notes),
            **({"in_place": {"backend": self.in_place.backend, "backend_path": list(self.in_place.backend_path)}}
               if self.in_place else {}),
        }


@dataclasses.dataclass(frozen=True)
class Plan:
    variant: Variant
    settings: Settings
    layout: Layout
    steps: tuple[Step, ...]
    torch_version: str  # the exact torch every torch-dependent wheel pins
    compiler_cache: CompilerCache  # the tool every step's compiles go through
    release: dict  # the vLLM release line's facts (vllm_release.line_facts)
    release_problem: str | None  # why this line is planned but not built
    lock: Lock  # the sources: the vLLM line's lock, with a local vLLM checkout's side-tree pins
    line: vllm_release.ReleaseLine  # the vLLM release line's recipe facts (shown, not in to_json)

    def recipe(self, component: str) -> Recipe:
        """``component``'s recipe for the plan's vLLM release line, planned or not (the vLLM version the stack
        wheel carries, torch=existing's torch): a step's recipe is this one too (make_plan)."""
        return recipes.get(component).for_line(self.line)

    def step(self, component: str) -> Step:
        return {step.component: step for step in self.steps}[component]

    @property
    def cuda_libraries(self) -> tuple[str, ...] | None:
        """The CUDA libraries the toolchain must provide besides the compiler (the union of the steps'
        ``Recipe.cuda_libraries``): None for every one (a step's recipe, torch's, declares none)."""
        declared = [step.recipe.cuda_libraries for step in self.steps]
        return None if None in declared else tuple(dict.fromkeys(name for names in declared for name in names))

    def to_json(self) -> dict:
        return {
            "variant": self.variant.name,
            **{key: getattr(self.variant, key) for key in ("sm", "isa", "cuda", "platform", "label")},
            "torch": self.torch_version,
            "compiler_cache": self.compiler_cache.tool,
            "toolchain": self.settings.toolchain,
            "cuda_libraries": None if self.cuda_libraries is None else list(self.cuda_libraries),
            "steps": [s.to_json() for s in self.steps],
            "release": {**self.release, "problem": self.release_problem},
        }


def closure(settings: Settings) -> list[Recipe]:
    """The selected components plus what they depend on (torch=existing: but torch), in build order."""
    wanted = set(recipes.chosen(settings.components))
    for name in reversed(recipes.names()):  # build order: a component's depends come before it
        if name in wanted:
            wanted.update(recipes.get(name).depends)
    if settings.torch == "existing":
        wanted.discard("torch")
    return [recipes.get(name) for name in recipes.names() if name in wanted]


def common_env(variant: Variant, jobs: JobChoice, *, record_switches: bool = True) -> dict[str, str]:
    """What every component's build gets from the variant; ``record_switches``: the compiles record their
    switches in the objects (verification reads them)."""
    flags = " ".join(variant.isa_flags + ((RECORD_SWITCHES,) if record_switches else ()))
    return {
        "CFLAGS": flags,
        "CXXFLAGS": flags,
        # the one SM spelling every torch build and torch.utils.cpp_extension reads (torchvision, torchaudio,
        # xformers; vLLM's CMake through torch's Caffe2 config); each recipe adds only its upstream's own
        "TORCH_CUDA_ARCH_LIST": variant.target.capability,
        "MAX_JOBS": str(jobs.max_jobs_env),
        "CMAKE_BUILD_PARALLEL_LEVEL": str(jobs.processes),
        "NVCC_THREADS": str(jobs.nvcc_threads),
        "CMAKE_BUILD_TYPE": "Release",
        "PIP_NO_INPUT": "1",
        "SOURCE_DATE_EPOCH": reproducible.source_date_epoch(),  # wheel member times, __DATE__ (docs/WHEELS.md)
    }


def isa_flag_env(recipe: Recipe, variant: Variant, env: Mapping[str, str]) -> dict[str, str]:
    """The variables ``recipe``'s upstream build reads for flags CFLAGS/CXXFLAGS miss, with the variant's ISA
    flags appended (and the switch recording them, so verification sees those compiles too)."""
    host = variant.isa_flags + (RECORD_SWITCHES,)
    forms = {"host": " ".join(host), "nvcc": "-Xcompiler=" + ",".join(host)}
    return {name: " ".join(part for part in (env.get(name, ""), forms[form]) if part)
            for name, form in recipe.isa_flag_variables.items()}


def isa_flag_statement(recipe: Recipe) -> dict[str, object]:
    """Where the variant's ISA flags reach in ``recipe``'s build, and what they do not (plan note, manifest)."""
    return {
        "variables": ["CFLAGS", "CXXFLAGS", *recipe.isa_flag_variables],
        "not_reached": recipe.isa_flags_not_reached or "no object it compiles is known to miss them",
    }


def _isa_flag_note(recipe: Recipe) -> str:
    extra = [f"{name} ({'nvcc host code' if form == 'nvcc' else 'C/C++'})"
             for name, form in recipe.isa_flag_variables.items()]
    return (f"the ISA flags are passed to {recipe.name}'s build in CFLAGS/CXXFLAGS"
            + (f" and {', '.join(extra)}" if extra else "")
            + f"; not reached: {isa_flag_statement(recipe)['not_reached']}")


def make_plan(
    settings: Settings,
    variant: Variant,
    *,
    project_dir: Path,
    cores: int | None = None,
    memory_bytes: int | None = None,
    in_place: Collection[str] = (),
) -> Plan:
    """The plan of a variant.  ``in_place``: components an editable install builds in their checkout: their
    step is the checkout's own PEP 660 hook (``Step.in_place``), run there, with no patch applied, and its objects
    do not record their switches (they are not verified, and setuptools draws the -o path anew each time: with
    the switches in them a second install would miss the compiler cache)."""
    layout = Layout(cache=cache_dir(settings), variant=variant, project_dir=Path(project_dir), settings=settings)
    cores = cores or host_info.cpu_count()
    memory_bytes = memory_bytes or host_info.available_memory_bytes()
    line = vllm_release.release_line(settings.vllm)
    selected = [recipe.for_line(line) for recipe in closure(settings)]
    python = f"{variant.python[0]}.{variant.python[1:]}"
    for recipe in selected:
        if problem := recipe.python_problem(python) or recipe.variant_problem(variant):
            raise BackendError(problem)
    if settings.torch == "existing":  # the torch the running interpreter imports
        try:
            torch_version = metadata.version("torch")
        except metadata.PackageNotFoundError:
            raise BackendError(
                f"setting '{settings.named('torch')}': bad value 'existing': no torch is importable in the build "
                f"environment ({sys.executable}); accepted: source, or install torch first and build with "
                "--no-build-isolation") from None
    else:
        torch_recipe = recipes.get("torch").for_line(line)
        local_torch = settings.sources.get("torch")
        stated_torch = torch_recipe.stated_version(local_torch).version if local_torch else None
        torch_version = torch_recipe.local_version(variant, stated_torch)

    release = vllm_release.line_facts(settings.vllm)
    lock, local_differences = vllm_release.lock_for(settings.vllm, settings.sources.get("vllm"))
    release["differences"] = release["differences"] + [f"source.vllm: {d}" for d in local_differences]
    cache = compiler_cache.choose(settings.compiler_cache, layout.compiler_cache_dir,
                                  url=settings.compiler_cache_url, named=settings.named)
    steps = []
    for recipe in selected:
        jobs = choose_jobs(recipe, settings, cores=cores, memory_bytes=memory_bytes)
        local = settings.sources.get(recipe.name)
        unused = tuple(recipe.unused_sources(variant, settings))
        editable = recipe.name in in_place
        stated = recipe.stated_version(local) if local else None
        tree_version = stated.version if stated else None
        main_entry = lock.main_entry(recipe.name)
        if editable:  # the checkout itself (pep517 asks it of components with a source), never patched; the lock's
            # further trees are not prepared for it
            tree, extras = local, {}
            never = "an editable build works in your checkout itself, which is never patched"
            patches = [dataclasses.replace(p, applied=False, why=never)
                       for p in sources_patches.decide_local(recipe.name, local, tree_version, main_entry.version)]
        else:
            tree, extras = sources_prepare.planned_trees(
                recipe.name, workdir=layout.source_workdir(recipe), local=local is not None, unused=unused, lock=lock)
            patches = sources_prepare.planned_patches(recipe.name, local=local, tree_version=tree_version,
                                                      unused=unused, lock=lock,
                                                      no_version_why=stated.why_none if stated else "")
        ctx = BuildContext(
            variant=variant,
            settings=settings,
            tree=tree,
            extras=extras,
            wheel_dir=layout.wheel_dir(recipe),
            build_dir=layout.build_dir(recipe),
            python=str(layout.python),
            tree_version=tree_version,
            checkout=local,
        )
        env = common_env(variant, jobs, record_switches=not editable)
        env.update(recipe.environment(ctx))
        env.update(isa_flag_env(recipe, variant, env))
        steps.append(
            Step(
                recipe=recipe,
                version=recipe.local_version(variant, tree_version),
                tree_from=str(local) if local else f"lock:{main_entry.name}",
                depends=tuple(d for d in recipe.depends if any(r.name == d for r in selected)),
                env=env,
                compiler_flags=cache.switch_flags(env),
                commands=() if editable else tuple(tuple(c) for c in recipe.commands(ctx)),
                jobs=jobs,
                notes=(*recipe.notes(variant), _isa_flag_note(recipe)),
                tree=tree,
                extras=extras,
                python=layout.python,
                patches=tuple(patches),
                unused_sources=unused,
                in_place=InPlaceHook.of(local) if editable else None,
            )
        )
    return Plan(variant=variant, settings=settings, layout=layout, steps=tuple(steps), torch_version=torch_version,
                compiler_cache=cache, release=release, release_problem=release_problem(line, steps, python),
                lock=lock, line=line)


def release_problem(line: vllm_release.ReleaseLine, steps: list[Step], python: str) -> str | None:
    """Why the chosen vLLM release line is planned but cannot be built (None where the recipes know its facts).

    Each reason names what differs: a torch other than 2.9.x, a Python its CMake refuses, a release of a
    component whose facts its recipe does not hold, what the vllm recipe would not pass to its tree, and a tree
    that has patches of which none is for this line's release (its own must be written and reviewed)."""
    if line.base:
        return None
    reasons = []
    torch = line.versions.get("torch", "")
    if not torch.startswith("2.9."):
        reasons.append(f"its torch {torch} is not 2.9.x: a new torch needs its own recipe facts (the lock lists "
                       "what changed, the recipes are not guessed)")
    if line.pythons and python not in line.pythons:
        reasons.append(f"its CMake accepts Python {', '.join(line.pythons)}, not {python} "
                       f"({line.where.get('pythons', 'CMakeLists.txt')})")
    reasons += [problem for step in steps if (problem := step.recipe.line_problem(line))]
    reasons += [f"the vllm recipe does not know this tree's shape: {gap}" for gap in line.recipe_gaps]
    reasons += [f"{tree.submodule_entry}: {tree.entry} {line.versions[tree.entry][:8]}'s {tree.submodule} pin is not "
                "in its lock (no mirror held that commit): add the entry (docs/RELEASES.md)"
                for tree in vllm_release.KNOWN_SIDE_TREES
                if tree.submodule_entry and tree.entry in line.versions and tree.submodule_entry not in line.versions]
    trees: dict[str, list] = {}  # a tree's patches (a step's side trees have their own), in the steps' order
    for step in steps:
        for patch in step.patches:
            trees.setdefault(patch.name.rpartition("/")[0] or step.component, []).append(patch)
    reasons += [f"none of the patches for {tree} is for this line ({'; '.join(p.why for p in found)}): "
                "write and review its own" for tree, found in trees.items() if not any(p.applied for p in found)]
    return f"vllm={line.vllm} is planned, not built: {'; '.join(reasons)} (docs/RELEASES.md)" if reasons else None


def line_summary(line: vllm_release.ReleaseLine) -> str:
    """The release line's recipe facts, each with where it was read (docs/RELEASES.md)."""
    v = line.versions
    nvcc = (f"from nvcc {line.flashmla_min_nvcc} ({line.where.get('flashmla_min_nvcc')})" if line.flashmla_min_nvcc
            else f"nvcc condition {line.where.get('flashmla_min_nvcc', 'unknown')}")
    return (f"Python {', '.join(line.pythons)} ({line.where.get('pythons', 'CMakeLists.txt')}); CUTLASS "
            f"{v.get('vllm-cutlass')}; flash-attention {v.get('vllm-flash-attn', '')[:8]}; FlashMLA "
            f"{v.get('flashmla', '')[:8]} (its CUTLASS {v.get('flashmla-cutlass', 'unknown')[:8]}), "
            f"{len(line.flashmla_sources)} files ({line.where.get('flashmla_sources')}), _flashmla_C {nvcc}")


def format_plan(plan: Plan) -> str:
    lines = [
        f"variant  {plan.variant.name}  ({plan.variant.target.cubin}, {plan.variant.isa}, CUDA {plan.variant.cuda}, {plan.variant.platform})",
        f"label    +{plan.variant.label}; every torch-dependent wheel pins torch=={plan.torch_version}",
        f"cuda     {_cuda_line(plan)}",
        f"cache    {plan.layout.cache}",
        f"output   {plan.layout.wheelhouse}",
        f"release  vLLM {plan.release.get('vllm')}: " + ", ".join(f"{name} {plan.release.get(name)}" for name in (
            "torch", "torchvision", "torchaudio", "flashinfer", "xformers")) + f"; lock {plan.release.get('lock')}",
        f"facts    {line_summary(plan.line)}",
        *[f"         differs: {d}" for d in plan.release.get("differences", [])],
        *([f"         unverified (needs `lock --lock` with network): {', '.join(plan.release['unverified'])}"]
          if plan.release.get("unverified") else []),
        *([f"         NOT BUILT: {plan.release_problem}"] if plan.release_problem else []),
        "",
    ]
    rows = [[str(index), step.component, step.version, ", ".join(step.depends) or "-",
             f"{step.jobs.processes}x{step.jobs.nvcc_threads}", step.tree_from]
            for index, step in enumerate(plan.steps, 1)]
    lines.append(table(["#", "component", "version", "after", "jobs", "source"], rows))
    for step in plan.steps:
        lines += ["", f"[{step.component}] jobs: {step.jobs.reason}"]
        lines += [f"  {key}={step.env[key]}" for key in sorted(step.env) if key != "PIP_NO_INPUT"]
        lines += [f"  {key}={value}  (GCC reads the switches and the build's prefix maps from a specs file)"
                  for key, value in sorted(step.compiler_flags.items())]
        lines += [f"  patch {patch.name}: {'applied' if patch.applied else 'NOT applied'} ({patch.why})"
                  for patch in step.patches]
        lines += [f"  in {step.tree}", *("  $ " + " ".join(command) for command in step.commands)]
        lines += [f"  note: {note}" for note in step.notes]
    return "\n".join(lines)


def _cuda_line(plan: Plan) -> str:
    """What the toolchain is asked for: the compiler and the libraries the steps link."""
    if not plan.steps:
        return "not used (no step compiles CUDA code)"
    wanted = plan.cuda_libraries
    libraries = ("every library the stack links (a step's recipe names none)" if wanted is None
                 else ", ".join(wanted) or "none")
    return f"{plan.variant.cuda} from -C toolchain={plan.settings.toolchain}; libraries besides the compiler: {libraries}"
