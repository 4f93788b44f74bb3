"""The ISA promise proved by execution: libraries loaded under QEMU as exactly the variant's CPU.

Real QEMU user mode (Debian's qemu-user, ci/apt/emulate.txt), real gcc and Debian's aarch64 cross
compiler build the stand-ins of tests/fixtures/emulate/; the ARM rows run an aarch64 Python from Debian's
arm64 packages (ci/setup/aarch64_sysroot.sh) on this x86-64 host.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
import tempfile

import pytest

from backend.verify import emulate
from elftools.elf.elffile import ELFFile
from conftest import make_wheel
from backend.verify import smoke
from backend import cpu_isa
from standin_helpers import find_nvcc, runtime_links, standin_runtime_requirements, standin_tree

FIXTURES = Path(__file__).parent / "fixtures" / "emulate"
QEMU_X86 = shutil.which("qemu-x86_64")
QEMU_ARM = shutil.which("qemu-aarch64")
CROSS_CC = shutil.which("aarch64-linux-gnu-gcc")
SYSROOT = Path(os.environ.get("VLLM_STACK_AARCH64_SYSROOT", "/opt/vllm-stack/aarch64-sysroot"))
pytestmark = pytest.mark.skipif(QEMU_X86 is None, reason="needs qemu-user (ci/apt/emulate.txt)")
needs_arm = pytest.mark.skipif(
    QEMU_ARM is None or CROSS_CC is None or not (SYSROOT / "usr" / "bin").is_dir(),
    reason="needs qemu-aarch64, g++-aarch64-linux-gnu and the aarch64 sysroot (ci/setup/aarch64_sysroot.sh)")


def symbol_address(library: Path, name: str) -> int:
    with library.open("rb") as handle:
        symbols = ELFFile(handle).get_section_by_name(".symtab")
        return next(s["st_value"] for s in symbols.iter_symbols() if s.name == name)


@pytest.fixture(scope="module")
def x86_libs(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("x86")
    libs = {}
    for name, defines in (("normal", ["-DNORMAL_PATH"]), ("dispatched", [])):
        libs[name] = out / f"lib{name}.so"
        subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-mavx", *defines, "-o", str(libs[name]),
                        str(FIXTURES / "x86_kernels.c")], check=True)
    return libs


@pytest.fixture(scope="module")
def arm_libs(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("arm")
    armv8_2 = "-march=armv8.2-a+fp16+dotprod"
    kernel = out / "sve2.o"
    subprocess.run([CROSS_CC, "-O2", "-fPIC", "-c", "-frecord-gcc-switches", f"{armv8_2}+sve2", "-DSVE2_UNIT",
                    "-o", str(kernel), str(FIXTURES / "arm_dispatch.c")], check=True)
    libs = {}
    for name, defines in (("normal", ["-DNORMAL_PATH"]), ("dispatched", [])):
        libs[name] = out / f"lib{name}.so"
        subprocess.run([CROSS_CC, "-O2", "-shared", "-fPIC", "-frecord-gcc-switches", armv8_2, *defines,
                        "-o", str(libs[name]), str(FIXTURES / "arm_dispatch.c"), str(kernel)], check=True)
    return libs


def emulate_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith("emulate: ")]


def chosen(isa: str, library: Path, work: Path, sysroot: Path | None = None) -> str:
    """Which kernel the library's load-time dispatch ran on the ISA's emulated CPU."""
    work.mkdir(parents=True, exist_ok=True)
    python = emulate.emulated_python(isa, work, sysroot)
    code = f"import ctypes; print(ctypes.c_char_p.in_dll(ctypes.CDLL({str(library)!r}), 'chosen_kernel').value.decode())"
    result = python.run(["-I", "-S", "-c", code], cwd=work)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


# ---- x86: avx and avx2 ----------------------------------------------------------------------------------

def test_avx_library_with_avx2_on_its_normal_path_fails(run_backend, x86_libs):
    result = run_backend("verify", "--emulate", str(x86_libs["normal"]), "-C", "isa=avx")
    assert result.returncode == 1, result.stdout + result.stderr
    lines = emulate_lines(result)
    assert lines[0].startswith("emulate: avx on QEMU's SandyBridge: 0/1 libraries loaded, 1 failed"), lines
    address = symbol_address(x86_libs["normal"], "kernel_avx2")
    assert lines[1] == (f"emulate: FAIL: libnormal.so: illegal instruction on QEMU's SandyBridge (avx): "
                        f"vpaddd ymm0,ymm0,ymm0 (AVX2) at libnormal.so+{address:#x}"), lines
    assert "Traceback" not in result.stderr
    assert "verification: 1 checked, 0 errors, 1 warning -> ok" in result.stdout   # the scan alone only warns


def test_avx_library_with_avx2_behind_cpuid_passes(run_backend, x86_libs, tmp_path):
    result = run_backend("verify", "--emulate", str(x86_libs["dispatched"]), "-C", "isa=avx")
    assert result.returncode == 0, result.stdout + result.stderr
    assert emulate_lines(result)[0].startswith("emulate: avx on QEMU's SandyBridge: 1/1 libraries loaded, 0 failed")
    # the scan alone cannot tell: it sees the AVX2 kernel and can only warn
    assert "code beyond the variant's avx: avx2" in result.stdout
    # the pass is not vacuous: the library asked cpuid and took its AVX kernel there, its AVX2 one on Haswell
    assert chosen("avx", x86_libs["dispatched"], tmp_path / "sandy") == "avx"
    assert chosen("avx2", x86_libs["dispatched"], tmp_path / "haswell") == "avx2"


def test_avx2_runs_on_haswell(x86_libs):
    outcome = emulate.verify([x86_libs["normal"], x86_libs["dispatched"]], "avx2")
    assert outcome.ok and outcome.loaded == 2 and outcome.model.cpu == "Haswell-noTSX", outcome.lines()


@pytest.mark.parametrize("isa", ["avx", "avx2"])
def test_cpuid_and_proc_cpuinfo_agree_under_emulation(isa, x86_libs, tmp_path):
    """What detection code reads: cpuid (emulated by QEMU) and /proc/cpuinfo (the host's in QEMU 7.2 user
    mode, replaced through the -L prefix) say the same CPU, and it is the model's, not this host's."""
    python = emulate.emulated_python(isa, tmp_path)
    code = (f"import ctypes; lib = ctypes.CDLL({str(x86_libs['dispatched'])!r}); lib.cpu_features.restype = ctypes.c_char_p;"
            "print(lib.cpu_features().decode());"
            "print(next(l for l in open('/proc/cpuinfo') if l.startswith('flags')).split(':', 1)[1].strip())")
    result = python.run(["-I", "-S", "-c", code], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    cpuid, cpuinfo = (set(line.split()) for line in result.stdout.splitlines())
    tracked = {"sse4_2", "popcnt", "aes", "pclmulqdq", "avx", "f16c", "fma", "avx2", "bmi1", "bmi2", "movbe", "avx512f"}
    assert cpuid == cpuinfo & tracked, (cpuid, cpuinfo)
    assert ("avx2" in cpuid) == (isa == "avx2") and "avx" in cpuid and "avx512f" not in cpuid


def test_failure_names_the_wheel_and_its_library(run_backend, x86_libs, tmp_path):
    wheel = tmp_path / "standin_kernels-1.0+cu130.sm90.avx-cp311-cp311-linux_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.write(x86_libs["dispatched"], "standin_kernels/libdispatched.so")
        archive.write(x86_libs["normal"], "standin_kernels/lib/libnormal.so")
    result = run_backend("verify", "--emulate", str(wheel), "-C", "isa=avx", "--json")
    assert result.returncode == 1, result.stderr
    data = json.loads(result.stdout)["emulate"]
    assert data["libraries"] == 2 and data["loaded"] == 1 and not data["ok"], data
    [finding] = data["findings"]
    assert finding["wheel"] == wheel.name and finding["library"] == "standin_kernels/lib/libnormal.so"
    assert finding["text"].startswith(f"{wheel.name}: standin_kernels/lib/libnormal.so: illegal instruction"), finding


def test_real_numpy_sees_the_emulated_cpu_and_its_dispatched_kernels_run(tmp_path):
    """A real dispatching library (numpy from PyPI: its own SIMD kernels up to AVX-512 chosen at run time, and
    OpenBLAS with DYNAMIC_ARCH) on SandyBridge: its CPU detection reports AVX and nothing newer, and sorting,
    summing and a BLAS dot product run without an illegal instruction."""
    numpy = pytest.importorskip("numpy")
    python = emulate.emulated_python("avx", tmp_path)
    code = ("import numpy as np; from numpy._core._multiarray_umath import __cpu_features__ as found;"
            "print(' '.join(sorted(k for k, v in found.items() if v and k.startswith(('AVX', 'FMA', 'F16C')))));"
            "a = np.arange(50000, dtype=np.float64)[::-1] / 7; print(np.sort(a)[0], a.sum(), a @ a)")
    result = python.run(["-c", code], cwd=tmp_path)
    assert python.explain(result.returncode) is None and result.returncode == 0, result.stderr[-2000:]
    features, numbers = result.stdout.splitlines()
    assert features == "AVX", features
    a = numpy.arange(50000, dtype=numpy.float64)[::-1] / 7
    # the same numbers as natively (summation order may differ between the SandyBridge and this CPU's kernels)
    assert numpy.allclose([float(x) for x in numbers.split()], [numpy.sort(a)[0], a.sum(), a @ a], rtol=1e-12)


# ---- aarch64: armv8_2 on this x86-64 host -----------------------------------------------------------------

@needs_arm
def test_armv8_2_library_with_sve2_on_its_normal_path_fails(run_backend, arm_libs):
    result = run_backend("verify", "--emulate", str(arm_libs["normal"]), "-C", "isa=armv8_2",
                         "-C", f"emulate-sysroot={SYSROOT}")
    assert result.returncode == 1, result.stdout + result.stderr
    lines = emulate_lines(result)
    address = symbol_address(arm_libs["normal"], "kernel_sve2")
    assert lines[1] == (f"emulate: FAIL: libnormal.so: illegal instruction on QEMU's neoverse-n1 (armv8_2): "
                        f"sqrdmlah z0.s, z1.s, z2.s (SVE2) at libnormal.so+{address:#x}"), lines
    # the scan alone passes it (a compile record asks for SVE2: a dispatched kernel, as far as it can tell)
    assert "verification: 1 checked, 0 errors, 1 warning -> ok" in result.stdout, result.stdout


@needs_arm
def test_armv8_2_library_with_sve2_behind_hwcap_passes(run_backend, arm_libs, tmp_path):
    # no -C emulate-sysroot: the one ci/setup/aarch64_sysroot.sh made is found where it puts it
    result = run_backend("verify", "--emulate", str(arm_libs["dispatched"]), "-C", "isa=armv8_2",
                         env={"VLLM_STACK_AARCH64_SYSROOT": str(SYSROOT)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert emulate_lines(result)[0].startswith("emulate: armv8_2 on QEMU's neoverse-n1: 1/1 libraries loaded, 0 failed")
    # the scan sees the same SVE2 kernel and compile records as in the failing library: it can only warn
    assert "SVE2" in result.stdout and "warning cpu" in result.stdout
    assert chosen("armv8_2", arm_libs["dispatched"], tmp_path, SYSROOT) == "neon"


@needs_arm
def test_hwcaps_and_proc_cpuinfo_agree_under_emulation(arm_libs, tmp_path):
    """aarch64 detection reads getauxval(AT_HWCAP/AT_HWCAP2) and MIDR_EL1 (QEMU's model) and /proc/cpuinfo
    (the -L prefix's): they agree."""
    python = emulate.emulated_python("armv8_2", tmp_path, SYSROOT)
    code = ("import ctypes, platform; libc = ctypes.CDLL(None); libc.getauxval.restype = ctypes.c_ulong;"
            "print(platform.machine(), libc.getauxval(16), libc.getauxval(26));"
            "print(next(l for l in open('/proc/cpuinfo') if l.startswith('Features')).split(':', 1)[1].strip());"
            f"lib = ctypes.CDLL({str(arm_libs['dispatched'])!r}); lib.read_midr.restype = ctypes.c_ulong;"
            "print(lib.read_midr());"
            "pairs = (l.split(':', 1) for l in open('/proc/cpuinfo').read().split('\\n\\n')[0].splitlines());"
            "fields = {k.strip(): v.strip() for k, v in pairs};"
            "print(*(int(fields[f'CPU {k}'], 0) for k in ('implementer', 'variant', 'part', 'revision')))")
    result = python.run(["-I", "-S", "-c", code], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    first, features, midr, described = result.stdout.splitlines()
    midr = int(midr)
    assert [int(x) for x in described.split()] == [midr >> 24, midr >> 20 & 0xF, midr >> 4 & 0xFFF, midr & 0xF], \
        (hex(midr), described)
    machine, hwcap, hwcap2 = first.split()
    assert machine == "aarch64"
    # bits of Linux's arch/arm64/include/uapi/asm/hwcap.h
    bits = {"fp": 0, "asimd": 1, "aes": 3, "pmull": 4, "sha1": 5, "sha2": 6, "crc32": 7, "atomics": 8, "fphp": 9,
            "asimdhp": 10, "cpuid": 11, "asimdrdm": 12, "lrcpc": 15, "dcpop": 16, "asimddp": 20, "sve": 22, "ssbs": 28}
    from_hwcap = {name for name, bit in bits.items() if int(hwcap) >> bit & 1}
    assert from_hwcap == set(features.split()) & bits.keys(), (from_hwcap, features)
    assert {"asimddp", "asimdhp"} <= from_hwcap and "sve" not in from_hwcap and int(hwcap2) & 2 == 0


# ---- what is not emulated, and bad input: one line each --------------------------------------------------

@pytest.mark.parametrize("isa, line", [
    ("avx512", "emulate: avx512: QEMU cannot emulate AVX-512 (its TCG does not execute it), the scan's verdict stands"),
    ("avx512bf16", "emulate: avx512bf16: QEMU cannot emulate AVX-512 (its TCG does not execute it), the scan's verdict stands"),
    ("armv9", "emulate: armv9: QEMU 7.2 has no Armv9-exact CPU model (only max, a superset with SME and more), "
              "the scan's verdict stands"),
])
def test_isas_qemu_cannot_emulate_say_so_in_one_line(run_backend, x86_libs, isa, line):
    result = run_backend("verify", "--emulate", str(x86_libs["normal"]), "-C", f"isa={isa}")
    assert emulate_lines(result) == [line], result.stdout
    assert result.returncode in (0, 1) and "Traceback" not in result.stderr


def test_without_qemu_emulate_says_how_to_install_it(x86_libs, tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))   # no qemu-x86_64 anywhere on PATH
    result = subprocess.run([sys.executable, "-m", "backend", "verify", "--emulate", str(x86_libs["normal"]),
                             "-C", "isa=avx"], cwd=Path(__file__).resolve().parent.parent, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr == ("error: --emulate needs qemu-x86_64, which is not installed: install QEMU's user-mode "
                             "emulation: apt-get install qemu-user (Debian, Ubuntu), dnf install qemu-user (Fedora)\n")


def test_emulate_needs_an_isa_and_arm_needs_a_sysroot(run_backend, x86_libs, tmp_path):
    result = run_backend("verify", "--emulate", str(x86_libs["normal"]))
    assert result.returncode == 2 and result.stderr == "error: --emulate needs the variant's CPU: pass -C isa=...\n"
    result = run_backend("verify", "--emulate", str(x86_libs["normal"]), "-C", "isa=armv8_2",
                         env={"VLLM_STACK_AARCH64_SYSROOT": str(tmp_path / "none")})   # nor where the script puts one
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: setting 'emulate-sysroot': --emulate for armv8_2 needs an aarch64 root")
    result = run_backend("verify", "--emulate", str(x86_libs["normal"]), "-C", "isa=armv8_2",
                         "-C", f"emulate-sysroot={tmp_path}")
    assert result.returncode == 2 and result.stderr.startswith(
        f"error: setting 'emulate-sysroot': bad value '{tmp_path}'; accepted: an aarch64 root filesystem"), result.stderr


# ---- -C smoke=emulate: the smoke check's interpreter runs as the variant's CPU -----------------------------

def kernels_wheel(house: Path, library: Path) -> Path:
    """A wheel whose package loads its CPU library with ctypes at import, as bitsandbytes' cextension does."""
    init = (b"import ctypes, pathlib\n"
            b"LIB = ctypes.CDLL(str(pathlib.Path(__file__).parent / 'libkernels.so'))\n"
            b"def chosen():\n    return ctypes.c_char_p.in_dll(LIB, 'chosen_kernel').value.decode()\n")
    return make_wheel(house, "standin-kernels", "1.0", {"standin_kernels/__init__.py": init,
                                                        "standin_kernels/libkernels.so": library.read_bytes()})


@pytest.mark.parametrize("kind", ["normal", "dispatched"])
def test_smoke_emulate_runs_the_checks_on_the_variants_cpu(kind, x86_libs, tmp_path):
    house = tmp_path / "house"
    house.mkdir()
    wheel = kernels_wheel(house, x86_libs[kind])
    check = ("standin-kernels (CPU)", "import standin_kernels\nprint(standin_kernels.chosen())\n")
    said: list[str] = []
    result = smoke.run(house, [wheel], [], [check], work=tmp_path / "smoke", no_index=True, say=said.append,
                       emulation=emulate.smoke_launcher("avx"))
    if kind == "dispatched":
        assert result.ok, result.problems
        assert said == ["   smoke | standin-kernels (CPU): avx"]   # the AVX kernel: cpuid said SandyBridge
        return
    address = symbol_address(x86_libs["normal"], "kernel_avx2")
    instruction = (f"{wheel.name}: standin_kernels/libkernels.so: illegal instruction on QEMU's SandyBridge (avx): "
                   f"vpaddd ymm0,ymm0,ymm0 (AVX2) at libkernels.so+{address:#x}")
    assert result.problems == [f"the import check died at standin_kernels (standin-kernels): {instruction}",
                               f"standin-kernels (CPU): {instruction}"], result.problems


# ---- real code: bitsandbytes 0.49.1's CPU library ------------------------------------------------------

BNB_MIRROR = Path("/work/.mirror/bitsandbytes-foundation+bitsandbytes/repo")   # as tests/test_nar.py


def build_bitsandbytes_cpu(tree: Path, work: Path, flags: list[str], *, cross: bool = False,
                           patch: bool = False) -> Path:
    """libbitsandbytes_cpu.so of the 0.49.1 tree (COMPUTE_BACKEND=cpu), compiled with ``flags``."""
    source = work / "src"
    shutil.copytree(tree, source)
    if patch:
        subprocess.run(["patch", "-p1", "-s", "-d", str(source), "-i",
                        str(FIXTURES / "bitsandbytes-cpu-variant-isa.patch")], check=True)
    cross_args = (["-DCMAKE_SYSTEM_NAME=Linux", "-DCMAKE_SYSTEM_PROCESSOR=aarch64",
                   f"-DCMAKE_C_COMPILER={CROSS_CC}", "-DCMAKE_CXX_COMPILER=aarch64-linux-gnu-g++"] if cross else [])
    subprocess.run(["cmake", "-S", str(source), "-B", str(work / "build"), "-G", "Ninja", "-DCOMPUTE_BACKEND=cpu",
                    f"-DCMAKE_CXX_FLAGS={' '.join(flags)} -frecord-gcc-switches", *cross_args],
                   check=True, capture_output=True)
    subprocess.run(["ninja", "-C", str(work / "build")], check=True, capture_output=True)
    return source / "bitsandbytes" / "libbitsandbytes_cpu.so"


@pytest.fixture(scope="module")
def bnb_tree(tmp_path_factory) -> Path:
    if not (BNB_MIRROR / "HEAD").is_file():
        pytest.skip("no local git mirror of bitsandbytes (fetch github:bitsandbytes-foundation/bitsandbytes)")
    tree = tmp_path_factory.mktemp("bnb") / "bitsandbytes-0.49.1"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(BNB_MIRROR), "archive", "0.49.1"], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


def blockwise_op(isa: str, library: Path, work: Path, sysroot: Path | None = None) -> str:
    """bitsandbytes' CPU smoke op on the ISA's emulated CPU: its output, or the one-line illegal instruction."""
    work.mkdir(parents=True, exist_ok=True)
    python = emulate.emulated_python(isa, work, sysroot)
    result = python.run(["-I", "-S", str(FIXTURES / "bnb_blockwise.py"), str(library)], cwd=work)
    if (fault := python.explain(result.returncode)) is not None:
        return emulate.fault_text(python.model, fault)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.slow
@pytest.mark.parametrize("isa", ["avx", "avx2"])
def test_bitsandbytes_cpu_library_runs_on_its_isa(isa, bnb_tree, tmp_path):
    flags = list(cpu_isa.get(isa).flags)
    library = build_bitsandbytes_cpu(bnb_tree, tmp_path / "patched", flags, patch=True)
    outcome = emulate.verify([library], isa)
    assert outcome.ok and outcome.loaded == 1, outcome.lines()
    assert blockwise_op(isa, library, tmp_path / "op").startswith("blockwise 8-bit round trip, max error")


@pytest.mark.slow
def test_bitsandbytes_cpu_library_as_upstream_builds_it_dies_on_avx(bnb_tree, tmp_path):
    """Upstream's CMakeLists adds -mavx2 -mfma ... to the CPU backend: it loads on a Sandy Bridge (nothing runs
    at load), the scan only warns, and its quantization dies of an AVX2 instruction: the op-level check finds it."""
    library = build_bitsandbytes_cpu(bnb_tree, tmp_path / "upstream", ["-mavx"])
    assert emulate.verify([library], "avx").ok
    said = blockwise_op("avx", library, tmp_path / "op")
    assert re.fullmatch(r"illegal instruction on QEMU's SandyBridge \(avx\): \S.* \((AVX2|FMA|BMI1|BMI2|AVX512\w*)\) "
                        r"at libbitsandbytes_cpu\.so\+0x[0-9a-f]+", said), said
    # and as upstream builds it for avx2 (its own flags are AVX2 ones; AVX-512 only behind has_avx512f()) it runs
    upstream_avx2 = build_bitsandbytes_cpu(bnb_tree, tmp_path / "upstream-avx2", ["-mavx2", "-mfma", "-mf16c"])
    assert blockwise_op("avx2", upstream_avx2, tmp_path / "op2").startswith("blockwise 8-bit round trip")


@pytest.mark.slow
@needs_arm
def test_bitsandbytes_cpu_library_cross_built_for_armv8_2_runs_on_neoverse_n1(bnb_tree, tmp_path):
    library = build_bitsandbytes_cpu(bnb_tree, tmp_path / "arm", list(cpu_isa.get("armv8_2").flags), cross=True)
    outcome = emulate.verify([library], "armv8_2", sysroot=SYSROOT)
    assert outcome.ok and outcome.loaded == 1, outcome.lines()
    assert blockwise_op("armv8_2", library, tmp_path / "op", SYSROOT).startswith("blockwise 8-bit round trip")


# ---- the stand-in stack, for every ISA QEMU emulates on this host ------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("isa", ["avx", "avx2"])
def test_standin_stack_passes_on_the_emulated_cpu_of_its_isa(isa, tmp_path):
    """torch, torchvision, torchaudio, xformers, flashinfer and bitsandbytes stand-ins built for the ISA through
    the pipeline: -C smoke=emulate runs the imports and every component's CPU op under QEMU as the ISA's CPU,
    and verify --emulate loads every library of the wheelhouse there."""

    nvcc = find_nvcc()
    if nvcc is None:
        pytest.skip("needs a CUDA 13 nvcc")
    links = runtime_links(Path(tempfile.mkdtemp(prefix="standin-links-", dir=tmp_path)), standin_runtime_requirements())
    components = "torch,torchvision,torchaudio,xformers,flashinfer,bitsandbytes"
    pairs = {"sm": "90", "isa": isa, "cuda": "13.0", "components": components, "cache-dir": str(tmp_path / "cache"),
             "wheelhouse": str(tmp_path / "wheelhouse"), "jobs": "2", "runtime-find-links": str(links),
             "smoke": "emulate", "build-requirements": "ranges", "free-disk-gb": "1",
             **{f"source.{c}": str(standin_tree(c)) for c in components.split(",")}}
    args = [arg for key, value in pairs.items() for arg in ("-C", f"{key}={value}")]
    env = dict(os.environ, PATH=f"{Path(nvcc).parent}{os.pathsep}{os.environ['PATH']}")
    root = Path(__file__).resolve().parent.parent
    built = subprocess.run([sys.executable, "-m", "backend", "build", *args], cwd=root, env=env,
                           capture_output=True, text=True, timeout=900)
    assert built.returncode == 0, built.stderr[-3000:]
    cpu = emulate.model_for(isa).cpu
    assert f"CPU checks under QEMU as {cpu})" in built.stderr and "smoke check: ok" in built.stderr, built.stderr[-3000:]
    [house] = (tmp_path / "wheelhouse").glob("vllm-*")
    checked = subprocess.run([sys.executable, "-m", "backend", "verify", "--emulate", str(house), "-C", f"isa={isa}",
                              "-C", "sm=90", "-C", "cuda=13.0"], cwd=root, env=env, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-2000:]
    [summary] = [line for line in checked.stdout.splitlines() if line.startswith(f"emulate: {isa} on")]
    loaded, total = re.search(r"(\d+)/(\d+) libraries loaded, 0 failed", summary).groups()
    assert loaded == total and int(total) >= 6, summary


def test_smoke_emulate_on_an_isa_qemu_cannot_emulate_says_so_and_runs_natively():
    said: list[str] = []
    assert smoke.emulation_for("avx512vnni", None, said.append) is None
    assert said == ["smoke check: avx512vnni: QEMU cannot emulate AVX-512 (its TCG does not execute it), the scan's "
                    "verdict stands; the CPU checks run natively"]
    assert callable(smoke.emulation_for("avx", None, said.append)) and len(said) == 1
