"""The real bitsandbytes, built by the pipeline on a machine with CUDA 13 (opt-in: pytest -m device).

Needs: ``VLLM_STACK_BNB_SRC`` = an upstream bitsandbytes tree at the lock's
tag (e.g. ``git archive 0.49.1`` of bitsandbytes-foundation/bitsandbytes),
a complete CUDA 13 toolkit (nvcc plus cuBLAS/cuSPARSE), and an importable
torch.  With a GPU it also runs ci/device/check_bitsandbytes.py.  This is
what docs/VALIDATION.md records from the H200.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.device

SRC = os.environ.get("VLLM_STACK_BNB_SRC")


def _toolkit_13() -> str | None:
    nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    if not Path(nvcc).exists():
        return None
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
    home = Path(nvcc).resolve().parent.parent
    if "release 13." not in out or not list(home.glob("lib*/libcublas.so*")) + list(home.glob("targets/*/lib/libcublas.so*")):
        return None
    return nvcc


@pytest.mark.skipif(not SRC or not Path(SRC or "").is_dir(), reason="set VLLM_STACK_BNB_SRC to a bitsandbytes source tree")
@pytest.mark.skipif(_toolkit_13() is None, reason="needs a complete CUDA 13 toolkit (nvcc and cuBLAS)")
def test_real_bitsandbytes_through_the_pipeline(tmp_path):
    pytest.importorskip("torch")
    isa = json.loads(subprocess.run([sys.executable, "-m", "backend", "detect", "--json"], cwd=ROOT,
                                    capture_output=True, text=True, check=True).stdout)["isa"]
    settings = ["-C", "sm=90", "-C", f"isa={isa}", "-C", "cuda=13.0", "-C", "toolchain=system", "-C", "torch=existing",
                "-C", "components=bitsandbytes", "-C", f"source.bitsandbytes={SRC}",
                "-C", f"cache-dir={tmp_path / 'cache'}", "-C", f"wheelhouse={tmp_path / 'wh'}"]
    build = subprocess.run([sys.executable, "-m", "backend", "build", *settings], cwd=ROOT, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-5000:]
    wheel = next((tmp_path / "wh").glob("*/bitsandbytes-*.whl"))
    report = subprocess.run([sys.executable, "-m", "backend", "verify", str(wheel), "-C", "sm=90", "-C", f"isa={isa}",
                             "-C", "cuda=13.0", "--json"], cwd=ROOT, capture_output=True, text=True)
    assert report.returncode == 0, report.stdout + report.stderr
    text = json.dumps(json.loads(report.stdout))
    assert "sm_90" in text and "compute_90" not in text
    import torch

    if torch.cuda.is_available():
        site = tmp_path / "site"
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(site), str(wheel)], check=True)
        env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        check = subprocess.run([sys.executable, str(ROOT / "ci" / "device" / "check_bitsandbytes.py")], env=env,
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
