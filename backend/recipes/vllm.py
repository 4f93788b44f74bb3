"""vLLM 0.15.1 against the variant's torch, with every configure-time source from the lock.

vLLM's CMake would fetch CUTLASS, flash-attention, FlashMLA, qutlass and
triton_kernels at configure time; the lock's copies are passed instead, so
the build needs no network.
"""

from .base import BuildContext, Recipe, pip_wheel

VERSION = "0.15.1"


def environment(ctx: BuildContext) -> dict[str, str]:
    x = ctx.extras
    env = {
        "VLLM_TARGET_DEVICE": "cuda",
        "TORCH_CUDA_ARCH_LIST": ctx.variant.arch,
        "NVCC_THREADS": str(ctx.nvcc_threads),
        "VLLM_VERSION_OVERRIDE": ctx.local_version(VERSION),
        "SETUPTOOLS_SCM_PRETEND_VERSION": ctx.local_version(VERSION),
    }
    cmake_args = []
    if "vllm-cutlass" in x:
        cmake_args.append(f"-DFETCHCONTENT_SOURCE_DIR_CUTLASS={x['vllm-cutlass']}")
        env["VLLM_CUTLASS_SRC_DIR"] = str(x["vllm-cutlass"])
    if "vllm-flash-attn" in x:
        env["VLLM_FLASH_ATTN_SRC_DIR"] = str(x["vllm-flash-attn"])
    if "flashmla" in x:
        env["FLASH_MLA_SRC_DIR"] = str(x["flashmla"])
    if "qutlass" in x:
        env["QUTLASS_SRC_DIR"] = str(x["qutlass"])
    if "triton-kernels" in x:
        env["TRITON_KERNELS_SRC_DIR"] = str(x["triton-kernels"] / "python" / "triton_kernels" / "triton_kernels")
    if cmake_args:
        env["CMAKE_ARGS"] = " ".join(cmake_args)
    return env


def notes(variant) -> list[str]:
    out = []
    if variant.sm == "61":
        out.append(
            "vLLM 0.15.1 targets no 6.x architecture: with TORCH_CUDA_ARCH_LIST=6.1 its CMake intersects "
            "an empty arch set, so the _C extension holds no kernel for sm_61 and vLLM's CUDA ops will not "
            "run on Pascal; torch, torchvision, torchaudio and bitsandbytes still work there"
        )
    if variant.sm == "90":
        out.append("vLLM upgrades 9.0 to the 9.0a kernels (wgmma CUTLASS, FlashMLA)")
    if variant.sm == "103":
        out.append("kernels vLLM builds only for 10.0f are not built for a 10.3 target")
    if variant.sm not in ("100", "103", "120"):
        out.append("qutlass (Blackwell-only) is configured but compiles nothing")
    return out


RECIPE = Recipe(
    name="vllm",
    version=VERSION,
    distributions=("vllm",),
    sources=("vllm", "vllm-cutlass", "vllm-flash-attn", "vllm-flash-attn-cutlass", "flashmla", "flashmla-cutlass", "qutlass", "triton-kernels"),
    depends=("torch", "flashinfer"),
    build_requires=("setuptools>=77.0.3,<81", "setuptools-scm>=8", "wheel", "cmake>=3.26.1", "ninja", "packaging>=24.2", "jinja2"),
    mem_per_job_gb=6.0,
    description="vLLM's _C, _moe_C, flash-attention and FlashMLA kernels",
    environment=environment,
    commands=lambda ctx: [pip_wheel(ctx)],
    notes=notes,
)
