"""Triton's ``cuda_utils`` prebuilt beside the wheels is the module a deployment host looks for.

Real Triton 3.5.1 (torch 2.9.1's pin, PyPI's wheel for this Python) and the real gcc: the module is
built by ``backend/wheels/triton_cache.py`` without a GPU or a driver, then Triton's own
``CudaUtils()`` loads it in a process with no compiler on PATH, with and without the ``file``
command (two cache keys); with an empty cache the same process fails for want of a C compiler.
The driver's ``libcuda.so.1`` is a stub of the functions the module calls (this machine has none).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from backend.variants import Variant
from backend.wheels import deploy_notes, triton_cache

pytestmark = pytest.mark.slow  # downloads Triton's 170 MB wheel

TRITON = "triton==3.5.1"


@pytest.fixture(scope="module")
def triton_python(tmp_path_factory):
    folder = tmp_path_factory.mktemp("triton")
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d",
                    str(folder / "wheels"), TRITON], check=True, capture_output=True)
    venv.EnvBuilder(with_pip=False).create(folder / "venv")
    python = folder / "venv" / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                    *map(str, (folder / "wheels").glob("*.whl"))], check=True, capture_output=True)
    return python


def host_libcuda(folder: Path, modules) -> Path:
    """A stand-in for the driver's libcuda.so.1: every cu* function the modules call, doing nothing."""
    names = set()
    for module in modules:
        out = subprocess.run(["nm", "-D", "--undefined-only", str(module)], check=True, capture_output=True,
                             text=True).stdout
        names |= set(re.findall(r"\bU (cu[A-Z]\w*)$", out, re.M))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "stub.c").write_text("".join(f"void {n}(void) {{}}\n" for n in sorted(names)))
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o", str(folder / "libcuda.so.1"),
                    str(folder / "stub.c")], check=True)
    return folder


def first_kernel_setup(python: Path, cache: Path, libcuda: Path, path: str) -> subprocess.CompletedProcess:
    """What Triton does before a host's first kernel (CudaUtils), on a host with ``path`` and no CC."""
    env = {"HOME": str(cache.parent), "PATH": path, "TRITON_CACHE_DIR": str(cache),
           "TRITON_LIBCUDA_PATH": str(libcuda), "LD_LIBRARY_PATH": str(libcuda)}
    code = "from triton.backends.nvidia.driver import CudaUtils; print(CudaUtils().load_binary)"
    return subprocess.run([str(python), "-c", code], env=env, capture_output=True, text=True)


def build_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("CC", "CXX")}


def test_a_host_without_a_compiler_loads_the_prebuilt_module(triton_python, tmp_path):
    shipped = tmp_path / "house" / triton_cache.FOLDER
    built = triton_cache.prebuild(triton_python, build_env(), tmp_path / "scratch", shipped)
    assert built.skipped is None and built.triton == "3.5.1", built
    suffix = subprocess.run([str(triton_python), "-c", "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))"],
                            capture_output=True, text=True, check=True).stdout.strip()
    with_file = shutil.which("file") is not None
    assert len(built.files) == (2 if with_file else 1) and all(f.endswith(f"/cuda_utils{suffix}") for f in built.files)
    modules = triton_cache.shipped(shipped.parent)
    libcuda = host_libcuda(tmp_path / "driver", modules)
    no_compiler = tmp_path / "bin"  # a host's PATH: the venv's bin, and `file` where the host has it
    no_compiler.mkdir()
    paths = [str(triton_python.parent)]
    if with_file:
        (no_compiler / "file").symlink_to(shutil.which("file"))
        paths.append(f"{triton_python.parent}:{no_compiler}")
    for path in paths:
        cache = tmp_path / "host" / "cache"
        triton_cache.seed(cache, shipped)
        loaded = first_kernel_setup(triton_python, cache, libcuda, path)
        assert loaded.returncode == 0 and "built-in function load_binary" in loaded.stdout, (path, loaded.stderr)
        empty = first_kernel_setup(triton_python, triton_cache.seed(cache, None), libcuda, path)
        assert empty.returncode != 0 and "Failed to find C compiler" in empty.stderr, empty.stderr


def test_a_rebuild_keeps_the_files_and_drops_an_older_tritons(triton_python, tmp_path):
    shipped = tmp_path / triton_cache.FOLDER
    first = triton_cache.prebuild(triton_python, build_env(), tmp_path / "scratch", shipped)
    stamps = {f: (shipped / f).stat().st_mtime_ns for f in first.files}
    (shipped / "OLDERTRITONKEY").mkdir()
    (shipped / "OLDERTRITONKEY" / "cuda_utils.so").write_text("")
    again = triton_cache.prebuild(triton_python, build_env(), tmp_path / "scratch", shipped)
    assert again.files == first.files
    assert {f: (shipped / f).stat().st_mtime_ns for f in again.files} == stamps
    assert not (shipped / "OLDERTRITONKEY").exists()


def test_deploy_md_says_how_to_use_it_and_what_still_compiles(triton_python, tmp_path):
    house = tmp_path / "house"
    triton_cache.prebuild(triton_python, build_env(), tmp_path / "scratch", house / triton_cache.FOLDER)
    notes = deploy_notes.text(Variant(sm="90", isa="avx2", cuda="12.9"), ["torch"], {}, "3.11", False,
                              triton_cache.shipped(house))
    assert "cp -r triton-cache/. ~/.triton/cache/" in notes
    assert re.search(r"it needs glibc 2\.\d+ and the driver's `libcuda.so.1`", notes), notes
    assert "still compiled at that kernel's first call" in notes


def test_a_build_host_without_file_builds_one_key_and_says_so(triton_python, tmp_path):
    tools = tmp_path / "tools"  # gcc and binutils, no `file`
    tools.mkdir()
    for name in ("gcc", "cc", "as", "ld", "nm"):
        if shutil.which(name):
            (tools / name).symlink_to(shutil.which(name))
    built = triton_cache.prebuild(triton_python, {**build_env(), "PATH": str(tools)}, tmp_path / "scratch",
                                  tmp_path / triton_cache.FOLDER)
    assert len(built.files) == 1 and built.without_file == "`file` is not installed on the build host", built
