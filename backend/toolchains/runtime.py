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
    return next((dist for dist, patterns in REQUIREMENT_LIBRARIES.items()
                 if any(fnmatch.fnmatchcase(soname, p) for p in patterns)), None)


def requirements_for(sonames: Iterable[str], cuda: str, pinned: Sequence[str] = ()) -> list[str]:
    """Requirement lines for the CUDA libraries among ``sonames``: the pinned line of a wheel, else the range of
    the major its first soname names."""
    pins = {canonicalize_name(Requirement(p).name): p for p in pinned}
    cuda_major = cuda.split(".")[0]
    lines: dict[str, str] = {}
    for soname in sorted(set(sonames)):
        if (dist := distribution_for(soname)) is None:
            continue
        # under CUDA 12 every wheel has a -cu12 suffix, under 13 only CU13_SUFFIXED keep one
        name = f"{dist}-cu{cuda_major}" if cuda_major == "12" or dist in CU13_SUFFIXED else dist
        major = re.search(r"\.so\.(\d+)", soname)
        ranged = f"{name}>={int(major[1])},<{int(major[1]) + 1}" if major and dist not in UNVERSIONED else name
        lines.setdefault(name, pins.get(canonicalize_name(name), ranged))
    return list(lines.values())


def needed_sonames(wheel) -> set[str]:
    """DT_NEEDED of every ELF object of a wheel read once (``wheels.built``), less what the wheel itself holds."""
    return {n for record in wheel.objects.values() for n in record.needed} - wheel.basenames()
