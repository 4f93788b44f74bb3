"""The smoke check runs each recipe's snippet as a file.

Found on the H200: torch's GPU snippet defines a ``@triton.jit`` kernel, and
Triton reads a kernel's source with ``inspect.getsource``, which fails for
code given with ``python -c`` ("@jit functions should be defined in a Python
file").  A snippet that needs its own source stands in for it here.
"""

from __future__ import annotations

from conftest import make_wheel

from backend.verify import smoke

NEEDS_ITS_SOURCE = (
    "import inspect\n"
    "def kernel():\n"
    "    return 1\n"
    "print(inspect.getsource(kernel).splitlines()[0])\n"
)


def test_a_check_that_reads_its_own_source_runs(tmp_path):
    house = tmp_path / "house"
    house.mkdir()
    wheel = make_wheel(house, "demo", "1.0")
    said = []
    result = smoke.run(house, [wheel], [], [("demo (CPU)", NEEDS_ITS_SOURCE)], work=tmp_path / "smoke",
                       no_index=True, say=said.append)
    assert result.ok, result.problems
    assert "   smoke | demo (CPU): def kernel():" in said


# What a first kernel does on a deployment host, by upstream's own behaviour: Triton builds its launcher with
# the host C compiler (triton/runtime/build.py looks up cc/gcc/clang on PATH, or $CC); flashinfer compiles a
# kernel outside its AOT set with nvcc and ninja (flashinfer/jit/core.py).  Each stand-in check does the same
# lookup and compiles a one-line program with what it finds.
LIKE_TRITON = (
    "import os, shutil, subprocess, sys, tempfile\n"
    "cc = os.environ.get('CC') or next(filter(None, map(shutil.which, ('cc', 'gcc', 'clang'))), None)\n"
    "if cc is None: sys.exit('RuntimeError: Failed to find C compiler. Please specify via CC environment variable.')\n"
    "d = tempfile.mkdtemp(); open(d + '/l.c', 'w').write('int f(void) { return 1; }\\n')\n"
    "subprocess.run([cc, '-shared', '-fPIC', '-o', d + '/l.so', d + '/l.c'], check=True)\n"
)
LIKE_FLASHINFER_JIT = (
    "import shutil, sys\n"
    "if shutil.which('nvcc') is None: sys.exit('RuntimeError: Could not find nvcc and default cuda_home')\n"
)


def test_checks_run_without_compilers_and_report_what_they_needed(tmp_path, monkeypatch):
    """A check needing only a C compiler passes with the need named; one needing nvcc fails in one line."""
    nvcc_dir = tmp_path / "cuda" / "bin"
    nvcc_dir.mkdir(parents=True)
    (nvcc_dir / "nvcc").write_text("#!/bin/sh\nexit 0\n")
    (nvcc_dir / "nvcc").chmod(0o755)
    monkeypatch.setenv("PATH", f"{nvcc_dir}:{__import__('os').environ['PATH']}")
    monkeypatch.setenv("CUDA_HOME", str(nvcc_dir.parent))
    house = tmp_path / "house"
    house.mkdir()
    wheel = make_wheel(house, "demo", "1.0")
    said = []
    result = smoke.run(house, [wheel], [], [("triton-like (GPU)", LIKE_TRITON),
                                            ("flashinfer-like (GPU)", LIKE_FLASHINFER_JIT)],
                       work=tmp_path / "smoke", no_index=True, say=said.append)
    assert result.needs == ["triton-like (GPU): a C compiler at first use (RuntimeError: Failed to find C compiler. "
                            "Please specify via CC environment variable.)"]
    assert result.problems == ["flashinfer-like (GPU): needs the build host's tools at first use (nvcc, ninja or a C++ "
                               "compiler; a deployment host has none): RuntimeError: Could not find nvcc and default cuda_home"]
    assert not result.ok
    assert any(line.startswith("   smoke | needs triton-like (GPU): a C compiler") for line in said)
    log = result.log.read_text()
    assert "== triton-like (GPU), no compilers" in log and "== triton-like (GPU), a C compiler only" in log


def test_a_check_that_needs_no_compiler_runs_once(tmp_path):
    house = tmp_path / "house"
    house.mkdir()
    wheel = make_wheel(house, "demo", "1.0")
    result = smoke.run(house, [wheel], [], [("plain (CPU)", "print(1 + 1)")], work=tmp_path / "smoke", no_index=True)
    assert result.ok and result.needs == []
    assert result.log.read_text().count("== plain (CPU)") == 1


# Prints what the check's Triton cache holds, then leaves a file there as a kernel's first call would.
LISTS_TRITON_CACHE = (
    "import os, pathlib\n"
    "cache = pathlib.Path(os.environ['TRITON_CACHE_DIR'])\n"
    "print(sorted(str(p.relative_to(cache)) for p in cache.rglob('*.so')))\n"
    "(cache / 'KERNEL').mkdir(); (cache / 'KERNEL' / 'launcher.so').write_text('')\n"
    "raise SystemExit(0 if os.environ.get('CC') == 'set-by-build' else 'RuntimeError: Failed to find C compiler')\n"
)


def test_each_check_starts_from_the_prebuilt_triton_cache_only(tmp_path, monkeypatch):
    """Each stage's Triton cache is a fresh copy of the folder beside the wheels: a launcher the first stage
    compiled (or a warm ~/.triton/cache of the build host) does not hide what the next stage needs."""
    monkeypatch.setenv("CC", "set-by-build")  # only the build's own environment passes the check
    house = tmp_path / "house"
    (house / "triton-cache" / "KEY").mkdir(parents=True)
    (house / "triton-cache" / "KEY" / "cuda_utils.so").write_text("")
    wheel = make_wheel(house, "demo", "1.0")
    said = []
    result = smoke.run(house, [wheel], [], [("cache (GPU)", LISTS_TRITON_CACHE)], work=tmp_path / "smoke",
                       no_index=True, say=said.append, triton_cache=house / "triton-cache")
    # The stand-in venv has no Triton: nothing is prebuilt, the folder is left as it was.
    assert result.triton_cache.skipped.startswith("the venv has no Triton NVIDIA backend"), result.triton_cache
    assert any("Triton's cuda_utils: not prebuilt" in line for line in said), said
    assert sorted(p.name for p in (house / "triton-cache").rglob("*")) == ["KEY", "cuda_utils.so"]
    log = result.log.read_text()
    # Three stages (no compilers, a C compiler only, the build's PATH), each seeing only the shipped module.
    assert log.count("['KEY/cuda_utils.so']") == 3, log
    assert result.problems[0].startswith("cache (GPU): needs the build host's tools at first use")
