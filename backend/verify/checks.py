"""The checks of one wheel or object against a variant; verify_paths and verify_wheel."""

from __future__ import annotations

import collections
import dataclasses
import posixpath
import re
import struct
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from ..errors import BackendError
from ..wheels import built as built_wheel
from ..wheels.files import read_manifest
from .. import cpu_isa
from ..cuda_target import CudaTarget
from . import cubins, elf, isa as isa_scan, isa_arm, linkage, metadata, platform_tag
from .report import ERROR, WARNING, Entry, ObjectEntry, Problem, Report

@dataclasses.dataclass(frozen=True)
class Expectation:
    sm: str | None = None          # "90"; None = don't check GPU targets
    isa: str | None = None         # "avx512" (backend.cpu_isa.ISAS); None = don't check
    cuda: str | None = None        # "13.0"
    ptx: bool = False              # PTX asked for?
    label: str | None = None       # local version label, "cu129.sm90.avx512"
    torch_version: str | None = None  # exact torch version of the wheelhouse, "2.9.1+cu129.sm90.avx512"
    extra_allowed_libraries: tuple[str, ...] = ()   # sonames provided by the toolchain's declared requirements
    by_design: str = ""            # why PTX and lower-SM cubins are expected (the recipe's gpu_code_by_design)
    manylinux: str | None = None   # target policy, "2_28"; None: the wheel's own tag is checked only
    runpath_roots: tuple[str, ...] = ()  # absolute folders a RUNPATH may name: the build's CUDA toolchain

    @property
    def target(self) -> CudaTarget:
        """The GPU the code must run on, as the variant's own ``Variant.target`` (only with ``sm``)."""
        return CudaTarget(self.sm, self.cuda)


# --- GPU targets --------------------------------------------------------------------------------------------------

def _own_sm_ptx(entry, expect: Expectation) -> bool:
    """PTX of exactly the variant's SM: it runs there (JIT-compiled by the driver), so unasked it is a warning.

    It costs wheel size and, where no cubin fits, a first-launch compile; it
    is never a wrong kernel.  PTX of any other SM stays an error.
    """
    return entry.kind == "ptx" and entry.sm == expect.sm


def _gpu_problem(entry, expect: Expectation, ptx_asked: bool) -> str | None:
    """Why a cubin or PTX does not run on the variant's GPU as intended, or None."""
    if entry.kind == "cubin":
        return expect.target.cubin_problem(entry.sm, entry.suffix)
    return expect.target.ptx_problem(entry.sm, entry.suffix, ptx_asked)


def _by_design(entry, expect: Expectation) -> bool:
    """A plain target of the variant's SM or below that the component's build emits on purpose.

    PTX of such a target JIT-compiles for the variant's GPU; a plain cubin of
    a lower SM is dead weight next to it, not a wrong kernel.  Arch-specific
    (``a``/``f``) code and anything above the variant's SM stay errors.
    """
    return bool(expect.by_design) and not entry.suffix and int(entry.sm) <= int(expect.sm)


def _check_gpu(obj: ObjectEntry, expect: Expectation) -> None:
    obj.problems.extend(Problem(ERROR, "read", f"{s.name}: {s.error}", obj.path) for s in obj.gpu if s.error)
    if not expect.sm:
        return
    for section in obj.gpu:
        main = section.name == ".nv_fatbin"
        # what makes a problem is the target (kind, SM, suffix): one entry of each stands for all
        by_target = {entry.target: entry for entry in section.entries}
        bad = collections.Counter(e.target for e in section.entries if _gpu_problem(e, expect, expect.ptx))
        for target, count in bad.items():
            entry = by_target[target]
            excuse = (f"; expected: {expect.by_design}" if _by_design(entry, expect)
                      else "; it is for the variant's own SM, so it runs there (JIT-compiled where no cubin fits)"
                      if _own_sm_ptx(entry, expect) else "")
            why = _gpu_problem(entry, expect, expect.ptx) + excuse
            level = WARNING if excuse or not main else ERROR
            kind = "PTX" if entry.kind == "ptx" else "cubin" + "s" * (count != 1)
            where = "" if main else " in __nv_relfatbin (device-link input, not loaded at run time)"
            obj.problems.append(Problem(
                level, "gpu", f"{count} {kind} for {target}{where}: {why} (variant {expect.target.cubin})", obj.path))
    main = obj.section(".nv_fatbin")
    asked = expect.ptx or bool(expect.by_design)
    if main and main.entries and not any(
            _own_sm_ptx(e, expect) or _gpu_problem(e, expect, asked) is None for e in main.entries):
        obj.problems.append(Problem(
            ERROR, "gpu", f"uses CUDA but has no code for {expect.target.cubin} "
            "(\"no kernel image is available for execution on the device\")", obj.path))


def _check_cuda(obj: ObjectEntry, expect: Expectation) -> None:
    main = obj.section(".nv_fatbin")
    if not expect.cuda or not main:
        return
    wanted = Version(expect.cuda)
    for release in sorted({e.release for e in main.entries if e.release}):
        got = Version(release)
        if got.release[:2] > wanted.release[:2]:
            obj.problems.append(Problem(
                ERROR, "cuda", f"cubins built by CUDA {release}, newer than the variant's CUDA {expect.cuda} "
                "(a driver for the variant may not load them)", obj.path))
        elif got.release[0] != wanted.release[0]:
            obj.problems.append(Problem(
                WARNING, "cuda", f"cubins built by CUDA {release}, the variant is CUDA {expect.cuda}", obj.path))


# --- CPU code ------------------------------------------------------------------------------------------------------

def _check_cpu(obj: ObjectEntry, info: elf.ObjectInfo, expect: Expectation) -> None:
    platform = cpu_isa.platform_of(expect.isa) if expect.isa in cpu_isa.ISAS else None
    if info.machine in ("x86_64", "aarch64") and info.code_bytes:
        obj.isa_highest, obj.instructions = info.scan.highest, info.scan.instructions
        obj.isa_features = dict(sorted(info.scan.features.items()))
        obj.isa_beyond = info.scan.beyond(expect.isa) if info.machine == platform else {}
        if info.machine == "aarch64":
            obj.problems.extend(isa_arm.problems(obj.isa_beyond, info.compile_records, expect.isa, obj.path))
        elif obj.isa_beyond:
            shown = ", ".join(f"{f.lower()} ({n} instructions)" for f, n in obj.isa_beyond.items())
            obj.problems.append(Problem(
                WARNING, "cpu", f"code beyond the variant's {expect.isa}: {shown}; fine when it sits behind "
                "run-time dispatch (torch's CPU_CAPABILITY, XNNPACK's cpuinfo, sleef, oneDNN, FBGEMM) that never "
                f"picks it on a CPU without it (what isa={expect.isa} promises, docs/VERIFY.md), a crash on older "
                "CPUs when it does not", obj.path))
    if platform and info.machine in ("x86_64", "aarch64") and info.machine != platform and info.elf_type in (
            "ET_DYN", "ET_EXEC", "ET_REL"):
        obj.problems.append(Problem(ERROR, "cpu", f"{info.machine} code; the variant's {expect.isa} is {platform}",
                                    obj.path))
    if info.has_record_section:
        check = isa_scan.check_flags(info.compile_records, expect.isa)
        obj.flag_records, obj.flag_lacking = check.records, len(check.lacking)
        if check.lacking:
            example = check.lacking[0] if len(check.lacking[0]) <= 160 else check.lacking[0][:157] + "..."
            obj.problems.append(Problem(
                ERROR, "flags", f"{len(check.lacking)} of {check.records} C/C++ compiles lack the {expect.isa} "
                f"flags ({' '.join(cpu_isa.get(expect.isa).flags)}), e.g. {example!r}", obj.path))


# --- objects, wheels -----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class _Context:
    expect: Expectation
    inside: set[str]                      # sonames and basenames of this wheel / the loose objects
    own_exports: set[str]
    wheelhouse: dict[str, str]            # soname -> wheel name
    requirement_patterns: list[str]
    torch_exports: set[str] | None        # None: no torch to check against
    is_torch: bool


def runpath_problem(entry: str, member: str, roots: Sequence[str]) -> str | None:
    """Why a DT_RUNPATH/DT_RPATH entry of ``member`` (its path inside the wheel) is refused, or None.

    The loader searches these folders before any other for every library the
    object needs: one outside the installed wheels and the build's toolchain
    (``-Wl,-rpath,/tmp/x`` from a caller's LDFLAGS) lets whoever writes there
    run code at import.  ``$ORIGIN``-relative entries must stay inside the
    folder the wheel installs into (site-packages: ``$ORIGIN/../../nvidia/...``
    is fine); absolute ones must lie in ``roots``.
    """
    for origin in ("$ORIGIN", "${ORIGIN}"):
        if entry == origin or entry.startswith(origin + "/"):
            inside = posixpath.normpath(posixpath.join(posixpath.dirname(member), entry[len(origin):].lstrip("/") or "."))
            if inside == ".." or inside.startswith("../") or "$" in inside:
                return f"RUNPATH {entry} leaves the folder the wheel installs into"
            return None
    if "$" in entry:
        return f"RUNPATH {entry} uses a loader variable other than $ORIGIN"
    if entry.startswith("/"):
        norm = posixpath.normpath(entry)
        if any(norm == r or norm.startswith(r.rstrip("/") + "/") for r in (posixpath.normpath(r) for r in roots)):
            return None
        return (f"RUNPATH {entry} is outside the wheel and the build's CUDA toolchain (the loader searches it "
                "first: whoever writes there runs code at import)")
    return f"RUNPATH {entry} is relative to the working folder at import"


def _object(info: elf.ObjectInfo, shown: str, context: _Context) -> ObjectEntry:
    obj = ObjectEntry(path=shown, size=info.size, machine=info.machine, gpu=info.gpu)
    _check_gpu(obj, context.expect)
    _check_cuda(obj, context.expect)
    _check_cpu(obj, info, context.expect)
    refused = (runpath_problem(entry, shown, context.expect.runpath_roots) for entry in info.runpath)
    obj.problems.extend(Problem(ERROR, "link", why, shown) for why in refused if why)
    for soname in info.needed:
        where = linkage.provider(soname, context.inside, context.wheelhouse, context.requirement_patterns,
                                 context.expect.extra_allowed_libraries)
        obj.needed[soname] = where
        if where is None:
            obj.problems.append(Problem(
                ERROR, "link", f"needs {soname}, which no file of the wheel, wheel of the wheelhouse, declared "
                "requirement, toolchain library or system library provides", shown))
    if not context.is_torch and any(linkage.is_torch_library(n) for n in info.needed):
        if context.torch_exports is None:
            obj.problems.append(Problem(
                WARNING, "abi", "links torch, but no torch wheel was given to check its symbols against", shown))
        else:
            missing = linkage.missing_torch_symbols(info.undefined, context.torch_exports, context.own_exports)
            if missing:
                names = linkage.demangle(missing[:3])
                more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
                obj.problems.append(Problem(
                    ERROR, "abi", f"{len(missing)} symbols expected from torch are not exported by the "
                    f"wheelhouse's torch (\"undefined symbol\" at import): {'; '.join(names)}{more}", shown))
    return obj


_LIBRARY_NAME = re.compile(r"\.so(\.\d+)*$")


def _library_problems(built: built_wheel.BuiltWheel) -> Iterator[Problem]:
    """Members named as shared libraries that are none: empty, not ELF, or stored as a zip symlink.

    pip writes a zip symlink as a regular file holding the link's text, and an
    empty or non-ELF ``.so`` fails at import: either way the wheel lacks the
    library its name promises, which the ELF checks (they only see ELF files) miss."""
    for member in (m for m in built.members if _LIBRARY_NAME.search(m.name.rsplit("/", 1)[-1])):
        why = ("is stored as a symbolic link, which pip installs as a small file holding the link's text: "
               "the library is missing" if member.is_link
               else "is an empty file, not a shared object" if not member.size
               else "is not an ELF shared object" if not member.is_elf else None)
        if why:
            yield Problem(ERROR, "content", why, member.name)


_TORCH_EXPORTS: dict[tuple[str, int, int], set[str]] = {}


def torch_exports(wheel: Path, read: built_wheel.BuiltWheel | None = None) -> set[str]:
    """Every dynamic symbol the torch wheel's libraries export (cached per file; ``read``: the records of
    its objects, as this build's post-processing read them, so the wheel is not read again)."""
    stat = wheel.stat()
    key = (str(wheel.resolve()), stat.st_size, int(stat.st_mtime))
    if key not in _TORCH_EXPORTS:
        torch = read or built_wheel.read(wheel, scan_code=False)
        _TORCH_EXPORTS[key] = set().union(*(o.exported for n, o in torch.objects.items()
                                            if n.rsplit("/", 1)[-1].startswith("lib") and ".so" in n))
    return _TORCH_EXPORTS[key]


def _companion_infos(companions: Sequence[Path]) -> Iterator[metadata.WheelInfo]:
    """The other wheels' metadata; one that cannot be read is left out here (its own entry reports it)."""
    for companion in companions:
        try:
            yield metadata.read_wheel(Path(companion), check_record=False)
        except _UNREADABLE:
            continue


# What zipfile and the readers raise on a wheel they cannot read: an encrypted member (RuntimeError), a
# compression method it lacks (NotImplementedError), a name that is not UTF-8 although flagged so, damage.
_UNREADABLE = (zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError, NotImplementedError, UnicodeDecodeError,
               EOFError, OSError, ValueError, KeyError, struct.error)


def verify_wheel(wheel: Path | built_wheel.BuiltWheel, expect: Expectation | None,
                 companions: Sequence[Path] = ()) -> Report:
    """Check one wheel (a path, or a wheel read once: ``wheels.built``); ``companions`` are the other
    wheels of its wheelhouse.

    A wheel that cannot be read is one failed entry of the report, never an
    exception that ends the report for a whole wheelhouse."""
    expect = expect or Expectation()
    path = Path(wheel.path if isinstance(wheel, built_wheel.BuiltWheel) else wheel)
    if not path.is_file():
        raise BackendError(f"verify: {path} does not exist or is not a file; accepted: a .whl file")
    try:
        built = built_wheel.read_once(wheel)
        return _verify_wheel(built, expect, companions)
    except _UNREADABLE as error:
        problem = Problem(ERROR, "read", f"cannot read the wheel: {type(error).__name__}: {str(error)[:200]}")
        entry = Entry(path=str(path), kind="wheel", size=path.stat().st_size, problems=[problem])
        return Report(entries=[entry], expectation=dataclasses.asdict(expect))


def _verify_wheel(built: built_wheel.BuiltWheel, expect: Expectation, companions: Sequence[Path]) -> Report:
    wheel = built.path
    info = metadata.from_built(built)
    entry = Entry(path=str(wheel), kind="wheel", size=wheel.stat().st_size, name=info.name, version=info.version)
    report = Report(entries=[entry], expectation=dataclasses.asdict(expect))
    entry.problems.extend(Problem(ERROR, "metadata", p) for p in info.problems)
    others = list(_companion_infos([c for c in companions if Path(c).resolve() != wheel.resolve()]))
    torch_wheel = next((c for c in others if c.name == metadata.TORCH), None)
    is_torch = info.name == metadata.TORCH
    torch_version = expect.torch_version or (torch_wheel.version if torch_wheel else None)

    _check_metadata(entry, info, others, expect, torch_version, torch_wheel)
    entry.problems.extend(platform_tag.check(built, expect.manylinux))

    if not info.members:
        return report
    # soname -> the wheel holding it; the first wheel wins
    wheelhouse = {base: other.name for other in reversed(others) for base in other.basenames() if ".so" in base}
    exports = torch_exports(torch_wheel.path) if torch_wheel is not None and not is_torch else None

    entry.problems.extend(Problem(ERROR, kind, why, name) for name, (kind, why) in built.problems.items())
    entry.problems.extend(_library_problems(built))
    # cubin folder -> the first member naming it
    named = {folder: name for name, read in reversed(built.objects.items()) for folder in read.folders}
    inside = info.basenames() | {i.soname for i in built.objects.values() if i.soname}
    own_exports = set().union(*(i.exported for i in built.objects.values()))
    requirements = linkage.requirement_library_patterns(
        r for w in [info, *others] for r in w.requires if metadata.is_active(r))
    context = _Context(expect, inside, own_exports, wheelhouse, requirements, exports, is_torch)
    entry.objects.extend(_object(read, name, context) for name, read in built.objects.items())
    if named:
        _check_cubins(entry, named, [info, *others], expect)
    requires_torch = any(canonicalize_name(r.name) == metadata.TORCH
                         for r in info.requires if metadata.is_active(r))
    links_torch = any(linkage.is_torch_library(n) for o in entry.objects for n in o.needed)
    if not is_torch and torch_version is not None and links_torch and not requires_torch:
        entry.problems.append(Problem(
            ERROR, "metadata", f"links torch's libraries but does not require torch=={torch_version}"))
    return report


def _check_cubins(entry: Entry, named: dict[str, str], wheels: list[metadata.WheelInfo],
                  expect: Expectation) -> None:
    """Kernels whose cubins no wheel of the wheelhouse holds would download them at their first call."""
    entry.cubins = cubins.sources(set(named), wheels)
    for folder in (folder for folder, served in entry.cubins.items() if served is None):
        if folder in cubins.UNPACKAGED:
            if expect.sm in (None, "100", "103"):  # its cubins are sm100 only: elsewhere never loaded
                entry.problems.append(Problem(
                    WARNING, "cubins", f"{named[folder]} loads {cubins.UNPACKAGED[folder]} from {folder} at its "
                    "first call, which no wheel on PyPI holds: downloaded from NVIDIA's artifact server then"))
            continue
        entry.problems.append(Problem(
            ERROR, "cubins", f"{named[folder]} loads its cubins from {folder} at its first call, and no wheel of "
            "the wheelhouse holds cubins/" + folder + "/checksums.txt (flashinfer-cubin): they would download "
            "from NVIDIA's artifact server, so the wheelhouse does not install and run without network"))


def _check_metadata(entry: Entry, info: metadata.WheelInfo, others: list[metadata.WheelInfo], expect: Expectation,
                    torch_version: str | None, torch_wheel: metadata.WheelInfo | None) -> None:
    if expect.label and not metadata.label_matches(info.local, expect.label):
        entry.problems.append(Problem(
            ERROR, "metadata", f"version {info.version} does not carry the variant's label +{expect.label}"))
    # A variant's component wheels (labelled) are built from a tree; only the
    # returned stack wheel, unlabelled, is metadata alone by design.
    if info.local and info.holds_only_metadata():
        entry.problems.append(Problem(
            ERROR, "content", f"holds nothing but {info.dist_info}: none of the files its build makes "
            "(a build that packaged an empty tree)"))
    # the wheelhouse's torch: this wheel, or the companion torch wheel
    torch = info if info.name == metadata.TORCH else torch_wheel
    if torch is not None and expect.torch_version and not metadata._same_version(
            torch.version, expect.torch_version):
        entry.problems.append(Problem(
            ERROR, "metadata", f"the wheelhouse's torch is {torch.version}, expected {expect.torch_version}"))
    if info.name != metadata.TORCH and torch_version:
        pins = (metadata.torch_pin_problem(r, torch_version) for r in info.requires
                if canonicalize_name(r.name) == metadata.TORCH)
        entry.problems.extend(Problem(ERROR, "metadata", why) for why in pins if why)
    by_name = {o.name: o for o in others if o.name != metadata.TORCH}   # torch's pin: checked above
    for requirement in filter(metadata.is_active, info.requires):
        other = by_name.get(canonicalize_name(requirement.name))
        if other is None:
            continue
        try:
            fits = requirement.specifier.contains(Version(other.version), prereleases=True)
        except InvalidVersion:
            fits = False
        if not fits:
            entry.problems.append(Problem(
                ERROR, "metadata", f"requires {requirement}, the wheelhouse has {other.name} {other.version}"))


def verify_objects(paths: Sequence[Path], expect: Expectation | None) -> Report:
    """Loose shared objects, checked together: they may provide each other's libraries."""
    expect = expect or Expectation()
    report = Report(expectation=dataclasses.asdict(expect))
    infos = [(Path(path), *elf.read_or_why(Path(path), scan_code=True)) for path in paths]
    good = [(p, i) for p, i, _ in infos if i is not None]
    inside = {p.name for p, _ in good} | {i.soname for _, i in good if i.soname}
    torch_libs = {p for p, i in good if linkage.is_torch_library(i.soname or p.name)}
    exports = set().union(*(i.exported for p, i in good if p in torch_libs)) if torch_libs else None
    for path, read, why in infos:
        entry = Entry(path=str(path), kind="object", size=path.stat().st_size if path.exists() else 0,
                      problems=[Problem(ERROR, "read", why, str(path))] if why else [])
        report.entries.append(entry)
        if read is not None:
            context = _Context(expect, inside, read.exported, {}, [], exports, path in torch_libs)
            entry.objects.append(_object(read, str(path), context))
    return report


# Manifest origins of upstream's wheels in a wheelhouse: the runtime closure's, and the lock's wheels a recipe
# bundles unchanged (backend/pipeline/executor.py BUNDLED: flashinfer-cubin).
_UPSTREAM_ORIGINS = ("runtime", "lock-wheel")


def _runtime_wheels(folder: Path) -> set[str]:
    """The wheelhouse's bundled third-party wheels (``_UPSTREAM_ORIGINS``): upstream's, not checked."""
    entries = read_manifest(folder).get("wheels")
    return {name for name, entry in (entries.items() if isinstance(entries, dict) else ())
            if isinstance(entry, dict) and entry.get("origin") in _UPSTREAM_ORIGINS}


def verify_paths(paths: Sequence[Path], expect: Expectation | None = None) -> Report:
    """Wheels (checked together), folders (a wheelhouse: its wheels together) and loose .so files.

    A wheelhouse's upstream wheels (``_UPSTREAM_ORIGINS``) are not checked, but stay companions of the
    others: the flashinfer-cubin wheel serves the jit-cache's kernels their cubins."""
    expect = expect or Expectation()
    report = Report(expectation=dataclasses.asdict(expect))
    wheels: list[Path] = []
    houses: list[tuple[list[Path], list[Path]]] = []  # (checked, every wheel of the folder)
    loose: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            every = sorted(path.glob("*.whl"))
            runtime = _runtime_wheels(path)  # the manifest read once per folder, not once per wheel
            found = [w for w in every if w.name not in runtime]
            # a folder without wheels of its own: the ELF files under it
            objects = [] if found else sorted(p for p in path.rglob("*") if p.is_file() and elf.is_elf(p))
            if not found and not objects:
                raise BackendError(f"verify: {path} holds no wheels and no ELF files; accepted: a wheelhouse "
                                   "folder, a .whl or a .so")
            houses.append((found, every))
            loose.extend(objects)
        elif path.is_file() and path.suffix == ".whl":
            wheels.append(path)
        elif path.is_file() and elf.is_elf(path):
            loose.append(path)
        else:
            what = "is neither a wheel, a folder nor an ELF file" if path.exists() else "does not exist"
            raise BackendError(f"verify: {path} {what}; accepted: a .whl, a wheelhouse folder or a .so")
    houses.append((wheels, wheels))   # the wheels named one by one: one wheelhouse
    for checked, every in houses:
        for wheel in checked:
            report.extend(verify_wheel(wheel, expect, companions=[w for w in every if w != wheel]))
    report.extend(verify_objects(loose, expect))
    return report

