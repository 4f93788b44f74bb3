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
from collections.abc import Callable

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
ARM_HOSTS = {"armv8_2": "an Ampere Altra host with a PCIe A100 or H100",  # the seed's aarch64 table
             "armv9": "the Grace CPU of GH200, GB200 and GB300, or GB10's"}
ARM_ONLY_SMS = ("121",)
SEED_CUDAS = ("12.9", "12.8")
# The seed's nine SMs; sm_70 and sm_121 rows are this project's extension, like CUDA 13.0's.
SEED_SMS = ("61", "75", "80", "86", "89", "90", "100", "103", "120")


def version_key(dotted: str) -> tuple[int, ...]:
    """A dotted release as integers, for comparing: a CUDA release, an SM as torch writes it, an NVIDIA driver
    ("12.9", "10.3", "575.51.03")."""
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
        """The GPU it builds for, in every spelling (torch's 9.0, 9.0a, CMake's 90, sm_90 ...)."""
        return CudaTarget(sm=self.sm, cuda=self.cuda)

    @property
    def label(self) -> str:
        """The PEP 440 local label every wheel of the variant carries."""
        return f"cu{self.cuda.replace('.', '')}.sm{self.sm}.{self.isa}"

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


@dataclasses.dataclass(frozen=True)
class Conflict:
    """Where ``when`` holds (setting -> the values it matches), ``setting`` accepts only ``accepted``; ``why``
    says why (a template over sm, isa and cuda).  As Spack's ``conflicts(when=, msg=)``: declared in CONFLICTS,
    evaluated by ``rule_violation``."""

    setting: str
    when: dict[str, tuple[str, ...]]
    accepted: tuple[str, ...]
    why: str

    def violation(self, chosen: dict[str, str], named: Callable[[str], str] = str) -> str | None:
        if chosen[self.setting] in self.accepted or any(chosen[k] not in v for k, v in self.when.items()):
            return None
        condition = " ".join(f"{k}={chosen[k]}" for k in self.when)
        return (f"setting '{named(self.setting)}': bad value {chosen[self.setting]!r} for {condition} "
                f"({self.why.format(**chosen)}); "
                f"accepted: {', '.join(self.accepted)}")


# Every rule of the matrix, in the order their errors are reported.
CONFLICTS = (
    *(Conflict("cuda", {"sm": (sm,)}, tuple(c for c in CUDAS if version_key(c) >= version_key(low)),
               "nvcc {cuda} cannot compile sm_{sm}") for sm, low in SM_MIN_CUDA.items()),
    *(Conflict("cuda", {"sm": (sm,)}, tuple(c for c in CUDAS if version_key(c) <= version_key(high)),
               "nvcc {cuda} dropped compute_{sm}") for sm, high in SM_MAX_CUDA.items()),
    Conflict("isa", {"sm": ("61",)}, SM61_ISAS, "Pascal-era hosts predate AVX-512"),
    *(Conflict("sm", {"isa": (isa,)}, sms, f"{isa} is {ARM_HOSTS[isa]}") for isa, sms in ARM_PAIRS.items()),
    *(Conflict("isa", {"sm": (sm,)}, tuple(i for i in ARM_PAIRS if sm in ARM_PAIRS[i]), "GB10 / DGX Spark is an aarch64 machine")
      for sm in ARM_ONLY_SMS),
)


def rule_violation(sm: str, isa: str, cuda: str, named: Callable[[str], str] = str) -> str | None:
    """Why (sm, isa, cuda) is not a variant (the first conflict it meets), or None when it is one; ``named``:
    what the message calls a setting (Settings.named: the variable it came from)."""
    chosen = {"sm": sm, "isa": isa, "cuda": cuda}
    return next((why for why in (c.violation(chosen, named) for c in CONFLICTS) if why), None)


def extension_reason(variant: Variant) -> str:
    """Why a row is not the seed's: its CUDA release or its SM."""
    return f"{variant.target.cubin} (extension)" if variant.sm not in SEED_SMS else f"CUDA {variant.cuda} (extension)"


def matrix(python: str | None = None, cudas: tuple[str, ...] = ("12.9", "12.8", "13.0")) -> list[Variant]:
    """Every variant, in the seed's order (x86_64 then aarch64, CUDA 12.9 then 12.8), then 13.0."""
    return [Variant(sm=sm, isa=isa, cuda=cuda, python=python or Variant.python)
            for cuda in cudas for isas in (X86_ISAS, ARM_ISAS) for sm in SMS for isa in isas
            if rule_violation(sm, isa, cuda) is None]


def host_violation(isa: str, host: host_info.Host, named: str = "isa") -> str | None:
    """Why this host cannot build the ISA (torch's build runs code it compiles)."""
    platform = platform_of(isa)
    if platform != host.machine:
        return (f"setting '{named}': bad value {isa!r}: it is an {platform} ISA and this host is {host.machine}; "
                f"accepted here: {', '.join(ARM_ISAS if host.machine == 'aarch64' else X86_ISAS)}")
    lacks = [f for f in cpu_isa.get(isa).host_features if f not in host.cpu_features]
    if not lacks:
        return None
    runnable = [i for i in ISAS if platform_of(i) == host.machine
                and all(f in host.cpu_features for f in cpu_isa.get(i).host_features)]
    return (f"setting '{named}': bad value {isa!r}: this host's CPU lacks {', '.join(lacks)}, and torch's build "
            f"runs code it compiles; accepted here: {', '.join(runnable) or 'none'} "
            f"(build {isa} on a host that has it)")


def select(settings: Settings, host: host_info.Host | None = None) -> Variant:
    """The variant a build's settings ask for, checked against every rule and the host."""
    for key, accepted in (("sm", SMS), ("isa", ISAS)):
        if getattr(settings, key) is None:
            raise BackendError(f"setting '{key}' is required; accepted: {', '.join(accepted)} "
                               "(python -m backend detect suggests values for this host)")
    if why := (rule_violation(settings.sm, settings.isa, settings.cuda, settings.named)
               or host_violation(settings.isa, host or host_info.current(), settings.named("isa"))):
        raise BackendError(why)
    return Variant(sm=settings.sm, isa=settings.isa, cuda=settings.cuda)
