"""torchvision 0.24.1 against the variant's torch.

FORCE_CUDA=1: there is no GPU at build time, and setup.py otherwise builds
CUDA ops only when torch.cuda.is_available().  BUILD_VERSION replaces the
version (version.txt + git suffix) outright, so the label travels with it.
"""

from .base import BuildContext, Recipe, pip_wheel

VERSION = "0.24.1"


def environment(ctx: BuildContext) -> dict[str, str]:
    return {
        "TORCH_CUDA_ARCH_LIST": ctx.variant.arch,
        "FORCE_CUDA": "1",
        "BUILD_VERSION": ctx.local_version(VERSION),
    }


# What the smoke check runs (backend/verify/smoke.py): one op of its compiled code, CPU and CUDA.
SMOKE = """
import torch, torchvision
boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
assert torchvision.ops.nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5).tolist() == [0, 2], "torchvision.ops.nms"
"""
SMOKE_GPU = """
import torch, torchvision
boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]], device="cuda")
scores = torch.tensor([0.9, 0.8, 0.7], device="cuda")
assert torchvision.ops.nms(boxes, scores, 0.5).tolist() == [0, 2], "torchvision.ops.nms on CUDA"
"""


RECIPE = Recipe(
    version_file="version.txt",
    name="torchvision",
    version=VERSION,
    distributions=("torchvision",),
    build_requires=("setuptools>=70.1.0", "wheel"),
    mem_per_job_gb=2.0,
    environment=environment,
    commands=lambda ctx: [pip_wheel(ctx)],
    smoke=SMOKE,
    smoke_gpu=SMOKE_GPU,
    disk_gb=2.0,
)
