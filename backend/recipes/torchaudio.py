"""torchaudio 2.9.1 against the variant's torch, with what upstream's 2.9.1 wheel ships.

Its tools/setup_helpers/extension.py (a torch.utils.cpp_extension build since
sox and ffmpeg left) reads BUILD_RNNT, BUILD_ALIGN and BUILD_CUDA_CTC_DECODER,
all on by default (the last one with USE_CUDA): none is set here, so
``rnnt_loss``, forced alignment and the CUDA CTC decoder are built, as in the
PyPI wheel.  BUILD_SOX, BUILD_KALDI and BUILD_CTC_DECODER, which nixpkgs sets,
are no longer read.
"""

from .base import BuildContext, Recipe, pip_wheel

VERSION = "2.9.1"


def environment(ctx: BuildContext) -> dict[str, str]:
    return {
        "FORCE_CUDA": "1",
        "USE_CUDA": "1",
        "BUILD_VERSION": ctx.local_version(VERSION),
    }


# What the smoke check runs (backend/verify/smoke.py): one op of its compiled code, CPU and CUDA.
SMOKE = """
import torch, torchaudio
y = torchaudio.functional.lfilter(torch.tensor([[1.0, 1.0, 1.0, 1.0]]), torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.5]))
assert y.tolist() == [[0.5, 1.0, 1.0, 1.0]], "torchaudio.functional.lfilter"
"""
SMOKE_GPU = """
import torch, torchaudio
x = torch.ones(1, 4, device="cuda")
y = torchaudio.functional.lfilter(x, torch.tensor([1.0, 0.0], device="cuda"), torch.tensor([0.5, 0.5], device="cuda"))
assert y.tolist() == [[0.5, 1.0, 1.0, 1.0]], "torchaudio.functional.lfilter on CUDA"
"""


RECIPE = Recipe(
    version_file="version.txt",
    name="torchaudio",
    version=VERSION,
    distributions=("torchaudio",),
    build_requires=("setuptools>=70.1.0", "wheel", "cmake>=3.27", "ninja"),
    mem_per_job_gb=2.0,
    environment=environment,
    commands=lambda ctx: [pip_wheel(ctx)],
    notes=lambda variant: ["torchaudio is built with what its 2.9.1 wheel ships: RNN-T loss, forced alignment, CUDA CTC decoder"],
    smoke=SMOKE,
    smoke_gpu=SMOKE_GPU,
    disk_gb=2.0,
    # tools/setup_helpers/extension.py runs plain CMake (no CMAKE_CUDA_FLAGS of its own; read at
    # pytorch/audio 02f42eb0): CMake initialises CMAKE_CUDA_FLAGS from CUDAFLAGS
    isa_flag_variables={"CUDAFLAGS": "nvcc"},
)
