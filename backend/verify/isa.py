"""CPU code: the x86 instruction-set extensions an object uses, and whether the variant's flags were applied.

The scan decodes every executable section linearly with iced-x86 and maps each
instruction's opcode to the CPUID features it needs.  "Highest ISA seen" is
not "ISA required": torch compiles its ``aten/native/cpu`` kernels for
DEFAULT, AVX2 and AVX-512 and picks one at run time, and oneDNN, FBGEMM and
glibc-like code do the same.  So code beyond the variant is a warning (the
feature and its instruction count), never a failure by itself.

What *is* checked strictly is the compile record that ``-frecord-gcc-switches``
leaves in ``.GCC.command.line`` (one string per distinct C/C++ compile): a
record without the variant's ISA flags means that translation unit was built
without them.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import operator
import re
import shlex

import iced_x86 as iced

from .. import cpu_isa

# Every x86_64 variant runs on x86-64-v2 or better: its features are always allowed.
BASELINE = ("x86-64-v2", frozenset({"SSE3", "SSSE3", "SSE4_1", "SSE4_2", "POPCNT"}))
# x86 levels, lowest first (an ISA after those it includes); each names the CPUID features that bring it.
LEVELS: tuple[tuple[str, frozenset[str]], ...] = (("x86-64", frozenset()), BASELINE) + tuple(
    (name, cpu_isa.get(name).code_features)
    for name in sorted(cpu_isa.X86_ISAS, key=lambda n: len(cpu_isa.get(n).includes))
)
# What a scan counts: the features of a level, and SIMD features beyond every variant of the matrix
# (reported, never a level).
_TRACKED = frozenset().union(*(members for _name, members in LEVELS))
_BEYOND = re.compile(r"^(AVX|AMX|FMA4|XOP|SSE4A|VAES|VPCLMULQDQ|GFNI|SHA|AVX512)")
# -march values that bring a variant's flags on their own.
MARCH_LEVEL = {march: level for level, marches in {
    "avx": "sandybridge ivybridge", "avx2": "x86-64-v3 haswell broadwell skylake alderlake znver1 znver2 znver3",
    "avx512": "x86-64-v4 skylake-avx512", "avx512vnni": "icelake-server icelake-client cascadelake",
    "avx512bf16": "cooperlake sapphirerapids emeraldrapids graniterapids znver4 znver5",
}.items() for march in marches.split()}


@dataclasses.dataclass
class CodeScan:
    """What one object's CPU code uses: x86's CPUID features (this module) or aarch64's vector extensions
    (isa_arm.py), each with the number of instructions that need it."""
    levels: tuple[tuple[str, frozenset[str]], ...]   # the machine's levels, lowest first, and what brings each
    instructions: int = 0
    features: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    @property
    def highest(self) -> str:
        return next(name for name, members in reversed(self.levels)
                    if not members or any(self.features.get(f) for f in members))

    def beyond(self, isa: str) -> dict[str, int]:
        """Features (with counts, most used first) that need more than the variant's ISA."""
        allowed = allowed_features(isa)
        return {f: n for f, n in self.features.most_common() if f not in allowed and n}


def allowed_features(isa: str) -> frozenset[str]:
    """What a variant's code may use without a warning (an x86_64 one: x86-64-v2 too)."""
    if isa not in cpu_isa.ISAS:
        return frozenset()
    return cpu_isa.allowed_code_features(isa) | (BASELINE[1] if isa in cpu_isa.X86_ISAS else frozenset())


# iced's CpuidFeature numbers -> their names (AVX512F); verify/emulate.py names faulting instructions with them
FEATURE_NAMES = {number: name for name, number in vars(iced.CpuidFeature).items() if not name.startswith("_")}


@functools.cache
def _features_of(code: int) -> tuple[str, ...]:
    try:
        instruction = iced.Instruction.create(code)
        # GCC emits `rep bsf` for __builtin_ctz on generic targets: it runs as BSF on CPUs without BMI1.
        features = [] if instruction.mnemonic == iced.Mnemonic.TZCNT else instruction.cpuid_features()
    except Exception:
        return ()
    names = (FEATURE_NAMES[f] for f in features)
    return tuple(name for name in names if name in _TRACKED or _BEYOND.match(name))


def scan_bytes(data: bytes, address: int = 0, scan: CodeScan | None = None) -> CodeScan:
    scan = scan or CodeScan(LEVELS)
    codes = collections.Counter(map(operator.attrgetter("code"), iced.Decoder(64, data, ip=address)))
    codes.pop(iced.Code.INVALID, None)
    scan.instructions += sum(codes.values())
    for code, count in codes.items():
        scan.features.update(dict.fromkeys(_features_of(code), count))
    return scan


# records: the C/C++ compile records in .GCC.command.line; lacking: those without the variant's flags
FlagCheck = collections.namedtuple("FlagCheck", "records lacking")


def is_compile_record(record: str) -> bool:
    """A C or C++ compile (GCC writes 'GNU C17 12.2.0 ...', 'GNU C++17 ...'; clang its command line)."""
    return bool(re.match(r"GNU (C|C\+\+|Objective-C)", record)) or "clang" in record.split(" ", 1)[0]


def flags_applied(record: str, isa: str | None) -> bool:
    """Whether one compile record carries the variant's flags (or an -march that brings them)."""
    try:
        tokens = shlex.split(record)
    except ValueError:
        tokens = record.split()
    wanted = cpu_isa.get(isa).flags if isa in cpu_isa.ISAS else ()
    if all(_last_sets(tokens, flag) for flag in wanted):
        return True
    march = next((t.removeprefix("-march=") for t in reversed(tokens) if t.startswith("-march=")), "")
    if march == "native":
        return True
    if march.startswith("armv"):
        return march_brings(march, wanted[0])
    level = MARCH_LEVEL.get(march)
    if level and (isa == level or isa in cpu_isa.get(level).includes):
        # an explicit -mno-<x> after it would still turn a feature off
        return not any(t.startswith("-mno-") and "-m" + t[5:] in wanted for t in tokens)
    return False


def _last_sets(tokens: list[str], flag: str) -> bool:
    if not flag.startswith("-m") or flag.startswith("-march="):
        return flag in tokens
    # the last of -m<x> and -mno-<x> wins
    return next((token for token in reversed(tokens) if token in (flag, "-mno-" + flag[2:])), None) == flag


def check_flags(records: list[str], isa: str | None) -> FlagCheck:
    compiles = [r for r in records if is_compile_record(r)]
    return FlagCheck(records=len(compiles), lacking=[r for r in compiles if not flags_applied(r, isa)])


# Extensions an architecture level makes mandatory, in Armv8 terms (Armv9.N
# includes Armv8.(5+N)); SVE2 comes with Armv9 itself.
_MANDATORY_FROM = {"dotprod": (8, 4), "bf16": (8, 6), "i8mm": (8, 6)}


def _as_v8(level: tuple[int, int]) -> tuple[int, int]:
    return level if level[0] == 8 else (8, 5 + level[1])


def _parse_march(march: str) -> tuple[tuple[int, int], set[str]] | None:
    """``armv8.2-a+fp16+dotprod`` -> ((8, 2), {'fp16', 'dotprod'}) and the extensions its level makes
    mandatory; None for what is not an Arm level."""
    base, *extensions = march.removeprefix("-march=").split("+")
    match = re.fullmatch(r"armv(\d+)(?:\.(\d+))?-a", base)
    if not match:
        return None
    level = (int(match.group(1)), int(match.group(2) or 0))
    brought = {e for e in extensions if not e.startswith("no")}
    brought |= {e for e, since in _MANDATORY_FROM.items() if _as_v8(level) >= since}
    if level[0] >= 9:
        brought |= {"sve", "sve2"}
    if brought & {"sve", "sve2"}:
        brought.add("fp16")  # GCC: +sve implies +fp16
    return level, brought


def march_brings(march: str, wanted: str) -> bool:
    """Whether a compile's last ``-march`` brings everything the variant's ``-march`` asks for.

    GCC records only the last ``-march`` of a command line, so a unit built
    with the variant's flags plus ``+sve`` shows ``-march=armv8.2-a+fp16+dotprod+sve``.
    """
    have, want = _parse_march(march), _parse_march(wanted)
    if have is None or want is None:
        return False
    (level, brought), (wanted_level, asked) = have, want
    return not (wanted_level[0] >= 9 > level[0]) and _as_v8(level) >= _as_v8(wanted_level) and asked <= brought
