"""flashinfer 0.6.1: flashinfer-python (JIT at run time) and flashinfer-jit-cache (AOT kernels for the arch).

FLASHINFER_CUDA_ARCH_LIST is space-separated ``major.minor[a|f]``
(flashinfer/compilation_context.py at v0.6.1).  The values follow
flashinfer's own release scripts at v0.6.1
(scripts/task_test_jit_cache_package_build_import.sh,
.github/workflows/release.yml): Hopper/Blackwell get the arch-specific
``a`` target, 12.0 gets ``12.0f`` from CUDA 12.9 on and ``12.0a`` on 12.8.

flashinfer-jit-cache is built from the tree's ``flashinfer-jit-cache/``
folder, which the GitHub tag has and the PyPI sdist does not (checked: the
0.6.1 sdist has no flashinfer-jit-cache/ and no version.txt, but complete
csrc/, include/ and 3rdparty/, which the tag archive lacks).  The lock's
``flashinfer-tag`` entry supplies those two pieces: the first command copies
them into the sdist tree.  SM103 gets ``10.0a 10.3a``: flashinfer's release
scripts always pair them, and ``aot.py`` enables its SM100 modules only for
``compute_100``.  ``-C flashinfer-aot=false`` builds flashinfer-python alone.
"""

from ..variants import version_key
from .base import BuildContext, Recipe, pip_wheel

VERSION = "0.6.1"
ARCH_SPECIFIC = {"90": "9.0a", "100": "10.0a", "103": "10.0a 10.3a"}
JIT_CACHE_DIR = "flashinfer-jit-cache"
TAG = "flashinfer-tag"  # lock entry: the v0.6.1 tag tree (packaging folder and version.txt only)


def arch_list(variant) -> str:
    if variant.sm in ARCH_SPECIFIC:
        return ARCH_SPECIFIC[variant.sm]
    if variant.sm == "120":
        return "12.0f" if version_key(variant.cuda) >= (12, 9) else "12.0a"
    return variant.arch


def builds_jit_cache(variant, settings=None) -> bool:
    # flashinfer's releases start at 7.5; its kernels are not written for Pascal.
    return variant.sm != "61" and (settings is None or settings.flashinfer_aot)


def nvshmem_requirement(variant) -> tuple[str, ...]:
    """flashinfer/jit/env.py imports nvidia.nvshmem while the AOT modules compile (its headers and library)."""
    if not builds_jit_cache(variant):
        return ()
    # CUDA 13: at least the version the pypi toolchain installs (backend/toolchains/pypi.py), which the
    # build-requirement lock pins; a range, so that with torch=existing the environment's own nvshmem (the
    # one its torch loads) is used instead of stopping an offline build for want of exactly 3.3.24.
    return ("nvidia-nvshmem-cu13>=3.3.24,<4",) if variant.cuda.startswith("13.") else ("nvidia-nvshmem-cu12",)


OVERLAY = (
    "import shutil, sys; from pathlib import Path\n"
    "tag, tree = Path(sys.argv[1]), Path(sys.argv[2])\n"
    "if not (tree / 'flashinfer-jit-cache').is_dir():\n"
    "    shutil.copytree(tag / 'flashinfer-jit-cache', tree / 'flashinfer-jit-cache')\n"
    "if not (tree / 'version.txt').is_file():\n"
    "    shutil.copy2(tag / 'version.txt', tree / 'version.txt')\n"
)


def environment(ctx: BuildContext) -> dict[str, str]:
    return {
        "FLASHINFER_CUDA_ARCH_LIST": arch_list(ctx.variant),
        "FLASHINFER_LOCAL_VERSION": ctx.variant.label,
    }


def commands(ctx: BuildContext) -> list[list[str]]:
    if not builds_jit_cache(ctx.variant, ctx.settings):
        return [pip_wheel(ctx)]
    steps = []
    if ctx.tree_version is None and TAG in ctx.extras:  # the lock's sdist: add the tag's packaging folder
        steps.append([ctx.python, "-c", OVERLAY, str(ctx.extras[TAG]), str(ctx.source)])
    elif not ((ctx.checkout or ctx.source) / JIT_CACHE_DIR).is_dir():  # a local tree without it: JIT only
        return [pip_wheel(ctx)]
    return steps + [pip_wheel(ctx), pip_wheel(ctx, ctx.source / JIT_CACHE_DIR)]


def notes(variant) -> list[str]:
    if not builds_jit_cache(variant):
        return [
            "flashinfer has no kernels for sm_61: only flashinfer-python (JIT) is built, and its kernels "
            "will not compile for a Pascal GPU at run time either"
        ]
    return [
        f"AOT kernels (flashinfer-jit-cache) for FLASHINFER_CUDA_ARCH_LIST={arch_list(variant)}: the PyPI sdist "
        "plus the v0.6.1 tag's flashinfer-jit-cache/ folder (lock entry flashinfer-tag); -C flashinfer-aot=false "
        "builds flashinfer-python alone (kernels then compile at first use and need nvcc there)"
    ]


# What the smoke check runs (backend/verify/smoke.py): one op of its compiled code, CPU and CUDA.
SMOKE_GPU = """
import torch, flashinfer
x = torch.randn(4, 256, device="cuda", dtype=torch.float16)
w = torch.ones(256, device="cuda", dtype=torch.float16)
ref = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6)
assert torch.allclose(flashinfer.norm.rmsnorm(x, w).float(), ref, atol=2e-2), "flashinfer.norm.rmsnorm"
"""


RECIPE = Recipe(
    unused_sources=lambda variant, settings: () if builds_jit_cache(variant, settings) else (TAG,),
    version_file="version.txt",
    name="flashinfer",
    version=VERSION,
    distributions=("flashinfer-python", "flashinfer-jit-cache"),
    variant_build_requires=nvshmem_requirement,
    build_requires=(
        # pyproject.toml [build-system] at v0.6.1
        "setuptools>=77", "packaging>=24", "apache-tvm-ffi>=0.1.6,!=0.1.8,!=0.1.8.post0,<0.2",
        # flashinfer-jit-cache/pyproject.toml [build-system] at v0.6.1 (besides torch)
        "wheel", "ninja", "requests", "numpy", "nvidia-ml-py",
    ),
    mem_per_job_gb=8.0,
    environment=environment,
    commands=commands,
    notes=notes,
    smoke_gpu=SMOKE_GPU,
    disk_gb=8.0,
)
