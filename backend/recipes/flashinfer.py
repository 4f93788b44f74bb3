"""flashinfer 0.6.1: flashinfer-python (JIT at run time) and flashinfer-jit-cache (AOT kernels for the arch).

FLASHINFER_CUDA_ARCH_LIST is space-separated; Hopper and Blackwell kernels
need the arch-specific ``a`` targets.
"""

from .base import BuildContext, Recipe, pip_wheel

VERSION = "0.6.1"
ARCH_SPECIFIC = {"90", "100", "103", "120"}


def arch_list(variant) -> str:
    return variant.arch + ("a" if variant.sm in ARCH_SPECIFIC else "")


def environment(ctx: BuildContext) -> dict[str, str]:
    return {
        "FLASHINFER_CUDA_ARCH_LIST": arch_list(ctx.variant),
        "FLASHINFER_LOCAL_VERSION": ctx.variant.label,
    }


def commands(ctx: BuildContext) -> list[list[str]]:
    jit_cache = ctx.source / "flashinfer-jit-cache"
    steps = [pip_wheel(ctx)]
    if jit_cache.is_dir():
        steps.append(pip_wheel(ctx, jit_cache))
    return steps


RECIPE = Recipe(
    name="flashinfer",
    version=VERSION,
    distributions=("flashinfer-python", "flashinfer-jit-cache"),
    sources=("flashinfer",),
    build_requires=("setuptools>=77", "wheel", "ninja", "packaging", "apache-tvm-ffi>=0.1,<0.2; python_version>='3.99'"),
    mem_per_job_gb=8.0,
    description="flashinfer-python (JIT) and its AOT kernel cache for the variant's arch",
    environment=environment,
    commands=commands,
    notes=lambda variant: [
        f"AOT kernels for FLASHINFER_CUDA_ARCH_LIST={arch_list(variant)} are built from the tree's "
        "flashinfer-jit-cache/ folder; the PyPI sdist the lock pins has none (GitHub tree only), "
        "so from the sdist only flashinfer-python is built and kernels compile at first use (JIT)"
    ],
)
