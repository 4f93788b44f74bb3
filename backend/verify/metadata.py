"""A wheel's name, version, requirements and RECORD, and the checks on them."""

from __future__ import annotations

import base64
import csv
import dataclasses
import hashlib
import io
import re
import zipfile
import zlib
from email.parser import HeaderParser
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from ..errors import BackendError
from ..wheels import names

TORCH = "torch"
# What a wheel's metadata files may take in memory.  A hostile wheel can
# declare (and inflate to) gigabytes; real ones are far below these
# (torch 2.9.1: METADATA 5 kB, RECORD under 2 MB).
MAX_METADATA_BYTES = 16 << 20
MAX_RECORD_BYTES = 64 << 20


class TooLarge(Exception):
    pass


def read_member(archive: zipfile.ZipFile, name: str, limit: int) -> bytes:
    """A member's bytes, never more than ``limit`` in memory (KeyError when absent)."""
    info = archive.getinfo(name)
    if info.file_size > limit:
        raise TooLarge(f"{name} declares {info.file_size} bytes, over the bound of {limit}")
    with archive.open(info) as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(f"{name} inflates past the bound of {limit} bytes")
    return data


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


def read_wheel(path: Path, check_record: bool = True) -> WheelInfo:
    """Read names and metadata; problems found on the way are on ``problems``."""
    path = Path(path)
    try:
        parsed = names.parse(path.name)
        info = WheelInfo(path=path, name=str(parsed.project), version=str(parsed.version),
                         tags=sorted(str(t) for t in parsed.tags), members=[])
        raw_version = parsed.version_text
    except BackendError as error:
        name, raw_version = names.guess_name_and_version(path.name)
        info = WheelInfo(path=path, name=name, version=raw_version, tags=[], members=[])
        info.problems.append(f"file name is not a valid wheel name: {error}")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        info.problems.append(f"not a readable zip file: {error}")
        return info
    with archive:
        info.members = archive.namelist()
        dist_infos = sorted({m.split("/", 1)[0] for m in info.members if m.split("/", 1)[0].endswith(".dist-info")})
        if len(dist_infos) != 1:
            info.problems.append(f"expected one .dist-info folder, found {len(dist_infos)}")
            if not dist_infos:
                return info
        info.dist_info = dist_infos[0]
        try:
            _read_metadata(archive, info, raw_version)
            if check_record:
                info.problems.extend(check_record_file(archive, info.dist_info))
        except TooLarge as error:
            info.problems.append(str(error))
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError) as error:
            info.problems.append(f"damaged zip member: {type(error).__name__}: {error}")
    return info


def _read_metadata(archive: zipfile.ZipFile, info: WheelInfo, raw_version: str) -> None:
    dist = info.dist_info
    try:
        text = read_member(archive, f"{dist}/METADATA", MAX_METADATA_BYTES).decode("utf-8", "replace")
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
        wheel_text = read_member(archive, f"{dist}/WHEEL", MAX_METADATA_BYTES).decode("utf-8", "replace")
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


def check_record_file(archive: zipfile.ZipFile, dist_info: str) -> list[str]:
    """RECORD lists every file with its sha256 and size, and nothing else."""
    record_name = f"{dist_info}/RECORD"
    try:
        text = read_member(archive, record_name, MAX_RECORD_BYTES).decode("utf-8", "replace")
    except KeyError:
        return [f"{record_name} is missing"]
    problems = []
    listed: dict[str, tuple[str, str]] = {}
    for row in csv.reader(io.StringIO(text)):
        if not row:
            continue
        path, digest, size = (row + ["", ""])[:3]
        listed[path] = (digest, size)
    present = {i.filename: i for i in archive.infolist() if not i.filename.endswith("/")}
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
        hasher = hashlib.new(algorithm)
        length = 0
        with archive.open(path) as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                hasher.update(block)
                length += len(block)
        actual = base64.urlsafe_b64encode(hasher.digest()).rstrip(b"=").decode()
        if actual != expected.rstrip("="):
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
