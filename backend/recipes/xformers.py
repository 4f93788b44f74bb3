"""xformers 0.0.30 (PyPI sdist, bundles CUTLASS and flash-attention) against the variant's torch.

Its nvcc always runs with --threads 4, so a job costs four cores' memory.
"""

from .base import BuildContext, Recipe, pip_wheel

VERSION = "0.0.30"


def environment(ctx: BuildContext) -> dict[str, str]:
    return {
        "TORCH_CUDA_ARCH_LIST": ctx.variant.arch,
        "FORCE_CUDA": "1",
        "BUILD_VERSION": ctx.local_version(VERSION),
    }


def notes(variant) -> list[str]:
    if variant.sm == "90":
        return ["FlashAttention-3 kernels are built (Hopper only)"]
    return ["FlashAttention-3 is Hopper-only and is not built for this SM"]


RECIPE = Recipe(
    name="xformers",
    version=VERSION,
    distributions=("xformers",),
    sources=("xformers",),
    build_requires=("setuptools>=70", "wheel", "ninja"),
    mem_per_job_gb=6.0,
    fixed_nvcc_threads=4,
    description="memory-efficient attention kernels",
    environment=environment,
    commands=lambda ctx: [pip_wheel(ctx)],
    notes=notes,
)
