"""A wheel's name, version, requirements and RECORD, and the checks on them."""

from __future__ import annotations

import csv
import dataclasses
import io
import re
import zipfile
import zlib
from collections.abc import Mapping
from email.parser import HeaderParser
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from ..errors import BackendError
from ..wheels import built as built_wheel
from ..wheels import names

TORCH = "torch"
# What a wheel's metadata files may take in memory.  A hostile wheel can
# declare (and inflate to) gigabytes; real ones are far below these
# (torch 2.9.1: METADATA 5 kB, RECORD under 2 MB).
MAX_METADATA_BYTES = 16 << 20
MAX_RECORD_BYTES = 64 << 20


class TooLarge(Exception):
    pass


@dataclasses.dataclass
class WheelInfo:
    path: Path
    name: str                       # canonical
    version: str                    # as in the file name
    tags: list[str]
    members: list[str]
    metadata_name: str | None = None
    metadata_version: str | None = None
    requires: list[Requirement] = dataclasses.field(default_factory=list)
    wheel_tags: list[str] = dataclasses.field(default_factory=list)
    dist_info: str | None = None
    problems: list[str] = dataclasses.field(default_factory=list)

    @property
    def local(self) -> str | None:
        try:
            return Version(self.version).local
        except InvalidVersion:
            return None

    def holds_only_metadata(self) -> bool:
        """No file outside the .dist-info folder: what a build that packaged an empty tree makes."""
        return bool(self.dist_info) and not any(
            not m.endswith("/") and m.split("/", 1)[0] != self.dist_info for m in self.members)

    def basenames(self) -> set[str]:
        return {m.rsplit("/", 1)[-1] for m in self.members if not m.endswith("/")}


def read_wheel(path: Path, check_record: bool = False) -> WheelInfo:
    """Read names and metadata (``check_record``: every member against RECORD too, in one read of the
    wheel); problems found on the way are on ``problems``."""
    try:
        return from_built(built_wheel.read(path, inspect=check_record, objects=False), check_record)
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError) as error:
        info, _raw_version = _named(Path(path))
        info.problems.append(f"not a readable zip file: {error}")
        return info


def from_built(built, check_record: bool = True) -> WheelInfo:
    """The WheelInfo of a wheel read once (``wheels.built``), its RECORD checked against what was read."""
    info, raw_version = _named(built.path)
    info.members = [m.name for m in built.members]
    sizes = {m.name: m.size for m in built.members}

    def member(name: str, limit: int) -> bytes:
        if sizes[name] > limit:
            raise TooLarge(f"{name} declares {sizes[name]} bytes, over the bound of {limit}")
        return built.files[name.split("/", 1)[1]]

    if _read_metadata(info, raw_version, member) and check_record:
        try:
            info.problems.extend(record_problems(member(f"{info.dist_info}/RECORD", MAX_RECORD_BYTES), info.dist_info,
                                              {m.name: (m.digest, m.size) for m in built.members}))
        except KeyError:
            info.problems.append(f"{info.dist_info}/RECORD is missing")
        except TooLarge as error:
            info.problems.append(str(error))
    return info


def _named(path: Path) -> tuple[WheelInfo, str]:
    try:
        parsed = names.parse(path.name)
        return WheelInfo(path=path, name=str(parsed.project), version=str(parsed.version),
                         tags=sorted(str(t) for t in parsed.tags), members=[]), parsed.version_text
    except BackendError as error:
        name, raw_version = names.guess_name_and_version(path.name)
        info = WheelInfo(path=path, name=name, version=raw_version, tags=[], members=[])
        info.problems.append(f"file name is not a valid wheel name: {error}")
        return info, raw_version


def _read_metadata(info: WheelInfo, raw_version: str, member) -> bool:
    """METADATA and WHEEL, read by ``member(name, limit)``, checked against the file name; False where
    the wheel has no .dist-info folder or a member is over its bound."""
    dist_infos = sorted({m.split("/", 1)[0] for m in info.members if m.split("/", 1)[0].endswith(".dist-info")})
    if len(dist_infos) != 1:
        info.problems.append(f"expected one .dist-info folder, found {len(dist_infos)}")
        if not dist_infos:
            return False
    info.dist_info = dist_infos[0]
    try:
        _read_fields(info, raw_version, member)
    except TooLarge as error:
        info.problems.append(str(error))
        return False
    return True


def _read_fields(info: WheelInfo, raw_version: str, member) -> None:
    dist = info.dist_info
    try:
        text = member(f"{dist}/METADATA", MAX_METADATA_BYTES).decode("utf-8", "replace")
    except KeyError:
        info.problems.append(f"{dist}/METADATA is missing")
        return
    message = HeaderParser().parsestr(text)
    info.metadata_name = message.get("Name")
    info.metadata_version = message.get("Version")
    if info.metadata_name is None or canonicalize_name(info.metadata_name) != info.name:
        info.problems.append(f"METADATA Name {info.metadata_name!r} does not match the file name's {info.name!r}")
    if info.metadata_version is None or not _same_version(info.metadata_version, raw_version):
        info.problems.append(f"METADATA Version {info.metadata_version!r} does not match the file name's {raw_version!r}")
    for line in message.get_all("Requires-Dist") or []:
        try:
            info.requires.append(Requirement(line))
        except InvalidRequirement as error:
            info.problems.append(f"METADATA Requires-Dist {line!r} is invalid: {error}")
    dist_stem = dist[: -len(".dist-info")]
    stem_version = dist_stem.rsplit("-", 1)[-1] if "-" in dist_stem else None
    if stem_version is not None and not _same_version(stem_version, raw_version):
        info.problems.append(f"folder {dist} does not match the file name's version {raw_version!r}")
    try:
        wheel_text = member(f"{dist}/WHEEL", MAX_METADATA_BYTES).decode("utf-8", "replace")
    except KeyError:
        info.problems.append(f"{dist}/WHEEL is missing")
        return
    info.wheel_tags = sorted(HeaderParser().parsestr(wheel_text).get_all("Tag") or [])
    if info.tags and info.wheel_tags and not set(info.tags) <= set(info.wheel_tags):
        info.problems.append(f"WHEEL tags {', '.join(info.wheel_tags)} do not cover the file name's {', '.join(info.tags)}")


def _same_version(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b) and (Version(a).local or "") == (Version(b).local or "")
    except InvalidVersion:
        return a == b


def record_problems(text: bytes, dist_info: str, present: Mapping[str, tuple[str, int]]) -> list[str]:
    """RECORD lists every file with its hash and size, and nothing else.  ``present``: each file's
    digest ("<algorithm>=<urlsafe base64>", the algorithm its row names) and size, as read."""
    record_name = f"{dist_info}/RECORD"
    problems = []
    listed: dict[str, tuple[str, str]] = {}
    for row in csv.reader(io.StringIO(text.decode("utf-8", "replace"))):
        if not row:
            continue
        path, digest, size = (row + ["", ""])[:3]
        listed[path] = (digest, size)
    unsigned = {record_name, f"{dist_info}/RECORD.jws", f"{dist_info}/RECORD.p7s"}
    bad_hash, bad_size, missing_files = [], [], []
    for path, (digest, size) in listed.items():
        if path in unsigned:
            continue
        if path not in present:
            missing_files.append(path)
            continue
        if not digest:
            bad_hash.append(f"{path} (no hash)")
            continue
        algorithm, _, expected = digest.partition("=")
        if algorithm not in ("sha256", "sha384", "sha512"):
            bad_hash.append(f"{path} (hash algorithm {algorithm!r})")
            continue
        actual, length = present[path]
        if actual != f"{algorithm}={expected.rstrip('=')}":
            bad_hash.append(path)
        elif size and size.isdigit() and int(size) != length:
            bad_size.append(path)
    unlisted = sorted(p for p in present if p not in listed and p not in unsigned)
    if bad_hash:
        problems.append(f"RECORD hash does not match for {_few(bad_hash)}")
    if bad_size:
        problems.append(f"RECORD size does not match for {_few(bad_size)}")
    if missing_files:
        problems.append(f"RECORD lists files the wheel lacks: {_few(missing_files)}")
    if unlisted:
        problems.append(f"files missing from RECORD: {_few(unlisted)}")
    return problems


def _few(items: list[str], shown: int = 3) -> str:
    head = ", ".join(items[:shown])
    return head + (f" and {len(items) - shown} more" if len(items) > shown else "")


def label_matches(local: str | None, label: str) -> bool:
    """The version's local label is the variant's label (or ends with it: 'post1.cu129.sm90.avx512')."""
    if not local:
        return False
    parts = re.split(r"[._-]", local.lower())
    wanted = re.split(r"[._-]", label.lower())
    return parts[-len(wanted):] == wanted


def torch_pin_problem(requirement: Requirement, torch_version: str) -> str | None:
    """None when the requirement pins exactly this torch, else why not."""
    specs = list(requirement.specifier)
    if len(specs) == 1 and specs[0].operator in ("==", "===") and not specs[0].version.endswith(".*"):
        pinned = specs[0].version
        if _same_version(pinned, torch_version):
            return None
        return f"pins torch {pinned}, the wheelhouse's torch is {torch_version}"
    shown = str(requirement.specifier) or "any version"
    return f"requires torch {shown}, not exactly {torch_version} (the wheelhouse's torch)"


def is_active(requirement: Requirement) -> bool:
    """A requirement that applies without extras (markers evaluated for this interpreter otherwise)."""
    if requirement.marker is None:
        return True
    try:
        return requirement.marker.evaluate({"extra": ""})
    except Exception:
        return True
