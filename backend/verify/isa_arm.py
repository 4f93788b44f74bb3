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
import functools
import re
from collections.abc import Iterator

import capstone
from capstone import aarch64

from . import isa
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


# Capstone's feature names (AARCH64_FEATURE_HAS...) -> the extension that brings them, the first that matches.
_EXTENSION_OF = ((r"SVE2P1", "SVE2.1"), (r"SVE2(AES|SHA3|SM4|BITPERM)", "SVE2-crypto"), (r"SVE2", "SVE2"),
                 (r"SVE.*FP8|FP8.*SVE", "SVE2.1"), (r"SVE", "SVE"), (r"^SME", "SME"))
# The extensions as levels of a scan (isa.CodeScan): the last one used is the highest.
LEVELS = (("armv8", frozenset()), *((e.lower(), frozenset({e})) for e in EXTENSIONS))


def extension_of(feature: str) -> str | None:
    """``AARCH64_FEATURE_HASSVE2ORSME`` -> ``SVE2``; None for what every variant has (NEON, FP, LSE ...)."""
    name = feature.removeprefix("AARCH64_FEATURE_HAS")
    return next((extension for pattern, extension in _EXTENSION_OF if re.search(pattern, name)), None)


_CACHE: dict[int, str | None] = {}   # a word -> the extension it needs, None: none, "?": no instruction


@functools.cache
def _decoder():
    md = capstone.Cs(capstone.CS_ARCH_AARCH64, capstone.CS_MODE_ARM)
    md.detail = True
    md.skipdata = True
    names = {getattr(aarch64, n): n for n in dir(aarch64) if n.startswith("AARCH64_FEATURE_")}
    return md, names


def scan_bytes(data: bytes, address: int, scan: isa.CodeScan) -> isa.CodeScan:
    """Classify each 32-bit word into ``scan`` (``elf.read_object``'s); each distinct word is decoded once
    (A64 has one encoding per word, wherever it lies: ``address`` does not matter)."""
    usable = len(data) - len(data) % 4
    words = collections.Counter(memoryview(data)[:usable].cast("I"))
    fresh = [w for w in words if w not in _CACHE]
    md, names = _decoder()
    for insn in md.disasm(b"".join(w.to_bytes(4, "little") for w in fresh), 0):
        needs = filter(None, (extension_of(names.get(group, "")) for group in insn.groups))
        highest = max(needs, key=EXTENSIONS.index, default=None)
        _CACHE[fresh[insn.address // 4]] = "?" if insn.id == 0 else highest   # id 0: skipped data
    for word, count in words.items():
        kind = _CACHE.get(word, "?")
        if kind == "?":
            continue
        scan.instructions += count
        if kind:
            scan.features[kind] += count
    return scan


def problems(beyond: dict[str, int], compile_records: list[str], isa_name: str, path: str) -> Iterator[Problem]:
    """The problems of an aarch64 object's code ``beyond`` the variant's ``isa_name``."""
    # the -march / -mcpu switches of each C/C++ compile: where a compile asks for an extension
    switches = [[token for token in record.split() if token.startswith(("-march=", "-mcpu="))]
                for record in compile_records if isa.is_compile_record(record)]
    for extension, count in beyond.items():
        asking = [tokens for tokens in switches if any(map(_ASKS[extension].search, tokens))]
        # Some compiles ask for it and others do not: kernels picked at run time.
        deliberate = bool(asking) and len(asking) < len(switches)
        if deliberate:
            why = (f"{len(asking)} of {len(switches)} compile records ask for it (kernels picked at run time, "
                   "as torch's SVE ones)")
        elif asking:
            why = (f"every compile record asks for it: the whole object is built beyond {isa_name}; SIGILL on "
                   f"{isa_name} CPUs")
        else:
            why = ("no compile record asks for it (inline assembly or a target attribute?): SIGILL on "
                   f"{isa_name} CPUs")
        instructions = f"{count} {extension} instruction{'s' * (count != 1)}"
        yield Problem(WARNING if deliberate else ERROR, "cpu",
                      f"{instructions}, beyond the variant's {isa_name}; {why}", path)
