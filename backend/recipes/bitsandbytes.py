"""bitsandbytes 0.49.1: CMake through scikit-build-core, one compute capability.

A single capability also avoids CCCL 2.8.2's many-architecture macro bug
(CUDA 12.9).  Its build needs no torch; its wheel needs torch at run time.
"""

from .base import BuildContext, Recipe, pip_wheel

VERSION = "0.49.1"


def environment(ctx: BuildContext) -> dict[str, str]:
    # scikit-build-core appends CMAKE_ARGS to its CMake call.
    return {"CMAKE_ARGS": f"-DCOMPUTE_BACKEND=cuda -DCOMPUTE_CAPABILITY={ctx.variant.sm}"}


RECIPE = Recipe(
    name="bitsandbytes",
    version=VERSION,
    distributions=("bitsandbytes",),
    sources=("bitsandbytes",),
    depends=(),
    build_requires=("scikit-build-core", "setuptools>=77.0.3", "trove-classifiers>=2025.8.6.13", "cmake>=3.22.1", "ninja"),
    mem_per_job_gb=1.5,
    description="k-bit quantization kernels for one compute capability",
    environment=environment,
    commands=lambda ctx: [pip_wheel(
        ctx, None,
        "-C", "cmake.define.COMPUTE_BACKEND=cuda",
        "-C", f"cmake.define.COMPUTE_CAPABILITY={ctx.variant.sm}",
    )],
)
