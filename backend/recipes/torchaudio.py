"""torchaudio 2.9.1 against the variant's torch, with what upstream's 2.9.1 wheel ships.

Its tools/setup_helpers/extension.py (a torch.utils.cpp_extension build since
sox and ffmpeg left) reads BUILD_RNNT, BUILD_ALIGN and BUILD_CUDA_CTC_DECODER,
all on by default (the last one with USE_CUDA): none is set here, so
``rnnt_loss``, forced alignment and the CUDA CTC decoder are built, as in the
PyPI wheel.  BUILD_SOX, BUILD_KALDI and BUILD_CTC_DECODER, which nixpkgs sets,
are no longer read.
"""

from .base import BuildContext, Recipe

# The smoke check's op (backend/verify/smoke.py), the same text on each device
SMOKE = """
import torch, torchaudio
x, a, b = (torch.tensor(v, device="{device}") for v in ([[1.0, 1.0, 1.0, 1.0]], [1.0, 0.0], [0.5, 0.5]))
assert torchaudio.functional.lfilter(x, a, b).tolist() == [[0.5, 1.0, 1.0, 1.0]], "torchaudio lfilter on {device}"
"""


class Torchaudio(Recipe):
    name = "torchaudio"
    version = "2.9.1"
    build_requires = ("setuptools>=70.1.0", "wheel", "cmake>=3.27", "ninja")
    # tools/setup_helpers/extension.py runs plain CMake (no CMAKE_CUDA_FLAGS of its own; read at
    # pytorch/audio 02f42eb0): CMake initialises CMAKE_CUDA_FLAGS from CUDAFLAGS
    isa_flag_variables = {"CUDAFLAGS": "nvcc"}

    def environment(self, ctx: BuildContext) -> dict[str, str]:
        return {
            "FORCE_CUDA": "1",
            "USE_CUDA": "1",
            "BUILD_VERSION": self.local_version(ctx.variant, ctx.tree_version),
        }

    def notes(self, variant) -> list[str]:
        return ["torchaudio is built with what its 2.9.1 wheel ships: RNN-T loss, forced alignment, CUDA CTC decoder"]

    # What the smoke check runs (backend/verify/smoke.py): one op of its compiled code, CPU and CUDA.
    smoke = SMOKE.format(device="cpu")
    smoke_gpu = SMOKE.format(device="cuda")


RECIPE = Torchaudio()
