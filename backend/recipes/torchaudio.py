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
)
