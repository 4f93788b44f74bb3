"""PyTorch 2.9.1 from the release tarball (with submodules), for one arch and one ISA.

torch's setup.py (tools/setup_helpers/cmake.py) forwards every environment
variable starting with BUILD_, USE_, CMAKE_ (plus a fixed list such as
TORCH_CUDA_ARCH_LIST) to CMake as -D<NAME>=<value>; nothing else reaches
CMake, and there is no CMAKE_ARGS pass-through.  Cache entries without those
prefixes (NNPACK's PYTHON_SIX_SOURCE_DIR, an avx build's -DCXX_AVX2_FOUND=FALSE
...) go into a small CMake file handed to CMake through
CMAKE_PROJECT_INCLUDE_BEFORE, which *is* forwarded.  See docs/COMPONENTS.md.
"""

from pathlib import Path

from .base import BuildContext, Features, Marker, Recipe, pip_wheel

# ---- CMake 4 and NNPACK's `six` (issue 22, item 3) ----------------------------------------------
# The build-requirement lock pins one cmake (4.x) for every component; we keep it for torch too.
# torch 2.9.1 configures under CMake 4: pytorch PR 150203 (cherry-picked to 2.7 as PR 150460, so in
# 2.8 and 2.9) wraps every sub-project that still declares cmake_minimum_required < 3.5 (protobuf,
# NNPACK, psimd, FP16, ittapi, TensorPipe, gloo) in set(CMAKE_POLICY_VERSION_MINIMUM 3.5) ...
# unset(...), e.g. cmake/External/nnpack.cmake "Ancient nnpack forces CMake compatibility";
# conda-forge's pytorch-cpu-feedstock builds 2.9.1 (commit d3fee902 "Bump to 2.9.1") with an
# unpinned conda-forge cmake and no policy variable.  What that wrapping cannot reach: NNPACK's
# CMakeLists.txt (Maratyszcza/NNPACK c07e3a04, the submodule torch pins) runs a *child* cmake on
# cmake/DownloadSix.cmake (CMAKE_MINIMUM_REQUIRED(VERSION 2.8.12), refused by CMake 4, and a
# download, impossible offline) unless PYTHON_SIX_SOURCE_DIR is defined; torch's nnpack.cmake sets
# PYTHON_PEACHPY_SOURCE_DIR, FP16/FXDIV/PSIMD/PTHREADPOOL/CPUINFO/GOOGLETEST_SOURCE_DIR but not
# six (pytorch issue 166064; the failure is pytorch issue 190066, "FAILED: confu-deps/NNPACK/src/
# x86_64-fma/2d-fourier-8x8.py.o").  nixpkgs (python-modules/torch/source/default.nix: "sed -i
# '2s;^;set(PYTHON_SIX_SOURCE_DIR ${six.src})' third_party/NNPACK/CMakeLists.txt", a cmakeFlags
# entry "doesn't work" because setup.py forwards no such variable) and Spack set it; conda-forge
# empties DownloadSix.cmake (recipe/build.sh "prevent six from being downloaded").  We define it,
# as a cache entry in the CMake file below, to the folder the build venv imports six from (the
# hash-locked six==1.17.0 wheel, a torch build requirement).  So NNPACK's PeachPy
# imports the locked six and nothing is downloaded at configure time.
CMAKE_FILE = "vllm-stack-torch.cmake"

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


def avx_only_script() -> str:
    forced = (f'set({name} {value} CACHE BOOL "forced off by vllm-stack (isa=avx)" FORCE)\n'
              for name, value in AVX_ONLY_CACHE.items())
    return "# An AVX-only torch (seed build-pytorch avx variants).\n" + "".join(forced)


# The recipe's first command, run by the build venv's interpreter: it writes the CMake file with the
# folders of the six and the NVSHMEM wheel that interpreter imports (the build venv's own, or what it
# borrows from the frontend in an offline or --no-build-isolation build), or stops with one line when
# either build requirement is missing.  NVSHMEM_HOME goes in as set(ENV{...}): caffe2/CMakeLists.txt
# reads $ENV{NVSHMEM_HOME} first, and setup.py's NVSHMEM_PY_DIR looks in the venv's own purelib only.
WRITE_CMAKE_FILE = """
import importlib, os, pathlib, sys
path, nvshmem, extra = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
def folder(module, requirement):
    try:
        found = importlib.import_module(module)
    except ImportError:
        sys.exit(f"torch: the build environment cannot import {module}: install its build requirement {requirement}")
    return os.path.dirname(found.__file__) if getattr(found, "__file__", None) else list(found.__path__)[0]
lines = ["# Written by the vllm-stack torch recipe (backend/recipes/torch.py).",
         "# NNPACK: the locked six, no configure-time download (DownloadSix.cmake needs CMake < 4 and network).",
         f'set(PYTHON_SIX_SOURCE_DIR "{folder("six", "six")}" CACHE STRING "six (Python package) source directory" FORCE)']
if nvshmem:
    lines += ["# NVSHMEM: the wheel torch requires at run time, first in caffe2/CMakeLists.txt's search order.",
              f'set(ENV{{NVSHMEM_HOME}} "{folder("nvidia.nvshmem", nvshmem)}")']
path.parent.mkdir(parents=True, exist_ok=True)
path.write_text("\\n".join(lines) + "\\n" + extra)
"""


# ---- BLAS and LAPACK (issue 22, item 4) ------------------------------------------------------------
# cmake/Dependencies.cmake defaults BLAS to MKL and, when MKL is not found, only warns ("MKL could
# not be found. Defaulting to Eigen"), tries find_package(BLAS) and sets USE_BLAS 0: a torch with
# slow CPU GEMM whose torch.linalg raises at call time.  Naming BLAS makes CMakeLists.txt set
# BLAS_SET_BY_USER, and then cmake/public/mkl.cmake runs find_package(MKL REQUIRED) and
# Dependencies.cmake find_package(OpenBLAS REQUIRED): the configure stops instead.  torch's
# setup.py forwards BLAS by name (tools/setup_helpers/cmake.py, additional_options).
# PyTorch's own x86_64 wheels link MKL statically: .ci/docker/common/install_mkl.sh unpacks the
# PyPI wheels mkl-static and mkl-include 2024.2.0 (MKL_VERSION=2024.2.0; "python3 -m wheel unpack",
# then data/lib and data/include moved to /opt/intel), and .ci/manywheel/build_common.sh exports
# CMAKE_LIBRARY_PATH=/opt/intel/lib and CMAKE_INCLUDE_PATH=/opt/intel/include.  We do the same
# from third_party/sources.lock: the two wheels are torch's lock entries torch-mkl-static and
# torch-mkl-include (sha256-pinned, fetched by `python -m backend fetch`, so an offline build has
# them), unpacked beside the tree, and CMAKE_LIBRARY_PATH / CMAKE_INCLUDE_PATH name their data/lib
# and data/include.  Only static archives are there (and, as in /opt/intel, no libiomp5: the wheels'
# intel-openmp and tbb requirements are not installed), so cmake/Modules/FindMKL.cmake links
# mkl_gf_lp64 + mkl_gnu_thread + mkl_core with GNU OpenMP, as PyTorch's wheels (which carry libgomp).
# Cost: a shared library that references the MKL entry points torch 2.9 calls (BLAS, LAPACK, DFTI for
# torch.fft, VML, mkl_get_version_string; 66 symbols), linked here with gcc against these archives as
# FindMKL links them (mkl_gf_lp64, mkl_gnu_thread, mkl_core, -lgomp), is 60.7 MiB (59 stripped),
# 19 MiB deflated: about what static MKL adds to libtorch_cpu.so and to the wheel (torch calls a few
# more LAPACK routines; the archives themselves are 446 MiB).  The MKL symbols come out exported (12830
# "T" in nm -D, sgemm_ and dgetrf_ among them), which is what verification reads.  The build downloads
# 213 MB (mkl-static) + 1.3 MB (mkl-include) once per cache (docs/VALIDATION.md has the commands).
# aarch64: PyTorch's wheels use OpenBLAS (.ci/docker/common/install_openblas.sh, built from source
# into the image) plus ACL.  PyPI has no unprefixed static OpenBLAS (scipy-openblas32 prefixes its
# symbols; cmeel-openblas 0.3.31 ships only libopenblas.so, which torch's $ORIGIN rpath would not
# find at run time), so an aarch64 build takes OpenBLAS from the host (libopenblas-dev, or
# OpenBLAS_HOME, which cmake/Modules/FindOpenBLAS.cmake reads): BLAS=OpenBLAS makes its absence a
# configure error.  That part is not from the lock (docs/COMPONENTS.md).  A distribution's OpenBLAS is a
# shared libopenblas.so.0 (Debian: libopenblas0-pthread, which needs libgfortran.so.5), which no wheel
# provides and the linkage check refuses: the aarch64 torch wheel carries it, grafted by auditwheel's
# repair into torch.libs as numpy's and scipy's wheels carry theirs (OPENBLAS_GRAFT).
OPENBLAS_GRAFT = ("libopenblas*.so*", "libgfortran.so*")
MKL_VERSION = "2024.2.0"
MKL_SOURCES = ("torch-mkl-static", "torch-mkl-include")  # third_party/sources.lock entries
MKL_FIND_MODULE = "cmake/Modules/FindMKL.cmake"


def blas(variant) -> str:
    """The BLAS torch's CMake is told to use (BLAS=...): MKL on x86_64, OpenBLAS on aarch64, as PyTorch's wheels."""
    return "MKL" if variant.platform == "x86_64" else "OpenBLAS"


# ---- NVSHMEM (issue 22, item 6) ---------------------------------------------------------------------
# caffe2/CMakeLists.txt (2.9) builds libtorch_nvshmem.so when USE_NVSHMEM (default ON) finds
# nvshmem_host, nvshmem_device and nvshmem.h, searching $ENV{NVSHMEM_HOME} first, then NVSHMEM_PY_DIR,
# which tools/setup_helpers/cmake.py sets whenever <site-packages>/nvidia/nvshmem exists; otherwise
# "NVSHMEM not found, not building with NVSHMEM support" and the build goes on.  So what the build
# venv happened to hold (flashinfer's nvshmem build requirement) decided whether, and against which
# NVSHMEM, torch was linked.  PyTorch's release wheels link it (.ci/manywheel/build_cuda.sh: DEPS
# libnvshmem_host.so.3, rpath $ORIGIN/../../nvidia/nvshmem/lib) and pin the wheel at run time
# (nvidia-nvshmem-cu12==3.3.20 for CUDA 12.x, nvidia-nvshmem-cu13==3.3.24 for 13.0, below).  We
# follow that, independent of the component list: USE_NVSHMEM=1 and torch's own build requirement is
# exactly the nvshmem wheel it pins at run time, and NVSHMEM_HOME names it (first in the search order,
# so no other NVSHMEM on the host can win; set by the CMake file, WRITE_CMAKE_FILE above).
# NVSHMEM 3.x has no code for sm_61, so SM61 builds USE_NVSHMEM=0.
NVSHMEM = {"12": "nvidia-nvshmem-cu12==3.3.20", "13": "nvidia-nvshmem-cu13==3.3.24"}


def uses_nvshmem(variant) -> bool:
    return variant.target.major >= 7


def nvshmem_requirement(variant) -> str:
    return NVSHMEM[variant.cuda.split(".")[0]]


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
        "nvidia-cusparselt-cu12==0.7.1", "nvidia-nccl-cu12==2.27.5", NVSHMEM["12"],
        "nvidia-nvtx-cu12==12.8.90", "nvidia-nvjitlink-cu12==12.8.93", "nvidia-cufile-cu12==1.13.1.3",
    ),
    "13.0": (
        "nvidia-cuda-nvrtc==13.0.48", "nvidia-cuda-runtime==13.0.48", "nvidia-cuda-cupti==13.0.48",
        "nvidia-cudnn-cu13==9.13.0.50", "nvidia-cublas==13.0.0.19", "nvidia-cufft==12.0.0.15",
        "nvidia-curand==10.4.0.35", "nvidia-cusolver==12.0.3.29", "nvidia-cusparse==12.6.2.49",
        "nvidia-cusparselt-cu13==0.8.0", "nvidia-nccl-cu13==2.27.7", NVSHMEM["13"],
        "nvidia-nvtx==13.0.39", "nvidia-nvjitlink==13.0.39", "nvidia-cufile==1.15.0.42",
    ),
}


def blas_note(variant) -> str:
    if blas(variant) == "MKL":
        return f"MKL {MKL_VERSION} statically (BLAS and LAPACK, from the lock's mkl-static wheel, as PyTorch's x86_64 wheels)"
    return "the host's OpenBLAS (BLAS=OpenBLAS; install libopenblas-dev or set OpenBLAS_HOME), as PyTorch's aarch64 wheels"


# What torch's CMake may silently go without, read from the binary (backend/verify/features.py).
# cmake/public/cuda.cmake turns each CUDA library off with a warning when it is not found; NCCL is
# asked for (USE_NCCL=1) and cuDNN too except on SM61; cuSPARSELt and cuDSS are recorded only.
# BLAS and LAPACK (libtorch_cpu.so): aten declares and calls sgemm_/dgemm_ (ATen/native/CPUBlas.cpp)
# only when AT_BUILD_WITH_BLAS() and dgetrf_/sgesdd_ (BatchLinearAlgebra.cpp) only when
# AT_BUILD_WITH_LAPACK(); a static MKL defines them in libtorch_cpu.so, a shared BLAS leaves them
# undefined and is DT_NEEDED.  ATen/Version.cpp calls mkl_get_version_string when MKL is enabled.
# NVSHMEM: caffe2/CMakeLists.txt builds libtorch_nvshmem.so, linking libnvshmem_host.so.3, only
# when it found NVSHMEM.
CPU_LIBRARY = "torch/lib/libtorch_cpu.so"
FEATURES = Features(
    object="torch/lib/libtorch_cuda.so",
    markers={
        "cudnn": Marker(libraries=("libcudnn.so",), symbols=("cudnnCreate",)),
        "cusparselt": Marker(libraries=("libcusparseLt.so",), symbols=("cusparseLtInit",)),
        "cudss": Marker(libraries=("libcudss.so",), symbols=("cudssCreate",)),
        "nccl": Marker(libraries=("libnccl.so",), symbols=("ncclCommInitRank",)),
        "blas": Marker(libraries=(), symbols=("sgemm_", "dgemm_"), object=CPU_LIBRARY),
        "lapack": Marker(libraries=(), symbols=("dgetrf_", "sgesdd_"), object=CPU_LIBRARY),
        "mkl": Marker(libraries=("libmkl_",), symbols=("mkl_get_version_string",), object=CPU_LIBRARY),
        "openblas": Marker(libraries=("libopenblas",), symbols=("openblas_get_config",), object=CPU_LIBRARY),
        "nvshmem": Marker(libraries=("libnvshmem_host.so",), symbols=("nvshmem_init",),
                          object="torch/lib/libtorch_nvshmem.so"),
    },
    promised=lambda variant: ((("cudnn",) if variant.uses_cudnn else ()) + ("nccl", "blas", "lapack")
                              + (("mkl",) if blas(variant) == "MKL" else ("openblas",))
                              + (("nvshmem",) if uses_nvshmem(variant) else ())),
    hint="give the toolchain cuDNN and NCCL (the pypi toolchain installs nvidia-cudnn and nvidia-nccl), MKL "
         "(the lock's torch-mkl-static, python -m backend fetch) or the host's OpenBLAS on aarch64, and the "
         "nvidia-nvshmem build requirement; see the torch log's 'Could not find', 'MKL' and 'NVSHMEM' lines",
)

class Torch(Recipe):
    name = "torch"
    version = "2.9.1"  # a vLLM release line may pin another 2.9.x (Recipe.for_line)
    depends = ()
    pins_torch = False
    build_requires = (
        # requirements-build.txt / pyproject [build-system] (see docs/COMPONENTS.md for the commit read)
        "setuptools>=70.1.0", "wheel", "cmake>=3.27", "ninja", "numpy", "packaging", "pyyaml",
        "requests", "six", "typing-extensions>=4.10.0",
        # imported by torch's setup.py / codegen while building
        "sympy>=1.13.3", "filelock", "networkx", "jinja2", "fsspec",
    )
    mem_per_job_gb = 3.0
    disk_gb = 30.0
    features = FEATURES
    # cmake/Dependencies.cmake: string(APPEND CMAKE_CUDA_FLAGS " $ENV{TORCH_NVCC_FLAGS}") (PyTorch's release
    # build sets it too: .ci/manywheel/build_cuda.sh); CMake's C/CXX flags never reach nvcc's host compiler
    isa_flag_variables = {"TORCH_NVCC_FLAGS": "nvcc"}
    isa_flags_not_reached = "no object it compiles is known to miss them; the NVIDIA libraries it links are prebuilt"

    def build_requirements(self, variant) -> tuple[str, ...]:
        """Plus the NVSHMEM wheel torch pins at run time: the same for every component list."""
        return self.build_requires + ((nvshmem_requirement(variant),) if uses_nvshmem(variant) else ())

    def unused_sources(self, variant, settings) -> tuple[str, ...]:
        """The MKL wheels serve x86_64 builds of a tree that configures MKL (torch's CMake, not a stand-in tree)."""
        local = settings.sources.get("torch") if settings is not None else None
        if blas(variant) != "MKL" or (local is not None and not (Path(local) / MKL_FIND_MODULE).is_file()):
            return MKL_SOURCES
        return ()

    def graft_libraries(self, variant) -> tuple[str, ...]:
        """The host's shared OpenBLAS and its Fortran runtime, carried in the aarch64 wheel; nothing on x86_64 (static MKL)."""
        return OPENBLAS_GRAFT if blas(variant) == "OpenBLAS" else ()

    def runtime_requires(self, variant) -> tuple[str, ...]:
        dropped = ("nvidia-nvshmem",) + (() if variant.uses_cudnn else ("nvidia-cudnn",))
        pins = tuple(p for p in PYTORCH_CUDA_PINS.get(variant.cuda, ()) if not p.startswith(dropped))
        # the NVSHMEM it was built against, for every CUDA release (12.9 too)
        return (TRITON, *pins, *((nvshmem_requirement(variant),) if uses_nvshmem(variant) else ()))

    def environment(self, ctx: BuildContext) -> dict[str, str]:
        v = ctx.variant
        env = {
            "USE_CUDA": "1",
            "USE_CUDNN": "1" if v.uses_cudnn else "0",
            "USE_NCCL": "1",
            "USE_SYSTEM_NCCL": "1",
            "USE_DISTRIBUTED": "1",
            "USE_MKLDNN": "1",
            "BUILD_TEST": "0",
            "CMAKE_GENERATOR": "Ninja",
            "PYTORCH_BUILD_VERSION": self.local_version(v, ctx.tree_version),
            "PYTORCH_BUILD_NUMBER": "0",
            "CMAKE_PROJECT_INCLUDE_BEFORE": str(ctx.build_dir / CMAKE_FILE),
            "BLAS": blas(v),
            "USE_NVSHMEM": "1" if uses_nvshmem(v) else "0",
        }
        # the unpacked lock wheels' lib and include, as PyTorch's /opt/intel
        if blas(v) == "MKL" and all(name in ctx.extras for name in MKL_SOURCES):
            static, include = (ctx.extras[name] for name in MKL_SOURCES)
            env["CMAKE_LIBRARY_PATH"] = str(static / f"mkl_static-{MKL_VERSION}.data" / "data" / "lib")
            env["CMAKE_INCLUDE_PATH"] = str(include / f"mkl_include-{MKL_VERSION}.data" / "data" / "include")
        if v.isa == "avx":
            env.update({"USE_FBGEMM": "0", "USE_MKLDNN": "0", "USE_NNPACK": "0"})
        return env

    def commands(self, ctx: BuildContext) -> list[list[str]]:
        v = ctx.variant
        write_cmake_file = [
            ctx.python, "-c", WRITE_CMAKE_FILE, str(ctx.build_dir / CMAKE_FILE),
            nvshmem_requirement(v) if uses_nvshmem(v) else "", avx_only_script() if v.isa == "avx" else "",
        ]
        return [write_cmake_file, pip_wheel(ctx)]

    def notes(self, variant) -> list[str]:
        out = [f"torch links {blas_note(variant)}; NNPACK's six comes from the lock (PYTHON_SIX_SOURCE_DIR)"]
        if uses_nvshmem(variant):
            out.append(f"torch links NVSHMEM from {nvshmem_requirement(variant)}, the wheel it requires at run time")
        else:
            out.append("torch is built without NVSHMEM (USE_NVSHMEM=0): NVSHMEM 3 has no sm_61 code")
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

    # What the smoke check runs (backend/verify/smoke.py): one op of its code on CPU and CUDA, and a Triton kernel
    smoke = """
import torch
print(torch.__config__.show())
assert torch.ones(4).mul(3).sum().item() == 12.0, "torch CPU op"
"""
    smoke_gpu = """
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


RECIPE = Torch()
