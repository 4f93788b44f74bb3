"""What verification needs from one ELF file, read with pyelftools."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

from ..errors import BackendError
from . import fatbin

ELF_MAGIC = b"\x7fELF"
RECORD_SECTION = ".GCC.command.line"
MACHINES = {"EM_X86_64": "x86_64", "EM_AARCH64": "aarch64", "EM_386": "i386", "EM_CUDA": "cuda"}


def elftools_modules():
    """pyelftools' elffile, sections and dynamic modules, imported on first use (plan, matrix and detect run with
    nothing installed); one line naming the install when it is missing.  Shared by the readers in verify/."""
    try:
        from elftools.elf.elffile import ELFFile  # noqa: F401
    except ImportError as error:  # pragma: no cover - a declared requirement
        raise BackendError("verification needs pyelftools; install it: pip install 'pyelftools>=0.31'") from error
    from elftools.elf import elffile, sections, dynamic

    return elffile, sections, dynamic


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


# What verification inflates of one compressed ELF section at most (it reads fatbins, the compile
# record and code; no toolchain compresses them).
INFLATED_SECTION_BOUND = 256 << 20


def read_object(path: Path, symbols: bool = True, gpu: bool = True) -> ObjectInfo:
    elffile, sections, dynamic = elftools_modules()
    path = Path(path)
    with open(path, "rb") as handle:
        try:
            elf = elffile.ELFFile(handle)
        except Exception as error:
            raise ValueError(f"not a readable ELF file: {error}") from error
        info = ObjectInfo(
            path=path, size=path.stat().st_size,
            machine=MACHINES.get(elf["e_machine"], str(elf["e_machine"])), elf_type=str(elf["e_type"]),
        )
        fat: dict[str, bytes] = {}
        for section in elf.iter_sections():
            name = section.name
            if section["sh_flags"] & 0x4 and section["sh_type"] != "SHT_NOBITS":  # SHF_EXECINSTR
                info.code_bytes += section["sh_size"]
            if isinstance(section, dynamic.DynamicSection):
                for tag in section.iter_tags():
                    if tag.entry.d_tag == "DT_NEEDED":
                        info.needed.append(tag.needed)
                    elif tag.entry.d_tag == "DT_SONAME":
                        info.soname = tag.soname
                    elif tag.entry.d_tag in ("DT_RUNPATH", "DT_RPATH"):
                        value = tag.runpath if tag.entry.d_tag == "DT_RUNPATH" else tag.rpath
                        info.runpath.extend(p for p in value.split(":") if p)
            elif symbols and section.name == ".dynsym" and isinstance(section, sections.SymbolTableSection):
                _symbols(section, info)
            elif gpu and name in fatbin.SECTIONS and section["sh_type"] != "SHT_NOBITS":
                fat[name] = _section_bytes(section)
            elif name == RECORD_SECTION:
                info.has_record_section = True
                info.compile_records = [
                    s.decode("utf-8", "replace").strip() for s in _section_bytes(section).split(b"\0") if s.strip()
                ]
        info.gpu = fatbin.parse_elf_sections(fat) if fat else []
    return info


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


def _symbols(section, info: ObjectInfo) -> None:
    undefined = info.undefined
    exported = info.exported
    for symbol in section.iter_symbols():
        name = symbol.name
        if not name:
            continue
        entry = symbol.entry
        bind = entry.st_info.bind
        if entry.st_shndx == "SHN_UNDEF":
            if bind == "STB_GLOBAL":
                undefined.add(name)
        elif bind in ("STB_GLOBAL", "STB_WEAK", "STB_GNU_UNIQUE") and entry.st_other.visibility in ("STV_DEFAULT", "STV_PROTECTED"):
            exported.add(name)


def code_sections(path: Path) -> Iterator[tuple[str, int, bytes]]:
    """(name, address, bytes) of every executable section with contents."""
    elffile, _sections, _dynamic = elftools_modules()
    with open(path, "rb") as handle:
        elf = elffile.ELFFile(handle)
        for section in elf.iter_sections():
            if section["sh_flags"] & 0x4 and section["sh_type"] != "SHT_NOBITS" and section["sh_size"]:
                yield section.name, section["sh_addr"], _section_bytes(section)


def exported_symbols(path: Path) -> set[str]:
    return read_object(path, symbols=True, gpu=False).exported
