"""Wheel file names: read with ``packaging.utils`` and written back, in one place.

A wheel file name is ``name-version[-build]-python-abi-platform.whl``
(PEP 427).  The PEP 825 draft adds a variant label before ``.whl``
(``torch-2.9.1-cp313-cp313-linux_x86_64-cu129.sm90.avx512.whl``); a build tag
starts with a digit and a label here never does, which tells the two apart
when a name has six fields.  Everything else -- validation, the normalized
project name, the parsed version -- is ``packaging.utils``'s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from packaging.tags import Tag
from packaging.utils import (
    BuildTag,
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from ..errors import BackendError

# The draft's label characters; ours start with a letter (cu129..., cpu...).
_VARIANT_LABEL = re.compile(r"^[a-z][0-9a-z_.]*$")
_FORM = "name-version[-build]-python-abi-platform[-variant].whl"


@dataclass(frozen=True)
class WheelName:
    """One wheel file name, its fields as written and as ``packaging`` reads them."""

    distribution: str  # the name field as written: ``flashinfer_python``
    version_text: str  # the version field as written (``-`` escaped as ``_``)
    build_text: str | None
    python_tag: str
    abi_tag: str
    platform_tag: str  # compressed: ``manylinux_2_28_x86_64.linux_x86_64``
    variant_label: str | None
    version: Version
    build: BuildTag
    tags: frozenset[Tag]

    @property
    def project(self) -> NormalizedName:
        """The PEP 503 name: what two wheels of one distribution share."""
        return canonicalize_name(self.distribution)

    @property
    def platform_tags(self) -> list[str]:
        return self.platform_tag.split(".")

    def file_name(self) -> str:
        fields = [self.distribution, self.version_text]
        if self.build_text is not None:
            fields.append(self.build_text)
        fields += [self.python_tag, self.abi_tag, self.platform_tag]
        if self.variant_label is not None:
            fields.append(self.variant_label)
        return "-".join(fields) + ".whl"

    def renamed(self, *, version: str | None = None, platform_tags: list[str] | None = None,
                variant_label: str | None = None) -> str:
        """The file name with a new version, platform tags or variant label."""
        changed = self
        if version is not None:
            changed = replace(changed, version_text=escape_version(version))
        if platform_tags is not None:
            changed = replace(changed, platform_tag=".".join(platform_tags))
        if variant_label is not None:
            changed = replace(changed, variant_label=variant_label)
        return changed.file_name()


def parse(file_name: str) -> WheelName:
    """The fields of a wheel file name; a one-line :class:`BackendError` when it is none."""
    if not file_name.endswith(".whl"):
        raise BackendError(f"{file_name}: not a wheel file name (expected {_FORM})")
    fields = file_name[: -len(".whl")].split("-")
    label = None
    if len(fields) == 7 or (len(fields) == 6 and not fields[2][:1].isdigit()):
        label = fields.pop()
        if not _VARIANT_LABEL.match(label):
            raise BackendError(f"{file_name}: variant label {label!r} is not [a-z][0-9a-z_.]* (expected {_FORM})")
    if len(fields) not in (5, 6):
        raise BackendError(f"{file_name}: not a wheel file name (expected {_FORM})")
    try:
        name, version, build, tags = parse_wheel_filename("-".join(fields) + ".whl")
    except (InvalidWheelFilename, InvalidVersion) as error:
        raise BackendError(f"{file_name}: not a wheel file name ({error})") from None
    build_text = fields[2] if len(fields) == 6 else None
    python_tag, abi_tag, platform_tag = fields[-3:]
    return WheelName(
        distribution=fields[0], version_text=fields[1], build_text=build_text, python_tag=python_tag,
        abi_tag=abi_tag, platform_tag=platform_tag, variant_label=label, version=version, build=build,
        tags=tags,
    )


def project(file_name: str) -> NormalizedName:
    """The normalized distribution name of a wheel file name."""
    return parse(file_name).project


def same_project(a: str, b: str) -> bool:
    return project(a) == project(b)


def guess_name_and_version(file_name: str) -> tuple[NormalizedName, str]:
    """Best-effort name and version of a file that is *not* a valid wheel name, for reports about it."""
    stem = file_name[: -len(".whl")] if file_name.endswith(".whl") else file_name
    name, _, rest = stem.partition("-")
    return canonicalize_name(name), rest.partition("-")[0]


def escape_version(version: str) -> str:
    """A version as a wheel file name or .dist-info folder writes it."""
    return version.replace("-", "_")


def name_part(name: str) -> str:
    """A distribution name as wheel file names and .dist-info folders write it (PEP 491/503)."""
    return re.sub(r"[-_.]+", "_", name).lower()
