"""The GPU code inside a CUDA object: the fatbins of its ``.nv_fatbin`` and ``__nv_relfatbin`` sections.

Layout (NVIDIA does not document it; read from the bytes and confirmed by
tests/test_verify_gpu.py against cuobjdump 13 on nvcc 13 output): a section holds fatbins one after another,
each 8-byte aligned::

    fatbin header   u32 magic 0xBA55ED50, u16 version 1, u16 header size (0x10), u64 size of its entries
    entry header    u16 kind (1 PTX, 2 cubin), u16, u32 header size, u64 payload size,
                    u32 compressed size @0x10, u16 minor @0x18, u16 major @0x1a, u32 sm @0x1c,
                    u64 flags @0x28, u64 uncompressed size @0x38
    flags           0x2000 payload compressed with LZ4 (nvcc -compress-mode=speed, CUDA 12's default)
                    0x8000 payload compressed with zstd (CUDA 13's default modes)
                    0x100000 arch-specific target (sm_90a), 0x200000 family target (sm_100f)

The cubin payload is an ELF file whose ``.note.nv.tkinfo`` note names the
toolkit ("Cuda compilation tools, release 13.0, V13.0.88") and whose
EI_ABIVERSION is the CUDA ELF ABI (8 from CUDA 13 on).  Only the first cubin
of each fatbin is opened for that: one fatbin is one nvcc invocation.
"""

from __future__ import annotations

import dataclasses
import re
import struct
from collections.abc import Iterator

FATBIN_MAGIC = 0xBA55ED50
SECTIONS = (".nv_fatbin", "__nv_relfatbin")
KIND_PTX = 1
KIND_CUBIN = 2
FLAG_LZ4 = 0x2000
FLAG_ZSTD = 0x8000
FLAG_ARCH_SPECIFIC = 0x100000
FLAG_FAMILY = 0x200000
_HEADER = struct.Struct("<IHHQ")
_ENTRY = struct.Struct("<HHIQ")
_RELEASE = re.compile(rb"Cuda compilation tools, release (\d+\.\d+), V(\d+(?:\.\d+)*)")
# The release note lies near a cubin's start (after its string and symbol tables: 1 KB into a small
# one), so a cubin is inflated only until it shows, never past HEAD_BOUND; a section's cubins together
# never past SECTION_BUDGET (one fatbin per nvcc invocation: torch's thousands stop after a few KB each).
HEAD_BOUND = 64 << 20
SECTION_BUDGET = 256 << 20
_CHUNK = 1 << 20


class FatbinError(ValueError):
    """The section does not hold fatbins as laid out above."""


@dataclasses.dataclass(frozen=True)
class Entry:
    kind: str            # "cubin" or "ptx"
    sm: str              # "90"
    suffix: str          # "", "a" or "f"
    compressed: str      # "", "lz4" or "zstd"
    size: int            # bytes in the file (compressed size when compressed)
    version: str         # PTX ISA version ("9.0") for PTX; cubin format version ("1.8") for cubins
    flags: int
    uncompressed_size: int = 0
    release: str | None = None   # toolkit release recorded in the cubin ("13.0"), when read
    abi: int | None = None       # CUDA ELF ABI version of the cubin, when read

    @property
    def target(self) -> str:
        prefix = "sm" if self.kind == "cubin" else "compute"
        return f"{prefix}_{self.sm}{self.suffix}"


@dataclasses.dataclass
class Section:
    name: str
    size: int
    fatbins: int = 0
    entries: list[Entry] = dataclasses.field(default_factory=list)
    error: str | None = None

    @property
    def cubins(self) -> list[Entry]:
        return [e for e in self.entries if e.kind == "cubin"]

    @property
    def ptx(self) -> list[Entry]:
        return [e for e in self.entries if e.kind == "ptx"]


def parse_section(name: str, data: bytes, read_release: bool = True) -> Section:
    """Every fatbin of one section's bytes."""
    section = Section(name=name, size=len(data))
    budget = [SECTION_BUDGET]
    try:
        for entries in _fatbins(data):
            section.fatbins += 1
            first_cubin = True
            for entry, payload in entries:
                if read_release and entry.kind == "cubin" and first_cubin:
                    first_cubin = False
                    entry = _with_release(entry, payload, budget)
                section.entries.append(entry)
    except FatbinError as error:
        section.error = str(error)
    return section


def _fatbins(data: bytes) -> Iterator[list[tuple[Entry, memoryview]]]:
    view = memoryview(data)
    offset = 0
    end = len(data)
    while offset + _HEADER.size <= end:
        magic, _version, header_size, size = _HEADER.unpack_from(data, offset)
        if magic != FATBIN_MAGIC:
            if not any(view[offset:]):  # zero padding at the end
                return
            raise FatbinError(f"no fatbin header at offset {offset:#x} (magic {magic:#x})")
        start = offset + header_size
        stop = start + size
        if stop > end:
            raise FatbinError(f"fatbin at offset {offset:#x} runs past the section ({stop:#x} > {end:#x})")
        entries = []
        position = start
        while position + _ENTRY.size <= stop:
            kind, _unknown, entry_header, payload = _ENTRY.unpack_from(data, position)
            if entry_header < 0x40 or position + entry_header + payload > stop:
                raise FatbinError(f"bad entry header at offset {position:#x}")
            compressed_size, = struct.unpack_from("<I", data, position + 0x10)
            minor, major, sm = struct.unpack_from("<HHI", data, position + 0x18)
            flags, = struct.unpack_from("<Q", data, position + 0x28)
            uncompressed, = struct.unpack_from("<Q", data, position + 0x38)
            compression = "zstd" if flags & FLAG_ZSTD else "lz4" if flags & FLAG_LZ4 else ""
            suffix = "a" if flags & FLAG_ARCH_SPECIFIC else "f" if flags & FLAG_FAMILY else ""
            if kind not in (KIND_PTX, KIND_CUBIN):
                raise FatbinError(f"unknown entry kind {kind} at offset {position:#x}")
            body = view[position + entry_header: position + entry_header + (compressed_size if compression and compressed_size else payload)]
            entries.append((Entry(
                kind="cubin" if kind == KIND_CUBIN else "ptx", sm=str(sm), suffix=suffix,
                compressed=compression, size=payload, version=f"{major}.{minor}", flags=flags,
                uncompressed_size=uncompressed,
            ), body))
            position += entry_header + payload
        yield entries
        offset = (stop + 7) & ~7


def _with_release(entry: Entry, payload: memoryview, budget: list[int]) -> Entry:
    head = _cubin_head(entry, payload, budget)
    if head is None:
        return entry
    abi = head[8] if head[:4] == b"\x7fELF" and len(head) > 8 else None
    match = _RELEASE.search(head)
    return dataclasses.replace(entry, release=match.group(1).decode() if match else None, abi=abi)


def _cubin_head(entry: Entry, payload: memoryview, budget: list[int]) -> bytes | None:
    """The cubin's first bytes, up to its release note, decompressed when needed (None: codec missing).

    A payload's sizes are the file's word (a 3 KB zstd frame inflates to gigabytes): never more than
    HEAD_BOUND is inflated per cubin, nor more than ``budget[0]`` for the whole section, whatever the
    entry header declares; past either the release stays unknown.
    """
    if not entry.compressed:
        return bytes(payload[:HEAD_BOUND])
    bound = min(HEAD_BOUND, budget[0])
    if bound <= 0:
        return None
    try:
        if entry.compressed == "zstd":
            head = _zstd_head(bytes(payload), bound)
        else:
            import lz4.block

            # LZ4 inflates at most 255-fold: a block that fits the bound comes out whole, a larger one fails.
            head = lz4.block.decompress(bytes(payload), uncompressed_size=min(bound, len(payload) * 255))
        budget[0] -= len(head)
        return head
    except ImportError:
        return None
    except Exception:  # a damaged payload: the listing stands, the release stays unknown
        return None


def _zstd_head(data: bytes, bound: int) -> bytes:
    """Inflate a zstd frame in blocks until the release note shows up, never past ``bound`` bytes."""
    import zstandard

    head = bytearray()
    with zstandard.ZstdDecompressor().stream_reader(data) as reader:
        while len(head) < bound:
            block = reader.read(min(_CHUNK, bound - len(head)))
            if not block:
                break
            head += block
            if _RELEASE.search(head, max(0, len(head) - len(block) - 128)):
                break
    return bytes(head)


def parse_elf_sections(sections: dict[str, bytes], read_release: bool = True) -> list[Section]:
    """The fatbin sections present in an object, in SECTIONS order."""
    return [parse_section(name, sections[name], read_release) for name in SECTIONS if name in sections]
