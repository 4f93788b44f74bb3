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

import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path

from packaging.utils import canonicalize_name

from ..errors import BackendError
from ..toolchains.runtime import distribution_for
from . import elf, metadata


def read_witnesses(wheel: Path, spec) -> dict[str, str] | None:
    """{feature: how the wheel shows it, "" when it does not}, or None when the wheel holds none of its objects."""
    markers = {feature: spec.marker(feature) for feature in sorted(spec.markers)}
    with zipfile.ZipFile(wheel) as archive:
        members = set(archive.namelist())
        objects = sorted({m.object for m in markers.values() if m.object in members})
        if not objects:
            return None
        wanted = {s for m in markers.values() for s in m.symbols}
        with tempfile.TemporaryDirectory() as tmp:
            links = {name: _links(Path(archive.extract(name, tmp)), wanted) for name in objects}
    requires = _requirements(wheel)
    return {feature: _witness(marker, links.get(marker.object), requires) for feature, marker in markers.items()}


def read_features(wheel: Path, spec) -> dict[str, bool] | None:
    """{feature: enabled} for the wheel, or None when the wheel holds none of ``spec``'s objects."""
    witnesses = read_witnesses(wheel, spec)
    return None if witnesses is None else {feature: bool(w) for feature, w in witnesses.items()}


def _witness(marker, links: tuple[list[str], set[str], set[str]] | None, requires: dict[str, str]) -> str:
    if links is None:  # the member is not in the wheel (torch without NVSHMEM has no libtorch_nvshmem.so)
        return ""
    needed, undefined, defined = links
    for soname in needed:
        if soname.startswith(marker.libraries):
            pin = requires.get(distribution_for(soname) or "")
            return f"{soname} ({pin})" if pin else soname
    for symbol in marker.symbols:
        if symbol in defined:
            return f"static: defines {symbol}"
    for symbol in marker.symbols:
        if symbol in undefined:
            return f"calls {symbol}"
    return ""


def _links(path: Path, wanted: Iterable[str]) -> tuple[list[str], set[str], set[str]]:
    """(DT_NEEDED, undefined dynamic symbols, defined symbols of ``wanted``: in .dynsym, else in .symtab).

    The full table is read only for wanted symbols .dynsym does not name (a static library linked with
    hidden visibility): libtorch_cuda.so's .symtab is large and pyelftools is slow."""
    elffile, sections, dynamic = elf.elftools_modules()
    wanted = set(wanted)
    needed: list[str] = []
    undefined: set[str] = set()
    defined: set[str] = set()
    with open(path, "rb") as handle:
        full_table = None
        for section in elffile.ELFFile(handle).iter_sections():
            if isinstance(section, dynamic.DynamicSection):
                needed += [t.needed for t in section.iter_tags() if t.entry.d_tag == "DT_NEEDED"]
            elif isinstance(section, sections.SymbolTableSection):
                if section.name == ".symtab":
                    full_table = section
                    continue
                for symbol in section.iter_symbols():
                    if not symbol.name:
                        continue
                    if symbol.entry.st_shndx == "SHN_UNDEF":
                        undefined.add(symbol.name)
                    elif symbol.name in wanted:
                        defined.add(symbol.name)
        unseen = wanted - defined - undefined
        if full_table is not None and unseen:
            defined |= {s.name for s in full_table.iter_symbols()
                        if s.name in unseen and s.entry.st_shndx != "SHN_UNDEF"}
    return needed, undefined, defined


def _requirements(wheel: Path) -> dict[str, str]:
    """The wheel's Requires-Dist by distribution name without a -cu12/-cu13 suffix (``nvidia-nvshmem``)."""
    out: dict[str, str] = {}
    try:
        requires = metadata.read_wheel(wheel, check_record=False).requires
    except (BackendError, KeyError, ValueError, OSError):  # no readable METADATA: the pin stays unknown
        return out
    for requirement in requires:
        name = canonicalize_name(requirement.name)
        for suffix in ("-cu12", "-cu13"):
            name = name.removesuffix(suffix)
        out[name] = f"{requirement.name}{requirement.specifier}"
    return out


def check_features(recipe, variant, wheels: list[Path], mode: str,
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
        features = {feature: bool(w) for feature, w in witnesses.items()}
        found[wheel.name] = features
        if links is not None:
            links[wheel.name] = {feature: w for feature, w in witnesses.items() if w}
        missing = [f for f in promised if not features.get(f)]
        if missing:
            objects = sorted({spec.marker(f).object for f in missing})
            message = (f"{wheel.name} was built without {', '.join(missing)}, which the variant "
                       f"{variant.name} promises ({', '.join(objects)}: neither linked, called nor carried); {spec.hint}")
            if mode == "strict":
                raise BackendError(message + " (nothing was added to the wheelhouse; -C verify=warn keeps it)")
            print(f"warning: {message}", flush=True)
    return found
