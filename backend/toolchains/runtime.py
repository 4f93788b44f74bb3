"""Which PyPI wheels provide the CUDA libraries a built wheel links, for its Requires-Dist.

A wheel that needs ``libcublas.so.13`` must say so, as PyTorch's own wheels
do, or a wheelhouse would install on a fresh host and fail to load.  The
requirement is derived from the wheel's real DT_NEEDED entries: exact pins
where the toolchain came from PyPI, otherwise the wheel whose major version
matches the soname's (``libcusparse.so.12`` -> ``nvidia-cusparse>=12,<13``).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# PyPI wheel (canonical name, without a -cu12/-cu13 suffix) -> sonames it installs.
REQUIREMENT_LIBRARIES: dict[str, tuple[str, ...]] = {
    "nvidia-cuda-runtime": ("libcudart.so.*",),
    "nvidia-cublas": ("libcublas.so.*", "libcublasLt.so.*", "libnvblas.so.*"),
    "nvidia-cudnn": ("libcudnn*.so.*",),
    "nvidia-cufft": ("libcufft.so.*", "libcufftw.so.*"),
    "nvidia-curand": ("libcurand.so.*",),
    "nvidia-cusolver": ("libcusolver.so.*", "libcusolverMg.so.*"),
    "nvidia-cusparse": ("libcusparse.so.*",),
    "nvidia-cusparselt": ("libcusparseLt.so.*",),
    "nvidia-nccl": ("libnccl.so.*",),
    "nvidia-nvtx": ("libnvToolsExt.so.*", "libnvtx3interop.so.*"),
    "nvidia-nvjitlink": ("libnvJitLink.so.*",),
    "nvidia-cuda-nvrtc": ("libnvrtc.so.*", "libnvrtc-builtins.so.*"),
    "nvidia-cuda-cupti": ("libcupti.so.*", "libnvperf_host.so*", "libnvperf_target.so*", "libpcsamplingutil.so*"),
    "nvidia-cufile": ("libcufile.so.*", "libcufile_rdma.so.*"),
    "nvidia-nvshmem": ("libnvshmem_host.so.*",),
    "nvidia-npp": ("libnpp*.so.*",),
    "nvidia-nvjpeg": ("libnvjpeg.so.*",),
}
# Under CUDA 13 only these keep a -cu13 suffix on PyPI; under 12 every one has -cu12.
CU13_SUFFIXED = frozenset({"nvidia-cudnn", "nvidia-nccl", "nvidia-cusparselt", "nvidia-nvshmem"})
# Wheels whose version does not follow their soname's major.
UNVERSIONED = frozenset({"nvidia-nvtx"})


def distribution_for(soname: str) -> str | None:
    for dist, patterns in REQUIREMENT_LIBRARIES.items():
        if any(fnmatch.fnmatchcase(soname, p) for p in patterns):
            return dist
    return None


def pypi_name(dist: str, cuda: str) -> str:
    major = cuda.split(".")[0]
    if major == "12" or dist in CU13_SUFFIXED:
        return f"{dist}-cu{major}"
    return dist


def requirements_for(sonames: Iterable[str], cuda: str, pinned: Sequence[str] = ()) -> list[str]:
    """Requirement lines for the CUDA libraries among ``sonames``."""
    pins = {canonicalize_name(Requirement(p).name): p for p in pinned}
    lines: dict[str, str] = {}
    for soname in sorted(set(sonames)):
        dist = distribution_for(soname)
        if dist is None:
            continue
        name = pypi_name(dist, cuda)
        if canonicalize_name(name) in pins:
            lines[name] = pins[canonicalize_name(name)]
            continue
        match = re.search(r"\.so\.(\d+)", soname)
        if match and dist not in UNVERSIONED:
            major = int(match.group(1))
            lines.setdefault(name, f"{name}>={major},<{major + 1}")
        else:
            lines.setdefault(name, name)
    return list(lines.values())


def needed_sonames(wheel) -> set[str]:
    """DT_NEEDED of every ELF object of a wheel read once (``wheels.built``), less what the wheel itself holds."""
    return {n for record in wheel.objects.values() for n in record.needed} - wheel.basenames()
