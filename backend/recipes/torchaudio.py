"""torchaudio 2.9.1 against the variant's torch; optional third-party parts off, as in nixpkgs."""

from .base import BuildContext, Recipe, pip_wheel

VERSION = "2.9.1"


def environment(ctx: BuildContext) -> dict[str, str]:
    return {
        "TORCH_CUDA_ARCH_LIST": ctx.variant.arch,
        "FORCE_CUDA": "1",
        "USE_CUDA": "1",
        "BUILD_VERSION": ctx.local_version(VERSION),
        "BUILD_SOX": "0",
        "BUILD_KALDI": "0",
        "BUILD_RNNT": "0",
        "BUILD_CTC_DECODER": "0",
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
    sources=("torchaudio",),
    build_requires=("setuptools>=70.1.0", "wheel", "cmake>=3.27", "ninja"),
    mem_per_job_gb=2.0,
    description="torchaudio's C++/CUDA extension (sox, kaldi, RNN-T, CTC decoder off)",
    environment=environment,
    commands=lambda ctx: [pip_wheel(ctx)],
    notes=lambda variant: ["torchaudio is built without sox, kaldi, RNN-T loss and the CTC decoder (as nixpkgs does)"],
    smoke=SMOKE,
    smoke_gpu=SMOKE_GPU,
    disk_gb=2.0,
)
