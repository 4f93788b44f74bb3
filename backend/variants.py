"""The variant matrix and its rules.

A variant is one (Python, CUDA, SM, ISA) combination.  The seed project had
88 of them for CUDA 12.8/12.9; CUDA 13.0 rows are our extension.  Every rule
the seed enforced by simply not listing a combination is an explicit check
here, with an error that says why.
"""

from __future__ import annotations

import dataclasses
import sys

from . import host as host_info
from .errors import BackendError
from .settings import ARM_ISAS, CUDAS, ISAS, SMS, X86_ISAS, Settings

SM_INFO = {
    "61": ("Pascal", "P40, GTX 1080 Ti"),
    "75": ("Turing", "T4, RTX 2080 Ti"),
    "80": ("Ampere DC", "A100, A30"),
    "86": ("Ampere", "RTX 3090, A40"),
    "89": ("Ada Lovelace", "RTX 4090, L4, L40"),
    "90": ("Hopper", "H100, H200, L40S, GH200"),
    "100": ("Blackwell DC", "B100, B200, GB200"),
    "103": ("Blackwell Ultra", "B300, GB300"),
    "120": ("Blackwell", "RTX 5090, RTX PRO 6000"),
}

# Minimum CUDA for a real cubin of each SM (nvcc release notes; checked with NVRTC).
SM_MIN_CUDA = {"100": "12.8", "120": "12.8", "103": "12.9"}
# nvcc 13 dropped these.
SM_MAX_CUDA = {"61": "12.9"}
SM61_ISAS = ("avx", "avx2")
ARM_PAIRS = {"armv8_2": ("80", "90"), "armv9": ("90", "100", "103")}
SEED_CUDAS = ("12.9", "12.8")

# Compiler flags per ISA (the seed's cpu-isa.nix).
ISA_FLAGS = {
    "avx": ("-mavx",),
    "avx2": ("-mavx2", "-mfma", "-mf16c"),
    "avx512": ("-mavx512f", "-mavx512dq", "-mavx512vl", "-mavx512bw", "-mfma"),
    "avx512bf16": ("-mavx512f", "-mavx512dq", "-mavx512vl", "-mavx512bw", "-mfma", "-mavx512bf16"),
    "avx512vnni": ("-mavx512f", "-mavx512dq", "-mavx512vl", "-mavx512bw", "-mfma", "-mavx512vnni"),
    "armv8_2": ("-march=armv8.2-a+fp16+dotprod",),
    "armv9": ("-march=armv9-a+sve2+bf16+i8mm",),
}
# /proc/cpuinfo flags a host needs to run code built with each ISA's flags.
ISA_HOST_FEATURES = {
    "avx": ("avx",),
    "avx2": ("avx2", "fma", "f16c"),
    "avx512": ("avx512f", "avx512dq", "avx512vl", "avx512bw", "fma"),
    "avx512bf16": ("avx512f", "avx512dq", "avx512vl", "avx512bw", "fma", "avx512_bf16"),
    "avx512vnni": ("avx512f", "avx512dq", "avx512vl", "avx512bw", "fma", "avx512_vnni"),
    "armv8_2": ("asimdhp", "asimddp"),
    "armv9": ("sve2", "svebf16", "svei8mm"),
}


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def platform_of(isa: str) -> str:
    return "aarch64" if isa in ARM_ISAS else "x86_64"


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
        return ISA_FLAGS[self.isa]

    @property
    def uses_cudnn(self) -> bool:
        return self.sm != "61"


def rule_violation(sm: str, isa: str, cuda: str) -> str | None:
    """Why (sm, isa, cuda) is not a variant, or None when it is one."""
    minimum = SM_MIN_CUDA.get(sm)
    if minimum and _version_key(cuda) < _version_key(minimum):
        return f"setting 'cuda': bad value {cuda!r} for sm={sm} (nvcc {cuda} cannot compile sm_{sm}); accepted: {', '.join(c for c in CUDAS if _version_key(c) >= _version_key(minimum))}"
    maximum = SM_MAX_CUDA.get(sm)
    if maximum and _version_key(cuda) > _version_key(maximum):
        return f"setting 'cuda': bad value {cuda!r} for sm={sm} (nvcc {cuda} dropped compute_{sm}); accepted: {', '.join(c for c in CUDAS if _version_key(c) <= _version_key(maximum))}"
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
    missing = [f for f in ISA_HOST_FEATURES[isa] if f not in host.cpu_features]
    if missing:
        runnable = [i for i in ISAS if platform_of(i) == host.machine and all(f in host.cpu_features for f in ISA_HOST_FEATURES[i])]
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
