"""What verification needs from one ELF file, read with pyelftools."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import mmap
from collections.abc import Iterator, Set
from pathlib import Path

from auditwheel.elfutils import elf_find_versioned_symbols
from elftools.elf import dynamic, elffile, sections

from . import cubins, fatbin, isa, isa_arm

ELF_MAGIC = b"\x7fELF"
RECORD_SECTION = ".GCC.command.line"
MACHINES = {"EM_X86_64": "x86_64", "EM_AARCH64": "aarch64", "EM_386": "i386", "EM_CUDA": "cuda"}
SHF_EXECINSTR = 0x4
# The CPU code a scan decodes: each machine's decoder (iced-x86, Capstone) and levels (isa.CodeScan).
_SCANNERS = {"x86_64": (isa.scan_bytes, isa.LEVELS), "aarch64": (isa_arm.scan_bytes, isa_arm.LEVELS)}


def is_elf(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == ELF_MAGIC
    except OSError:
        return False


@dataclasses.dataclass
class ObjectInfo:
    path: Path
    size: int
    machine: str
    elf_type: str                   # ET_DYN, ET_EXEC, ET_REL
    soname: str | None = None
    needed: list[str] = dataclasses.field(default_factory=list)
    runpath: list[str] = dataclasses.field(default_factory=list)
    undefined: set[str] = dataclasses.field(default_factory=set)   # strong undefined dynamic symbols
    exported: set[str] = dataclasses.field(default_factory=set)    # defined dynamic symbols
    gpu: list[fatbin.Section] = dataclasses.field(default_factory=list)
    compile_records: list[str] = dataclasses.field(default_factory=list)
    has_record_section: bool = False
    code_bytes: int = 0             # bytes in executable sections
    versions: set[str] = dataclasses.field(default_factory=set)    # symbol versions needed (GLIBC_2.34)
    folders: set[str] = dataclasses.field(default_factory=set)     # cubin folders its kernels load (cubins.py)
    marks: dict[str, str] = dataclasses.field(default_factory=dict)  # asked symbol -> "defines" or "calls"
    scan: isa.CodeScan | None = None  # the CPU code's scan, when read with one (x86_64, aarch64)


# What verification inflates of one compressed ELF section at most (it reads fatbins, the compile
# record and code; no toolchain compresses them).
INFLATED_SECTION_BOUND = 256 << 20


@contextlib.contextmanager
def _opened(source: Path | bytes) -> Iterator[tuple[elffile.ELFFile, bytes | mmap.mmap]]:
    """An ELF file and its bytes: a file's mapped, not read (torch's libraries are a gigabyte)."""
    with contextlib.ExitStack() as stack:
        data = source
        if not isinstance(source, (bytes, bytearray, memoryview)):
            handle = stack.enter_context(open(source, "rb"))
            data = b""   # mmap refuses an empty file
            if Path(source).stat().st_size:
                data = stack.enter_context(mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ))
        try:
            elf = elffile.ELFFile(data if isinstance(data, mmap.mmap) else io.BytesIO(data))
        except Exception as error:
            raise ValueError(f"not a readable ELF file: {error}") from error
        yield elf, data


def _is_code(section) -> bool:
    return bool(section["sh_flags"] & SHF_EXECINSTR) and section["sh_type"] != "SHT_NOBITS"


def read_object(source: Path | bytes, gpu: bool = True, asked: Set[str] = frozenset(),
                name: str = "object", scan_code: bool = False) -> ObjectInfo:
    """One ELF object's record, from a file or its bytes: everything tagging, verification, features and the
    manifest read of it.  ``asked``: symbols whose definition or use to note (``marks``), looked up in the
    full symbol table when the dynamic one lacks them; ``scan_code``: decode its CPU code (``scan``) in the
    same pass over its sections."""
    with _opened(source) as (elf, data):
        info = ObjectInfo(
            path=Path(name if isinstance(source, (bytes, bytearray, memoryview)) else source), size=len(data),
            machine=MACHINES.get(elf["e_machine"], str(elf["e_machine"])), elf_type=str(elf["e_type"]),
        )
        decode, levels = _SCANNERS.get(info.machine, (None, ()))
        info.scan = isa.CodeScan(levels) if scan_code and decode else None
        fat: dict[str, bytes] = {}
        full_table = None
        for section in elf.iter_sections():
            if _is_code(section):
                info.code_bytes += section["sh_size"]
                if info.scan is not None:
                    decode(_section_bytes(section), section["sh_addr"], info.scan)
            if isinstance(section, dynamic.DynamicSection):
                info.needed += [tag.needed for tag in section.iter_tags("DT_NEEDED")]
                info.soname = next((tag.soname for tag in section.iter_tags("DT_SONAME")), info.soname)
                paths = [tag.runpath if tag.entry.d_tag == "DT_RUNPATH" else tag.rpath
                         for tag in section.iter_tags() if tag.entry.d_tag in ("DT_RUNPATH", "DT_RPATH")]
                info.runpath += [folder for value in paths for folder in value.split(":") if folder]
            elif section.name == ".dynsym" and isinstance(section, sections.SymbolTableSection):
                _symbols(section, info, asked)
            elif section.name == ".symtab" and isinstance(section, sections.SymbolTableSection):
                full_table = section
            elif gpu and section.name in fatbin.SECTIONS and section["sh_type"] != "SHT_NOBITS":
                fat[section.name] = _section_bytes(section)
            elif section.name == RECORD_SECTION:
                info.has_record_section = True
                records = _section_bytes(section).split(b"\0")
                info.compile_records = [r.decode("utf-8", "replace").strip() for r in records if r.strip()]
        unseen = set(asked) - set(info.marks)
        if full_table is not None and unseen:  # a static library linked with hidden visibility (MKL in torch)
            info.marks.update({s.name: "defines" for s in full_table.iter_symbols()
                               if s.name in unseen and s.entry.st_shndx != "SHN_UNDEF"})
        info.gpu = fatbin.parse_elf_sections(fat)
        info.versions = _needed_versions(elf)
        info.folders = cubins.folders_named(data)
    return info


def read_or_why(source: Path | bytes, name: str = "object", scan_code: bool = False,
                asked: Set[str] = frozenset()) -> tuple[ObjectInfo | None, str | None]:
    """``read_object``'s record, or why the object cannot be read: the one line a report shows of a damaged
    wheel member or loose file (pyelftools raises its own exception types on damaged files)."""
    try:
        return read_object(source, asked=asked, name=name, scan_code=scan_code), None
    except (ValueError, OSError) as error:
        return None, str(error)
    except Exception as error:  # noqa: BLE001
        return None, f"cannot read: {type(error).__name__}: {error}"


def _needed_versions(elf) -> set[str]:
    """The symbol versions (``GLIBC_2.34``, ``GLIBCXX_3.4.30``) the object needs, as auditwheel reads them."""
    try:
        return {version for _library, version in elf_find_versioned_symbols(elf)}
    except Exception:  # noqa: BLE001 - a damaged version table: the other checks report the object
        return set()


def _section_bytes(section) -> bytes:
    """A section's bytes, never more than the file holds unless inflating stays under the bound.

    pyelftools takes the size a compressed (SHF_COMPRESSED) section declares, or an empty
    (NOBITS) one's ``sh_size``, as given: a few bytes could ask for gigabytes.
    """
    if section["sh_type"] == "SHT_NOBITS":
        return b""
    if section.compressed and section.data_size > INFLATED_SECTION_BOUND:
        raise ValueError(f"section {section.name} is compressed and declares {section.data_size} bytes, over the "
                         f"bound of {INFLATED_SECTION_BOUND >> 20} MiB for what verification reads")
    return section.data()


def _symbols(section, info: ObjectInfo, asked: Set[str]) -> None:
    for symbol in section.iter_symbols():
        name, entry = symbol.name, symbol.entry
        if not name:
            continue
        undefined = entry.st_shndx == "SHN_UNDEF"
        if name in asked:  # a definition wins over a call
            info.marks[name] = info.marks.get(name, "calls") if undefined else "defines"
        if undefined and entry.st_info.bind == "STB_GLOBAL":
            info.undefined.add(name)
        elif not undefined and (entry.st_info.bind in ("STB_GLOBAL", "STB_WEAK", "STB_GNU_UNIQUE")
                                and entry.st_other.visibility in ("STV_DEFAULT", "STV_PROTECTED")):
            info.exported.add(name)
