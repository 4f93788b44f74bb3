"""CPU code: x86 extensions seen by iced-x86 and the -frecord-gcc-switches check, on objects gcc builds here."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import pytest

from backend import cpu_isa
from backend.verify import Expectation, verify_paths
from backend.verify import elf, isa
from conftest import kept_unchanged

FIXTURES = Path(__file__).parent / "fixtures" / "verify"
GCC = shutil.which("gcc")
pytestmark = pytest.mark.skipif(GCC is None or __import__("platform").machine() != "x86_64", reason="needs gcc on x86_64")

BUILDS = {
    "plain": [],
    "avx2": list(cpu_isa.get("avx2").flags),
    "avx512": list(cpu_isa.get("avx512").flags) + ["-DWITH_AVX512_INTRINSICS"],
    "avx512bf16": list(cpu_isa.get("avx512bf16").flags) + ["-DWITH_BF16"],
}


@pytest.fixture(scope="session")
def cpu_objects(tmp_path_factory) -> Mapping[str, Path]:
    out = tmp_path_factory.mktemp("cpu")
    built = {}
    for name, flags in BUILDS.items():
        target = out / f"lib{name}.so"
        subprocess.run([GCC, "-O3", "-fPIC", "-shared", "-frecord-gcc-switches", *flags, "-o", str(target),
                        str(FIXTURES / "simd.c")], check=True)
        built[name] = target
    # one library from two compiles: one with the avx2 flags, one without
    obj_a, obj_b = out / "a.o", out / "b.o"
    subprocess.run([GCC, "-O3", "-fPIC", "-c", "-frecord-gcc-switches", *BUILDS["avx2"], "-o", str(obj_a), str(FIXTURES / "simd.c")], check=True)
    subprocess.run([GCC, "-O2", "-fPIC", "-c", "-frecord-gcc-switches", "-Daxpy=axpy_plain", "-o", str(obj_b), str(FIXTURES / "simd.c")], check=True)
    built["mixed"] = out / "libmixed.so"
    subprocess.run([GCC, "-shared", "-o", str(built["mixed"]), str(obj_a), str(obj_b)], check=True)
    built["unrecorded"] = out / "libunrecorded.so"
    subprocess.run([GCC, "-O3", "-fPIC", "-shared", "-mavx2", "-o", str(built["unrecorded"]), str(FIXTURES / "simd.c")], check=True)
    with kept_unchanged(out):
        yield MappingProxyType(built)


def test_highest_isa(cpu_objects):
    seen = {name: elf.read_object(path, scan_code=True).scan.highest for name, path in cpu_objects.items() if name in BUILDS}
    assert seen == {"plain": "x86-64", "avx2": "avx2", "avx512": "avx512", "avx512bf16": "avx512bf16"}
    bf16 = elf.read_object(cpu_objects["avx512bf16"], scan_code=True).scan
    assert bf16.features["AVX512_BF16"] >= 1 and bf16.features["AVX512F"] >= 1
    assert bf16.instructions > 10


def test_code_beyond_the_variant_is_a_warning_with_feature_and_count(cpu_objects):
    report = verify_paths([cpu_objects["avx512"]], Expectation(isa="avx2"))
    assert not report.errors or all(p.check == "flags" for p in report.errors)
    warnings = [p for p in report.warnings if p.check == "cpu"]
    assert len(warnings) == 1 and "avx512f (" in warnings[0].message and "instructions" in warnings[0].message
    assert report.entries[0].objects[0].isa_beyond["AVX512F"] >= 1
    assert "run-time dispatch" in report.format_table()
    # at its own ISA nothing is reported
    assert verify_paths([cpu_objects["avx512"]], Expectation(isa="avx512")).problems == []
    assert verify_paths([cpu_objects["avx512bf16"]], Expectation(isa="avx512bf16")).problems == []
    bf16_on_avx512 = verify_paths([cpu_objects["avx512bf16"]], Expectation(isa="avx512"))
    assert "avx512_bf16" in bf16_on_avx512.warnings[0].message


def test_flags_not_applied_is_a_failure(cpu_objects):
    plain = verify_paths([cpu_objects["plain"]], Expectation(isa="avx2"))
    assert not plain.ok and plain.errors[0].check == "flags" and "-mavx2" in plain.errors[0].message
    assert verify_paths([cpu_objects["avx2"]], Expectation(isa="avx2")).ok
    # built with another variant's flags (no -mavx2 -mf16c): not this variant's build
    assert not verify_paths([cpu_objects["avx512"]], Expectation(isa="avx2")).ok
    mixed = verify_paths([cpu_objects["mixed"]], Expectation(isa="avx2"))
    assert not mixed.ok and "1 of 2" in mixed.errors[0].message
    assert mixed.entries[0].objects[0].flag_records == 2
    # no record: nothing to check, no failure
    unrecorded = verify_paths([cpu_objects["unrecorded"]], Expectation(isa="avx512"))
    assert unrecorded.ok and unrecorded.entries[0].objects[0].flag_records is None


def test_avx512_flags_mean_more_than_avx512f(cpu_objects):
    # the avx512 record lacks -mavx512bf16: not applied for the bf16 variant
    report = verify_paths([cpu_objects["avx512"]], Expectation(isa="avx512bf16"))
    assert any(p.check == "flags" for p in report.errors)


def test_compile_record_rules():
    flags = " ".join(cpu_isa.get("avx512").flags)
    assert isa.flags_applied(f"GNU C17 12.2.0 {flags} -mtune=generic -march=x86-64 -O2", "avx512")
    assert not isa.flags_applied(f"GNU C17 12.2.0 {flags} -mno-avx512f -O2", "avx512")
    assert isa.flags_applied("GNU C++17 12.2.0 -march=sapphirerapids -O2", "avx512bf16")
    assert isa.flags_applied("GNU C++17 12.2.0 -march=x86-64-v3 -O2", "avx2")
    assert not isa.flags_applied("GNU C++17 12.2.0 -march=x86-64-v3 -O2", "avx512")
    assert isa.flags_applied("GNU C17 12.2.0 -march=armv8.2-a+fp16+dotprod -O2", "armv8_2")
    assert isa.is_compile_record("GNU C++17 12.2.0 -O2")
    assert not isa.is_compile_record("GNU GIMPLE 12.2.0 -O2")
    check = isa.check_flags(["GNU C17 12.2.0 -mavx2 -mfma -mf16c", "GNU C17 12.2.0 -O2", "GNU GIMPLE 12.2.0"], "avx2")
    assert check.records == 2 and len(check.lacking) == 1


def test_allowed_features_are_cumulative():
    assert "AVX2" in isa.allowed_features("avx512") and "AVX512F" not in isa.allowed_features("avx2")
    assert "AVX512_VNNI" in isa.allowed_features("avx512bf16")
    assert "AVX512_BF16" not in isa.allowed_features("avx512vnni")


def test_scan_bytes_counts_known_instructions():
    # vaddps zmm0, zmm1, zmm2 (EVEX) then ret
    scan = isa.scan_bytes(bytes.fromhex("62f1744858c2c3"))
    assert scan.features == {"AVX512F": 1} and scan.instructions == 2 and scan.highest == "avx512"


def test_rep_bsf_is_not_bmi1():
    # tzcnt eax, eax is `rep bsf`: GCC emits it for __builtin_ctz on any x86-64 (it runs as bsf without BMI1)
    assert isa.scan_bytes(bytes.fromhex("f30fbcc0c3")).features == {}
