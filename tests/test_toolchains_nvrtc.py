"""The matrix's CUDA/SM rules against NVIDIA's own compilers (NVRTC from PyPI).

For each CUDA version, NVRTC compiles a kernel to a real cubin (sm_XX) for
every SM of the matrix; the set it accepts must equal what backend.variants
allows for that version.  Slow: each NVRTC download is about 90 MB.
"""

from __future__ import annotations

import ctypes
import subprocess
import sys
from pathlib import Path

import pytest

from backend import variants
from backend.settings import SMS

NVRTC = {
    "12.8": "nvidia-cuda-nvrtc-cu12==12.8.*",
    "12.9": "nvidia-cuda-nvrtc-cu12==12.9.*",
    "13.0": "nvidia-cuda-nvrtc==13.0.88",
}
KERNEL = b'extern "C" __global__ void scale(float *x, float f) { x[threadIdx.x] *= f; }'


def rule_allows(sm: str, cuda: str) -> bool:
    key = variants._version_key
    low = variants.SM_MIN_CUDA.get(sm)
    high = variants.SM_MAX_CUDA.get(sm)
    return (low is None or key(cuda) >= key(low)) and (high is None or key(cuda) <= key(high))


def load_nvrtc(target: Path, requirement: str) -> ctypes.CDLL:
    result = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check",
                             "--target", str(target), requirement], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot install {requirement} from PyPI: {result.stderr.strip().splitlines()[-1:]}")
    libraries = sorted(p for p in target.rglob("libnvrtc.so.*") if "builtins" not in p.name)
    assert libraries, f"{requirement} has no libnvrtc.so"
    # NVRTC loads its builtins library from its own folder.
    for builtins in sorted(libraries[0].parent.glob("libnvrtc-builtins.so*")):
        ctypes.CDLL(str(builtins), mode=ctypes.RTLD_GLOBAL)
    return ctypes.CDLL(str(libraries[0]))


def compiles_cubin(nvrtc: ctypes.CDLL, sm: str) -> tuple[bool, str]:
    program = ctypes.c_void_p()
    assert nvrtc.nvrtcCreateProgram(ctypes.byref(program), KERNEL, b"k.cu", 0, None, None) == 0
    options = (ctypes.c_char_p * 1)(f"--gpu-architecture=sm_{sm}".encode())
    status = nvrtc.nvrtcCompileProgram(program, 1, options)
    log = ""
    size = ctypes.c_size_t()
    if nvrtc.nvrtcGetProgramLogSize(program, ctypes.byref(size)) == 0 and size.value > 1:
        buffer = ctypes.create_string_buffer(size.value)
        nvrtc.nvrtcGetProgramLog(program, buffer)
        log = buffer.value.decode(errors="replace").strip()
    ok = status == 0
    if ok:
        cubin_size = ctypes.c_size_t()
        ok = nvrtc.nvrtcGetCUBINSize(program, ctypes.byref(cubin_size)) == 0 and cubin_size.value > 0
    nvrtc.nvrtcDestroyProgram(ctypes.byref(program))
    return ok, log


@pytest.mark.slow
@pytest.mark.parametrize("cuda", sorted(NVRTC))
def test_nvrtc_accepts_exactly_the_sms_the_rules_allow(cuda, tmp_path):
    nvrtc = load_nvrtc(tmp_path / "nvrtc", NVRTC[cuda])
    major, minor = ctypes.c_int(), ctypes.c_int()
    assert nvrtc.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)) == 0
    assert f"{major.value}.{minor.value}" == cuda
    accepted = set()
    logs = {}
    for sm in SMS:
        ok, log = compiles_cubin(nvrtc, sm)
        logs[sm] = log
        if ok:
            accepted.add(sm)
    allowed = {sm for sm in SMS if rule_allows(sm, cuda)}
    assert accepted == allowed, (
        f"NVRTC {cuda} accepts {sorted(accepted, key=int)} but the rules allow {sorted(allowed, key=int)}; "
        f"logs of the differences: { {sm: logs[sm] for sm in accepted ^ allowed} }"
    )
