"""PyTorch 2.9.1 from the release tarball (with submodules), for one arch and one ISA.

torch's setup.py forwards every env var starting with BUILD_, USE_, CMAKE_
to CMake; PYTORCH_BUILD_VERSION needs PYTORCH_BUILD_NUMBER.  See
docs/COMPONENTS.md for where each setting was read.
"""

from .base import BuildContext, Recipe, pip_wheel

VERSION = "2.9.1"

# An avx torch must not carry AVX2/AVX-512 kernels the host can't run
# (the seed's build-pytorch avx variants).
AVX_ONLY = {
    "CXX_AVX2_FOUND": "FALSE", "C_AVX2_FOUND": "FALSE",
    "CXX_AVX512_FOUND": "FALSE", "C_AVX512_FOUND": "FALSE",
    "CAFFE2_COMPILER_SUPPORTS_AVX512_EXTENSIONS": "OFF",
}


def environment(ctx: BuildContext) -> dict[str, str]:
    v = ctx.variant
    env = {
        "TORCH_CUDA_ARCH_LIST": v.arch,
        "USE_CUDA": "1",
        "USE_CUDNN": "1" if v.uses_cudnn else "0",
        "USE_NCCL": "1",
        "USE_SYSTEM_NCCL": "1",
        "USE_DISTRIBUTED": "1",
        "USE_MKLDNN": "1",
        "BUILD_TEST": "0",
        "CMAKE_GENERATOR": "Ninja",
        "PYTORCH_BUILD_VERSION": ctx.local_version(VERSION),
        "PYTORCH_BUILD_NUMBER": "0",
    }
    if v.isa == "avx":
        env.update(AVX_ONLY)
        env.update({"USE_FBGEMM": "0", "USE_MKLDNN": "0", "USE_NNPACK": "0"})
    return env


def notes(variant) -> list[str]:
    out = []
    if not variant.uses_cudnn:
        out.append("no cuDNN: cuDNN 9.11+ dropped compute capability < 7.5 (USE_CUDNN=0)")
    if variant.isa == "avx":
        out.append("AVX2/AVX-512 kernels and FBGEMM, oneDNN, NNPACK are off, so the build runs on AVX-only CPUs")
    elif variant.isa.startswith("avx"):
        out.append("aten's CPU kernels are still compiled for DEFAULT/AVX2/AVX512 and picked at run time, by design")
    return out


RECIPE = Recipe(
    name="torch",
    version=VERSION,
    distributions=("torch",),
    sources=("torch",),
    depends=(),
    build_requires=(
        "setuptools>=70.1", "wheel", "cmake>=3.27", "ninja", "numpy", "pyyaml", "typing-extensions>=4.10",
        "requests", "six", "packaging", "sympy>=1.13.3", "filelock", "networkx", "jinja2", "fsspec",
    ),
    pins_torch=False,
    mem_per_job_gb=3.0,
    description="PyTorch from source for the variant's arch and ISA",
    environment=environment,
    commands=lambda ctx: [pip_wheel(ctx)],
    notes=notes,
)
