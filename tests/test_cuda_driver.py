"""The NVIDIA driver a wheelhouse needs (backend/cuda_driver.py): read from the host, chosen by `detect`,
recorded in the manifest from what the wheels hold, and enforced by the smoke check and `verify`.

The host's driver comes from a stand-in `nvidia-smi` on PATH that answers `--query-gpu` as the real
one does (CSV: name, compute capability, driver version); no NVML library is installed here, so the
backend falls back to it exactly as on a host without pynvml.
"""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from backend import cuda_driver, host
from backend.cli import detect_variant
from backend.cuda_target import CudaTarget
from backend.errors import BackendError
from backend.host import Gpu, Host
from backend.verify.checks import verify_objects

NVCC = shutil.which("nvcc")


def fake_nvidia_smi(folder: Path, gpu: str, cap: str, driver: str) -> Path:
    """A `nvidia-smi` that prints what the real one prints for --query-gpu=name,compute_cap,driver_version."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "nvidia-smi"
    script.write_text(
        "#!/bin/sh\n"
        'case "$1" in --query-gpu=name,compute_cap,driver_version) ;; *) echo "unexpected $*" >&2; exit 9;; esac\n'
        f'echo "{gpu}, {cap}, {driver}"\n'
    )
    script.chmod(0o755)
    return folder


@pytest.mark.parametrize("driver", ["535.104.05", "570.133.20", "575.57.08", "580.95.05"])
def test_the_host_driver_is_read_from_nvidia_smi(tmp_path, monkeypatch, driver):
    monkeypatch.setenv("PATH", str(fake_nvidia_smi(tmp_path / "bin", "NVIDIA H100 80GB HBM3", "9.0", driver)))
    probe = host._gpus()
    assert probe.how == "nvidia-smi"
    assert probe.gpus == (Gpu(name="NVIDIA H100 80GB HBM3", sm="90"),)
    assert probe.driver == driver


# (driver, sm, ptx) -> CUDA releases the driver runs, newest first.  NVIDIA's tables: 12.x code runs on
# 525.60.13+ without PTX JIT; PTX needs the toolkit's driver (12.8: 570.26, 12.9: 575.51.03, 13.0: 580.65.06);
# Blackwell GPUs need the driver of the toolkit that introduced them.
RANGES = [
    ("520.61.05", "90", False, []),
    ("525.60.13", "90", False, ["12.9", "12.8"]),
    ("535.104.05", "90", True, []),
    ("570.26", "90", True, ["12.8"]),
    ("575.57.08", "90", True, ["12.9", "12.8"]),
    ("580.65.06", "90", True, ["13.0", "12.9", "12.8"]),
    ("565.57.01", "100", False, []),
    ("570.133.20", "100", False, ["12.9", "12.8"]),
    ("570.133.20", "103", False, []),
    ("575.51.03", "103", False, ["12.9", "12.8"]),
    # GB10 (sm_121) came with CUDA 12.9; V100 runs any 12.x build from 525.60.13
    ("570.133.20", "121", False, []),
    ("575.51.03", "121", False, ["12.9", "12.8"]),
    ("525.60.13", "70", False, ["12.9", "12.8"]),
]


@pytest.mark.parametrize("driver, sm, ptx, runs", RANGES, ids=[f"{d}-sm{s}-{'ptx' if p else 'cubin'}" for d, s, p, _ in RANGES])
def test_which_cuda_releases_a_driver_runs(driver, sm, ptx, runs):
    assert cuda_driver.releases_for(driver, sm, ("12.8", "12.9", "13.0"), ("vllm/_C.abi3.so",) if ptx else ()) == runs


def test_ptx_is_jitted_only_where_no_cubin_of_the_gpu_major_runs():
    assert CudaTarget("90").jits_ptx(["compute_80"], ["sm_80", "sm_90a"])   # 8.0+PTX on Hopper: the PTX
    assert not CudaTarget("86").jits_ptx(["compute_80"], ["sm_80"])         # the sm_80 cubin runs on sm_86
    assert not CudaTarget("90").jits_ptx([], ["sm_90a"])
    assert not CudaTarget("90").jits_ptx(["compute_100"], [])                # PTX of a later GPU never runs here
    assert CudaTarget("90").jits_ptx(["compute_90"], [])
    # the verdicts verification gives: an sm_100a cubin does not run on sm_103, so its compute_100 PTX does
    assert CudaTarget("103").jits_ptx(["compute_100"], ["sm_100a"])
    assert not CudaTarget("103").jits_ptx(["compute_100f"], ["sm_100f"])  # family code runs on sm_103


H100 = Host(machine="x86_64", cpu_features=frozenset({"avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
                                                       "avx512dq", "avx512cd", "avx512_vnni"}),
            gpus=(Gpu("NVIDIA H100", "90"),))


def toolkit(tmp_path: Path, version: str) -> Path:
    """A CUDA toolkit folder as toolchains.available checks it: nvcc answering its version, and cuBLAS."""
    home = tmp_path / f"cuda-{version}"
    (home / "bin").mkdir(parents=True)
    (home / "lib64").mkdir()
    (home / "lib64" / f"libcublas.so.{version.split('.')[0]}").write_bytes(b"")
    nvcc = home / "bin" / "nvcc"
    nvcc.write_text(f"#!/bin/sh\necho 'Cuda compilation tools, release {version}, V{version}.0'\n")
    nvcc.chmod(0o755)
    return home


def test_detect_recommends_the_newest_release_the_driver_runs(tmp_path):
    env = {"PATH": str(tmp_path / "empty"), "CUDA_HOME": str(toolkit(tmp_path, "13.0"))}
    # An R580 driver runs CUDA 13.0, and 13.0 is here: chosen, newest first, with the reason.
    sm, isa, remarks, cuda, _ = detect_variant(H100, env, driver="580.95.05")
    assert cuda == "13.0", remarks
    assert any("newest release NVIDIA driver 580.95.05 runs" in r for r in remarks)
    # An R575 driver cannot run 13.0 (its PTX and its minor-version range need 580): never recommended,
    # even though 13.0 is the toolkit installed here, and detect says why.
    sm, isa, remarks, cuda, _ = detect_variant(H100, env, driver="575.57.08")
    assert cuda != "13.0"
    assert any(r.startswith("not CUDA 13.0: NVIDIA driver 575.57.08 is older than 580.65.06") for r in remarks), remarks
    # Too old for the stack on Hopper (vLLM's 8.0+PTX kernels JIT there): no release, and the way out.
    sm, isa, remarks, cuda, _ = detect_variant(H100, env, driver="535.104.05")
    assert cuda is None
    assert any("runs no CUDA release of this stack for sm_90: update the driver" in r for r in remarks), remarks


def test_detect_uses_the_hosts_own_driver(tmp_path):
    env = {"PATH": str(tmp_path / "empty"), "CUDA_HOME": str(toolkit(tmp_path, "13.0"))}
    old = Host(machine=H100.machine, cpu_features=H100.cpu_features, gpus=H100.gpus, driver="575.57.08")
    assert detect_variant(old, env)[3] != "13.0"
    new = Host(machine=H100.machine, cpu_features=H100.cpu_features, gpus=H100.gpus, driver="580.95.05")
    assert detect_variant(new, env)[3] == "13.0"


def test_detect_driver_option(run_backend, tmp_path):
    out = run_backend("detect", "--driver", "550.x")
    assert out.returncode == 2
    assert out.stderr.strip() == "error: --driver: bad value '550.x'; accepted: an NVIDIA driver version such as 575.57.08"
    out = run_backend("detect", "--json", "--driver", "535.104.05", env={"PATH": str(tmp_path / "empty") + os.pathsep + os.environ["PATH"]})
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["driver"] == "535.104.05"
    assert any("535.104.05" in r for r in data["remarks"])


def manifest(**wheels) -> dict:
    return {"wheels": wheels}


def test_driver_need_follows_what_the_wheels_hold():
    built = {"component": "bitsandbytes", "ptx_jit": []}
    runtime = {"component": None, "origin": "runtime"}
    need = cuda_driver.driver_need("12.9", "90", manifest(**{"bnb.whl": built, "triton.whl": runtime}))
    assert need.minimum == "525.60.13"
    jit = {"component": "vllm", "ptx_jit": ["vllm/_C.abi3.so"]}
    need = cuda_driver.driver_need("12.9", "90", manifest(**{"bnb.whl": built, "vllm.whl": jit}))
    assert need.minimum == "575.51.03"
    assert "vllm.whl:vllm/_C.abi3.so" in need.reasons[-1]
    unverified = {"component": "torch"}
    need = cuda_driver.driver_need("12.8", "90", manifest(**{"torch.whl": unverified}))
    assert need.minimum == "570.26" and "not verified" in need.reasons[-1]


def test_an_older_driver_stops_in_one_line():
    need = cuda_driver.need("12.9", "90", ("vllm.whl:vllm/_C.abi3.so",))
    recorded = {"wheels": {}, "driver": dataclasses.asdict(need)}
    cuda_driver.check_driver(recorded, "580.95.05", "smoke check")
    cuda_driver.check_driver(recorded, None, "smoke check")  # no driver known: nothing to judge
    with pytest.raises(BackendError) as caught:
        cuda_driver.check_driver(recorded, "570.133.20", "smoke check")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("smoke check: NVIDIA driver 570.133.20 is older than 575.51.03")
    assert "detect --driver 570.133.20" in message


@pytest.mark.skipif(NVCC is None, reason="needs nvcc")
def test_verification_reads_ptx_the_gpu_would_jit(tmp_path):
    """A real nvcc object with an sm_90 cubin, and one with 8.0+PTX beside it (vLLM's Marlin layout)."""
    source = tmp_path / "k.cu"
    source.write_text('extern "C" __global__ void k(float *x) { x[threadIdx.x] += 1.0f; }\n')
    objects = {}
    for name, codes in {"cubin": ["arch=compute_90,code=sm_90"],
                        "ptx": ["arch=compute_90,code=sm_90", "arch=compute_80,code=compute_80"]}.items():
        out = tmp_path / f"lib{name}.so"
        command = [NVCC, "-shared", "-Xcompiler", "-fPIC", "-o", str(out), str(source)]
        for code in codes:
            command += ["-gencode", code]
        subprocess.run(command, check=True, capture_output=True)
        objects[name] = out
    assert verify_objects([objects["cubin"]], None).ptx_jit("90") == []
    assert verify_objects([objects["ptx"]], None).ptx_jit("90") == [str(objects["ptx"])]
    # On an sm_80 GPU the sm_90 cubin cannot run: the compute_80 PTX is what runs, by JIT.
    assert verify_objects([objects["ptx"]], None).ptx_jit("80") == [str(objects["ptx"])]


def test_verify_command_refuses_a_wheelhouse_the_driver_cannot_run(run_backend, tmp_path):
    house = tmp_path / "wheelhouse"
    house.mkdir()
    (house / "manifest.json").write_text(json.dumps({
        "manifest_version": 1, "variant": "v", "wheels": {},
        "driver": dataclasses.asdict(cuda_driver.need("13.0", "90"))}))
    bin_dir = fake_nvidia_smi(tmp_path / "bin", "NVIDIA H100", "9.0", "575.57.08")
    out = run_backend("verify", str(house), env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert out.stderr.strip().startswith(f"error: verify {house}: NVIDIA driver 575.57.08 is older than 580.65.06")


def test_a_damaged_manifest_on_a_gpu_host_is_no_traceback(run_backend, tmp_path):
    """The driver check reads the manifest as verification does (wheels.files.read_manifest): one nested
    100,000 deep (issue 29.14) is no driver record, not a RecursionError."""
    house = tmp_path / "wheelhouse"
    house.mkdir()
    (house / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    (house / "libdemo.so").write_bytes(b"")  # nothing to verify: the one-line refusal of an empty folder
    bin_dir = fake_nvidia_smi(tmp_path / "bin", "NVIDIA H100", "9.0", "575.57.08")
    out = run_backend("verify", str(house), env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    assert "Traceback" not in out.stderr, out.stderr[-2000:]
    assert "RecursionError" not in out.stderr
