"""What a recipe is: one component's build, as declarative attributes and overridable methods.

The engine (``backend.pipeline``) knows nothing about any one package; it
reads these attributes and calls these methods.  A recipe module defines one
``Recipe`` subclass and ``RECIPE``, its instance.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path

from ..settings import Settings
from ..sources import checkout_version
from ..sources.lock import load as load_lock
from ..variants import Variant


@dataclasses.dataclass(frozen=True)
class BuildContext:
    """Everything a recipe may look at to produce its environment and commands."""

    variant: Variant
    settings: Settings
    tree: Path  # the tree that is built: the lock entry unpacked and patched, or a checkout's per-variant copy
    extras: Mapping[str, Path]  # the further lock entries, unpacked, by entry name (vLLM's CUTLASS ...)
    wheel_dir: Path  # the command writes its wheel(s) here
    build_dir: Path  # kept between runs, for incremental builds
    python: str  # the build environment's interpreter
    tree_version: str | None = None  # a local tree's own version (its version file), else None
    # A local tree's checkout: its files can be read while planning (``tree``, its per-variant copy,
    # is made when the step runs); None for a lock tree
    checkout: Path | None = None


@dataclasses.dataclass(frozen=True)
class Marker:
    """How one wheel member shows an optional library: it links it (a DT_NEEDED name starting with one of
    ``libraries``), calls it (one of ``symbols`` undefined) or carries it statically (one defined)."""

    libraries: tuple[str, ...]
    symbols: tuple[str, ...]
    object: str | None = None  # the wheel member to read; None: the Features' object


@dataclasses.dataclass(frozen=True)
class Features:
    """Optional libraries a build may silently go without, and how its binary shows each (backend/verify/features.py)."""

    object: str  # the wheel member that uses them ("torch/lib/libtorch_cuda.so")
    markers: Mapping[str, Marker]  # feature -> how the binary shows it
    promised: Callable[[Variant], tuple[str, ...]]  # the features the variant must have
    hint: str = ""  # what to do when one is missing

    def marker(self, feature: str) -> Marker:
        found = self.markers[feature]
        return found if found.object else dataclasses.replace(found, object=self.object)


class Recipe:
    """One component's build: declarative attributes, plus methods a recipe module's subclass overrides
    (as Spack's package.py).  A recipe module defines one subclass and ``RECIPE``, its instance."""

    name: str  # component name, as in -C components=
    version: str
    depends: tuple[str, ...] = ("torch",)  # components installed in the build env first
    build_requires: tuple[str, ...] = ()  # pip requirements of its build (besides torch)
    pins_torch = True  # its wheels pin the exact torch (and every other member) of the wheelhouse
    mem_per_job_gb = 2.0  # peak memory of one compile job
    fixed_nvcc_threads: int | None = None  # a build that always runs nvcc with N threads
    # its build runs MAX_JOBS / NVCC_THREADS compile processes (vLLM's setup.py), so MAX_JOBS is processes x threads
    divides_max_jobs_by_nvcc_threads = False
    # where a checkout of it states its version: version.txt (the PyTorch projects, flashinfer), a module
    # assigning __version__, or the _version.py setuptools-scm writes (backend/sources/checkout_version.py)
    version_file: str | None = "version.txt"
    # its version comes from setuptools-scm: a git checkout is the version its tags give, as
    # setuptools-scm derives it (vLLM); a tree without .git (an sdist) states it in version_file
    version_from_git_tags = False
    cuda_libraries: tuple[str, ...] | None = None  # CUDA libraries it links (pypi toolchain names); None: all
    # Why its build emits PTX and plain cubins of lower SMs on purpose (verification reports them, not fails)
    gpu_code_by_design = ""
    # The PTX targets it emits on purpose ("compute_80"): a GPU of a later major architecture runs them by
    # JIT, which needs the driver of the toolkit that built them (backend/cuda_driver.py)
    ptx_by_design: tuple[str, ...] = ()
    smoke = ""  # Python the smoke check runs in the installed stack: one CPU op of its compiled code
    smoke_gpu = ""  # the same where a GPU is present: one CUDA op (torch: also a Triton kernel)
    disk_gb = 2.0  # peak disk of its build tree and wheels (the free-disk check)
    # Stack members its wheel requires although a patch removed them (added back, pinned to the wheelhouse's)
    stack_requires: tuple[str, ...] = ()
    features: Features | None = None  # optional libraries recorded in the manifest, promised ones checked
    # Where its upstream build reads extra compiler flags that CFLAGS/CXXFLAGS do not reach (nvcc's host
    # compiles above all): variable -> "host" (the variant's flags as they are) or "nvcc" (one -Xcompiler=
    # carrying them to nvcc's host compiler).  The plan appends the variant's ISA flags to each.
    isa_flag_variables: Mapping[str, str] = {}
    # The objects of its wheel the variant's ISA flags still do not reach, and why (plan note, manifest)
    isa_flags_not_reached = ""
    pythons: tuple[str, ...] = ()  # the Python versions its build accepts ("3.13"); () = any
    line = None  # the vLLM release line it is built for (for_line; vllm_release.ReleaseLine), None: the base line

    @property
    def distributions(self) -> tuple[str, ...]:
        """The wheel distribution names it produces: its own name, unless a subclass lists others (flashinfer)."""
        return (self.name,)

    def build_requirements(self, variant: Variant) -> tuple[str, ...]:
        """Everything its build environment needs besides torch, for this variant."""
        return self.build_requires

    def environment(self, ctx: BuildContext) -> dict[str, str]:
        """What its build reads from the environment, over the plan's common variables."""
        return {}

    def commands(self, ctx: BuildContext) -> list[list[str]]:
        return [pip_wheel(ctx)]

    def notes(self, variant: Variant) -> list[str]:
        """What the plan says about this build of it."""
        return []

    def unused_sources(self, variant: Variant, settings: Settings | None) -> tuple[str, ...]:
        """Lock entries of it this variant and these settings do not use (flashinfer's tag tree without its
        AOT kernels): neither fetched nor unpacked."""
        return ()

    def bundled_wheels(self, variant: Variant, settings: Settings | None) -> tuple[str, ...]:
        """Lock entries that are upstream's own wheels, put into the wheelhouse unchanged beside the built ones
        (flashinfer-cubin on Blackwell): sha256-checked by the lock, neither relabelled nor verified as ours."""
        return ()

    def runtime_requires(self, variant: Variant) -> tuple[str, ...]:
        """Requirements its first distribution's wheel declares besides the CUDA libraries it links
        (torch: triton and PyTorch's own nvidia-* pins); see backend/wheels/requires.py."""
        return ()

    def graft_libraries(self, variant: Variant) -> tuple[str, ...]:
        """Libraries its wheel carries, as its upstream's release wheels do (fnmatch on sonames): grafted by
        auditwheel's repair into <package>.libs (backend/wheels/manylinux.py: graft); never torch's or CUDA's."""
        return ()

    def host_problem(self) -> str | None:
        """What the build host lacks for it, in one line (the packages to install); checked before any build."""
        return None

    def variant_problem(self, variant: Variant) -> str | None:
        """Why it cannot build a working wheel for the variant (the plan refuses it), or None."""
        return None

    def for_line(self, line) -> Recipe:
        """It for a vLLM release line (``-C vllm``; sources.vllm_release.ReleaseLine): the version the line's lock
        pins, and the line (flashinfer's notes name its vLLM); a recipe with more facts per release overrides this
        (vllm)."""
        return self.replace(version=line.versions.get(self.name, self.version), line=line)

    def line_problem(self, line) -> str | None:
        """Why it cannot build what the release line pins, or None."""
        return None

    def replace(self, **changes) -> Recipe:
        """A copy with some attributes changed (another release line's version and facts)."""
        changed = copy.copy(self)
        vars(changed).update(changes)
        return changed

    @property
    def lock_entries(self) -> tuple[str, ...]:
        """Its entries in third_party/sources.lock (those naming it), the one built first."""
        lock = load_lock()
        return tuple(entry.name for entry in lock.for_component(self.name)) or (lock.main_entry(self.name).name,)

    def python_problem(self, python: str) -> str | None:
        """Why a build run by Python ``python`` ("3.14") cannot build this recipe, or None."""
        if not self.pythons or python in self.pythons:
            return None
        return (f"{self.name} {self.version} supports Python {', '.join(self.pythons)}, and this build runs on "
                f"Python {python}: build with a Python it accepts, or leave {self.name} out of -C components")

    def local_version(self, variant: Variant, tree_version: str | None = None) -> str:
        """The version its build stamps and its wheels carry: a local tree's (or a built wheel's) public
        version, else the recipe's, plus the variant's label (``2.9.1+cu129.sm90.avx512``)."""
        return f"{tree_version or self.version}+{variant.label}"

    def stated_version(self, tree: Path) -> checkout_version.Stated:
        """A local checkout's own public version (``.version``: a fork or another release keeps it, and gets only its
        patches), or why it states none."""
        return checkout_version.stated(tree, self.version_file, self.version_from_git_tags)


def pip_wheel(ctx: BuildContext, tree: Path | None = None, *extra: str) -> list[str]:
    """The build command of a PEP 517 project, built against the build env's torch."""
    return [
        ctx.python, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "--no-cache-dir",
        "-v", "-w", str(ctx.wheel_dir), *extra, str(tree or ctx.tree),
    ]


# What torch 2.9.1's torch.utils.cpp_extension compiles for: each TORCH_CUDA_ARCH_LIST entry must be one of these
# (or one with "+PTX"), any other stops the build with "Unknown CUDA arch (X) or GPU not supported"
# (_get_cuda_arch_flags, torch/utils/cpp_extension.py:2407-2411 and 2460, read in PyPI's torch-2.9.1 wheel).
# 7.0 (V100) and 12.1 (GB10) are in it; 10.1, Thor's number before CUDA 13 renamed it 11.0, is not.
CPP_EXTENSION_ARCHES = ("3.5", "3.7", "5.0", "5.2", "5.3", "6.0", "6.1", "6.2", "7.0", "7.2", "7.5", "8.0", "8.6",
                        "8.7", "8.9", "9.0", "9.0a", "10.0", "10.0a", "11.0", "11.0a", "10.3", "10.3a", "12.0",
                        "12.0a", "12.1", "12.1a")


def cpp_extension_arch_problem(component: str, arch: str) -> str | None:
    """Why torch 2.9.1's cpp_extension would stop ``component``'s build at TORCH_CUDA_ARCH_LIST=``arch``, the one
    arch each caller passes (the variant's, xformers' 9.0a on sm_90)."""
    if arch in CPP_EXTENSION_ARCHES:
        return None
    return (f"{component} cannot be built for TORCH_CUDA_ARCH_LIST={arch}: torch 2.9.1's "
            f"torch.utils.cpp_extension, which compiles its CUDA code, knows no {arch} "
            f"(cpp_extension.py:2407-2411); leave {component} out of -C components")
