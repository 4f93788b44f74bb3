"""The variant matrix and its rules.

A variant is one (Python, CUDA, SM, ISA) combination.  The seed project had
88 of them for CUDA 12.8/12.9; CUDA 13.0 rows are our extension.  Every rule
the seed enforced by simply not listing a combination is an explicit check
here, with an error that says why.
"""

from __future__ import annotations

import dataclasses
import functools
import sys

from . import cpu_isa
from . import host as host_info
from .cpu_isa import ARM_ISAS, ISAS, X86_ISAS, platform_of
from .cuda_target import CudaTarget
from .errors import BackendError
from .settings import CUDAS, SMS, Settings

# Minimum CUDA for a real cubin of each SM (nvcc release notes; checked with NVRTC).  sm_121 (GB10, DGX
# Spark): CUDA 12.9 (flashinfer aot.py detect_sm_capabilities: compute_121 from 12.9).
SM_MIN_CUDA = {"100": "12.8", "120": "12.8", "103": "12.9", "121": "12.9"}
# nvcc 13 dropped these (sm_70, V100: CUDA 13.0 removed offline compilation for sm_50 to sm_72; vLLM's
# CMakeLists.txt:96-102, 0.14.1 and 0.16.0, lists 7.0 only for nvcc 12.x).
SM_MAX_CUDA = {"61": "12.9", "70": "12.9"}
SM61_ISAS = ("avx", "avx2")
# GB10's CPU is Arm (armv9: Cortex-X925/A725), and no x86 host carries an sm_121 GPU.
ARM_PAIRS = {"armv8_2": ("80", "90"), "armv9": ("90", "100", "103", "121")}
ARM_ONLY_SMS = ("121",)
SEED_CUDAS = ("12.9", "12.8")
# The seed's nine SMs; sm_70 and sm_121 rows are this project's extension, like CUDA 13.0's.
SEED_SMS = ("61", "75", "80", "86", "89", "90", "100", "103", "120")


def version_key(dotted: str) -> tuple[int, ...]:
    """A CUDA release or an SM as torch writes it ("12.9", "10.3") as integers, for comparing."""
    return tuple(int(part) for part in dotted.split("."))


@dataclasses.dataclass(frozen=True)
class Variant:
    sm: str
    isa: str
    cuda: str
    python: str = f"{sys.version_info.major}{sys.version_info.minor}"

    @property
    def name(self) -> str:
        return f"vllm-python{self.python}-cuda{self.cuda.replace('.', '_')}-sm{self.sm}-{self.isa}"

    @property
    def platform(self) -> str:
        return platform_of(self.isa)

    @functools.cached_property
    def target(self) -> CudaTarget:
        """The GPU it builds for, in every spelling (torch's 9.0, 9.0a, CMake's 90-real, sm_90 ...)."""
        return CudaTarget(sm=self.sm, cuda=self.cuda)

    @property
    def cuda_tag(self) -> str:
        return "cu" + self.cuda.replace(".", "")

    @property
    def label(self) -> str:
        """The PEP 440 local label every wheel of the variant carries."""
        return f"{self.cuda_tag}.sm{self.sm}.{self.isa}"

    @property
    def seed(self) -> bool:
        """One of the seed project's 88 variants (by SM, ISA, CUDA)."""
        return self.cuda in SEED_CUDAS and self.sm in SEED_SMS

    @property
    def isa_flags(self) -> tuple[str, ...]:
        return cpu_isa.get(self.isa).flags

    @property
    def uses_cudnn(self) -> bool:
        return self.sm != "61"


def rule_violation(sm: str, isa: str, cuda: str) -> str | None:
    """Why (sm, isa, cuda) is not a variant, or None when it is one."""
    minimum = SM_MIN_CUDA.get(sm)
    if minimum and version_key(cuda) < version_key(minimum):
        return f"setting 'cuda': bad value {cuda!r} for sm={sm} (nvcc {cuda} cannot compile sm_{sm}); accepted: {', '.join(c for c in CUDAS if version_key(c) >= version_key(minimum))}"
    maximum = SM_MAX_CUDA.get(sm)
    if maximum and version_key(cuda) > version_key(maximum):
        return f"setting 'cuda': bad value {cuda!r} for sm={sm} (nvcc {cuda} dropped compute_{sm}); accepted: {', '.join(c for c in CUDAS if version_key(c) <= version_key(maximum))}"
    if sm == "61" and isa not in SM61_ISAS:
        return f"setting 'isa': bad value {isa!r} for sm=61 (Pascal-era hosts predate AVX-512); accepted: {', '.join(SM61_ISAS)}"
    if sm in ARM_ONLY_SMS and isa not in ARM_PAIRS:
        return f"setting 'isa': bad value {isa!r} for sm={sm} (GB10 / DGX Spark is an aarch64 machine); accepted: {', '.join(i for i in ARM_PAIRS if sm in ARM_PAIRS[i])}"
    if isa in ARM_PAIRS and sm not in ARM_PAIRS[isa]:
        return f"setting 'sm': bad value {sm!r} for isa={isa}; accepted: {', '.join(ARM_PAIRS[isa])}"
    return None


def extension_reason(variant: Variant) -> str:
    """Why a row is not the seed's: its CUDA release or its SM."""
    return f"sm_{variant.sm} (extension)" if variant.sm not in SEED_SMS else f"CUDA {variant.cuda} (extension)"


def matrix(python: str | None = None, cudas: tuple[str, ...] = ("12.9", "12.8", "13.0")) -> list[Variant]:
    """Every variant, in the seed's order (x86_64 then aarch64, CUDA 12.9 then 12.8), then 13.0."""
    python = python or f"{sys.version_info.major}{sys.version_info.minor}"
    rows = []
    for cuda in cudas:
        for isas in (X86_ISAS, ARM_ISAS):
            for sm in SMS:
                for isa in isas:
                    if rule_violation(sm, isa, cuda) is None:
                        rows.append(Variant(sm=sm, isa=isa, cuda=cuda, python=python))
    return rows


def host_violation(isa: str, host: host_info.Host) -> str | None:
    """Why this host cannot build the ISA (torch's build runs code it compiles)."""
    platform = platform_of(isa)
    if platform != host.machine:
        family = ", ".join(ARM_ISAS if host.machine == "aarch64" else X86_ISAS)
        return (
            f"setting 'isa': bad value {isa!r}: it is an {platform} ISA and this host is {host.machine}; "
            f"accepted here: {family}"
        )
    missing = [f for f in cpu_isa.get(isa).host_features if f not in host.cpu_features]
    if missing:
        runnable = [i for i in ISAS if platform_of(i) == host.machine and all(f in host.cpu_features for f in cpu_isa.get(i).host_features)]
        return (
            f"setting 'isa': bad value {isa!r}: this host's CPU lacks {', '.join(missing)}, and torch's build "
            f"runs code it compiles; accepted here: {', '.join(runnable) or 'none'} (build {isa} on a host that has it)"
        )
    return None


def select(settings: Settings, host: host_info.Host | None = None, python: str | None = None) -> Variant:
    """The variant a build's settings ask for, checked against every rule and the host."""
    if settings.sm is None or settings.isa is None:
        missing = "sm" if settings.sm is None else "isa"
        raise BackendError(
            f"setting '{missing}' is required; accepted: "
            + (", ".join(SMS) if missing == "sm" else ", ".join(ISAS))
            + " (python -m backend detect suggests values for this host)"
        )
    why = rule_violation(settings.sm, settings.isa, settings.cuda)
    if why:
        raise BackendError(why)
    why = host_violation(settings.isa, host or host_info.current())
    if why:
        raise BackendError(why)
    return Variant(sm=settings.sm, isa=settings.isa, cuda=settings.cuda, python=python or Variant.python)
