"""vLLM against the variant's torch, with every configure-time source from the lock.

vLLM's CMake would fetch CUTLASS, flash-attention, FlashMLA, qutlass and
triton_kernels at configure time; the lock's copies are passed instead
(CMakeLists.txt and cmake/external_projects/*.cmake read the environment
variables below), so the configure step needs no network.  Lock entry
names are those of third_party/sources.lock.

Written for the 0.15.1 line (``RECIPE``); ``for_line`` gives it for another
release line (``-C vllm``, docs/RELEASES.md): that release's version and the
facts read from its own files (vllm_release.ReleaseLine).
"""

from ..cuda_target import CudaTarget
from ..sources.vllm_release import KNOWN_SIDE_TREES
from ..variants import version_key
from .base import BuildContext, Recipe

# Where a side tree's CMake project sits inside its lock entry, where that is not the tree's top
SIDE_TREE_FOLDERS = {"triton-kernels": "python/triton_kernels/triton_kernels"}

# CMakeLists.txt (0.14.1 and 0.16.0 identical here): CUDA_SUPPORTED_ARCHS per nvcc version.
SUPPORTED_ARCHS_CUDA12 = ("7.0", "7.2", "7.5", "8.0", "8.6", "8.7", "8.9", "9.0", "10.0", "10.1", "12.0")
SUPPORTED_ARCHS_CUDA13 = ("7.5", "8.0", "8.6", "8.7", "8.9", "9.0", "10.0", "11.0", "12.0")


def vllm_archs(variant) -> list[str]:
    """What vLLM's cuda_archs_loose_intersection keeps of TORCH_CUDA_ARCH_LIST=<arch>."""
    supported = SUPPORTED_ARCHS_CUDA13 if version_key(variant.cuda) >= (13, 0) else SUPPORTED_ARCHS_CUDA12
    target = (variant.target.major, variant.target.minor)
    same_major = [a for a in supported if version_key(a)[0] == target[0] and version_key(a) <= target]
    return [max(same_major, key=version_key)] if same_major else []


class Vllm(Recipe):
    name = "vllm"
    version = "0.15.1"  # the 0.15.1 line; for_line gives another line's
    # torchvision and torchaudio are not needed to build vLLM, but its wheel requires them (0.15.1's
    # Requires-Dist: torchvision==0.24.1, torchaudio==2.9.1): built first, against the same torch.
    depends = ("torch", "flashinfer", "torchvision", "torchaudio")
    stack_requires = ("torchvision", "torchaudio")
    # Its CMakeLists.txt (PYTHON_SUPPORTED_VERSIONS "3.10" ... "3.13") stops on any other Python, which
    # would be found out only after torch had been built; its wheel says Requires-Python >=3.10,<3.14.
    pythons = ("3.10", "3.11", "3.12", "3.13")
    # pyproject.toml [build-system] (0.14.1: grpcio-tools>=1.76.0; 0.16.0: ==1.78.0), torch excepted.
    # setup.py's compile_grpc_protos (build_py) generates vllm/grpc/vllm_engine_pb2{,_grpc}.py with this
    # grpcio-tools: PyPI's 0.15.1 wheel has gencode 6.31.1 / GRPC_GENERATED_VERSION 1.76.0 and requires
    # protobuf>=6.33.5; the lock's 1.85.1 writes gencode 7.35.1, which protobuf 6 refuses on import.  The
    # wheel gets protobuf>=<gencode> and grpcio>=<generated> read from its stubs (backend/wheels/requires.py),
    # and the smoke check imports them (backend/verify/smoke.py).
    build_requires = (
        "setuptools>=77.0.3,<81.0.0", "setuptools-scm>=8.0", "wheel", "cmake>=3.26.1", "ninja",
        "packaging>=24.2", "jinja2", "grpcio-tools>=1.76.0",
    )
    # Peak of one compile job, measured on the H200 (docs/VALIDATION.md section 4): a CUTLASS 3.x
    # scaled_mm sm90 unit 10.38 GiB, an FA3 hdim128 unit 5.9 GiB.
    mem_per_job_gb = 10.5
    # setup.py: num_jobs = MAX_JOBS // NVCC_THREADS (vLLM splits its jobs between processes and nvcc threads)
    divides_max_jobs_by_nvcc_threads = True
    gpu_code_by_design = (
        "vLLM compiles flash-attention 2 and Marlin for 8.0+PTX and scaled_mm_c2x for 8.9+PTX "
        "(measured: configure for sm=90), so newer GPUs run them from the PTX"
    )
    ptx_by_design = ("compute_80", "compute_89")
    disk_gb = 12.0
    # CMake initialises CMAKE_CUDA_FLAGS from CUDAFLAGS; vLLM's CMakeLists only strips -gencode from it
    # (cmake/utils.cmake clear_cuda_arches, 0.16.0 sdist), and flash-attention, FlashMLA and qutlass come in
    # through FetchContent_MakeAvailable (cmake/external_projects/*.cmake): the same cache, the same flags
    isa_flag_variables = {"CUDAFLAGS": "nvcc"}
    isa_flags_not_reached = "the Triton kernels (vllm/, triton_kernels): compiled at run time, for the machine they run on"
    # setuptools-scm versions it ([tool.setuptools_scm] in pyproject.toml, setup.py get_version): a git
    # checkout is what its tags give (v0.15.1 -> 0.15.1); an sdist carries the _version.py it wrote
    version_file = "vllm/_version.py"
    version_from_git_tags = True

    def for_line(self, line) -> "Vllm":
        """The recipe for a vLLM release line (vllm_release.ReleaseLine): its version in the wheel and the version
        override, the Pythons its CMake accepts (PYTHON_SUPPORTED_VERSIONS) and its FlashMLA facts in the notes.
        The side trees and patches come with the line's lock."""
        return self.replace(version=line.vllm, pythons=tuple(line.pythons) or self.pythons, line=line)

    def environment(self, ctx: BuildContext) -> dict[str, str]:
        version = self.local_version(ctx.variant, ctx.tree_version)
        return {
            "VLLM_TARGET_DEVICE": "cuda",
            "VLLM_VERSION_OVERRIDE": version,
            "SETUPTOOLS_SCM_PRETEND_VERSION": version,
            # Paths go through the environment only: vLLM's setup.py splits CMAKE_ARGS on
            # whitespace (str.split), so a path there with a space is cut in two and a
            # crafted one adds -D arguments; CMakeLists.txt reads $ENV{VLLM_CUTLASS_SRC_DIR}
            # itself (the same as -DFETCHCONTENT_SOURCE_DIR_CUTLASS), the external projects theirs.
            **{tree.env: str(ctx.extras[tree.entry] / SIDE_TREE_FOLDERS.get(tree.entry, ""))
               for tree in KNOWN_SIDE_TREES if tree.entry in ctx.extras},
            # Every FetchContent source is given above: a download attempt must fail, not go to the network.
            "CMAKE_ARGS": "-DFETCHCONTENT_FULLY_DISCONNECTED=ON",
        }

    def variant_problem(self, variant) -> str | None:
        """SM103 with nvcc 12.x: the Blackwell CUTLASS kernels would be sm_101a cubins, which a B300 cannot load.

        Worked out with vLLM's own cuda_archs_loose_intersection (cmake/utils.cmake, 0.16.0 sdist, run
        with CMake): TORCH_CUDA_ARCH_LIST=10.3 keeps 10.1 of the CUDA-12 list, and the lists
        "10.0a;10.1a;10.3a" (scaled_mm FP8, FP4, CUTLASS MoE), "10.0a;10.1a;10.3a;12.0a;12.1a" (CUTLASS MLA)
        and "12.0a;10.0a;10.3a" (qutlass) then give 10.1a; FlashMLA ("10.0f") gives nothing.
        """
        if variant.sm == "103" and version_key(variant.cuda) < (13, 0):
            return (
                f"vllm {self.version} cannot be built for sm=103 with cuda={variant.cuda}: its CMake knows no 10.3 for "
                "nvcc 12.x and compiles its Blackwell CUTLASS kernels (FP8/FP4 scaled_mm, MoE, MLA, qutlass) for "
                "sm_101a, which a B300 cannot load, and FlashMLA not at all; use -C cuda=13.0, "
                "or leave vllm out of -C components"
            )
        return None

    def notes(self, variant) -> list[str]:
        out = []
        version, line = self.version, self.line
        if variant.sm == "61":
            out.append(
                f"vLLM {version} does not support Pascal: its CMake intersects TORCH_CUDA_ARCH_LIST=6.1 with its "
                "supported list (7.0 and up) and keeps nothing, so no vLLM kernel (paged attention, Marlin, CUTLASS, "
                "MoE, flash-attention, FlashMLA) is compiled for sm_61. The wheel installs, but vLLM cannot serve "
                "models on a P40/GTX 1080 Ti; torch, torchvision, torchaudio, bitsandbytes and xformers (CUTLASS "
                "kernels) do work there"
            )
        elif variant.sm == "90":
            out.append("vLLM upgrades 9.0 to the 9.0a kernels (CUTLASS scaled_mm, Machete, FlashMLA, flash-attention 3)")
        elif variant.sm == "121":
            out.append("sm_121 (GB10): vLLM's CUDA_SUPPORTED_ARCHS (CMakeLists.txt:96-102) has no 12.1, and "
                       "cuda_archs_loose_intersection (cmake/utils.cmake) maps 12.1 to the 12.0 kernels, which run on "
                       "12.1; its arch-specific 12.0a kernels (FP4/FP8 CUTLASS scaled_mm, MoE, qutlass) are kept only "
                       "where 12.0 itself is targeted, so they are dropped: those paths fall back to other kernels")
        elif variant.sm == "70":
            out.append("sm_70 (V100): in vLLM's CUDA 12.x list only; flash-attention, FlashMLA, Machete and the "
                       "CUTLASS FP8 kernels need sm_80/sm_90 and are not built; vLLM serves with its Triton backends")
        elif problem := self.variant_problem(variant):  # sm_103 with nvcc 12.x
            generic = CudaTarget(vllm_archs(variant)[0].replace(".", "")).cubin
            out.append(f"{problem} (generic kernels would be {generic})")
        elif variant.sm == "103":
            out.append("CUDA 13.0: vLLM treats 10.3 as 10.0 and builds its 10.0f (Blackwell family) kernels, "
                       "FlashMLA and qutlass included, which run on 10.3")
        if line is not None and line.flashmla_min_nvcc and variant.sm in ("90", "100", "103") and (
                version_key(variant.cuda) < version_key(line.flashmla_min_nvcc)):
            out.append(f"vLLM {version}'s setup.py adds FlashMLA (_flashmla_C) only from nvcc {line.flashmla_min_nvcc} "
                       f"({line.where.get('flashmla_min_nvcc', 'setup.py')}): CUDA {variant.cuda} builds none, and MLA "
                       "models use another attention backend")
        if line is not None and not line.grpc_stubs:
            out.append(f"vLLM {version}'s setup.py has no compile_grpc_protos: its wheel has no gRPC stubs to check")
        else:
            out.append("vLLM's gRPC stubs (vllm/grpc/vllm_engine_pb2*.py) are generated by the build's grpcio-tools: "
                       "the wheel requires the protobuf and grpcio they check on import, and the smoke check imports them")
        if variant.sm in ("100", "103", "120"):  # 121: qutlass's 12.0a list does not take 12.1
            out.append("qutlass (Blackwell-only FP4 kernels) is built")
        elif variant.sm != "61":
            out.append("qutlass (Blackwell-only) is configured but compiles nothing for this SM")
        return out

    # What the smoke check runs (backend/verify/smoke.py): one op of its compiled code on CUDA.
    smoke_gpu = """
import torch
from vllm import _custom_ops as ops
x = torch.randn(4, 256, device="cuda", dtype=torch.float16)
w = torch.ones(256, device="cuda", dtype=torch.float16)
out = torch.empty_like(x)
ops.rms_norm(out, x, w, 1e-6)
ref = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6)
assert torch.allclose(out.float(), ref, atol=2e-2), "vllm rms_norm"
"""


RECIPE = Vllm()
