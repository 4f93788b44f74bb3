"""GPU code listing and variant rules on objects compiled here by nvcc 13, cross-checked with cuobjdump."""

from __future__ import annotations

import collections
import concurrent.futures
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import pytest

from backend.verify import Expectation, verify_paths
from backend.verify import elf, fatbin
from standin_helpers import find_cuobjdump
from backend.cuda_target import CudaTarget
from conftest import kept_unchanged

FIXTURES = Path(__file__).parent / "fixtures" / "verify"
NVCC = Path(os.environ.get("NVCC", "/usr/local/cuda-13.0/bin/nvcc"))

CASES = {
    "sm90": ["-gencode", "arch=compute_90,code=sm_90"],
    "multi_ptx": ["-gencode", "arch=compute_80,code=sm_80", "-gencode", "arch=compute_90,code=[sm_90,compute_90]"],
    "compressed": ["-gencode", "arch=compute_90,code=sm_90", "-gencode", "arch=compute_100,code=sm_100",
                   "-Xfatbin", "-compress-all"],
    "lz4": ["-gencode", "arch=compute_120,code=sm_120", "-Xfatbin", "-compress-all", "-Xfatbin", "-compress-mode=speed"],
    "arch_a": ["-gencode", "arch=compute_90a,code=sm_90a"],
    "family_f": ["-gencode", "arch=compute_100f,code=sm_100f"],
    "rdc": ["-rdc=true", "-gencode", "arch=compute_90,code=[sm_90,compute_90]"],
    "own_ptx_only": ["-gencode", "arch=compute_90,code=compute_90"],
    "lower_ptx": ["-gencode", "arch=compute_90,code=sm_90", "-gencode", "arch=compute_80,code=compute_80"],
    "higher_ptx": ["-gencode", "arch=compute_90,code=sm_90", "-gencode", "arch=compute_100,code=compute_100"],
}


@pytest.fixture(scope="session")
def cuda_objects(tmp_path_factory) -> Mapping[str, Path]:
    if not NVCC.exists():
        pytest.skip(f"nvcc not found at {NVCC} (set NVCC=...); the GPU listing tests need CUDA 13")
    out = tmp_path_factory.mktemp("cuda")

    def build(name: str) -> Path:
        target = out / f"lib{name}.so"
        subprocess.run([str(NVCC), "-shared", "-Xcompiler", "-fPIC", "-o", str(target), str(FIXTURES / "kernel.cu"),
                        *CASES[name]], check=True, capture_output=True)
        return target

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        built = dict(zip(CASES, pool.map(build, CASES)))
    with kept_unchanged(out):
        yield MappingProxyType(built)


def _sections(path: Path) -> dict[str, fatbin.Section]:
    return {s.name: s for s in elf.read_object(path).gpu}


def _cuobjdump_names(tool: str, path: Path, what: str, everything: bool = False) -> collections.Counter:
    command = [tool, *(["-all"] if everything else []), f"--list-{what}", str(path)]
    text = subprocess.run(command, capture_output=True, text=True).stdout
    return collections.Counter(re.findall(r"\.(sm_\d+[af]?)\.(?:cubin|ptx)$", text, re.M))


def _ours(entries: list[fatbin.Entry]) -> collections.Counter:
    # cuobjdump writes a family cubin sm_100f as sm_100 and PTX compute_90 as sm_90.
    return collections.Counter(f"sm_{e.sm}{e.suffix if e.suffix == 'a' else ''}" for e in entries)


@pytest.mark.parametrize("case", sorted(CASES))
def test_listing_matches_cuobjdump(cuda_objects, case):
    tool = find_cuobjdump(str(NVCC) if NVCC.exists() else None)
    if tool is None:
        pytest.skip("cuobjdump not found (pip install nvidia-cuda-cuobjdump)")
    sections = _sections(cuda_objects[case])
    main = sections[".nv_fatbin"]
    assert main.error is None
    assert _ours(main.cubins) == _cuobjdump_names(tool, cuda_objects[case], "elf")
    assert _ours(main.ptx) == _cuobjdump_names(tool, cuda_objects[case], "ptx")
    everything = [e for s in sections.values() for e in s.entries]
    assert _ours([e for e in everything if e.kind == "ptx"]) == _cuobjdump_names(tool, cuda_objects[case], "ptx", True)


def test_targets_flags_and_compression(cuda_objects):
    def targets(case):
        return sorted({e.target for e in _sections(cuda_objects[case])[".nv_fatbin"].entries})

    assert targets("sm90") == ["sm_90"]
    assert targets("multi_ptx") == ["compute_90", "sm_80", "sm_90"]
    assert targets("arch_a") == ["sm_90a"]
    assert targets("family_f") == ["sm_100f"]
    assert {e.compressed for e in _sections(cuda_objects["compressed"])[".nv_fatbin"].entries} == {"zstd"}
    assert {e.compressed for e in _sections(cuda_objects["lz4"])[".nv_fatbin"].entries} == {"lz4"}
    assert {e.compressed for e in _sections(cuda_objects["sm90"])[".nv_fatbin"].cubins} == {""}
    rdc = _sections(cuda_objects["rdc"])
    assert "__nv_relfatbin" in rdc and [e.target for e in rdc["__nv_relfatbin"].ptx] == ["compute_90"]
    assert [e.version for e in _sections(cuda_objects["multi_ptx"])[".nv_fatbin"].ptx][0].startswith("9.")


@pytest.mark.parametrize("case", ["sm90", "compressed", "lz4"])
def test_toolkit_release_in_abi8_cubins(cuda_objects, case):
    codec = {"compressed": "zstandard", "lz4": "lz4"}.get(case)
    if codec:
        pytest.importorskip(codec)
    cubins = _sections(cuda_objects[case])[".nv_fatbin"].cubins
    read = [e for e in cubins if e.release]
    assert read, "the first cubin of each fatbin is read"
    assert {e.release for e in read} == {"13.0"}
    assert {e.abi for e in read} == {8}


def _problems(report, severity="error"):
    return [p for p in report.problems if p.severity == severity]


def test_variant_rules(cuda_objects):
    c = cuda_objects
    assert verify_paths([c["sm90"]], Expectation(sm="90", cuda="13.0")).ok
    wrong = verify_paths([c["sm90"]], Expectation(sm="100", cuda="13.0"))
    assert not wrong.ok and any("no code for sm_100" in p.message for p in wrong.errors)
    multi = verify_paths([c["multi_ptx"]], Expectation(sm="90", cuda="13.0"))
    assert [p.message.split(":")[0] for p in multi.errors] == ["2 cubins for sm_80"]
    # PTX for exactly the variant's SM runs there: unasked, a warning, not a refusal
    assert [p.message.split(":")[0] for p in multi.warnings] == ["1 PTX for compute_90"]
    own_only = verify_paths([c["own_ptx_only"]], Expectation(sm="90", cuda="13.0"))
    assert own_only.ok, [p.message for p in own_only.errors]
    assert [p.message.split(":")[0] for p in own_only.warnings] == ["1 PTX for compute_90"]
    assert "own SM" in own_only.warnings[0].message
    # any other GPU code stays an error: PTX of a lower or a higher SM, unasked
    for case, target in (("lower_ptx", "compute_80"), ("higher_ptx", "compute_100")):
        other = verify_paths([c[case]], Expectation(sm="90", cuda="13.0"))
        assert [p.message.split(":")[0] for p in other.errors] == [f"1 PTX for {target}"], case
        assert not other.warnings, case
    # the own SM's PTX alone is not code for another SM
    assert not verify_paths([c["own_ptx_only"]], Expectation(sm="100", cuda="13.0")).ok
    with_ptx = verify_paths([c["multi_ptx"]], Expectation(sm="90", cuda="13.0", ptx=True))
    assert [p.message.split(":")[0] for p in with_ptx.errors] == ["2 cubins for sm_80"]
    assert verify_paths([c["arch_a"]], Expectation(sm="90", cuda="13.0")).ok
    assert verify_paths([c["family_f"]], Expectation(sm="100", cuda="13.0")).ok
    assert verify_paths([c["family_f"]], Expectation(sm="103", cuda="13.0")).ok
    assert not verify_paths([c["family_f"]], Expectation(sm="90", cuda="13.0")).ok
    assert not verify_paths([c["compressed"]], Expectation(sm="90", cuda="13.0")).ok  # sm_100 cubin too
    rdc = verify_paths([c["rdc"]], Expectation(sm="90", cuda="13.0"))
    assert rdc.ok and any("__nv_relfatbin" in p.message for p in rdc.warnings)
    old = verify_paths([c["sm90"]], Expectation(sm="90", cuda="12.9"))
    assert any(p.check == "cuda" and "newer" in p.message for p in old.errors)
    # what vLLM builds on purpose (FA2 8.0+PTX, Marlin, c2x 8.9+PTX): reported, not failed; sm_100 code still fails
    why = "vLLM compiles flash-attention 2 for 8.0+PTX"
    designed = verify_paths([c["multi_ptx"]], Expectation(sm="90", cuda="13.0", by_design=why))
    assert designed.ok, [p.message for p in designed.errors]
    assert {p.message.split(":")[0] for p in designed.warnings} == {"2 cubins for sm_80", "1 PTX for compute_90"}
    assert all(why in p.message for p in designed.warnings)
    assert not verify_paths([c["compressed"]], Expectation(sm="90", cuda="13.0", by_design=why)).ok
    assert not verify_paths([c["family_f"]], Expectation(sm="90", cuda="13.0", by_design=why)).ok
    # no expectation: a listing, never a failure
    listing = verify_paths(list(c.values()))
    assert listing.ok
    table = listing.format_table()
    assert "sm_90a" in table and "sm_100f" in table and "compute_90" in table and "zstd" in table


def test_verdicts_without_nvcc():
    assert CudaTarget("90").cubin_problem("90", "a") is None
    assert CudaTarget("103").cubin_problem("100", "f") is None
    assert CudaTarget("100").cubin_problem("103", "f") is not None
    assert CudaTarget("103").cubin_problem("100", "a") is not None
    assert CudaTarget("86").cubin_problem("80", "") is None
    assert CudaTarget("90").cubin_problem("80", "") is not None
    assert CudaTarget("100").cubin_problem("120", "") is not None
    assert CudaTarget("90").ptx_problem("90", "", asked=False) is not None
    assert CudaTarget("90").ptx_problem("80", "", asked=True) is None
    assert CudaTarget("90").ptx_problem("100", "", asked=True) is not None
    assert CudaTarget("100").ptx_problem("90", "a", asked=True) is not None


def test_damaged_fatbin_is_an_error():
    section = fatbin.parse_section(".nv_fatbin", b"\x50\xed\x55\xba\x01\x00\x10\x00" + (10_000).to_bytes(8, "little"))
    assert section.error and "runs past" in section.error
    assert fatbin.parse_section(".nv_fatbin", b"garbage!" * 4).error
    assert fatbin.parse_section(".nv_fatbin", bytes(32)).error is None
