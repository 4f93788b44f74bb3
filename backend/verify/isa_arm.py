"""CPU code of AArch64 objects: the vector extensions (SVE, SVE2, SME) its instructions need.

The seed's ARM ISAs are ``armv8_2`` (``-march=armv8.2-a+fp16+dotprod``: NEON,
no SVE; Ampere Altra, Graviton 2) and ``armv9`` (``-march=armv9-a+sve2+bf16+i8mm``:
SVE and SVE2; Grace).  An ``armv8_2`` wheel carrying one SVE2 instruction dies
with SIGILL on the CPUs it was built for, while its compile records look right:
inline assembly, ``target`` attributes and ``#pragma GCC target`` leave no
trace in ``.GCC.command.line``.  So every word of every executable section is
decoded with Capstone (6.x: it names the feature each instruction needs) and
classed by the extension that brings it.

Code beyond the variant is an error, unless some compile records of the same
object ask for that extension on the command line (``-march=armv8.2-a+sve``)
and others do not: that is how torch and oneDNN build the kernels they pick
at run time, so it is a warning then, as x86 code beyond the ISA is
(backend/verify/isa.py).  An object all of whose compiles ask for it was
built for another ISA: an error.
"""

from __future__ import annotations

import collections
import dataclasses
import re
from pathlib import Path

from .. import cpu_isa
from ..errors import BackendError
from . import elf
from .isa import is_compile_record
from .report import ERROR, WARNING, Problem

# Extensions tracked, in the order a report lists them.
EXTENSIONS = ("SVE", "SVE2", "SVE2-crypto", "SVE2.1", "SME")
# A -march / -mcpu fragment in a compile record that asks for an extension on purpose.
_ASKS = {
    "SVE": re.compile(r"\+sve\b|\+sve2|armv9|armv8\.[2-9]-a\+sve"),
    "SVE2": re.compile(r"\+sve2|armv9"),
    "SVE2-crypto": re.compile(r"\+sve2-(aes|sha3|sm4|bitperm)"),
    "SVE2.1": re.compile(r"\+sve2p1|armv9\.[4-9]"),
    "SME": re.compile(r"\+sme"),
}


def capstone_modules():
    """Capstone and its aarch64 module, imported on first use (only ARM objects need them); one line naming the
    install when they are missing.  Shared with verify/emulate.py."""
    try:
        import capstone
        from capstone import aarch64
    except ImportError as error:  # pragma: no cover - a declared requirement
        raise BackendError("verifying ARM objects needs Capstone 6; install it: pip install 'capstone==6.0.0a11'") from error
    return capstone, aarch64


def extension_of(feature: str) -> str | None:
    """``AARCH64_FEATURE_HASSVE2ORSME`` -> ``SVE2``; None for what every variant has (NEON, FP, LSE ...)."""
    name = feature.removeprefix("AARCH64_FEATURE_HAS")
    if "SVE" in name:
        if "SVE2P1" in name:
            return "SVE2.1"
        if re.search(r"SVE2(AES|SHA3|SM4|BITPERM)", name):
            return "SVE2-crypto"
        if "SVE2" in name:
            return "SVE2"
        if "FP8" in name:
            return "SVE2.1"
        return "SVE"
    if name.startswith("SME"):
        return "SME"
    return None


@dataclasses.dataclass
class ArmScan:
    instructions: int = 0
    undecoded: int = 0
    extensions: dict[str, int] = dataclasses.field(default_factory=dict)   # extension -> instructions

    @property
    def highest(self) -> str:
        used = [e for e in EXTENSIONS if self.extensions.get(e)]
        return used[-1].lower() if used else "armv8"

    def beyond(self, isa: str) -> dict[str, int]:
        allowed = cpu_isa.allowed_code_features(isa) if isa in cpu_isa.ARM_ISAS else frozenset()
        return {e: n for e, n in self.extensions.items() if e not in allowed and n}


_CACHE: dict[int, str | None] = {}


def _decoder():
    capstone, aarch64 = capstone_modules()
    md = capstone.Cs(capstone.CS_ARCH_AARCH64, capstone.CS_MODE_ARM)
    md.detail = True
    md.skipdata = True
    names = {getattr(aarch64, n): n for n in dir(aarch64) if n.startswith("AARCH64_FEATURE_")}
    return md, names


def scan_bytes(data: bytes, scan: ArmScan | None = None) -> ArmScan:
    """Classify each 32-bit word; each distinct word is decoded once (A64 has one encoding per word)."""
    scan = scan or ArmScan()
    usable = len(data) - len(data) % 4
    words = collections.Counter(memoryview(data)[:usable].cast("I"))
    fresh = [w for w in words if w not in _CACHE]
    if fresh:
        md, names = _decoder()
        blob = b"".join(w.to_bytes(4, "little") for w in fresh)
        for insn in md.disasm(blob, 0):
            word = fresh[insn.address // 4]
            if insn.id == 0:   # skipped data: no instruction
                _CACHE[word] = "?"
                continue
            found = None
            for group in insn.groups:
                extension = extension_of(names.get(group, ""))
                if extension and (found is None or EXTENSIONS.index(extension) > EXTENSIONS.index(found)):
                    found = extension
            _CACHE[word] = found
    for word, count in words.items():
        kind = _CACHE.get(word, "?")
        if kind == "?":
            scan.undecoded += count
            continue
        scan.instructions += count
        if kind:
            scan.extensions[kind] = scan.extensions.get(kind, 0) + count
    return scan


def scan_object(path: Path) -> ArmScan:
    scan = ArmScan()
    for _name, _address, data in elf.code_sections(path):
        scan_bytes(data, scan)
    return scan


def asked_for(records: list[str], extension: str) -> bool:
    """Whether a compile record asks for ``extension`` on its command line."""
    pattern = _ASKS[extension]
    return any(pattern.search(token) for record in records for token in record.split()
               if token.startswith(("-march=", "-mcpu=")))


def check_object(obj, info: elf.ObjectInfo, isa: str | None) -> None:
    """Fill ``obj`` (a report.ObjectEntry) with the scan of an aarch64 object and its problems for ``isa``."""
    scan = info.scan if info.scan is not None else scan_object(info.path)
    obj.isa_highest = scan.highest
    obj.isa_features = dict(sorted(scan.extensions.items()))
    obj.instructions = scan.instructions
    if isa not in cpu_isa.ARM_ISAS:
        return
    obj.isa_beyond = scan.beyond(isa)
    compiles = [r for r in info.compile_records if is_compile_record(r)]
    for extension, count in obj.isa_beyond.items():
        asking = [r for r in compiles if asked_for([r], extension)]
        # Some compiles ask for it and others do not: kernels picked at run time.
        deliberate = bool(asking) and len(asking) < len(compiles)
        if deliberate:
            why = (f"{len(asking)} of {len(compiles)} compile records ask for it (kernels picked at run time, "
                   "as torch's SVE ones)")
        elif asking:
            why = f"every compile record asks for it: the whole object is built beyond {isa}; SIGILL on {isa} CPUs"
        else:
            why = ("no compile record asks for it (inline assembly or a target attribute?): SIGILL on "
                   f"{isa} CPUs")
        obj.problems.append(Problem(
            WARNING if deliberate else ERROR, "cpu",
            f"{count} {extension} instruction{'s' * (count != 1)}, beyond the variant's {isa}; {why}", obj.path))
