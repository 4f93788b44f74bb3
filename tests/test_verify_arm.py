"""AArch64 objects: e_machine, compile records and SVE/SVE2 instructions, on objects Debian's cross compiler builds here.

The seed's ARM ISAs: armv8_2 (-march=armv8.2-a+fp16+dotprod, no SVE) and
armv9 (-march=armv9-a+sve2+bf16+i8mm).  A wheel for armv8_2 that carries SVE2
code dies with SIGILL on the CPUs it is for, so that is refused.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import pytest

from backend import cpu_isa
from backend.verify import Expectation, verify_paths, verify_wheel
from backend.verify import elf, isa_arm
from backend.verify.isa import march_brings
from backend.wheels import manylinux
from backend.wheels.relabel import relabel
from standin_helpers import standin_tree
from conftest import kept_unchanged, tag_wheels

FIXTURES = Path(__file__).parent / "fixtures" / "verify"
ROOT = Path(__file__).resolve().parent.parent
CC = shutil.which("aarch64-linux-gnu-gcc")
CXX = shutil.which("aarch64-linux-gnu-g++")
pytestmark = pytest.mark.skipif(CC is None or CXX is None, reason="needs g++-aarch64-linux-gnu (ci/apt/arm.txt)")

ARMV8_2 = list(cpu_isa.get("armv8_2").flags)
ARMV9 = list(cpu_isa.get("armv9").flags)


def compile_lib(out: Path, name: str, *units: tuple[list[str], list[str]]) -> Path:
    """A shared library from one or more compiles of the fixture: (flags, defines) per unit."""
    objects = []
    for index, (flags, defines) in enumerate(units):
        obj = out / f"{name}.{index}.o"
        subprocess.run([CC, "-O3", "-fPIC", "-c", "-frecord-gcc-switches", *flags, *defines,
                        f"-Daxpy=axpy{index}", "-o", str(obj), str(FIXTURES / "arm_kernels.c")], check=True)
        objects.append(str(obj))
    lib = out / f"lib{name}.so"
    subprocess.run([CC, "-shared", "-o", str(lib), *objects], check=True)
    return lib


@pytest.fixture(scope="module")
def libs(tmp_path_factory) -> Mapping[str, Path]:
    out = tmp_path_factory.mktemp("arm")
    built = {
        "armv8_2": compile_lib(out, "armv8_2", (ARMV8_2, [])),
        "armv9": compile_lib(out, "armv9", (ARMV9, [])),
        "armv8_2_sve2_asm": compile_lib(out, "armv8_2_sve2_asm", (ARMV8_2, ["-DWITH_SVE2_ASM"])),
        # the run-time dispatch pattern: base code plus one unit built for SVE on purpose
        "armv8_2_dispatch": compile_lib(out, "armv8_2_dispatch", (ARMV8_2, []),
                                        (["-march=armv8.2-a+fp16+dotprod+sve"], [])),
        # every unit overridden to armv9 after the variant's flags
        "armv8_2_overridden": compile_lib(out, "armv8_2_overridden", (ARMV8_2 + ARMV9, [])),
    }
    with kept_unchanged(out):
        yield MappingProxyType(built)


def errors(report, check: str) -> list[str]:
    return [p.message for p in report.errors if p.check == check]


def test_aarch64_objects_are_read_and_scanned(libs):
    report = verify_paths([libs["armv9"]], Expectation(isa="armv9"))
    obj = report.entries[0].objects[0]
    assert obj.machine == "aarch64"
    assert obj.flag_records == 1 and obj.flag_lacking == 0
    assert obj.isa_features.get("SVE", 0) >= 1        # the vectorised loop
    assert report.ok, report.format_table()


def test_plain_armv8_2_passes_and_has_no_sve(libs):
    report = verify_paths([libs["armv8_2"]], Expectation(isa="armv8_2"))
    assert report.ok, report.format_table()
    assert elf.read_object(libs["armv8_2"], scan_code=True).scan.features == {}


def test_sve2_code_in_an_armv8_2_build_is_refused(libs):
    report = verify_paths([libs["armv8_2_sve2_asm"]], Expectation(isa="armv8_2"))
    assert not report.ok
    [message] = errors(report, "cpu")
    assert "1 SVE2 instruction" in message and "armv8_2" in message and "no compile record asks" in message
    # its compile records look right: the flags check alone passed it
    assert not errors(report, "flags")
    # the same object is fine for armv9
    assert not errors(verify_paths([libs["armv8_2_sve2_asm"]], Expectation(isa="armv9")), "cpu")


def test_an_object_built_for_armv9_throughout_is_refused_for_armv8_2(libs):
    report = verify_paths([libs["armv8_2_overridden"]], Expectation(isa="armv8_2"))
    assert any("every compile record asks for it" in m for m in errors(report, "cpu"))


def test_dispatched_sve_kernels_are_a_warning(libs):
    report = verify_paths([libs["armv8_2_dispatch"]], Expectation(isa="armv8_2"))
    assert report.ok, report.format_table()
    warnings = [p.message for p in report.warnings if p.check == "cpu"]
    assert len(warnings) == 1 and "SVE instruction" in warnings[0] and "1 of 2 compile records" in warnings[0]


def test_aarch64_code_for_an_x86_variant_is_refused(libs):
    report = verify_paths([libs["armv9"]], Expectation(isa="avx512"))
    assert any("aarch64 code" in m for m in errors(report, "cpu"))


def test_extension_names():
    assert isa_arm.extension_of("AARCH64_FEATURE_HASSVEORSME") == "SVE"
    assert isa_arm.extension_of("AARCH64_FEATURE_HASSVE2ORSME") == "SVE2"
    assert isa_arm.extension_of("AARCH64_FEATURE_HASSVE2AES") == "SVE2-crypto"
    assert isa_arm.extension_of("AARCH64_FEATURE_HASSME") == "SME"
    assert isa_arm.extension_of("AARCH64_FEATURE_HASNEON") is None


# --- a stand-in component, cross-compiled for each ARM ISA ----------------------------------------------------------

def build_standin(tmp: Path, flags: list[str]) -> Path:
    """The bitsandbytes stand-in (CPU backend) built by pip and CMake with the cross compiler: linux_aarch64."""
    from standin_helpers import make_build_venv, pip_wheel, standin_tree

    python = make_build_venv(tmp.parent / "venv") if not (tmp.parent / "venv" / "bin" / "python").exists() \
        else tmp.parent / "venv" / "bin" / "python"
    tree = tmp / "src"
    shutil.copytree(standin_tree("bitsandbytes"), tree, ignore=shutil.ignore_patterns("build", "*.so"))
    env = dict(os.environ, CXX=CXX, CXXFLAGS=" ".join(flags + ["-frecord-gcc-switches"]),
               _PYTHON_HOST_PLATFORM="linux-aarch64")
    out = tmp / "dist"
    result = pip_wheel(python, tree, out, env, "-C", "cmake.define.COMPUTE_BACKEND=cpu",
                       "-C", "cmake.define.CMAKE_SYSTEM_NAME=Linux", "-C", "cmake.define.CMAKE_SYSTEM_PROCESSOR=aarch64")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [wheel] = out.glob("*.whl")
    assert wheel.name.endswith("-linux_aarch64.whl")
    return wheel


@pytest.mark.parametrize("isa, extra, ok", [
    ("armv9", [], True),
    ("armv8_2", [], True),
    ("armv8_2", ["-march=armv9-a+sve2"], False),   # the component's own -march after the variant's
])
def test_standin_component_for_arm(tmp_path_factory, isa, extra, ok):
    tmp = tmp_path_factory.mktemp(f"standin-{isa}")
    built = build_standin(tmp, list(cpu_isa.get(isa).flags) + extra)
    label = f"cu129.sm90.{isa}"
    staged = relabel(built, tmp / "staged", version=f"0.49.1+{label}")
    [tagged] = tag_wheels([staged], "aarch64", None, manylinux.external_patterns())
    assert tagged.name.endswith("_aarch64.whl") and "manylinux_2_17_aarch64" in tagged.name, tagged.name
    report = verify_wheel(tagged, Expectation(isa=isa, label=label))
    assert report.ok is ok, report.format_table()
    if not ok:
        assert any("SVE" in p.message and isa in p.message for p in report.errors)
    # and through the command line, as a user would
    cli = subprocess.run([sys.executable, "-m", "backend", "verify", str(tagged), "-C", f"isa={isa}", "--json"],
                         cwd=ROOT, capture_output=True, text=True)
    assert cli.returncode == (0 if ok else 1), cli.stderr
    assert json.loads(cli.stdout)["ok"] is ok


@pytest.mark.parametrize("march, isa, brings", [
    ("armv8.2-a+fp16+dotprod", "armv8_2", True),
    ("armv8.2-a+fp16+dotprod+sve", "armv8_2", True),     # GCC records only the last -march
    ("armv8.2-a+sve", "armv8_2", False),                 # no dotprod
    ("armv8.4-a+fp16", "armv8_2", True),                 # dotprod is mandatory from 8.4
    ("armv9-a+sve2+bf16+i8mm", "armv9", True),
    ("armv9-a", "armv9", False),                         # bf16 and i8mm only from 9.1
    ("armv9-a", "armv8_2", True),                        # 9.0 includes 8.5 (dotprod); SVE brings fp16 in GCC
    ("armv8.6-a+sve2", "armv9", False),                  # below armv9
])
def test_arm_march_rules(march, isa, brings):
    assert march_brings(march, cpu_isa.get(isa).flags[0]) is brings
