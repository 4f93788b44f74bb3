"""Rewrite a finished wheel's version and requirements without recompressing it.

Components whose build cannot be told the variant's version (see the
pipeline issue, point 4) get their wheel rewritten here: the file name, the
``.dist-info`` and ``.data`` folder names, ``METADATA`` (``Version:`` and
``Requires-Dist:``) and ``RECORD``.  Every other member is copied as its
compressed bytes (:mod:`.built`, :mod:`.rawzip`), so rewriting a 900 MB torch
wheel costs about as much as copying it.  The output appears only complete.
Signature files (``RECORD.jws``, ``RECORD.p7s``) are dropped: they sign the
old RECORD and cannot stay valid.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from ..errors import BackendError
from . import built


def relabel(
    wheel: Path,
    dest_dir: Path,
    *,
    version: str | None = None,
    pins: Mapping[str, str] = {},  # noqa: B006 - read only
    add_requires: Sequence[str] = (),
    extra_files: Mapping[str, bytes] = {},  # noqa: B006 - read only
    variant_label: str | None = None,
) -> Path:
    """Write a copy of ``wheel`` into ``dest_dir`` with a new version and pinned requirements.

    ``version``: the new version (file name, dist-info and data folders,
    METADATA, RECORD); None keeps it.  ``pins``: distribution name ->
    version; every ``Requires-Dist`` of such a distribution becomes
    ``name==version`` (extras and markers kept).  ``add_requires``: requirement
    strings appended as ``Requires-Dist``.  ``extra_files``: .dist-info files
    added or replaced; ``variant_label``: a variant label in the file name.
    Returns the new wheel's path.
    """
    edit = metadata_editor(version, pins, add_requires)
    copy = built.read(wheel, into=dest_dir, version=version and str(Version(version)), inspect=False)
    return copy.write({"METADATA": edit(copy.files["METADATA"]), **extra_files}, variant_label=variant_label)


def metadata_editor(version: str | None, pins: Mapping[str, str], add_requires: Sequence[str]):
    """METADATA bytes -> METADATA with ``version`` (normalized), ``pins`` and ``add_requires`` (see
    :func:`relabel`); a bad version, pin or requirement stops with one line before anything is read."""
    version = _normalized(version, "version") if version is not None else None
    pin_map = {canonicalize_name(name): _normalized(pinned, f"pin of {name}") for name, pinned in pins.items()}
    added = [_requirement(text) for text in add_requires]
    return lambda data: edit_metadata(data, version=version, pins=pin_map, add_requires=added)


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
    lines = data.decode("utf-8").splitlines(keepends=True)
    eol = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    end = next((index for index, line in enumerate(lines) if line in ("\n", "\r\n")), len(lines))
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
        header = "".join(group)
        key, _, value = header.partition(":")
        field = key.strip().lower()
        if field == "version" and version is not None:
            header = f"Version: {version}{eol}"
        elif field == "requires-dist":
            last_requires = len(headers)
            with contextlib.suppress(InvalidRequirement):  # kept as it is
                requirement = Requirement(" ".join(part.strip() for part in value.splitlines()))
                pinned = pins.get(canonicalize_name(requirement.name))
                if pinned is not None:  # name[extras]==pinned; marker (any URL dropped)
                    requirement.url, requirement.specifier = None, SpecifierSet(f"=={pinned}")
                    header = f"Requires-Dist: {requirement}{eol}"
                existing.add(str(requirement))
        headers.append(header)
    if headers and not headers[-1].endswith(("\n", "\r")):
        headers[-1] += eol  # a METADATA without a trailing newline
    # each added requirement once (dict.fromkeys keeps their order), none already there
    new_lines = [f"Requires-Dist: {text}{eol}" for text in dict.fromkeys(map(str, add_requires))
                 if text not in existing]
    insert_at = last_requires + 1 if last_requires >= 0 else len(headers)
    headers[insert_at:insert_at] = new_lines
    return ("".join(headers) + "".join(lines[end:])).encode("utf-8")
