"""Which NVIDIA driver a wheelhouse needs: NVIDIA's tables, and the rule that combines them.

Three facts decide it, each from NVIDIA's own documentation:

* **Minor-version compatibility** (CUDA Compatibility guide, "Minor Version
  Compatibility", table "CUDA Toolkit 11.x, 12.x, and 13.x Driver Version
  Ranges"): code built by any CUDA 12.x toolkit runs on a driver of 525.60.13
  or later, code built by 13.x on 580 or later, as long as it needs no PTX JIT
  (and no API the older driver lacks: such calls return
  ``cudaErrorCallRequiresNewerDriver``).
* **PTX needs the toolkit's own driver.** The driver JIT-compiles PTX, and a
  driver older than the toolkit rejects its PTX ISA
  (``CUDA_ERROR_UNSUPPORTED_PTX_VERSION``).  So a wheel whose GPU runs a
  kernel from PTX needs the driver that shipped with the toolkit that built it
  (release notes, table "CUDA Toolkit and Corresponding Driver Versions": 12.8
  GA >= 570.26, 12.9 GA >= 575.51.03, 13.0 GA >= 580.65.06, Linux x86_64).
* **A GPU needs a driver that knows it.** Blackwell came with CUDA 12.8
  (sm_100, sm_120) and 12.9 (sm_103, sm_121): no driver older than that
  toolkit's drives those GPUs at all.

The variant's cubins are per-SM and carry no PTX by default, so most of a
wheelhouse runs under minor-version compatibility; a recipe that emits PTX on
purpose (vLLM's ``8.0+PTX`` kernels on sm_90 and newer) raises the floor.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .errors import BackendError
from .variants import SM_MIN_CUDA, version_key

# Driver that ships with each toolkit's GA release (Linux x86_64; CUDA release notes, Table 3).
TOOLKIT_DRIVER = {"12.8": "570.26", "12.9": "575.51.03", "13.0": "580.65.06"}
# Oldest driver that runs code of the CUDA major release under minor-version compatibility.
MINOR_VERSION_DRIVER = {"12": "525.60.13", "13": "580.65.06"}


def is_driver_version(text: str) -> bool:
    parts = text.split(".")
    return 1 <= len(parts) <= 3 and all(p.isdigit() and len(p) <= 4 for p in parts)


@dataclasses.dataclass(frozen=True)
class DriverNeed:
    """The oldest driver a wheelhouse runs on, and why (each reason names its rule)."""

    minimum: str
    reasons: tuple[str, ...]

    def problem(self, driver: str) -> str | None:
        """Why ``driver`` cannot run it, or None."""
        if version_key(driver) >= version_key(self.minimum):
            return None
        return f"NVIDIA driver {driver} is older than {self.minimum}, which this needs: {self.reasons[-1]}"


def need(cuda: str, sm: str, ptx: tuple[str, ...] = ()) -> DriverNeed:
    """The driver a build of ``cuda`` for ``sm`` needs; ``ptx``: the objects whose kernels this GPU JIT-compiles."""
    major = cuda.split(".")[0]
    floor = MINOR_VERSION_DRIVER[major]
    floors = [(floor, f"CUDA {major}.x code runs on {floor}+ (NVIDIA's minor-version compatibility)")]
    if first := SM_MIN_CUDA.get(sm):
        floor = TOOLKIT_DRIVER[first]
        floors.append((floor, f"sm_{sm} GPUs are driven from the CUDA {first} driver ({floor}+)"))
    if ptx:
        shown = ", ".join(ptx[:3]) + (f" and {len(ptx) - 3} more" if len(ptx) > 3 else "")
        floor = TOOLKIT_DRIVER[cuda]
        floors.append((floor, f"the driver JIT-compiles the PTX in {shown}, which needs the CUDA {cuda} "
                              f"driver ({floor}+)"))
    # a floor is a reason where it raises every one before it; the last such is the minimum
    raised = [(driver, why) for at, (driver, why) in enumerate(floors)
              if all(version_key(driver) > version_key(lower) for lower, _ in floors[:at])]
    return DriverNeed(minimum=raised[-1][0], reasons=tuple(why for _, why in raised))


def releases_for(driver: str, sm: str, cudas: tuple[str, ...], ptx: tuple[str, ...] = ()) -> list[str]:
    """The CUDA releases (of ``cudas``, newest first) whose build for ``sm`` the driver runs; ``ptx``:
    what holds PTX this GPU JIT-compiles."""
    return sorted((c for c in cudas if need(c, sm, ptx).problem(driver) is None), key=version_key, reverse=True)


def driver_need(cuda: str, sm: str, manifest: dict[str, Any]) -> DriverNeed:
    """The driver the built wheels need: minor-version compatibility, raised by the GPU and by any object
    whose PTX the GPU JIT-compiles (each wheel's ``ptx_jit``, recorded by verification).  A built wheel
    that was not verified may hold PTX: it is counted as if it did."""
    # a runtime dependency (no "component") is its own build's business, e.g. the nvidia-* wheels (no PTX JIT)
    built = [(name, entry) for name, entry in sorted(manifest["wheels"].items()) if entry.get("component")]
    jitted = [f"{name}:{path}" if "ptx_jit" in entry else f"{name} (not verified: its PTX is unknown)"
              for name, entry in built for path in entry.get("ptx_jit", [None])]
    return need(cuda, sm, tuple(jitted))


def check_driver(manifest: dict[str, Any], driver: str | None, where: str) -> None:
    """Stop in one line when this host's driver is older than the wheelhouse's recorded minimum."""
    stored = manifest.get("driver")
    minimum = stored.get("minimum") if isinstance(stored, dict) else None
    if not (isinstance(minimum, str) and is_driver_version(minimum) and is_driver_version(driver or "")):
        return  # no driver here, or no minimum recorded that reads as one
    recorded = DriverNeed(minimum, tuple(str(r) for r in stored.get("reasons") or ("recorded",)))
    if problem := recorded.problem(driver):
        raise BackendError(f"{where}: {problem}; update the driver, or build the variant for an older CUDA "
                           f"(python -m backend detect --driver {driver} says which)")

