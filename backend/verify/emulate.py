"""The ISA promise proved by running it: a variant's CPU code executed on an emulated CPU of exactly its ISA.

The scan (``isa.py``, ``isa_arm.py``) reads instructions out of the binaries,
but cannot tell a kernel behind run-time dispatch from one that runs
unconditionally.  Here every shared object is loaded (``dlopen``: its
constructors run, as at import) by a Python interpreter running under QEMU's
user-mode emulation with the CPU model of the variant's ISA (``MODELS``).  An
instruction that model lacks raises SIGILL; a handler in the driver writes the
faulting address and the process's memory map, and the report names the
wheel, the library, the instruction and its address.  Code a library only
reaches after asking the CPU (cpuid, hwcaps) stays silent: the emulated CPU
answers as the real one of that ISA would.

What CPU detection sees under emulation (QEMU 7.2 user mode):

- x86 ``cpuid`` and aarch64 ``getauxval(AT_HWCAP/AT_HWCAP2)`` (and the
  ``mrs`` ID registers) answer for the chosen model: QEMU emulates them.
- ``/proc/cpuinfo`` is the HOST's in QEMU 7.2 user mode for x86-64 and
  aarch64 guests.  The driver runs with QEMU's ``-L`` prefix pointing at a
  folder that holds ``proc/cpuinfo`` written for the model (``Model.cpuinfo``):
  QEMU looks up every absolute path the guest opens under the prefix first.
  A library that reads ``/sys/devices/system/cpu`` still sees the host.

Not every missing feature traps: QEMU runs LZCNT/TZCNT as BSR/BSF on a model
without them (as pre-Haswell CPUs do), so the scan stays for those, and its
TCG does not execute AVX-512 at all: the AVX-512 ISAs are not emulated and the
scan's verdict stands (``Model.unavailable``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import capstone
import iced_x86 as iced
from capstone import aarch64
from elftools.elf import elffile

from ..errors import BackendError
from . import elf, isa_arm
from . import isa as isa_x86

# Linux's /proc/cpuinfo flag names (x86 "flags", aarch64 "Features") of each model, as the kernel prints them
# for the real CPU; tests/test_verify_emulate.py checks them against what cpuid/hwcaps say under QEMU.
_SANDY_BRIDGE_FLAGS = ("fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse "
                       "sse2 ss syscall nx rdtscp lm constant_tsc nopl pni pclmulqdq ssse3 cx16 sse4_1 sse4_2 "
                       "popcnt aes xsave avx lahf_lm")
_HASWELL_FLAGS = (_SANDY_BRIDGE_FLAGS.replace("ssse3 ", "ssse3 fma ").replace("sse4_2 ", "sse4_2 movbe ")
                  .replace("avx lahf_lm", "avx f16c rdrand lahf_lm abm fsgsbase bmi1 avx2 smep bmi2 erms"))
_NEOVERSE_N1_FEATURES = ("fp asimd aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc "
                         "dcpop asimddp")

INSTALL_HINT = ("install QEMU's user-mode emulation: apt-get install qemu-user (Debian, Ubuntu), "
                "dnf install qemu-user (Fedora)")


@dataclasses.dataclass(frozen=True)
class Model:
    """How one ISA is emulated: QEMU's program and CPU model, or why it cannot be."""
    isa: str
    qemu: str | None = None            # qemu-x86_64, qemu-aarch64
    cpu: str | None = None             # QEMU's -cpu model
    cpu_name: str = ""                 # /proc/cpuinfo's "model name" (x86)
    flags: str = ""                    # /proc/cpuinfo's flags / Features
    unavailable: str | None = None     # one line: why this ISA is not emulated (the scan's verdict stands)

    @property
    def machine(self) -> str:
        return "aarch64" if self.qemu == "qemu-aarch64" else "x86_64"

    def cpuinfo(self, cores: int = 1) -> str:
        """What /proc/cpuinfo says on the real CPU (the fields detection code reads), one block per core: as many
        as this machine's (QEMU's guest threads run on them; sysconf and /sys show the host's count)."""
        if self.machine == "aarch64":   # QEMU's neoverse-n1: MIDR_EL1 0x414fd0c1 (Arm, r4p1, part 0xd0c)
            core = (f"BogoMIPS\t: 50.00\nFeatures\t: {self.flags}\nCPU implementer\t: 0x41\n"
                    "CPU architecture: 8\nCPU variant\t: 0x4\nCPU part\t: 0xd0c\nCPU revision\t: 1\n\n")
        else:
            core = (f"vendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel name\t: {self.cpu_name}\n"
                    f"flags\t\t: {self.flags}\n\n")
        return "".join(f"processor\t: {index}\n{core}" for index in range(cores))


_NO_AVX512 = "QEMU cannot emulate AVX-512 (its TCG does not execute it), the scan's verdict stands"
MODELS: dict[str, Model] = {
    # Sandy Bridge: AVX, AES, PCLMULQDQ, no F16C (Ivy Bridge), no AVX2/FMA/BMI (Haswell): exactly -mavx.
    "avx": Model("avx", "qemu-x86_64", "SandyBridge", "Intel Xeon E312xx (Sandy Bridge)", _SANDY_BRIDGE_FLAGS),
    # Haswell without TSX (QEMU's TCG has none; the plain model would warn): AVX2, FMA, F16C, BMI1/2, MOVBE, LZCNT.
    "avx2": Model("avx2", "qemu-x86_64", "Haswell-noTSX", "Intel Core Processor (Haswell, no TSX)", _HASWELL_FLAGS),
    "avx512": Model("avx512", unavailable=_NO_AVX512),
    "avx512vnni": Model("avx512vnni", unavailable=_NO_AVX512),
    "avx512bf16": Model("avx512bf16", unavailable=_NO_AVX512),
    # Neoverse N1: Armv8.2 with fp16 and dotprod, no SVE (QEMU 7.2's neoverse-n1 model).
    "armv8_2": Model("armv8_2", "qemu-aarch64", "neoverse-n1", flags=_NEOVERSE_N1_FEATURES),
    "armv9": Model("armv9", unavailable="QEMU 7.2 has no Armv9-exact CPU model (only max, a superset with SME "
                   "and more), the scan's verdict stands"),
}

# One emulated process at most this long: TCG runs code 10 to 20 times slower than the CPU (bench/verify_emulate.py),
# and a real torch's import translates hundreds of MB of host code; past this, something hangs.
EMULATION_TIMEOUT = 1800.0

# Loads each library of argv[2] (a JSON list) in turn, writing one JSON line per event to argv[1]: which
# library was being loaded when the process died is the last "load" without its "loaded".
DRIVER = r'''
import ctypes, json, sys
libraries = json.loads(sys.argv[2])
for index, path in enumerate(libraries):
    with open(sys.argv[1], "a") as out:
        out.write(json.dumps({"event": "load", "index": index}) + "\n")
    try:
        ctypes.CDLL(path)
        event = {"event": "loaded", "index": index}
    except OSError as error:
        event = {"event": "unloadable", "index": index, "why": str(error)}
    with open(sys.argv[1], "a") as out:
        out.write(json.dumps(event) + "\n")
'''


@dataclasses.dataclass
class Library:
    path: Path          # where it is loaded from (an extracted wheel, or the file given)
    wheel: str | None   # the wheel's file name, None for a loose object
    member: str         # its path inside the wheel (the file's name for a loose object)

    @property
    def label(self) -> str:
        return f"{self.wheel}: {self.member}" if self.wheel else self.member


@dataclasses.dataclass
class Finding:
    kind: str            # "sigill", "crash", "unloadable"
    library: Library
    text: str            # one line

    @property
    def failed(self) -> bool:
        return self.kind != "unloadable"


@dataclasses.dataclass
class Outcome:
    isa: str
    model: Model
    ran: bool                       # False: not emulated (unavailable model); the reason is `note`
    note: str = ""
    libraries: int = 0
    loaded: int = 0
    findings: list[Finding] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not any(f.failed for f in self.findings)

    def lines(self) -> list[str]:
        if not self.ran:
            return [f"emulate: {self.isa}: {self.note}"]
        out = [f"emulate: {self.isa} on QEMU's {self.model.cpu}: {self.loaded}/{self.libraries} libraries loaded, "
               f"{sum(f.failed for f in self.findings)} failed ({self.seconds:.1f} s)"]
        out += [f"emulate: {'FAIL' if f.failed else 'note'}: {f.text}" for f in self.findings]
        return out

    def to_json(self) -> dict:
        return {"isa": self.isa, "cpu": self.model.cpu, "ran": self.ran, "note": self.note, "ok": self.ok,
                "libraries": self.libraries, "loaded": self.loaded, "seconds": round(self.seconds, 3),
                "findings": [{"kind": f.kind, "wheel": f.library.wheel, "library": f.library.member, "text": f.text}
                             for f in self.findings]}


def model_for(isa: str) -> Model:
    return MODELS[isa]


def qemu_program(model: Model) -> str:
    """The QEMU user-mode program for the model, or a one-line error saying how to install it."""
    found = shutil.which(model.qemu or "")
    if found is None:
        raise BackendError(f"--emulate needs {model.qemu}, which is not installed: {INSTALL_HINT}")
    return found


# Where ci/setup/aarch64_sysroot.sh unpacks the aarch64 root filesystem (VLLM_STACK_AARCH64_SYSROOT moves it).
DEFAULT_SYSROOT = Path("/opt/vllm-stack/aarch64-sysroot")


def default_sysroot() -> Path | None:
    folder = Path(os.environ.get("VLLM_STACK_AARCH64_SYSROOT", DEFAULT_SYSROOT))
    return folder if (folder / "usr" / "bin").is_dir() else None


def interpreter(model: Model, sysroot: Path | None) -> tuple[Path, Path | None]:
    """(the Python to run under QEMU, the guest root filesystem or None for the host's own)."""
    if model.machine == platform.machine():
        return Path(sys.executable), None
    if sysroot is None:
        sysroot = default_sysroot()
    if sysroot is None:
        raise BackendError(f"setting 'emulate-sysroot': --emulate for {model.isa} needs an {model.machine} root "
                           f"filesystem with Python 3; make one with ci/setup/aarch64_sysroot.sh (Debian multiarch, "
                           f"into {DEFAULT_SYSROOT}) or pass -C emulate-sysroot=DIR")
    pythons = sorted((sysroot / "usr" / "bin").glob("python3*"))
    pythons = [p for p in pythons if p.name.replace("python3", "").lstrip(".").isdigit() or p.name == "python3"]
    if not pythons:
        raise BackendError(f"setting 'emulate-sysroot': bad value '{sysroot}'; accepted: an {model.machine} root "
                           f"filesystem with usr/bin/python3 (ci/setup/aarch64_sysroot.sh makes one)")
    return pythons[-1], sysroot


def guest_prefix(model: Model, sysroot: Path | None, work: Path) -> Path:
    """The folder QEMU's -L points at: proc/cpuinfo for the model, the guest's root filesystem beside it."""
    prefix = work / "prefix"
    (prefix / "proc").mkdir(parents=True, exist_ok=True)
    (prefix / "proc" / "cpuinfo").write_text(model.cpuinfo(os.cpu_count() or 1))
    if sysroot is not None:
        for entry in sysroot.iterdir():
            if entry.name != "proc" and not (prefix / entry.name).exists():
                (prefix / entry.name).symlink_to(entry.resolve())
    return prefix


@dataclasses.dataclass(frozen=True)
class Launch:
    """How to start one program under QEMU so that a fatal illegal instruction can be explained afterwards.

    QEMU's ``-strace`` log ends with the signal it delivered (``--- SIGILL {... si_addr=0x...} ---``, the
    faulting instruction's address); the guest's dynamic loader, with ``LD_DEBUG=files``, writes where it put
    each library (``base:``).  Both are read after the process died (``explain``).  No handler runs inside the
    emulated process: QEMU 7.2 enters x86-64 signal handlers with a stack that Python's ctypes callbacks
    crash on.
    """
    model: Model
    argv: tuple[str, ...]      # qemu ... python: the script and its arguments follow
    env: dict[str, str]
    strace_log: Path
    loader_log: Path           # LD_DEBUG_OUTPUT: the loader appends .<pid>

    def run(self, args: Sequence[str], cwd: Path, timeout: float = EMULATION_TIMEOUT) -> subprocess.CompletedProcess:
        try:
            return subprocess.run([*self.argv, *args], cwd=cwd, env=self.env, capture_output=True, text=True,
                                  preexec_fn=_no_core_files, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BackendError(f"--emulate: {Path(self.argv[-1]).name} under QEMU's {self.model.cpu} ran for more "
                               f"than {timeout:.0f} s and was stopped (log: {self.strace_log})") from None

    def explain(self, returncode: int) -> "Fault | None":
        """The instruction that killed the process, when SIGILL did."""
        if returncode not in (-4, 128 + 4):
            return None
        address = last_sigill_address(self.strace_log)
        if address is None:
            return None
        return locate(address, loaded_libraries(self.loader_log))


def _no_core_files() -> None:
    # QEMU writes the guest's core (qemu_<prog>_<time>.core, as large as the process) when the limit allows.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def launch(model: Model, python: Path, prefix: Path, work: Path, environ: Mapping[str, str] | None = None) -> Launch:
    """``python`` under QEMU as the model's CPU, its guest paths looked up in ``prefix`` first."""
    env = {k: v for k, v in (os.environ if environ is None else environ).items()
           if not k.startswith(("LD_", "QEMU_"))}
    loader_log = work / "loader"
    env.update(LD_DEBUG="files", LD_DEBUG_OUTPUT=str(loader_log))
    strace_log = work / "qemu.log"
    argv = (qemu_program(model), "-strace", "-D", str(strace_log), "-L", str(prefix), "-cpu", model.cpu, str(python))
    return Launch(model, argv, env, strace_log, loader_log)


def emulated_python(isa: str, work: Path, sysroot: Path | None = None) -> Launch:
    """A Python interpreter running on QEMU's CPU model of ``isa`` (work: a folder for its prefix and logs)."""
    model = model_for(isa)
    if model.unavailable:
        raise BackendError(f"{isa}: {model.unavailable}")
    python, root = interpreter(model, sysroot)
    return launch(model, python, guest_prefix(model, root, work), work)


def smoke_launcher(isa: str, sysroot: Path | None = None) -> Callable[[Path, str, Mapping[str, str]], Launch]:
    """For ``-C smoke=emulate``: (folder, the venv's python, environment) -> that python under QEMU as the ISA's
    CPU.  Each step gets its own folder: the loader's log names addresses of one process only."""
    model = model_for(isa)
    qemu_program(model)

    def launcher(work: Path, python: str, environ: Mapping[str, str]) -> Launch:
        work.mkdir(parents=True, exist_ok=True)
        root = interpreter(model, sysroot)[1]
        return launch(model, Path(python), guest_prefix(model, root, work), work, environ)

    return launcher


def fault_text(model: Model, fault: Fault) -> str:
    return f"illegal instruction on QEMU's {model.cpu} ({model.isa}): {fault.instruction} at {fault.where()}"


# ---- reading what QEMU and the loader wrote -------------------------------------------------------------

_SIGILL = re.compile(r"^--- SIGILL \{.*\bsi_addr=(0x[0-9a-fA-F]+)")
_LINK_MAP = re.compile(r"file=(\S+) \[\d+\];\s+generating link map")
_BASE = re.compile(r"base: (0x[0-9a-fA-F]+)\s+size: (0x[0-9a-fA-F]+)")


def last_sigill_address(strace_log: Path) -> int | None:
    """The address of the last SIGILL QEMU delivered (earlier ones a library may have caught: feature probes)."""
    found = None
    if strace_log.is_file():
        with strace_log.open(errors="replace") as log:
            for line in log:
                if match := _SIGILL.match(line):
                    found = int(match.group(1), 16)
    return found


@dataclasses.dataclass(frozen=True)
class LoadedLibrary:
    start: int      # the library's load bias (its addresses are start + the file's own virtual addresses)
    end: int
    path: str


def loaded_libraries(loader_log: Path) -> list[LoadedLibrary]:
    """Each library the guest's loader mapped, from its ``LD_DEBUG=files`` output (one file per process)."""
    found: list[LoadedLibrary] = []
    for log in sorted(loader_log.parent.glob(loader_log.name + ".*")):
        path = None
        for line in log.read_text(errors="replace").splitlines():
            if match := _LINK_MAP.search(line):
                path = match.group(1)
            elif path and (match := _BASE.search(line)):
                base, size = int(match.group(1), 16), int(match.group(2), 16)
                found.append(LoadedLibrary(base, base + size, path))
                path = None
    return found


@dataclasses.dataclass(frozen=True)
class Fault:
    path: str | None           # the library the address lies in
    vaddr: int | None          # the address as the file's own (objdump's) virtual address
    instruction: str           # decoded, with the features it needs
    address: int

    def where(self) -> str:
        if self.path is None:
            return f"{self.address:#x} (the interpreter or code outside any library)"
        return f"{Path(self.path).name}+{self.vaddr:#x}"


def locate(address: int, libraries: Sequence[LoadedLibrary]) -> Fault:
    """The faulting instruction: its library, its address in that library, what it is."""
    mapping = next((m for m in reversed(libraries) if m.start <= address < m.end), None)
    if mapping is None:
        return Fault(None, None, "an instruction outside the loaded libraries", address)
    vaddr = address - mapping.start
    path = Path(mapping.path)
    try:
        offset = vaddr_to_file_offset(path, vaddr)
        if offset is None:
            raise BackendError(f"{vaddr:#x} is in no loadable segment")
        with path.open("rb") as handle:
            handle.seek(offset)
            code = handle.read(16)
        text = describe_instruction(code, vaddr, elf_machine(path))
    except (OSError, BackendError) as error:
        return Fault(mapping.path, vaddr, f"an instruction that could not be read ({error})", address)
    return Fault(mapping.path, vaddr, text, address)


def describe_instruction(code: bytes, address: int, machine: str) -> str:
    """'vpaddd ymm0,ymm0,ymm0 (AVX2)' for the first instruction of ``code``."""
    if machine == "EM_AARCH64":
        md = capstone.Cs(capstone.CS_ARCH_AARCH64, capstone.CS_MODE_ARM)
        md.detail = True
        names = {getattr(aarch64, n): n for n in dir(aarch64) if n.startswith("AARCH64_FEATURE_")}
        for insn in md.disasm(code[:4], address):
            extensions = sorted({e for g in insn.groups if (e := isa_arm.extension_of(names.get(g, "")))})
            needs = f" ({', '.join(extensions)})" if extensions else ""
            return f"{insn.mnemonic} {insn.op_str}".strip() + needs
        return f"undecodable word {code[:4].hex()}"
    instruction = next(iter(iced.Decoder(64, code, ip=address)))
    if instruction.code == iced.Code.INVALID:
        return f"undecodable bytes {code[:8].hex()}"
    formatter = iced.Formatter(iced.FormatterSyntax.INTEL)
    names = isa_x86.FEATURE_NAMES
    features = [names[f] for f in instruction.cpuid_features()]
    return formatter.format(instruction) + (f" ({', '.join(features)})" if features else "")


def read_events(report: Path) -> list[dict]:
    if not report.is_file():
        return []
    events = []
    for line in report.read_text().splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:   # a line cut short by the process dying
            break
    return events


# ---- the few ELF facts this module needs (pyelftools) ---------------------------------------------------

_MACHINE_NAMES = {"x86_64": "EM_X86_64", "aarch64": "EM_AARCH64"}


def elf_machine(path: Path) -> str:
    with path.open("rb") as handle:
        return elffile.ELFFile(handle)["e_machine"]


def is_loadable_library(path: Path, machine: str) -> bool:
    """A shared object of ``machine`` that dlopen accepts: ET_DYN without an interpreter (not a PIE program)."""
    try:
        with path.open("rb") as handle:
            found = elffile.ELFFile(handle)
            return (found["e_type"] == "ET_DYN" and found["e_machine"] == _MACHINE_NAMES.get(machine)
                    and not any(seg["p_type"] == "PT_INTERP" for seg in found.iter_segments()))
    except Exception:   # a damaged file: the static checks report it
        return False


def vaddr_to_file_offset(path: Path, vaddr: int) -> int | None:
    """Where in the file the code of a virtual address (objdump's) lies: from the loadable segment holding it."""
    with path.open("rb") as handle:
        for segment in elffile.ELFFile(handle).iter_segments():
            if segment["p_type"] == "PT_LOAD" and segment["p_vaddr"] <= vaddr < segment["p_vaddr"] + segment["p_filesz"]:
                return vaddr - segment["p_vaddr"] + segment["p_offset"]
    return None


# ---- loading libraries under the emulator ---------------------------------------------------------------

def collect(paths: Iterable[Path], machine: str, work: Path) -> list[Library]:
    """Every shared library (no executables) of the given wheels, folders and files, for ``machine``.

    Each wheel is unpacked into one shared folder, as pip would install them side by side, so that a
    library's RPATH (``$ORIGIN/../torch/lib``) finds what another wheel provides.
    """
    site = work / "site"
    found: list[Library] = []

    def consider(path: Path, wheel: str | None, member: str) -> None:
        if path.is_file() and not path.is_symlink() and elf.is_elf(path) and is_loadable_library(path, machine):
            found.append(Library(path, wheel, member))

    for given in paths:
        wheels = sorted(given.glob("*.whl")) if given.is_dir() else [given] if given.suffix == ".whl" else []
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as archive:
                # shared objects only (libfoo.so, libfoo.so.12, _C.cpython-311-x86_64-linux-gnu.so): dlopen
                # needs nothing else, and a torch wheel's headers and Python files are gigabytes unpacked
                shared = [n for n in archive.namelist() if ".so" in n.rsplit("/", 1)[-1] and not n.endswith("/")]
                archive.extractall(site, members=shared)
                for name in shared:
                    consider(site / name, wheel.name, name)
        if given.is_dir() and not wheels:
            for file in sorted(given.rglob("*")):
                consider(file, None, str(file.relative_to(given)))
        elif given.is_file() and given.suffix != ".whl":
            consider(given, None, given.name)
    return found


def run_libraries(libraries: Sequence[Library], isa: str, *, sysroot: Path | None = None,
                  work: Path | None = None) -> Outcome:
    """Load every library in one emulated process; after a fault, go on with the rest in a fresh one."""
    model = model_for(isa)
    if model.unavailable:
        return Outcome(isa, model, ran=False, note=model.unavailable, libraries=len(libraries))
    started = time.monotonic()
    outcome = Outcome(isa, model, ran=True, libraries=len(libraries))
    with tempfile.TemporaryDirectory(prefix="vllm-stack-emulate-", dir=work) as scratch:
        scratch_dir = Path(scratch)
        python, root = interpreter(model, sysroot)
        prefix = guest_prefix(model, root, scratch_dir)
        driver = scratch_dir / "driver.py"
        driver.write_text(DRIVER)
        by_path = {str(lib.path): lib for lib in libraries}
        pending = list(libraries)
        attempt = 0
        while pending:
            attempt += 1
            run_dir = scratch_dir / f"run-{attempt}"
            run_dir.mkdir()
            emulated = launch(model, python, prefix, run_dir)
            report = run_dir / "events.jsonl"
            result = emulated.run(["-I", "-S", str(driver), str(report),
                                   json.dumps([str(lib.path) for lib in pending])], cwd=run_dir)
            events = read_events(report)
            done = -1
            for event in events:
                if event["event"] == "loaded":
                    outcome.loaded += 1
                    done = event["index"]
                elif event["event"] == "unloadable":
                    done = event["index"]
                    why = event["why"].removeprefix(f"{pending[done].path}: ")   # dlerror: "libcudart.so.12: cannot ..."
                    outcome.findings.append(Finding("unloadable", pending[done],
                                                    f"{pending[done].label}: not loaded here ({why})"))
            current = next((e["index"] for e in reversed(events) if e["event"] == "load"), None)
            if current is None or current <= done:
                if result.returncode != 0:
                    raise BackendError(f"--emulate: the emulated Python failed (exit {result.returncode}): "
                                       + _last_line(result.stderr))
                break
            loading = pending[current]
            fault = emulated.explain(result.returncode)
            if fault is not None:
                culprit = by_path.get(fault.path or "")
                text = f"{loading.label}: {fault_text(model, fault)}"
                if culprit is not loading:
                    text += f" (in {culprit.label if culprit else fault.path}, reached while loading this library)"
                outcome.findings.append(Finding("sigill", loading, text))
            else:
                outcome.findings.append(Finding("crash", loading, f"{loading.label}: the emulated process died "
                                                f"(exit {result.returncode}) while loading it: "
                                                + _last_line(result.stderr)))
            pending = pending[current + 1:]
    outcome.seconds = time.monotonic() - started
    return outcome


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip() and "TCG doesn't support" not in line]
    return lines[-1] if lines else "no output"


def verify(paths: Sequence[Path], isa: str, *, sysroot: Path | None = None) -> Outcome:
    """``python -m backend verify --emulate``: the libraries of ``paths`` loaded on the ISA's emulated CPU."""
    model = model_for(isa)
    if model.unavailable:
        return Outcome(isa, model, ran=False, note=model.unavailable)
    qemu_program(model)
    with tempfile.TemporaryDirectory(prefix="vllm-stack-emulate-") as scratch:
        libraries = collect(paths, model.machine, Path(scratch))
        return run_libraries(libraries, isa, sysroot=sysroot, work=Path(scratch))
