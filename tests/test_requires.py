"""What the pipeline adds to a built wheel's Requires-Dist (backend/wheels/requires.py, the torch recipe)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

from conftest import make_wheel  # noqa: E402

from backend import recipes  # noqa: E402
from backend.variants import Variant  # noqa: E402
from backend.wheels.requires import declared_requirements, merge  # noqa: E402


def test_torch_declares_what_pytorchs_2_9_1_wheel_declares():
    """PyPI's torch-2.9.1 METADATA (CUDA 12.8): triton==3.5.1 and these exact nvidia-* pins."""
    declared = recipes.get("torch").runtime_requires(Variant(sm="90", isa="avx512", cuda="12.8"))
    assert declared[0] == "triton==3.5.1"
    assert "nvidia-cudnn-cu12==9.10.2.21" in declared and "nvidia-nccl-cu12==2.27.5" in declared
    assert "nvidia-cusparselt-cu12==0.7.1" in declared and len(declared) == 16
    cu13 = recipes.get("torch").runtime_requires(Variant(sm="90", isa="avx512", cuda="13.0"))
    assert "nvidia-cublas==13.0.0.19" in cu13 and "nvidia-nccl-cu13==2.27.7" in cu13
    # PyTorch 2.9 publishes no CUDA 12.9 wheel: triton and the NVSHMEM torch was built against (its own build
    # requirement, issue 22 item 6); the linked libraries speak for the rest.
    assert recipes.get("torch").runtime_requires(Variant(sm="90", isa="avx512", cuda="12.9")) == (
        "triton==3.5.1", "nvidia-nvshmem-cu12==3.3.20")


def test_torch_without_cudnn_does_not_require_it():
    declared = recipes.get("torch").runtime_requires(Variant(sm="61", isa="avx2", cuda="12.8"))
    assert not [r for r in declared if r.startswith("nvidia-cudnn")]


def test_toolchain_pins_beat_declared_pins_which_beat_linked_bounds():
    merged = merge(
        toolchain_pins=["nvidia-cublas==13.0.2.14"],
        declared=["triton==3.5.1; platform_machine == 'x86_64'", "nvidia-cublas==13.0.0.19", "nvidia-nccl-cu13==2.27.7"],
        linked=["nvidia-cublas>=13,<14", "nvidia-cusparse>=12,<13", "nvidia-nccl-cu13>=2,<3"],
    )
    assert merged == ["triton==3.5.1", "nvidia-cublas==13.0.2.14", "nvidia-nccl-cu13==2.27.7", "nvidia-cusparse<13,>=12"]


def test_only_the_recipes_first_distribution_gets_its_declared_requirements(tmp_path):
    torch = make_wheel(tmp_path, "torch", "2.9.1", {"torch/__init__.py": b""}, tag="cp311-cp311-linux_x86_64")
    other = make_wheel(tmp_path, "torchgen-extra", "1.0", {"x/__init__.py": b""}, tag="cp311-cp311-linux_x86_64")
    toolchain = types.SimpleNamespace(requirements=())
    variant = Variant(sm="90", isa="avx512", cuda="13.0")
    assert "triton==3.5.1" in declared_requirements(torch, recipes.get("torch"), variant, toolchain)
    assert declared_requirements(other, recipes.get("torch"), variant, toolchain) == []
