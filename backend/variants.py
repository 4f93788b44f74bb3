"""The variant matrix and its rules.

A variant is one (Python, CUDA, SM, ISA) combination.  The seed project had
88 of them for CUDA 12.8/12.9; CUDA 13.0 rows are our extension.  Every rule
the seed enforced by simply not listing a combination is an explicit check
here, with an error that says why.
"""

from __future__ import annotations

import dataclasses
import sys

from . import cpu_isa
from . import host as host_info
from .cpu_isa import ARM_ISAS, ISAS, X86_ISAS, platform_of
from .errors import BackendError
from .settings import CUDAS, SMS, Settings

# Minimum CUDA for a real cubin of each SM (nvcc release notes; checked with NVRTC).
SM_MIN_CUDA = {"100": "12.8", "120": "12.8", "103": "12.9"}
# nvcc 13 dropped these.
SM_MAX_CUDA = {"61": "12.9"}
SM61_ISAS = ("avx", "avx2")
ARM_PAIRS = {"armv8_2": ("80", "90"), "armv9": ("90", "100", "103")}
SEED_CUDAS = ("12.9", "12.8")


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

    @property
    def arch(self) -> str:
        """The SM as torch writes it: 9.0, 10.3, 12.0."""
        return f"{self.sm[:-1]}.{self.sm[-1]}"

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
        return self.cuda in SEED_CUDAS

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
    if isa in ARM_PAIRS and sm not in ARM_PAIRS[isa]:
        return f"setting 'sm': bad value {sm!r} for isa={isa}; accepted: {', '.join(ARM_PAIRS[isa])}"
    return None


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
