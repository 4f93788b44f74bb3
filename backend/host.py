"""What this machine is: CPU architecture and features, GPUs, cores, memory."""

from __future__ import annotations

import dataclasses
import functools
import os
import platform
import shutil
import subprocess


@dataclasses.dataclass(frozen=True)
class Gpu:
    name: str
    sm: str  # "90"


@dataclasses.dataclass(frozen=True)
class Host:
    machine: str  # x86_64 or aarch64
    cpu_features: frozenset[str]
    cpu_name: str = ""
    gpus: tuple[Gpu, ...] = ()
    gpu_probe: str = ""  # how GPUs were looked for, and what was found
    driver: str | None = None  # the NVIDIA driver's version ("575.57.08"), where a GPU was found
    driver_cuda: str | None = None  # the newest CUDA release that driver knows ("12.9"), from NVML


def _cpuinfo() -> tuple[frozenset[str], str]:
    features: set[str] = set()
    name = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("flags", "Features") and not features:
                    features.update(value.split())
                elif key == "model name" and not name:
                    name = value.strip()
    except OSError:
        pass
    if not name:
        try:
            import archspec.cpu

            name = str(archspec.cpu.host())
        except Exception:  # archspec is optional; the name is cosmetic
            name = platform.processor()
    return frozenset(features), name


@dataclasses.dataclass(frozen=True)
class _GpuProbe:
    gpus: tuple[Gpu, ...]
    how: str
    driver: str | None = None
    driver_cuda: str | None = None


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _gpus() -> _GpuProbe:
    try:
        import pynvml  # type: ignore[import-not-found]

        pynvml.nvmlInit()
        found = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            found.append(Gpu(name=_text(pynvml.nvmlDeviceGetName(handle)), sm=f"{major}{minor}"))
        cuda = pynvml.nvmlSystemGetCudaDriverVersion()  # 12090 for 12.9
        return _GpuProbe(tuple(found), "NVML", _text(pynvml.nvmlSystemGetDriverVersion()),
                         f"{cuda // 1000}.{cuda % 1000 // 10}")
    except Exception:
        pass
    smi = shutil.which("nvidia-smi")
    if not smi:
        return _GpuProbe((), "no NVML library and no nvidia-smi on PATH")
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name,compute_cap,driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as error:
        return _GpuProbe((), f"nvidia-smi failed: {error}")
    found = []
    driver = None
    for line in out.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 3 or not fields[1]:
            continue
        found.append(Gpu(name=",".join(fields[:-2]), sm=fields[-2].replace(".", "")))
        driver = driver or fields[-1]
    return _GpuProbe(tuple(found), "nvidia-smi", driver)


@functools.lru_cache(maxsize=1)
def current() -> Host:
    features, name = _cpuinfo()
    probe = _gpus()
    machine = platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    return Host(machine=machine, cpu_features=features, cpu_name=name, gpus=probe.gpus, gpu_probe=probe.how,
                driver=probe.driver, driver_cuda=probe.driver_cuda)


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def available_memory_bytes() -> int:
    """MemAvailable, bounded by a cgroup memory limit when one is set."""
    available = 0
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except OSError:
        available = 8 << 30
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = open(path, encoding="ascii").read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < available:
            available = int(text)
    return available
