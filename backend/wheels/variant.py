"""Variant wheels (PEP 825, draft): the variant label in the file name, ``variant.json`` inside.

With ``-C wheel-variants=true`` each wheel of a variant is also written as a
variant wheel, in addition to the normal one (today's pip cannot install
variant wheels).  A variant wheel of ours:

* has the public version (``torch-2.9.1``), since the variant label now says
  what the local label said; pins of the variant's other wheels lose the
  local label the same way (``torch==2.9.1``), so a variant-aware installer
  picks the torch variant for the host;
* carries the variant label ``cu129.sm90.avx512`` (:attr:`Variant.label`,
  valid under the draft's ``^[0-9a-z_.]+$``) before ``.whl``:
  ``torch-2.9.1-cp313-cp313-linux_x86_64-cu129.sm90.avx512.whl``;
* holds ``<name>-<version>.dist-info/variant.json`` with the properties of
  :func:`properties` and the providers that can check them.

The index-level ``<name>-<version>-variants.json`` lists every variant label
of a distribution's version with its properties; the CI merge job writes one
for the merged index.  See docs/WHEELS.md for the mapping.
"""

from __future__ import annotations

import contextlib
import json
import zipfile
from collections.abc import Iterable
from email.parser import BytesParser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from .. import cpu_isa
from ..errors import BackendError
from ..variants import Variant
from . import names
from .files import write_atomic
from .built import dist_info_folder
from .relabel import relabel

SCHEMA_URL = "https://variants-schema.wheelnext.dev/v0.2.0.json"
VARIANT_JSON = "variant.json"

# Namespace -> (provider requirement, plugin API).
PROVIDERS = {
    "nvidia": ("nvidia-variant-provider", "nvidia_variant_provider.plugin:NvidiaVariantPlugin"),
    "x86_64": ("provider-variant-x86-64", "provider_variant_x86_64.plugin:X8664Plugin"),
    "aarch64": ("provider-variant-aarch64", "provider_variant_aarch64.plugin:AArch64Plugin"),
}

def properties(variant: Variant) -> dict[str, dict[str, list[str]]]:
    """The variant's properties as namespace -> feature -> [value] (sorted)."""
    result: dict[str, dict[str, list[str]]] = {
        "nvidia": {
            "cuda_version_lower_bound": [variant.cuda],
            "sm_arch": [variant.target.sm_arch],
        }
    }
    isa = cpu_isa.get(variant.isa)
    level_key = "version" if isa.platform == "aarch64" else "level"
    result[isa.platform] = {level_key: [isa.variant_level], **{f: ["on"] for f in isa.variant_features}}
    return {ns: {f: values[f] for f in sorted(values)} for ns, values in sorted(result.items())}


def variant_label(variant: Variant) -> str:
    label = variant.label
    if not label or not all(c in "0123456789abcdefghijklmnopqrstuvwxyz_." for c in label) or label == "null":
        raise BackendError(f"variant label {label!r} does not match ^[0-9a-z_.]+$ (PEP 825)")
    return label


def variant_json(variants: Iterable[Variant]) -> str:
    """The JSON text of ``variant.json`` (one variant) or ``*-variants.json`` (several).

    Written as variantlib writes it (4-space indent, sorted keys), so a
    round trip through variantlib gives the same text.
    """
    variants = list(variants)
    namespaces = sorted({ns for v in variants for ns in properties(v)}, key=lambda ns: (ns != "nvidia", ns))
    document = {
        "$schema": SCHEMA_URL,
        "default-priorities": {"namespace": namespaces},
        "providers": {
            ns: {"plugin-api": PROVIDERS[ns][1], "requires": [PROVIDERS[ns][0]]} for ns in namespaces
        },
        "variants": {variant_label(v): properties(v) for v in variants},
    }
    labels: dict[str, str] = {}  # properties -> the first label naming them
    for label, props in document["variants"].items():
        first = labels.setdefault(json.dumps(props, sort_keys=True), label)
        if first != label:
            raise BackendError(f"variant labels {first!r} and {label!r} name the same properties")
    return json.dumps(document, indent=4, sort_keys=True)


def write_variant_wheel(wheel: Path, dest_dir: Path, variant: Variant) -> Path:
    """Write ``wheel`` as a variant wheel of ``variant`` into ``dest_dir``; return its path.

    Its version and every pin carrying the variant's local label lose it (see
    the module docstring).  Members are copied without recompression, like
    :func:`~backend.wheels.relabel.relabel`.
    """
    label = variant_label(variant)
    with zipfile.ZipFile(wheel) as archive:
        metadata_path = f"{dist_info_folder(wheel, archive.namelist())}/METADATA"
        metadata = BytesParser().parsebytes(archive.read(metadata_path), headersonly=True)
    version = Version((metadata["Version"] or names.parse(wheel.name).version_text).strip())
    pins: dict[str, str] = {}
    for text in metadata.get_all("Requires-Dist") or []:
        with contextlib.suppress(ValueError):  # not a requirement, not one specifier, not a version: no pin
            requirement = Requirement(text)
            (specifier,) = requirement.specifier
            pinned = Version(specifier.version)
            if specifier.operator in ("==", "===") and pinned.local == label:
                pins[requirement.name] = pinned.public
    return relabel(
        wheel,
        dest_dir,
        version=version.public if version.local == label else str(version),
        pins=pins,
        extra_files={VARIANT_JSON: (variant_json([variant]) + "\n").encode("utf-8")},
        variant_label=label,
    )


def write_index_variants_json(dest_dir: Path, distribution: str, variants: Iterable[Variant]) -> Path:
    """Write ``<name>-<version>-variants.json`` for the given variants; return its path.

    ``distribution`` is ``name`` or ``name-version`` as wheel file names write
    them; without a version in it, the version is read from the variant
    wheels of that name in ``dest_dir`` (they must agree).
    """
    name, _, given = distribution.partition("-")
    if not given:
        wheels = [names.parse(path.name) for path in dest_dir.glob("*.whl")]
        found = {wheel.version_text for wheel in wheels
                 if wheel.variant_label is not None and wheel.project == canonicalize_name(name)}
        if len(found) != 1:
            raise BackendError(
                f"{dest_dir}: expected variant wheels of one version of {name}, found {sorted(found) or 'none'}"
            )
        given = found.pop()
    name_part = name.replace("-", "_").replace(".", "_")
    target = dest_dir / f"{name_part}-{given.replace('-', '_')}-variants.json"
    write_atomic(target, (variant_json(variants) + "\n").encode("utf-8"))
    return target
