"""Rewrite a finished wheel's version and requirements without recompressing it.

Components whose build cannot be told the variant's version (see the
pipeline issue, point 4) get their wheel rewritten here: the file name, the
``.dist-info`` and ``.data`` folder names, ``METADATA`` (``Version:`` and
``Requires-Dist:``) and ``RECORD``.  Every other member is copied as its
compressed bytes (see :mod:`.rawzip`), so rewriting a 900 MB torch wheel costs
about as much as copying it.  The output appears only complete (a temporary
file in the destination folder, then :func:`os.replace`).

Signature files (``RECORD.jws``, ``RECORD.p7s``) are dropped: they sign the
old RECORD and cannot stay valid.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from ..errors import BackendError
from . import names
from .files import atomic_output, record_hash
from .rawzip import RawZipWriter

SIGNATURES = ("RECORD.jws", "RECORD.p7s")


def relabel(
    wheel: Path,
    dest_dir: Path,
    *,
    version: str | None = None,
    pins: Mapping[str, str] = {},  # noqa: B006 - read only
    add_requires: Sequence[str] = (),
) -> Path:
    """Write a copy of ``wheel`` into ``dest_dir`` with a new version and pinned requirements.

    ``version``: the new version (file name, dist-info and data folders,
    METADATA, RECORD); None keeps it.  ``pins``: distribution name ->
    version; every ``Requires-Dist`` of such a distribution becomes
    ``name==version`` (extras and markers kept).  ``add_requires``: requirement
    strings appended as ``Requires-Dist``.  Returns the new wheel's path.
    """
    return rewrite_wheel(wheel, dest_dir, version=version, pins=pins, add_requires=add_requires)


def rewrite_wheel(
    wheel: Path,
    dest_dir: Path,
    *,
    version: str | None = None,
    pins: Mapping[str, str] = {},  # noqa: B006 - read only
    add_requires: Sequence[str] = (),
    extra_files: Mapping[str, bytes] = {},  # noqa: B006 - read only
    variant_label: str | None = None,
) -> Path:
    """:func:`relabel`, plus new dist-info files and a variant label in the file name."""
    wheel = Path(wheel)
    dest_dir = Path(dest_dir)
    wheel_name = names.parse(wheel.name)
    new_version = _normalized(version, "version") if version is not None else None
    pin_map = {canonicalize_name(name): _normalized(pinned, f"pin of {name}") for name, pinned in pins.items()}
    added = [_requirement(text) for text in add_requires]

    try:
        source = zipfile.ZipFile(wheel)
    except (OSError, zipfile.BadZipFile) as error:
        raise BackendError(f"{wheel}: not a readable wheel ({error})") from None
    with source:
        infos = source.infolist()
        dist_info = _dist_info_folder(wheel, infos)
        dist_name, old_dist_version = dist_info[: -len(".dist-info")].rsplit("-", 1)
        target_version = names.escape_version(new_version) if new_version else old_dist_version
        new_dist_info = f"{dist_name}-{target_version}.dist-info"
        old_data = f"{dist_name}-{old_dist_version}.data"
        new_data = f"{dist_name}-{target_version}.data"

        def renamed(path: str) -> str:
            head, sep, tail = path.partition("/")
            if head == dist_info:
                return new_dist_info + sep + tail
            if head == old_data:
                return new_data + sep + tail
            return path

        metadata_name = f"{dist_info}/METADATA"
        record_name = f"{dist_info}/RECORD"
        old_metadata = source.read(metadata_name)
        new_metadata = edit_metadata(old_metadata, version=new_version, pins=pin_map, add_requires=added)

        extra_members = {f"{new_dist_info}/{name}": data for name, data in extra_files.items()}
        dropped = {f"{dist_info}/{name}" for name in SIGNATURES} | {
            f"{dist_info}/{name}" for name in extra_files
        }
        members = {info.filename for info in infos}
        if record_name not in members:
            raise BackendError(f"{wheel}: no {record_name} (not a valid wheel)")
        old_record = source.read(record_name)
        new_record = _edit_record(
            old_record,
            renamed=renamed,
            dropped=dropped,
            changed={renamed(metadata_name): new_metadata},
            added=extra_members,
            record_path=f"{new_dist_info}/RECORD",
        )

        target = dest_dir / wheel_name.renamed(version=new_version, variant_label=variant_label or None)
        with atomic_output(target) as handle:
            writer = RawZipWriter(handle)
            for info in infos:
                if info.filename in dropped:
                    continue
                new_name = renamed(info.filename)
                if info.filename == metadata_name and new_metadata != old_metadata:
                    writer.add(new_name, new_metadata, date_time=info.date_time, mode=_mode(info))
                elif info.filename == record_name:
                    for extra_name, data in extra_members.items():
                        writer.add(extra_name, data, date_time=info.date_time)
                    if new_record == old_record:
                        writer.copy(source, info, new_name)
                    else:
                        writer.add(new_name, new_record, date_time=info.date_time, mode=_mode(info))
                else:
                    writer.copy(source, info, new_name)
            writer.close()
    return target


def _mode(info: zipfile.ZipInfo) -> int:
    mode = (info.external_attr >> 16) & 0o7777
    return mode or 0o644


def _normalized(version: str, what: str) -> str:
    try:
        return str(Version(version))
    except InvalidVersion:
        raise BackendError(f"{what}: {version!r} is not a valid version (PEP 440), e.g. 2.9.1+cu129.sm90.avx512") from None


def _requirement(text: str) -> Requirement:
    try:
        return Requirement(text)
    except InvalidRequirement as error:
        raise BackendError(f"requirement {text!r} is not valid ({error})") from None


def _dist_info_folder(wheel: Path, infos: list[zipfile.ZipInfo]) -> str:
    found = sorted(
        {
            info.filename.split("/", 1)[0]
            for info in infos
            if info.filename.count("/") == 1
            and info.filename.endswith("/METADATA")
            and info.filename.split("/", 1)[0].endswith(".dist-info")
        }
    )
    if len(found) != 1:
        raise BackendError(f"{wheel}: expected one .dist-info folder with METADATA, found {len(found)}")
    if "-" not in found[0]:
        raise BackendError(f"{wheel}: bad .dist-info folder name {found[0]!r}")
    return found[0]


def pinned_requirement(requirement: Requirement, version: str) -> str:
    """``requirement`` as ``name[extras]==version; marker`` (any URL dropped)."""
    text = requirement.name
    if requirement.extras:
        text += "[" + ",".join(sorted(requirement.extras)) + "]"
    text += f"=={version}"
    if requirement.marker is not None:
        text += f"; {requirement.marker}"
    return text


def edit_metadata(
    data: bytes,
    *,
    version: str | None,
    pins: Mapping[str, str],
    add_requires: Sequence[Requirement] = (),
) -> bytes:
    """METADATA with a new ``Version:``, pinned and added ``Requires-Dist:``.

    Only the header lines that change are rewritten; the rest, the long
    description included, is kept byte for byte.  ``pins`` keys must be
    canonical names.
    """
    text = data.decode("utf-8")
    lines = text.splitlines(keepends=True)
    eol = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    end = len(lines)
    for index, line in enumerate(lines):
        if line in ("\n", "\r\n"):
            end = index
            break
    # Group each header with its continuation lines.
    groups: list[list[str]] = []
    for line in lines[:end]:
        if line[:1] in (" ", "\t") and groups:
            groups[-1].append(line)
        else:
            groups.append([line])
    headers: list[str] = []
    existing: set[str] = set()
    last_requires = -1
    for group in groups:
        key, _, value = "".join(group).partition(":")
        field = key.strip().lower()
        if field == "version" and version is not None:
            headers.append(f"Version: {version}{eol}")
            continue
        if field == "requires-dist":
            raw = " ".join(part.strip() for part in value.splitlines())
            try:
                requirement = Requirement(raw.strip())
            except InvalidRequirement:
                headers.append("".join(group))
            else:
                pinned = pins.get(canonicalize_name(requirement.name))
                if pinned is not None:
                    requirement = Requirement(pinned_requirement(requirement, pinned))
                    headers.append(f"Requires-Dist: {requirement}{eol}")
                else:
                    headers.append("".join(group))
                existing.add(str(requirement))
            last_requires = len(headers) - 1
            continue
        headers.append("".join(group))
    if headers and not headers[-1].endswith(("\n", "\r")):
        headers[-1] += eol  # a METADATA without a trailing newline
    new_lines = []
    for requirement in add_requires:
        if str(requirement) not in existing:
            existing.add(str(requirement))
            new_lines.append(f"Requires-Dist: {requirement}{eol}")
    insert_at = last_requires + 1 if last_requires >= 0 else len(headers)
    headers[insert_at:insert_at] = new_lines
    return ("".join(headers) + "".join(lines[end:])).encode("utf-8")


def _edit_record(
    data: bytes,
    *,
    renamed,
    dropped: set[str],
    changed: Mapping[str, bytes],
    added: Mapping[str, bytes],
    record_path: str,
) -> bytes:
    """RECORD with renamed paths, new hashes for changed files, rows for added ones."""
    text = data.decode("utf-8")
    eol = "\r\n" if "\r\n" in text else "\n"
    rows_out: list[list[str]] = []
    record_row: list[str] | None = None
    for row in csv.reader(io.StringIO(text)):
        if not row:
            continue
        path = row[0]
        if path in dropped:
            continue
        new_path = renamed(path)
        if new_path == record_path:
            record_row = [new_path, "", ""]
            continue
        if new_path in changed:
            content = changed[new_path]
            rows_out.append([new_path, record_hash(content), str(len(content))])
        else:
            rows_out.append([new_path] + row[1:])
    for path, content in added.items():
        rows_out.append([path, record_hash(content), str(len(content))])
    rows_out.append(record_row or [record_path, "", ""])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=eol)
    writer.writerows(rows_out)
    result = buffer.getvalue().encode("utf-8")
    return data if result == data else result
