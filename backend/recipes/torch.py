"""PyTorch 2.9.1 from the release tarball (with submodules), for one arch and one ISA.

torch's setup.py (tools/setup_helpers/cmake.py) forwards every environment
variable starting with BUILD_, USE_, CMAKE_ (plus a fixed list such as
TORCH_CUDA_ARCH_LIST) to CMake as -D<NAME>=<value>; nothing else reaches
CMake, and there is no CMAKE_ARGS pass-through.  The AVX-only switches
(-DCXX_AVX2_FOUND=FALSE ...) do not start with those prefixes, so an avx
build writes them into a small CMake file and hands it to CMake through
CMAKE_PROJECT_INCLUDE_BEFORE, which *is* forwarded.  See docs/COMPONENTS.md.
"""

from .base import BuildContext, Features, Recipe, pip_wheel

VERSION = "2.9.1"

# What isa=avx promises (docs/VERIFY.md, "What isa=avx promises"): no instruction beyond AVX on any code
# path that runs on an AVX-only CPU.  Code for AVX2/AVX-512 may sit in the binary behind a run-time CPU
# check that never picks it there, and an avx torch has such code: XNNPACK (on, as in every torch build)
# compiles its AVX2/AVX-512/VNNI microkernels and selects them through cpuinfo, and sleef's dispatchers
# pick their AVX2/AVX-512 variants by cpuid.  What this cache removes is the one dispatch that compiles
# *aten's* kernels for AVX2 and AVX-512 (cmake/Codegen.cmake's CPU_CAPABILITY list, from FindAVX.cmake),
# as the seed's build-pytorch avx variants do: aten's DEFAULT kernels, compiled with -mavx, are all that
# remains.  FindAVX.cmake's CHECK_SSE only ever *adds* a cache entry (set(... CACHE BOOL) without FORCE),
# so a FALSE seeded before project() stays FALSE.  Verification's scan cannot tell dispatched code from
# the rest, so it warns; execution on an emulated AVX-only CPU is what proves the promise.
AVX_ONLY_CACHE = {
    "CXX_AVX2_FOUND": "FALSE", "C_AVX2_FOUND": "FALSE",
    "CXX_AVX512_FOUND": "FALSE", "C_AVX512_FOUND": "FALSE",
    "CAFFE2_COMPILER_SUPPORTS_AVX512_EXTENSIONS": "OFF",
}
AVX_ONLY_FILE = "avx-only.cmake"


def avx_only_script() -> str:
    lines = ["# Written by the vllm-stack torch recipe: an AVX-only torch (seed build-pytorch avx variants)."]
    for name, value in AVX_ONLY_CACHE.items():
        kind = "BOOL"
        lines.append(f'set({name} {value} CACHE {kind} "forced off by vllm-stack (isa=avx)" FORCE)')
    return "\n".join(lines) + "\n"


# What PyTorch's own 2.9.1 wheels require besides their Python deps (docs/COMPONENTS.md): triton,
# from the torch-2.9.1 wheel's METADATA on PyPI, and the nvidia-* pins its release build adds through
# PYTORCH_EXTRA_INSTALL_REQUIREMENTS (.github/scripts/generate_binary_build_matrix.py of 2.9; the 12.8
# list is exactly PyPI's torch-2.9.1 METADATA).  PyTorch 2.9 publishes no CUDA 12.9 wheel: a 12.9 torch
# declares the libraries it links instead (backend/wheels/requires.py).
TRITON = "triton==3.5.1"
PYTORCH_CUDA_PINS = {
    "12.8": (
        "nvidia-cuda-nvrtc-cu12==12.8.93", "nvidia-cuda-runtime-cu12==12.8.90", "nvidia-cuda-cupti-cu12==12.8.90",
        "nvidia-cudnn-cu12==9.10.2.21", "nvidia-cublas-cu12==12.8.4.1", "nvidia-cufft-cu12==11.3.3.83",
        "nvidia-curand-cu12==10.3.9.90", "nvidia-cusolver-cu12==11.7.3.90", "nvidia-cusparse-cu12==12.5.8.93",
        "nvidia-cusparselt-cu12==0.7.1", "nvidia-nccl-cu12==2.27.5", "nvidia-nvshmem-cu12==3.3.20",
        "nvidia-nvtx-cu12==12.8.90", "nvidia-nvjitlink-cu12==12.8.93", "nvidia-cufile-cu12==1.13.1.3",
    ),
    "13.0": (
        "nvidia-cuda-nvrtc==13.0.48", "nvidia-cuda-runtime==13.0.48", "nvidia-cuda-cupti==13.0.48",
        "nvidia-cudnn-cu13==9.13.0.50", "nvidia-cublas==13.0.0.19", "nvidia-cufft==12.0.0.15",
        "nvidia-curand==10.4.0.35", "nvidia-cusolver==12.0.3.29", "nvidia-cusparse==12.6.2.49",
        "nvidia-cusparselt-cu13==0.8.0", "nvidia-nccl-cu13==2.27.7", "nvidia-nvshmem-cu13==3.3.24",
        "nvidia-nvtx==13.0.39", "nvidia-nvjitlink==13.0.39", "nvidia-cufile==1.15.0.42",
    ),
}


def runtime_requires(variant) -> tuple[str, ...]:
    pins = PYTORCH_CUDA_PINS.get(variant.cuda, ())
    if not variant.uses_cudnn:
        pins = tuple(p for p in pins if not p.startswith("nvidia-cudnn"))
    return (TRITON, *pins)


SMOKE = """
import torch
print(torch.__config__.show())
assert torch.ones(4).mul(3).sum().item() == 12.0, "torch CPU op"
"""
SMOKE_GPU = """
import torch, triton, triton.language as tl
assert torch.cuda.is_available(), "torch sees no GPU"
assert torch.ones(4, device="cuda").mul(3).sum().item() == 12.0, "torch CUDA op"

@triton.jit
def _add(x, y, out, n, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    tl.store(out + offsets, tl.load(x + offsets, mask=mask) + tl.load(y + offsets, mask=mask), mask=mask)

x = torch.arange(1000, device="cuda", dtype=torch.float32)
out = torch.empty_like(x)
_add[(triton.cdiv(1000, 256),)](x, x, out, 1000, BLOCK=256)
assert torch.equal(out, x * 2), "Triton kernel"
print("triton", triton.__version__, "kernel ok on", torch.cuda.get_device_name())
"""


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
        env.update({"USE_FBGEMM": "0", "USE_MKLDNN": "0", "USE_NNPACK": "0"})
        env["CMAKE_PROJECT_INCLUDE_BEFORE"] = str(ctx.build_dir / AVX_ONLY_FILE)
    return env


def commands(ctx: BuildContext) -> list[list[str]]:
    steps = []
    if ctx.variant.isa == "avx":
        path = ctx.build_dir / AVX_ONLY_FILE
        steps.append([
            ctx.python, "-c",
            "import pathlib, sys; p = pathlib.Path(sys.argv[1]); "
            "p.parent.mkdir(parents=True, exist_ok=True); p.write_text(sys.argv[2])",
            str(path), avx_only_script(),
        ])
    steps.append(pip_wheel(ctx))
    return steps


def notes(variant) -> list[str]:
    out = []
    if not variant.uses_cudnn:
        out.append("torch is built without cuDNN (USE_CUDNN=0): cuDNN 9.11+ dropped compute capability < 7.5")
    if variant.isa == "avx":
        out.append(
            "isa=avx promises no instruction beyond AVX on any code path an AVX-only CPU runs: aten's "
            "AVX2/AVX-512 kernels, FBGEMM, oneDNN and NNPACK are off; XNNPACK's AVX2/AVX-512/VNNI microkernels "
            "(cpuinfo) and sleef's AVX2/AVX-512 variants (cpuid) stay in the binary behind run-time dispatch "
            "that never picks them on an AVX-only CPU (slower CPU ops than an avx2 build)"
        )
    elif variant.platform == "x86_64":
        out.append(
            "aten's CPU kernels are still compiled for DEFAULT/AVX2/AVX512 and picked at run time, by design; "
            f"the rest of torch requires {variant.isa}"
        )
    return out


# cmake/public/cuda.cmake turns each of these off with a warning when it is not found.  NCCL is
# asked for (USE_NCCL=1) and cuDNN too except on SM61; cuSPARSELt and cuDSS are recorded only.
FEATURES = Features(
    object="torch/lib/libtorch_cuda.so",
    markers={
        "cudnn": ("libcudnn.so", "cudnnCreate"),
        "cusparselt": ("libcusparseLt.so", "cusparseLtInit"),
        "cudss": ("libcudss.so", "cudssCreate"),
        "nccl": ("libnccl.so", "ncclCommInitRank"),
    },
    promised=lambda variant: (("cudnn",) if variant.uses_cudnn else ()) + ("nccl",),
    hint="give the toolchain cuDNN and NCCL (the pypi toolchain installs nvidia-cudnn and nvidia-nccl) and see "
         "the torch log's 'Could not find' lines",
)

RECIPE = Recipe(
    features=FEATURES,
    version_file="version.txt",
    name="torch",
    version=VERSION,
    distributions=("torch",),
    depends=(),
    build_requires=(
        # requirements-build.txt / pyproject [build-system] (see docs/COMPONENTS.md for the commit read)
        "setuptools>=70.1.0", "wheel", "cmake>=3.27", "ninja", "numpy", "packaging", "pyyaml",
        "requests", "six", "typing-extensions>=4.10.0",
        # imported by torch's setup.py / codegen while building
        "sympy>=1.13.3", "filelock", "networkx", "jinja2", "fsspec",
    ),
    pins_torch=False,
    mem_per_job_gb=3.0,
    environment=environment,
    commands=commands,
    notes=notes,
    runtime_requires=runtime_requires,
    smoke=SMOKE,
    smoke_gpu=SMOKE_GPU,
    disk_gb=30.0,
)
