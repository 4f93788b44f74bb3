"""Which optional libraries a build really enabled, read from the built binary; refused when promised and absent.

torch's CMake (``cmake/public/cuda.cmake``) turns cuDNN, cuSPARSELt, cuDSS
and NCCL off with only a warning when it cannot find them, and the build
goes on; so does it without BLAS and LAPACK (``cmake/Dependencies.cmake``),
without NVSHMEM (``caffe2/CMakeLists.txt``), and torchvision's setup.py
without libpng, libjpeg and libwebp.  What was enabled shows in the library
that uses it: it links the library (``DT_NEEDED``), calls into it (an
undefined dynamic symbol such as ``cudnnCreate``), or carries it statically
(the symbol defined in the object, in its dynamic or its full symbol table:
PyTorch links MKL that way).  Any witness counts.  A recipe declares what to
look for (``Recipe.features``, ``recipes.base.Marker``) and which features its
variant promises; the manifest records each wheel's features and, under
``links``, the witness of each (``libopenblas.so.0``, ``static: defines
dgetrf_``) with the pin the wheel requires for a linked library.
"""

from __future__ import annotations

import re

from packaging.utils import canonicalize_name

from ..errors import BackendError
from ..toolchains.runtime import distribution_for
from ..wheels import built as built_wheel
from . import metadata


def asked_symbols(spec) -> dict[str, frozenset[str]]:
    """Member -> the marker symbols to note in its record when the wheel is read (``built.read(asked=)``)."""
    asked: dict[str, frozenset[str]] = {}
    for marker in map(spec.marker, spec.markers):
        asked[marker.object] = asked.get(marker.object, frozenset()) | frozenset(marker.symbols)
    return asked


def read_witnesses(wheel, spec) -> dict[str, str] | None:
    """{feature: how the wheel shows it, "" when it does not}, or None when the wheel holds none of its objects.
    ``wheel``: a path, or the wheel read once with :func:`asked_symbols` (``wheels.built``)."""
    wheel = built_wheel.read_once(wheel, scan_code=False, asked=asked_symbols(spec))
    markers = {feature: spec.marker(feature) for feature in sorted(spec.markers)}
    if not {m.object for m in markers.values()} & {m.name for m in wheel.members}:
        return None
    requires = _requirements(wheel)
    return {feature: _witness(marker, wheel.objects.get(marker.object), requires)
            for feature, marker in markers.items()}


def _witness(marker, record, requires: dict[str, str]) -> str:
    if record is None:  # the member is not in the wheel (torch without NVSHMEM has no libtorch_nvshmem.so)
        return ""
    soname = next((n for n in record.needed if n.startswith(marker.libraries)), None)
    if soname:
        pin = requires.get(distribution_for(soname) or "")
        return f"{soname} ({pin})" if pin else soname
    return next((f"{shown} {symbol}" for how, shown in (("defines", "static: defines"), ("calls", "calls"))
                 for symbol in marker.symbols if record.marks.get(symbol) == how), "")


def _requirements(wheel) -> dict[str, str]:
    """The wheel's Requires-Dist by distribution name without a -cu12/-cu13 suffix (``nvidia-nvshmem``)."""
    try:
        requires = metadata.from_built(wheel, check_record=False).requires
    except (BackendError, KeyError, ValueError, OSError):  # no readable METADATA: the pin stays unknown
        return {}
    return {re.sub(r"-cu1[23]$", "", canonicalize_name(r.name)): f"{r.name}{r.specifier}" for r in requires}


def check_features(recipe, variant, wheels: list, mode: str,
                   links: dict[str, dict[str, str]] | None = None) -> dict[str, dict[str, bool]]:
    """The features of each wheel (for the manifest); a promised one missing fails in strict mode.

    ``links``, when given, receives each wheel's witnesses (the manifest's ``links``)."""
    spec = recipe.features
    if spec is None or mode == "off":
        return {}
    found: dict[str, dict[str, bool]] = {}
    promised = spec.promised(variant)
    for wheel in wheels:
        witnesses = read_witnesses(wheel, spec)
        if witnesses is None:
            continue
        found[wheel.name] = {feature: bool(w) for feature, w in witnesses.items()}
        if links is not None:
            links[wheel.name] = {feature: w for feature, w in witnesses.items() if w}
        missing = [f for f in promised if not witnesses.get(f)]
        if missing:
            objects = sorted({spec.marker(f).object for f in missing})
            message = (f"{wheel.name} was built without {', '.join(missing)}, which the variant "
                       f"{variant.name} promises ({', '.join(objects)}: neither linked, called nor carried); {spec.hint}")
            if mode == "strict":
                raise BackendError(message + " (nothing was added to the wheelhouse; -C verify=warn keeps it)")
            print(f"warning: {message}", flush=True)
    return found
