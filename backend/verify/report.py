"""The verification report: one entry per wheel (or loose object), a table and JSON."""

from __future__ import annotations

import collections
import dataclasses
from typing import Any

from ..cuda_target import CudaTarget
from ..report_table import table
from . import fatbin

ERROR = "error"
WARNING = "warning"


@dataclasses.dataclass(frozen=True)
class Problem:
    severity: str          # "error" fails the report, "warning" is shown only
    check: str             # gpu, cuda, cpu, flags, link, abi, metadata, read
    message: str
    object: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def line(self) -> str:
        where = f"{self.object}: " if self.object else ""
        return f"{self.severity:<7} {self.check:<8} {where}{self.message}"


@dataclasses.dataclass
class ObjectEntry:
    path: str                      # inside the wheel, or the file's path
    size: int
    machine: str
    gpu: list[fatbin.Section] = dataclasses.field(default_factory=list)
    isa_highest: str | None = None
    isa_features: dict[str, int] = dataclasses.field(default_factory=dict)
    isa_beyond: dict[str, int] = dataclasses.field(default_factory=dict)
    instructions: int = 0
    flag_records: int | None = None   # None: no .GCC.command.line section
    flag_lacking: int = 0
    needed: dict[str, str | None] = dataclasses.field(default_factory=dict)   # soname -> provider
    problems: list[Problem] = dataclasses.field(default_factory=list)

    def section(self, name: str) -> fatbin.Section | None:
        return next((s for s in self.gpu if s.name == name), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path, "size": self.size, "machine": self.machine,
            "gpu": {
                s.name: {
                    "size": s.size, "fatbins": s.fatbins, "error": s.error,
                    "cubins": _targets(s.cubins), "ptx": _targets(s.ptx),
                    "compressed": sorted({e.compressed for e in s.entries if e.compressed}),
                    "cuda_releases": sorted({e.release for e in s.entries if e.release}),
                    "abi_versions": sorted({e.abi for e in s.entries if e.abi is not None}),
                } for s in self.gpu
            },
            "isa": {
                "highest": self.isa_highest, "instructions": self.instructions,
                "features": self.isa_features, "beyond_variant": self.isa_beyond,
                "compile_records": self.flag_records, "records_without_flags": self.flag_lacking,
            },
            "needed": self.needed,
            "problems": [p.to_json() for p in self.problems],
        }


def _targets(entries: list[fatbin.Entry]) -> dict[str, int]:
    counts = collections.Counter(e.target for e in entries)
    return dict(sorted(counts.items(), key=lambda kv: _target_key(kv[0])))


def _target_key(target: str) -> tuple[int, str]:
    digits = "".join(c for c in target.split("_", 1)[-1] if c.isdigit())
    return (int(digits or 0), target)


@dataclasses.dataclass
class Entry:
    path: str
    kind: str                      # "wheel" or "object"
    size: int
    name: str | None = None
    version: str | None = None
    objects: list[ObjectEntry] = dataclasses.field(default_factory=list)
    problems: list[Problem] = dataclasses.field(default_factory=list)
    # artifact folder its kernels load cubins from at run time -> the wheel serving it, None: downloaded
    cubins: dict[str, str | None] = dataclasses.field(default_factory=dict)

    @property
    def all_problems(self) -> list[Problem]:
        return self.problems + [p for o in self.objects for p in o.problems]

    @property
    def ok(self) -> bool:
        return not any(p.severity == ERROR for p in self.all_problems)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path, "kind": self.kind, "size": self.size, "name": self.name, "version": self.version,
            "ok": self.ok, "problems": [p.to_json() for p in self.problems],
            "objects": [o.to_json() for o in self.objects],
            **({"cubins": dict(self.cubins)} if self.cubins else {}),
        }


@dataclasses.dataclass
class Report:
    entries: list[Entry] = dataclasses.field(default_factory=list)
    expectation: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(e.ok for e in self.entries)

    @property
    def problems(self) -> list[Problem]:
        return [p for e in self.entries for p in e.all_problems]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == WARNING]

    def ptx_jit(self, sm: str) -> list[str]:
        """The objects some of whose code a GPU of ``sm`` runs by JIT-compiling their PTX."""
        found = []
        for entry in self.entries:
            for obj in entry.objects:
                ptx = [e.target for s in obj.gpu for e in s.ptx]
                cubins = [e.target for s in obj.gpu for e in s.cubins]
                if CudaTarget(sm).jits_ptx(ptx, cubins):
                    found.append(obj.path)
        return sorted(found)

    def extend(self, other: Report) -> None:
        self.entries.extend(other.entries)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "expectation": self.expectation,
            "errors": len(self.errors), "warnings": len(self.warnings),
            "entries": [e.to_json() for e in self.entries],
        }

    def format_table(self) -> str:
        blocks = []
        for entry in self.entries:
            problems = entry.all_problems
            errors = sum(p.severity == ERROR for p in problems)
            warnings = len(problems) - errors
            verdict = "ok" if errors == 0 else "FAIL"
            counts = f" ({errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)})" if problems else ""
            title = f"{_name(entry.path)}  {human_size(entry.size)}  {verdict}{counts}"
            lines = [title]
            if entry.objects:
                rows = [_object_row(o) for o in entry.objects]
                lines.append(_indent(table(["object", "size", "GPU code", "PTX", "CUDA", "ISA seen", "flags"], rows)))
            else:
                lines.append("  no ELF objects")
            for problem in problems:
                lines.append("  " + problem.line())
            blocks.append("\n".join(lines))
        total_errors = len(self.errors)
        summary = (f"verification: {len(self.entries)} checked, "
                   f"{total_errors} error{'s' * (total_errors != 1)}, {len(self.warnings)} warning{'s' * (len(self.warnings) != 1)}"
                   f" -> {'ok' if self.ok else 'FAILED'}")
        if any(p.check == "cpu" for p in self.warnings):
            summary += ("\n(cpu warnings list code beyond the variant's ISA; torch and its CPU libraries keep "
                        "AVX-512 kernels behind run-time dispatch by design: see docs/VERIFY.md)")
        return "\n\n".join(blocks + [summary])


def _name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def _object_row(obj: ObjectEntry) -> list[str]:
    main = obj.section(".nv_fatbin")
    rel = obj.section("__nv_relfatbin")
    gpu = _listing(main.cubins) if main else "-"
    if rel and rel.entries:
        gpu += f" [relfatbin: {_listing(rel.cubins) or '-'}]"
    ptx = _listing(main.ptx) if main else ""
    if rel and rel.ptx:
        ptx += f" [relfatbin: {_listing(rel.ptx)}]"
    compressed = sorted({e.compressed for s in obj.gpu for e in s.entries if e.compressed})
    if compressed and gpu != "-":
        gpu += f" ({'+'.join(compressed)})"
    releases = sorted({e.release for s in obj.gpu for e in s.entries if e.release})
    if obj.flag_records is None:
        flags = "-"
    elif obj.flag_records == 0:
        flags = "no C/C++ record"
    elif obj.flag_lacking:
        flags = f"MISSING {obj.flag_lacking}/{obj.flag_records}"
    else:
        flags = f"ok {obj.flag_records}/{obj.flag_records}"
    isa = obj.isa_highest or "-"
    if obj.isa_beyond:
        isa += " (!)"
    return [obj.path, human_size(obj.size), gpu or "-", ptx or "-", ",".join(releases) or "-", isa, flags]


def _listing(entries: list[fatbin.Entry]) -> str:
    return " ".join(f"{t}" + (f" x{n}" if n > 1 else "") for t, n in _targets(entries).items())


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
