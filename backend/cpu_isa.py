"""The CPU instruction sets of the matrix: one row per ISA, every fact about it.

Each row is read by one consumer per column: ``flags`` by the plan (every
compile's CFLAGS, the seed project's flags) and by verification (a compile
record lacking them); ``host_features`` by the host check (``/proc/cpuinfo``
names: torch's build runs what it compiles); ``code_features`` and
``includes`` by the machine-code scan (what the disassembler may find without
a warning); ``variant_level`` and ``variant_features`` by PEP 825 variant
wheels (the x86_64 / aarch64 providers' names).  The settings' accepted
``isa`` values are the rows' names, in this order.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Isa:
    name: str
    platform: str  # "x86_64" or "aarch64"
    flags: tuple[str, ...]
    host_features: tuple[str, ...]
    # Features the disassembler reports (iced-x86 CPUID names on x86, Capstone
    # extensions on Arm) that this ISA's flags bring beyond those it includes.
    code_features: frozenset[str]
    includes: tuple[str, ...]  # ISAs whose code a CPU of this one runs (x86 levels are cumulative)
    variant_level: str  # PEP 825: x86_64 :: level, or aarch64 :: version
    variant_features: tuple[str, ...]  # PEP 825 features beyond that level, the provider's names


_AVX512 = ("-mavx512f", "-mavx512dq", "-mavx512vl", "-mavx512bw", "-mfma")
_AVX512_HOST = ("avx512f", "avx512dq", "avx512vl", "avx512bw", "fma")

TABLE: tuple[Isa, ...] = (
    Isa("avx", "x86_64", ("-mavx",), ("avx",),
        frozenset({"AVX", "AES", "PCLMULQDQ"}), (), "v2", ("avx",)),
    Isa("avx2", "x86_64", ("-mavx2", "-mfma", "-mf16c"), ("avx2", "fma", "f16c"),
        frozenset({"AVX2", "FMA", "F16C", "BMI1", "BMI2", "LZCNT", "MOVBE"}), ("avx",), "v3", ()),
    Isa("avx512", "x86_64", _AVX512, _AVX512_HOST,
        frozenset({"AVX512F", "AVX512DQ", "AVX512VL", "AVX512BW", "AVX512CD"}), ("avx", "avx2"), "v4", ()),
    # Every CPU with AVX512_BF16 (Cooper Lake, Sapphire Rapids, Zen 4 and later) also has AVX512_VNNI.
    Isa("avx512bf16", "x86_64", (*_AVX512, "-mavx512bf16"), (*_AVX512_HOST, "avx512_bf16"),
        frozenset({"AVX512_BF16"}), ("avx", "avx2", "avx512", "avx512vnni"), "v4", ("avx512_bf16",)),
    Isa("avx512vnni", "x86_64", (*_AVX512, "-mavx512vnni"), (*_AVX512_HOST, "avx512_vnni"),
        frozenset({"AVX512_VNNI"}), ("avx", "avx2", "avx512"), "v4", ("avx512_vnni",)),
    Isa("armv8_2", "aarch64", ("-march=armv8.2-a+fp16+dotprod",), ("asimdhp", "asimddp"),
        frozenset(), (), "8.2a", ("asimddp", "asimdhp")),
    Isa("armv9", "aarch64", ("-march=armv9-a+sve2+bf16+i8mm",), ("sve2", "svebf16", "svei8mm"),
        frozenset({"SVE", "SVE2"}), (), "9.0a", ("bf16", "i8mm", "sve2", "svebf16", "svei8mm")),
)

_BY_NAME = {isa.name: isa for isa in TABLE}
ISAS = tuple(_BY_NAME)
X86_ISAS = tuple(isa.name for isa in TABLE if isa.platform == "x86_64")
ARM_ISAS = tuple(isa.name for isa in TABLE if isa.platform == "aarch64")


def get(name: str) -> Isa:
    """The row of ``name`` (a validated setting: KeyError on anything else)."""
    return _BY_NAME[name]


def platform_of(name: str) -> str:
    return _BY_NAME[name].platform


def allowed_code_features(name: str) -> frozenset[str]:
    """What code built for ``name`` may use: its own features and those of every ISA it includes."""
    isa = _BY_NAME[name]
    allowed = set(isa.code_features)
    for included in isa.includes:
        allowed |= _BY_NAME[included].code_features
    return frozenset(allowed)


def preferred_first() -> tuple[str, ...]:
    """Per platform (x86_64 first), the ISA that includes most first; among equals the later row (armv9)."""
    order = {name: index for index, name in enumerate(ISAS)}
    return tuple(sorted(ISAS, key=lambda n: (platform_of(n) != "x86_64", -len(_BY_NAME[n].includes), -order[n])))
