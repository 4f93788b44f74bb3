"""The small wheel ``build_wheel`` returns: it pins every wheel of the wheelhouse.

Its name is the variant's (``vllm-python313-cuda12_9-sm90-avx512``), its
file ``vllm_python313_cuda12_9_sm90_avx512-0.15.1-py3-none-any.whl``, and its
``Requires-Dist`` lines pin each wheel of ``wheelhouse/<variant>/`` exactly,
so ``pip install --find-links wheelhouse/<variant> <this wheel>`` installs the
stack and nothing else of ours.

The wheel is reproducible: fixed member order, timestamps and modes, so the
same inputs give the same bytes.  ``write_metadata_dir`` (PEP 517
``prepare_metadata_for_build_wheel``) writes the same METADATA bytes as the
wheel holds.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from .. import recipes
from ..errors import BackendError
from . import names
from .files import atomic_output, fsync_dir, record_hash
from .rawzip import FIXED_DATE_TIME, RawZipWriter

GENERATOR = "vllm-stack-backend"
WHEEL_TEXT = f"Wheel-Version: 1.0\nGenerator: {GENERATOR}\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
_NAME = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)


def stack_version() -> str:
    """The version the returned wheel (and the sdist) carries: the vLLM recipe's."""

    return recipes.get("vllm").version


def _check(name: str, version: str, requires: Sequence[str]) -> tuple[str, list[str]]:
    if not _NAME.match(name):
        raise BackendError(f"meta wheel: {name!r} is not a valid distribution name")
    try:
        version = str(Version(version))
    except InvalidVersion:
        raise BackendError(f"meta wheel: {version!r} is not a valid version (PEP 440)") from None
    checked = []
    for text in requires:
        try:
            checked.append(str(Requirement(text)))
        except InvalidRequirement as error:
            raise BackendError(f"meta wheel: requirement {text!r} is not valid ({error})") from None
    return version, checked


def metadata_text(
    name: str,
    version: str,
    requires: Sequence[str] = (),
    summary: str = "",
    *,
    requires_python: str | None = None,
) -> str:
    """The METADATA of the meta wheel (Metadata-Version 2.1), one Requires-Dist per pin."""
    version, checked = _check(name, version, requires)
    summary = " ".join(summary.split()) or f"The vLLM stack built for {name}"
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {name}",
        f"Version: {version}",
        f"Summary: {summary}",
    ]
    if requires_python:
        lines.append(f"Requires-Python: {requires_python}")
    lines += [f"Requires-Dist: {text}" for text in checked]
    lines += ["Description-Content-Type: text/plain", "", summary, ""]
    return "\n".join(lines)


def dist_info_name(name: str, version: str) -> str:
    return f"{names.name_part(name)}-{Version(version)}.dist-info"


def wheel_file_name(name: str, version: str) -> str:
    return f"{names.name_part(name)}-{Version(version)}-py3-none-any.whl"


def write_metadata_dir(
    directory: Path,
    name: str,
    version: str,
    requires: Sequence[str] = (),
    summary: str = "",
    *,
    requires_python: str | None = None,
) -> str:
    """Write ``<name>-<version>.dist-info`` (METADATA, WHEEL) into ``directory``; return its name."""
    text = metadata_text(name, version, requires, summary, requires_python=requires_python)
    basename = dist_info_name(name, version)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{basename}.", dir=directory))
    try:
        (staging / "METADATA").write_bytes(text.encode("utf-8"))
        (staging / "WHEEL").write_bytes(WHEEL_TEXT.encode("utf-8"))
        target = directory / basename
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    fsync_dir(directory)
    return basename


def build(
    directory: Path,
    name: str,
    version: str,
    requires: Sequence[str] = (),
    summary: str = "",
    *,
    requires_python: str | None = None,
) -> str:
    """Write the meta wheel into ``directory`` (atomically, reproducibly); return its file name."""
    metadata = metadata_text(name, version, requires, summary, requires_python=requires_python).encode("utf-8")
    info = dist_info_name(name, version)
    members = [(f"{info}/METADATA", metadata), (f"{info}/WHEEL", WHEEL_TEXT.encode("utf-8"))]
    record_lines = [f"{path},{record_hash(data)},{len(data)}" for path, data in members]
    record_lines.append(f"{info}/RECORD,,")
    members.append((f"{info}/RECORD", ("\n".join(record_lines) + "\n").encode("utf-8")))
    basename = wheel_file_name(name, version)
    with atomic_output(Path(directory) / basename) as handle:
        writer = RawZipWriter(handle)
        for path, data in members:
            writer.add(path, data, date_time=FIXED_DATE_TIME, mode=0o644)
        writer.close()
    return basename


def pins_for(wheels: Iterable[Path], *, by_file: bool = False) -> list[str]:
    """``name==version`` for each wheel file (sorted by name): what the meta wheel requires.  ``by_file``: the
    wheel itself, ``name @ file:///...`` (an editable install's meta wheel: the frontend installs them from there)."""
    pins, versions = {}, {}
    for wheel in wheels:
        parsed = names.parse(Path(wheel).name)
        dist, version = parsed.project, parsed.version
        if versions.setdefault(dist, version) != version:
            raise BackendError(f"two wheels of {dist} ({dist}=={versions[dist]} and {version}); "
                               "a variant holds one of each")
        pins[dist] = f"{dist} @ {Path(wheel).resolve().as_uri()}" if by_file else f"{dist}=={version}"
    return [pins[name] for name in sorted(pins, key=canonicalize_name)]
