"""``python -m backend rebuild-check WHEELHOUSE``: build a wheelhouse's components again and compare.

What a reviewer who got a wheelhouse does to trust it: the manifest records
the settings the build was given (``flags.settings``) and the
``SOURCE_DATE_EPOCH`` it ran with; the components are built again from them
into a scratch folder (another cache, so other paths; the compiler cache off,
so nothing is served from the first build), and every wheel the pipeline built
(not the ``runtime`` wheels, which are upstream's) is compared with its
rebuild by sha256.  For each wheel that differs, each difference is named:
a member only one has, the members' order, a member's time or permissions,
or the member's first differing bytes with what they are (the ELF section, a
date or time, a path of a build folder, nvcc's temporary names, the build id)
and, where Debian's ``diffoscope`` is on PATH, the first lines of its report.
The build id (a hash of the whole file) is skipped when looking for the first
difference: it differs because other bytes do, and those are the cause.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

from elftools.elf.elffile import ELFFile

from .. import settings
from ..errors import BackendError
from . import reproducible
from .wheelhouse import Wheelhouse

RECORD_REASON = "RECORD holds every member's sha256: it differs where another member does"
CONTEXT = 16  # bytes shown either side of a difference
DIFFOSCOPE_LINES = 30
DIFFOSCOPE_SECONDS = 300
DATE_OR_TIME = re.compile(rb"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ 0-3]\d \d{4}|\b[0-2]\d:[0-5]\d:[0-5]\d\b")
# settings a rebuild replaces: where it writes, and nothing served from the first build
# cudafe++'s name for a unit with no external kernel: _<path hash>_<n>_<file>_<folder and time hash>_<process id>
NVCC_MODULE_ID = re.compile(rb"_[0-9a-f]{8}_\d+_\w+?_[0-9a-f]{8}_\d+")
MODULE_ID_REASON = ("nvcc's module id of a unit with no external kernel: cudafe++ makes it from its working folder, "
                    "the source's modification time and its own process id; nvcc ran outside a namespace of its "
                    "own (no unprivileged user namespaces on this host?) or the sources' times differ (docs/WHEELS.md)")
REPLACED = ("cache-dir", "wheelhouse", "compiler-cache", "compiler-cache-url", "runtime-deps", "smoke", "wheel-variants")


@dataclasses.dataclass
class Difference:
    wheel: str
    member: str | None  # None: the archive itself (member order)
    what: str  # "only in the original", "only in the rebuild", "order", "time", "mode", "bytes"
    reason: str
    offset: int | None = None
    original: bytes = b""
    rebuilt: bytes = b""
    diffoscope: str = ""

    def describe(self) -> str:
        where = f"{self.wheel}" + (f" member {self.member}" if self.member else "")
        text = f"{where}: {self.what}"
        if self.offset is not None:
            text += f" at byte {self.offset}: original {self.original.hex(' ')} | rebuild {self.rebuilt.hex(' ')}"
            text += f"\n    as text: {_printable(self.original)!r} | {_printable(self.rebuilt)!r}"
        text += f"\n    reason: {self.reason}"
        if self.diffoscope:
            text += "\n    diffoscope:\n" + "\n".join("      " + line for line in self.diffoscope.splitlines())
        return text

    def to_json(self) -> dict:
        return {"wheel": self.wheel, "member": self.member, "what": self.what, "reason": self.reason,
                "offset": self.offset, "original": self.original.hex(), "rebuilt": self.rebuilt.hex(),
                "diffoscope": self.diffoscope}


def _printable(data: bytes) -> str:
    return "".join(chr(b) if 32 <= b < 127 else "." for b in data)


def compare_wheels(original: Path, rebuilt: Path, *, folders: tuple[str, ...] = (), diffoscope: str | None = None,
                   scratch: Path | None = None) -> list[Difference]:
    """Every difference between two wheels of one name (nothing when their bytes are equal)."""
    if _sha256(original) == _sha256(rebuilt):
        return []
    name = original.name
    found: list[Difference] = []
    with zipfile.ZipFile(original) as a, zipfile.ZipFile(rebuilt) as b:
        infos_a = {i.filename: i for i in a.infolist()}
        infos_b = {i.filename: i for i in b.infolist()}
        for member in sorted(set(infos_a) - set(infos_b)):
            found.append(Difference(name, member, "only in the original", "the rebuild has no such member"))
        for member in sorted(set(infos_b) - set(infos_a)):
            found.append(Difference(name, member, "only in the rebuild", "the original has no such member"))
        common_a = [n for n in infos_a if n in infos_b]
        common_b = [n for n in infos_b if n in infos_a]
        if common_a != common_b:
            first = next(i for i, (x, y) in enumerate(zip(common_a, common_b)) if x != y)
            found.append(Difference(name, None, "order", f"members in another order from position {first} "
                                    f"({common_a[first]} | {common_b[first]}): the writer followed the file system's order"))
        for member in common_a:
            x, y = infos_a[member], infos_b[member]
            if x.date_time != y.date_time:
                found.append(Difference(name, member, "time", f"{x.date_time} | {y.date_time}: the wheel writer "
                                        "took the time of the build, not SOURCE_DATE_EPOCH"))
            if x.external_attr != y.external_attr:
                found.append(Difference(name, member, "mode", f"{x.external_attr >> 16:o} | {y.external_attr >> 16:o}: "
                                        "permissions from the umask or the build's copies"))
            data_a, data_b = a.read(member), b.read(member)
            if data_a != data_b:
                difference = _first_difference(name, member, data_a, data_b, folders)
                if diffoscope and scratch is not None:
                    difference.diffoscope = _diffoscope(diffoscope, member, data_a, data_b, scratch)
                found.append(difference)
        if not found:
            found.append(Difference(name, None, "archive", "the members are equal: the zip records differ "
                                    "(compression, extra fields or comments)"))
    return found


def _first_difference(wheel: str, member: str, a: bytes, b: bytes, folders: tuple[str, ...]) -> Difference:
    skip = _build_id(a) if a.startswith(reproducible.ELF_MAGIC) else None
    skip_b = _build_id(b) if b.startswith(reproducible.ELF_MAGIC) else None
    offset = _first_offset(a, b, [s for s in (skip, skip_b) if s])
    only_build_id = offset is None
    if only_build_id:
        offset = _first_offset(a, b, [])
    offset_b = offset
    if not only_build_id and a.startswith(reproducible.ELF_MAGIC) and b.startswith(reproducible.ELF_MAGIC):
        # A longer section moves every later one and the headers, so the first differing byte says little.
        # nvcc's module ids go into symbol names, hashes and fatbins: where they differ, they are the cause.
        offset, offset_b = (_first_differing_section(a, b, [], only="__nv_module_id")
                            or _first_differing_section(a, b, [s for s in (skip, skip_b) if s]) or (offset, offset))
    window_a = a[max(0, offset - CONTEXT):offset + CONTEXT]
    window_b = b[max(0, offset_b - CONTEXT):offset_b + CONTEXT]
    reason = (RECORD_REASON if member.endswith(".dist-info/RECORD") and member.count("/") == 1
              else _reason(a, b, offset, folders, only_build_id))
    return Difference(wheel, member, "bytes", reason, offset, window_a, window_b)


def _first_offset(a: bytes, b: bytes, skipped: list[tuple[int, int]], chunk: int = 1 << 16) -> int | None:
    """The first offset where ``a`` and ``b`` differ outside the ``skipped`` spans (compared a chunk at a time)."""
    length = min(len(a), len(b))
    view_a, view_b = memoryview(a), memoryview(b)
    for start in range(0, length, chunk):
        end = min(start + chunk, length)
        if view_a[start:end] == view_b[start:end]:
            continue
        for index in range(start, end):
            if a[index] != b[index] and not any(s <= index < e for s, e in skipped):
                return index
    return length if len(a) != len(b) else None


def _build_id(data: bytes) -> tuple[int, int] | None:
    return reproducible.build_id_span(data)


def _reason(a: bytes, b: bytes, offset: int, folders: tuple[str, ...], only_build_id: bool) -> str:
    where = _elf_section(a, offset) if a.startswith(reproducible.ELF_MAGIC) else ""
    place = f" (ELF section {where})" if where else ""
    if only_build_id:
        return "only the GNU build id differs" + place
    if len(a) != len(b) and offset == min(len(a), len(b)):
        return f"one is longer ({len(a)} | {len(b)} bytes){place}"
    # the string the difference lies in: back to the previous NUL or line break, on to the next
    start = max(a.rfind(b"\0", 0, offset), a.rfind(b"\n", 0, offset)) + 1
    string_a = a[start:_string_end(a, offset)]
    string_b = b[start:_string_end(b, offset)]
    for folder in folders:
        if folder.encode() in string_a or folder.encode() in string_b:
            return f"a path of the build folder ({folder}) is in the file{place}"
    if where == "__nv_module_id" and NVCC_MODULE_ID.search(string_a):
        return MODULE_ID_REASON + place
    if reproducible.TMPXFT.search(string_a) or reproducible.TMPXFT.search(string_b):
        return f"nvcc's temporary file name (tmpxft_<process id>_...){place}"
    if DATE_OR_TIME.search(string_a) and DATE_OR_TIME.search(string_b):
        return (f"a date or time: {string_a[:60].decode(errors='replace')!r} | {string_b[:60].decode(errors='replace')!r} "
                f"(__DATE__/__TIME__ in the code, compiled by a build that drops SOURCE_DATE_EPOCH){place}")
    if a.startswith(reproducible.ELF_MAGIC):
        return f"compiled code or data differs{place}: see diffoscope, or objdump both"
    return "the content differs"


def _string_end(data: bytes, offset: int) -> int:
    ends = [i for i in (data.find(b"\0", offset), data.find(b"\n", offset)) if i >= 0]
    return min(ends) if ends else len(data)


def _sections(data: bytes) -> dict[str, tuple[int, bytes]]:
    """Each section with content: its offset in the file and its bytes, in the file's section order."""
    try:
        return {section.name: (section["sh_offset"], section.data())
                for section in ELFFile(io.BytesIO(data)).iter_sections() if section["sh_type"] != "SHT_NOBITS"}
    except Exception:  # noqa: BLE001 - a damaged ELF file: no sections to compare
        return {}


def _first_differing_section(a: bytes, b: bytes, skipped: list[tuple[int, int]],
                             only: str = "") -> tuple[int, int] | None:
    """The offsets in ``a`` and ``b`` of the first difference inside the first section (in ``a``'s order;
    ``only``: that one) whose bytes differ between the two, the ``skipped`` spans (the build id) left out."""
    sections = [_sections(a), _sections(b)]
    for name, (start, mine) in sections[0].items():
        if (only and name != only) or name not in sections[1]:
            continue
        start_b, theirs = sections[1][name]
        inner = _first_offset(mine, theirs, [(s - start, e - start) for s, e in skipped])
        if inner is not None:
            inner = min(inner, max(len(mine), 1) - 1)
            return start + inner, start_b + inner
    return None


def _elf_section(data: bytes, offset: int) -> str:
    try:
        elf = ELFFile(io.BytesIO(data))
        for section in elf.iter_sections():
            start = section["sh_offset"]
            if section["sh_type"] != "SHT_NOBITS" and start <= offset < start + section["sh_size"]:
                return section.name
    except Exception:  # noqa: BLE001 - a damaged ELF file: no section named
        return ""
    return ""


def _diffoscope(program: str, member: str, a: bytes, b: bytes, scratch: Path) -> str:
    folder = Path(tempfile.mkdtemp(prefix="diff-", dir=scratch))
    base = Path(member).name
    (folder / "original").mkdir()
    (folder / "rebuild").mkdir()
    (folder / "original" / base).write_bytes(a)
    (folder / "rebuild" / base).write_bytes(b)
    try:
        result = subprocess.run([program, "--text", "-", str(folder / "original" / base), str(folder / "rebuild" / base)],
                                capture_output=True, text=True, errors="replace", timeout=DIFFOSCOPE_SECONDS)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"(diffoscope did not finish: {error})"
    lines = result.stdout.splitlines()
    more = f"\n... {len(lines) - DIFFOSCOPE_LINES} more line(s)" if len(lines) > DIFFOSCOPE_LINES else ""
    return "\n".join(lines[:DIFFOSCOPE_LINES]) + more


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def rebuild_settings(manifest: dict, scratch: Path) -> list[str]:
    """The -C arguments of the rebuild: the recorded settings, writing into ``scratch``, no compiler cache."""
    recorded = (manifest.get("flags") or {}).get("settings") if isinstance(manifest.get("flags"), dict) else None
    if not isinstance(recorded, dict) or not recorded:
        raise BackendError("the manifest records no build settings (a wheelhouse built before rebuild-check "
                           "existed); build it again with this backend, then check it")
    pairs = {k: str(v) for k, v in recorded.items() if k not in REPLACED}
    pairs.update({"cache-dir": str(scratch / "cache"), "wheelhouse": str(scratch / "wheelhouse"),
                  "compiler-cache": "none", "runtime-deps": "none", "smoke": "off"})
    return [arg for key, value in pairs.items() for arg in ("-C", f"{key}={value}")]


def rebuild_environment(manifest: dict, environ: Mapping[str, str]) -> dict[str, str]:
    """The rebuild's environment: the caller's with the recorded ``SOURCE_DATE_EPOCH``, less every
    ``VLLM_STACK_<KEY>`` setting: the manifest's settings are the whole build's, and such a variable would give
    one it left at its default (``VLLM_STACK_VLLM=0.14.1`` would rebuild another release line)."""
    from_settings = set(settings.from_environment(environ).values())
    env = {name: value for name, value in environ.items() if name not in from_settings}
    epoch = manifest["flags"].get("SOURCE_DATE_EPOCH")
    if epoch:
        env["SOURCE_DATE_EPOCH"] = str(epoch)
    return env


def main(wheelhouse: str, scratch: str | None, as_json: bool, project_dir: Path) -> int:
    root = Path(wheelhouse)
    if not (root / "manifest.json").is_file():
        raise BackendError(f"rebuild-check: {root} has no manifest.json; give the variant's folder "
                           "(wheelhouse/<variant>/)")
    house = Wheelhouse(root)
    manifest = house.manifest()
    built = {name: entry for name, entry in manifest["wheels"].items()
             if entry.get("origin") != "runtime" and (root / name).is_file()}
    if not built:
        raise BackendError(f"rebuild-check: {root}: the manifest lists no wheel built here")
    work = Path(scratch) if scratch else Path(tempfile.mkdtemp(prefix="vllm-stack-rebuild-"))
    work.mkdir(parents=True, exist_ok=True)
    arguments = rebuild_settings(manifest, work)
    recorded_cache = (manifest["flags"]["settings"]).get("cache-dir")
    if recorded_cache and (Path(recorded_cache) / "downloads").is_dir() and not (work / "cache" / "downloads").exists():
        (work / "cache").mkdir(parents=True, exist_ok=True)  # the sources are checked against the lock's hashes again
        (work / "cache" / "downloads").symlink_to(Path(recorded_cache) / "downloads")
    env = rebuild_environment(manifest, os.environ)
    log = work / "rebuild.log"
    print(f"rebuild-check: building {len(built)} wheel(s) again into {work} (log: {log})", file=sys.stderr)
    with open(log, "w") as handle:
        result = subprocess.run([sys.executable, "-m", "backend", "build", *arguments], cwd=project_dir, env=env,
                                stdout=handle, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        raise BackendError(f"rebuild-check: the rebuild failed (exit {result.returncode}): {tail[0]}; full log: {log}")
    rebuilt_root = work / "wheelhouse" / root.name
    program = shutil.which("diffoscope")
    folders = tuple(dict.fromkeys(p for p in (recorded_cache, str(work)) if p))
    rows, differences = [], []
    for name in sorted(built):
        other = rebuilt_root / name
        if not other.is_file():
            found = [Difference(name, None, "not rebuilt", f"the rebuild made no {name} (see {log})")]
        else:
            found = compare_wheels(root / name, other, folders=folders, diffoscope=program, scratch=work)
        rows.append((name, "identical" if not found else f"DIFFERENT ({len(found)})"))
        differences += found
    if as_json:
        print(json.dumps({"scratch": str(work), "diffoscope": program,
                          "wheels": {name: status for name, status in rows},
                          "differences": [d.to_json() for d in differences]}, indent=2))
    else:
        width = max(len(name) for name, _ in rows)
        for name, status in rows:
            print(f"{name:<{width}}  {status}")
        for difference in differences:
            print()
            print(difference.describe())
        if differences and not program:
            print("\n(diffoscope is not on PATH: apt-get install diffoscope for a member-by-member report)")
        print(f"\nrebuild-check: {sum(1 for _, s in rows if s == 'identical')} of {len(rows)} wheel(s) identical; "
              f"rebuild in {work}")
    return 1 if differences else 0
