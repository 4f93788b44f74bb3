"""bitsandbytes 0.49.1: CMake through scikit-build-core's setuptools plugin, one compute capability.

Its CMakeLists finds only the CUDA toolkit (no torch), so the build needs no
torch; its wheel requires ``torch>=2.3,<3`` at run time and, like every
torch-dependent wheel of a variant, gets that pinned to the variant's exact
torch (it links no torch library, but pip must not mix variants).  One
capability also avoids CCCL 2.8.2's many-architecture macro bug (CUDA 12.9).
Its version is the static ``bitsandbytes.__version__``; the engine adds the
local label when it relabels the wheel.
"""

from .base import BuildContext, Recipe, pip_wheel

# The smoke check's op (backend/verify/smoke.py), the same text on each device
SMOKE = """
import torch, bitsandbytes.functional as F
A = torch.tensor([0.5, -1.0, 0.25, 1.0] * 16, device="{device}")
q, state = F.quantize_blockwise(A)
back = F.dequantize_blockwise(q, state).tolist()
assert max(abs(x - y) for x, y in zip(back, A.tolist())) < 0.02, "bitsandbytes quantization on {device}"
"""


class Bitsandbytes(Recipe):
    name = "bitsandbytes"
    version = "0.49.1"
    version_file = "bitsandbytes/__init__.py"  # a checkout's own release (its static __version__): which patches fit it
    depends = ()
    cuda_libraries = ("cublas", "cusparse")  # CMakeLists: CUDA::cudart, CUDA::cublas(Lt), CUDA::cusparse
    # pyproject.toml [build-system] at 0.49.1, plus the CMake and Ninja it drives
    build_requires = ("scikit-build-core", "setuptools>=77.0.3", "trove-classifiers>=2025.8.6.13", "cmake>=3.22.1", "ninja")
    mem_per_job_gb = 1.5
    disk_gb = 1.0
    # CMake initialises CMAKE_CUDA_FLAGS from CUDAFLAGS; CMakeLists.txt (0.49.1) only appends to it
    isa_flag_variables = {"CUDAFLAGS": "nvcc"}

    def defines(self, ctx: BuildContext) -> list[str]:
        # COMPUTE_CAPABILITY is a list of CMake architecture numbers ("90"): CMakeLists.txt:189-196 (0.49.1) makes
        # each "<n>-real" and the highest also PTX (patches/bitsandbytes: real cubins only); TORCH_CUDA_ARCH_LIST
        # is not read (its CMake finds no torch)
        return ["-DCOMPUTE_BACKEND=cuda", f"-DCOMPUTE_CAPABILITY={ctx.variant.target.cmake}"]

    def environment(self, ctx: BuildContext) -> dict[str, str]:
        # scikit-build-core appends the CMAKE_ARGS environment variable to its CMake call.  Its plain
        # backend (the stand-in's) builds in a random /tmp folder unless SKBUILD_BUILD_DIR names one:
        # outside the compiler cache's base directories, its compiles would name this machine's tree
        # (../../<cache>/work/...) and miss on every other.  The setuptools plugin of 0.49.1 ignores
        # it and builds in setuptools' build_temp, inside the tree already.
        return {"CMAKE_ARGS": " ".join(self.defines(ctx)), "SKBUILD_BUILD_DIR": str(ctx.build_dir / "cmake")}

    def commands(self, ctx: BuildContext) -> list[list[str]]:
        return [pip_wheel(ctx, None, *(arg for define in self.defines(ctx) for arg in ("-C", "cmake.define." + define[2:])))]

    def notes(self, variant) -> list[str]:
        return [f"bitsandbytes holds {variant.target.cubin} cubins only (COMPUTE_CAPABILITY={variant.target.cmake}), no PTX"]

    # What the smoke check runs (backend/verify/smoke.py): one op of its compiled code, CPU and CUDA.
    smoke = SMOKE.format(device="cpu")
    smoke_gpu = SMOKE.format(device="cuda")


RECIPE = Bitsandbytes()
