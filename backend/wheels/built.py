"""A built wheel read once, and its one edit written in the same pass.

:func:`read` goes through the archive once, each member as its compressed
bytes: it is inflated (to check it against RECORD, to find ELF objects), and
every ELF object becomes one record (``verify.elf.ObjectInfo``: soname,
DT_NEEDED, RUNPATH, symbols, symbol versions, fatbins, cubin folders, compile
records, the CPU code's scan).  Tagging, requirements, verification, features
and the manifest are functions of those records; none opens the archive again.

Given a folder (``into``), the same pass writes the edited copy there
(:mod:`.rawzip`): the package's members renamed to the new version, made
reproducible with ``epoch`` (:mod:`.reproducible`: order, times, modes,
nvcc's temporary names) and copied as their compressed bytes unless that
changed them.  The ``.dist-info`` members come last in a wheel, so they are
written by :meth:`BuiltWheel.write` once the caller knows them (METADATA,
WHEEL, new files) with RECORD: one read and one write of the wheel, whatever
the edit.  The output appears only complete (a temporary file, fsynced, renamed).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import csv
import dataclasses
import hashlib
import io
import os
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ..errors import BackendError
from ..verify import elf
from . import names
from .files import fsync_dir, record_hash
from .rawzip import RawZipWriter, read_raw
from .reproducible import ELF_MAGIC, member_order_key, normalize_elf, normalized_mode, zip_time

SIGNATURES = ("RECORD.jws", "RECORD.p7s")  # they sign the old RECORD and cannot stay valid
# Members never worth parsing as ELF objects.
TEXT_SUFFIXES = (".py", ".pyi", ".pyc", ".txt", ".md", ".json", ".h", ".hpp", ".cuh", ".cu", ".cpp", ".c",
                 ".yaml", ".yml", ".toml", ".cfg", ".typed", ".html", ".js", ".css", ".png", ".cmake", ".pth")
# An ELF member inflating more than this many times its stored size (and past BOMB_MIN_BYTES) is a
# decompression bomb, not a library: real shared objects compress 2-10 times.  It is reported, not parsed.
BOMB_RATIO = 200
BOMB_MIN_BYTES = 16 << 20
# A .dist-info file larger than this (RECORD: 64 MiB) is not kept: verification reports it (verify/metadata.py).
DIST_INFO_BOUND = 16 << 20
CHUNK = 8 << 20


@dataclasses.dataclass
class Member:
    name: str               # in the wheel written (renamed), or the source's when only read
    size: int
    digest: str = ""        # "<algorithm>=<urlsafe base64>", the algorithm its RECORD row names ("": not read)
    is_elf: bool = False
    is_link: bool = False   # a zip symlink (its bytes are a path)
    changed: bool = False   # its bytes are not the source's (a normalized object, a new METADATA)


class _Hashing(io.RawIOBase):
    """The output file, hashed as it is written (the wheelhouse needs its sha256: no second read)."""

    def __init__(self, handle):
        self.handle, self.sha256, self.size = handle, hashlib.sha256(), 0

    def write(self, data) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self.handle.write(data)

    def tell(self) -> int:
        return self.size


@dataclasses.dataclass
class BuiltWheel:
    path: Path                                   # the source; after write(), the wheel written
    dist_info: str                               # its .dist-info folder (the new one when renamed)
    members: list[Member]                        # files, in the order written
    files: dict[str, bytes]                      # the .dist-info folder's files by name, inflated
    objects: dict[str, elf.ObjectInfo]           # ELF member -> its record
    problems: dict[str, tuple[str, str]]         # ELF member -> why it has no record: ("read" or "content", why)
    kept: dict[str, bytes]                       # members a caller asked to keep (``keep``)
    sha256: str | None = None                    # of the wheel written
    # the source's .dist-info files by name: (entry, compressed bytes, member), for write() to copy
    _dist: dict[str, tuple[zipfile.ZipInfo, bytes, Member]] = dataclasses.field(default_factory=dict, repr=False)
    _out: object | None = dataclasses.field(default=None, repr=False)
    _edit: dict = dataclasses.field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.path.name

    def basenames(self) -> set[str]:
        return {m.name.rsplit("/", 1)[-1] for m in self.members}

    def write(self, files: Mapping[str, bytes] = {}, *,  # noqa: B006 - read only
              platform_tags: Sequence[str] | None = None, variant_label: str | None = None) -> Path:
        """Finish the copy :func:`read` started in ``into``: the .dist-info folder with ``files`` (name ->
        bytes: METADATA, WHEEL, new ones) replaced or added, RECORD renewed; the name with the new version,
        ``platform_tags`` and ``variant_label``.  Returns the new wheel's path (also ``self.path``)."""
        if self._out is None:
            raise ValueError("BuiltWheel.write: read without a folder to write into")
        edit, (handle, temp, hashing, writer), none = self._edit, self._out, (None, None, None)
        try:
            self.files = {n: d for n, d in self.files.items() if n not in SIGNATURES} | dict(files)
            date_time = zip_time(edit["epoch"]) if edit["epoch"] is not None else None
            order = [n for n in self.files if n != "RECORD"]
            for name in sorted(order) if date_time else order:
                path, data = f"{self.dist_info}/{name}", self.files[name]
                info, raw, member = self._dist.get(name, none)
                mode = None if info is None or not date_time else normalized_mode(info)
                if name in files or raw is None:
                    writer.add(path, data, date_time=date_time or (info and info.date_time), mode=mode or 0o644)
                    self.members.append(Member(path, len(data), record_hash(data), changed=True))
                else:
                    writer.copy(info, raw, path, date_time=date_time, mode=mode)
                    self.members.append(dataclasses.replace(member, name=path))
            record_path = f"{self.dist_info}/RECORD"
            self.files["RECORD"] = _record(self.members, _record_rows(self.files.get("RECORD") or b""),
                                           edit["renamed"], record_path)
            info = self._dist.get("RECORD", none)[0]
            writer.add(record_path, self.files["RECORD"], mode=0o644,
                       date_time=date_time or (info and info.date_time))
            self.members.append(Member(record_path, len(self.files["RECORD"]), changed=True))
            writer.close()
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            target = temp.parent / names.parse(self.path.name).renamed(
                version=edit["version"], platform_tags=list(platform_tags) if platform_tags else None,
                variant_label=variant_label or None)
            os.chmod(temp, 0o644)
            os.replace(temp, target)
            fsync_dir(target.parent)
        except BaseException:
            self.discard()
            raise
        self._out, self._dist, self.path, self.sha256 = None, {}, target, hashing.sha256.hexdigest()
        return target

    def discard(self) -> None:
        """Drop the copy :func:`read` started (nothing appears in its folder)."""
        if self._out is not None:
            handle, temp, _hashing, _writer = self._out
            self._out = None
            with contextlib.suppress(OSError):
                handle.close()
            temp.unlink(missing_ok=True)


def dist_info_folder(wheel: Path, names_: Sequence[str]) -> str:
    """The wheel's one ``*.dist-info`` folder holding METADATA."""
    found = sorted({n.split("/", 1)[0] for n in names_ if n.count("/") == 1 and n.endswith("/METADATA")
                    and n.split("/", 1)[0].endswith(".dist-info")})
    if len(found) != 1:
        raise BackendError(f"{wheel}: expected one .dist-info folder with METADATA, found {len(found)}")
    if "-" not in found[0]:
        raise BackendError(f"{wheel}: bad .dist-info folder name {found[0]!r}")
    return found[0]


def read(wheel: Path, *, into: Path | None = None, version: str | None = None, epoch: int | None = None,
         inspect: bool = True, objects: bool = True, scan_code: bool = True,
         asked: Mapping[str, frozenset[str]] = {},  # noqa: B006 - read only
         keep: Callable[[str], bool] = lambda name: False) -> BuiltWheel:
    """Read ``wheel`` once (see the module's docstring).

    ``inspect``: inflate and hash every member (else only what an edit needs) and, with ``objects``, record
    every ELF object; ``scan_code``: with them, the scan of their CPU code (iced-x86, Capstone);
    ``asked``: member -> symbols to note in its record (features); ``keep``: members whose bytes to keep
    (generated code).  ``into``: the folder of the edited copy, ``version`` its new version, ``epoch`` for a
    reproducible one."""
    wheel = Path(wheel)
    try:
        source = zipfile.ZipFile(wheel)
    except (OSError, zipfile.BadZipFile) as error:
        if into is None:
            raise  # verification reports it
        raise BackendError(f"{wheel}: not a readable wheel ({error})") from None
    with source:
        infos = [i for i in source.infolist() if not (epoch is not None and i.is_dir())]
        try:
            old_dist = dist_info_folder(wheel, [i.filename for i in infos])
        except BackendError:
            if into is not None:
                raise
            # only read: the first folder that looks like one (verification reports what is wrong)
            old_dist = min({i.filename.split("/", 1)[0] for i in infos if i.filename.count("/") == 1
                            and i.filename.split("/", 1)[0].endswith(".dist-info")}, default="-.dist-info")
        dist_name, old_version = (old_dist[: -len(".dist-info")].rsplit("-", 1) + [""])[:2]
        new_version = names.escape_version(version) if version else old_version
        renamed = _renamer({old_dist: f"{dist_name}-{new_version}.dist-info",
                            f"{dist_name}-{old_version}.data": f"{dist_name}-{new_version}.data"})
        built = BuiltWheel(path=wheel, dist_info=renamed(old_dist), members=[], files={}, objects={}, problems={},
                           kept={})
        built._edit = {"epoch": epoch, "version": version, "old_dist_info": old_dist, "renamed": renamed}
        record_rows = {}
        with contextlib.suppress(KeyError):
            record_rows = _record_rows(source.read(f"{old_dist}/RECORD"))
        if into is not None:
            Path(into).mkdir(parents=True, exist_ok=True)
            fd, temp_name = tempfile.mkstemp(prefix=f".{wheel.name}.", suffix=".part", dir=into)
            handle = os.fdopen(fd, "wb")
            hashing = _Hashing(handle)
            built._out = (handle, Path(temp_name), hashing, RawZipWriter(hashing))
        try:
            for info in sorted(infos, key=lambda i: member_order_key(i.filename)) if epoch is not None else infos:
                _member(built, source, info, record_rows, inspect=inspect, objects=objects and inspect,
                        scan_code=scan_code, asked=asked.get(info.filename, frozenset()), keep=keep)
        except BaseException:
            built.discard()
            raise
    return built


def read_once(wheel: Path | BuiltWheel, **options) -> BuiltWheel:
    """``wheel`` itself when it was read already, else :func:`read` of that path with ``options``."""
    return wheel if isinstance(wheel, BuiltWheel) else read(wheel, **options)


def _member(built: BuiltWheel, source: zipfile.ZipFile, info: zipfile.ZipInfo, rows, *, inspect, objects,
            scan_code, asked, keep) -> None:
    """Read one member once; record, keep and write what it asks for."""
    edit, out = built._edit, built._out
    name = edit["renamed"](info.filename) if out is not None else info.filename
    if info.is_dir():
        if out is not None:
            out[3].copy(info, read_raw(source, info), name)
        return
    in_dist = info.filename.count("/") == 1 and info.filename.split("/", 1)[0] == edit["old_dist_info"]
    is_link = (info.external_attr >> 16) & 0o170000 == 0o120000
    parse = not is_link and not info.filename.lower().endswith(TEXT_SUFFIXES)
    member = Member(name, info.file_size, is_link=is_link)
    inflate = inspect or edit["epoch"] is not None or in_dist or keep(info.filename)
    raw = read_raw(source, info) if inflate or out is not None else None
    data = None
    if inflate:
        algorithm = (rows.get(info.filename, ["", ""])[1].partition("=")[0] or "sha256"
                     if inspect or in_dist else "")
        head, member.digest, data = _inflate(info, raw, algorithm, whole=lambda head: (
            (in_dist and info.file_size <= DIST_INFO_BOUND * (4 if info.filename.endswith("/RECORD") else 1))
            or keep(info.filename)
            or (head == ELF_MAGIC and parse and objects and not _bomb(info))
            or (head == ELF_MAGIC and parse and edit["epoch"] is not None)))
        member.is_elf = head == ELF_MAGIC and not is_link
    if in_dist:
        base = info.filename.split("/", 1)[1]
        built.files[base], built._dist[base] = data, (info, raw, member)
        if out is None:
            built.members.append(member)
        return
    if keep(info.filename) and data is not None:
        built.kept[name] = data
    if member.is_elf and parse and data is not None:
        if edit["epoch"] is not None:
            fixed = normalize_elf(data)
            if fixed != data:
                data, member.changed, member.digest, member.size = fixed, True, record_hash(fixed), len(fixed)
        if objects:
            _record_object(built, name, data, scan_code, asked)
    elif member.is_elf and parse and objects:
        built.problems[name] = ("content", f"inflates from {info.compress_size} to {info.file_size} bytes (over "
                                           f"{BOMB_RATIO} times): a decompression bomb, not read")
    if out is not None:
        date_time = zip_time(edit["epoch"]) if edit["epoch"] is not None else None
        mode = normalized_mode(info) if date_time else None
        if member.changed:
            out[3].add(name, data, date_time=date_time, mode=mode)
        else:
            out[3].copy(info, raw, name, date_time=date_time, mode=mode)
    built.members.append(member)


def _record_object(built: BuiltWheel, name: str, data: bytes, scan_code: bool, asked: frozenset[str]) -> None:
    record, why = elf.read_or_why(data, name, scan_code, asked)
    if record is None:
        built.problems[name] = ("read", why)
    else:
        built.objects[name] = record


def _bomb(info: zipfile.ZipInfo) -> bool:
    return info.file_size > BOMB_MIN_BYTES and info.file_size > BOMB_RATIO * max(info.compress_size, 1)


def _inflate(info: zipfile.ZipInfo, raw: bytes, algorithm: str, whole):
    """(first 4 bytes, RECORD digest, the bytes when ``whole(head)`` else None) of one member, checked
    against its CRC and size; inflated in blocks by zipfile's reader, so a member that is not kept never lies
    in memory whole, nor one that inflates past its declared size."""
    hasher = hashlib.new(algorithm) if algorithm in ("sha256", "sha384", "sha512") else None
    # zipfile's reader stops at the declared size and checks the CRC of what it read there: a stream that
    # goes on would pass unseen.  It reads one byte more than declared, unchecked; the CRC is checked here.
    declared = copy.copy(info)
    declared.file_size, declared.CRC = info.file_size + 1, None
    head, crc, size, parts, keep = b"", 0, 0, [], None
    with zipfile.ZipExtFile(io.BytesIO(raw), "r", declared) as stream:
        for block in iter(lambda: stream.read(CHUNK), b""):
            if keep is None:
                head = (head + block)[:4]
                if len(head) == 4:
                    keep = bool(whole(head))
            crc, size = zlib.crc32(block, crc), size + len(block)
            if size > info.file_size:
                raise zipfile.BadZipFile(f"{info.filename!r} inflates past its declared {info.file_size} bytes")
            if hasher is not None:
                hasher.update(block)
            if keep is not False:
                parts.append(block)
    if keep is None:
        keep = bool(whole(head))
    if crc != info.CRC or size != info.file_size:
        raise zipfile.BadZipFile(f"Bad CRC-32 or size for file {info.filename!r}")
    digest = base64.urlsafe_b64encode(hasher.digest()).rstrip(b"=").decode() if hasher else ""
    return head, digest and f"{algorithm}={digest}", (b"".join(parts) if keep else None)


def _renamer(folders: Mapping[str, str]) -> Callable[[str], str]:
    def renamed(path: str) -> str:
        head, sep, tail = path.partition("/")
        return folders.get(head, head) + sep + tail
    return renamed


def _record_rows(data: bytes) -> dict[str, list[str]]:
    rows = csv.reader(io.StringIO(data.decode("utf-8", "replace")))
    return {row[0]: (row + ["", ""])[:3] for row in rows if row}


def _record(members: Sequence[Member], rows: Mapping[str, list[str]], renamed, record_path: str) -> bytes:
    """RECORD in the members' order: each its source row (renamed; an empty one where it had none), a
    changed one its new hash and size, RECORD itself last."""
    by_new = {renamed(path): row for path, row in rows.items()}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for member in members:
        hash_and_size = ([member.digest, member.size] if member.changed
                         else by_new.get(member.name, ["", "", ""])[1:])
        writer.writerow([member.name, *hash_and_size])
    writer.writerow([record_path, "", ""])
    return out.getvalue().encode("utf-8")
