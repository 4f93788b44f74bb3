"""Which optional libraries a build really enabled, read from the built binary; refused when promised and absent.

torch's CMake (``cmake/public/cuda.cmake``) turns cuDNN, cuSPARSELt, cuDSS
and NCCL off with only a warning when it cannot find them, and the build
goes on.  What was enabled shows in the library that uses them
(``torch/lib/libtorch_cuda.so``): it links the library (``DT_NEEDED``) and
calls into it (an undefined dynamic symbol such as ``cudnnCreate``).  Either
witness counts.  A recipe declares what to look for (``Recipe.features``)
and which features its variant promises.
"""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

from ..errors import BackendError


def read_features(wheel: Path, spec) -> dict[str, bool] | None:
    """{feature: enabled} for the wheel, or None when the wheel does not hold ``spec.object``."""
    with zipfile.ZipFile(wheel) as archive:
        if spec.object not in archive.namelist():
            return None
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(archive.extract(spec.object, tmp))
            needed, undefined = _links(path)
    return {
        feature: any(n.startswith(library) for n in needed) or symbol in undefined
        for feature, (library, symbol) in sorted(spec.markers.items())
    }


def _links(path: Path) -> tuple[list[str], set[str]]:
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    needed: list[str] = []
    undefined: set[str] = set()
    with open(path, "rb") as handle:
        elf = ELFFile(handle)
        for section in elf.iter_sections():
            if isinstance(section, DynamicSection):
                needed += [t.needed for t in section.iter_tags() if t.entry.d_tag == "DT_NEEDED"]
            elif section.name == ".dynsym" and isinstance(section, SymbolTableSection):
                undefined |= {s.name for s in section.iter_symbols() if s.name and s.entry.st_shndx == "SHN_UNDEF"}
    return needed, undefined


def check_features(recipe, variant, wheels: list[Path], mode: str) -> dict[str, dict[str, bool]]:
    """The features of each wheel (for the manifest); a promised one missing fails in strict mode."""
    spec = recipe.features
    if spec is None or mode == "off":
        return {}
    found: dict[str, dict[str, bool]] = {}
    promised = spec.promised(variant)
    for wheel in wheels:
        features = read_features(wheel, spec)
        if features is None:
            continue
        found[wheel.name] = features
        missing = [f for f in promised if not features.get(f)]
        if missing:
            message = (f"{wheel.name} was built without {', '.join(missing)}, which the variant "
                       f"{variant.name} promises ({spec.object} neither links nor calls it); {spec.hint}")
            if mode == "strict":
                raise BackendError(message + " (nothing was added to the wheelhouse; -C verify=warn keeps it)")
            print(f"warning: {message}", flush=True)
    return found
