"""The host compiler nvcc uses: the limit per CUDA release, the choice, and the refusal before anything compiles."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from backend.errors import BackendError
from backend.toolchains import hostcc
from backend.toolchains.base import Toolchain, nvcc_version
from standin_helpers import standin_tree

ROOT = Path(__file__).resolve().parent.parent
GXX = shutil.which("g++")
TOOLKITS = sorted(p for p in Path("/usr/local").glob("cuda-*") if (p / "bin" / "nvcc").is_file())
pytestmark = pytest.mark.skipif(GXX is None, reason="needs g++")


def gxx_major() -> int:
    return hostcc.gnu_version(GXX)[0]


def toolkit_with_limit(tmp: Path, limit: int) -> Path:
    """A stand-in toolkit folder whose crt/host_config.h has NVIDIA's guard with another limit."""
    header = tmp / "cuda" / "include" / "crt" / "host_config.h"
    header.parent.mkdir(parents=True)
    real = next((t / "include" / "crt" / "host_config.h" for t in TOOLKITS
                 if (t / "include" / "crt" / "host_config.h").is_file()), None)
    text = real.read_text() if real else "#if defined(__GNUC__)\n#if __GNUC__ > 15\n#error -- unsupported GNU version!\n#endif\n#endif\n"
    header.write_text(re.sub(r"__GNUC__ > \d+", f"__GNUC__ > {limit}", text))
    return header.parent.parent.parent


@pytest.mark.skipif(not TOOLKITS, reason="needs an installed CUDA toolkit")
def test_the_table_matches_the_installed_toolkits_header():
    for home in TOOLKITS:
        version = ".".join(nvcc_version(home / "bin" / "nvcc").split(".")[:2])
        limit, source = hostcc.header_limit(home)
        assert hostcc.MAX_GCC[version] == limit, (home, source)


@pytest.mark.slow
@pytest.mark.parametrize("release, cuda", [("12.8.93", "12.8"), ("12.9.86", "12.9")])
def test_the_table_matches_nvidias_cu12_headers(tmp_path, release, cuda):
    """nvidia-cuda-nvcc-cu12 ships crt/host_config.h (no nvcc binary): the guard there is the table's."""
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(tmp_path),
                    f"nvidia-cuda-nvcc-cu12=={release}"], check=True)
    [wheel] = tmp_path.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        header = archive.read(next(n for n in archive.namelist() if n.endswith("crt/host_config.h")))
    assert [int(n) for n in re.findall(rb"#if __GNUC__ > (\d+)", header)] == [hostcc.MAX_GCC[cuda]]


def test_a_supported_gcc_is_chosen(tmp_path):
    for cuda in hostcc.MAX_GCC:
        chosen = hostcc.choose(cuda, None, env=dict(os.environ))
        assert chosen.major <= hostcc.MAX_GCC[cuda] and chosen.limit_source == "table"
    chosen = hostcc.choose("13.0", toolkit_with_limit(tmp_path, gxx_major()), env=dict(os.environ))
    assert chosen.limit == gxx_major() and chosen.limit_source.endswith("host_config.h")


def test_an_unsupported_gcc_is_refused_in_one_line(tmp_path):
    limit = gxx_major() - 1
    home = toolkit_with_limit(tmp_path, limit)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "g++").symlink_to(GXX)
    with pytest.raises(BackendError) as error:
        hostcc.choose("13.0", home, env={"PATH": str(bin_dir)})
    message = str(error.value)
    assert f"accepts gcc <= {limit}" in message and f"install g++-{limit}" in message and "\n" not in message
    assert str(bin_dir / "g++") in message
    with pytest.raises(BackendError) as error:
        hostcc.choose("13.0", home, env={"PATH": str(bin_dir), "CUDAHOSTCXX": GXX})
    assert f"CUDAHOSTCXX={GXX} is gcc" in str(error.value) and f"gcc <= {limit}" in str(error.value)


def test_a_too_new_default_gives_way_to_a_supported_g_plus_plus_n(tmp_path):
    """``g++`` here is a wrapper reporting GCC 99 (standing in for a compiler newer than nvcc takes); g++-N is the real one."""
    major = gxx_major()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    newer = bin_dir / "g++"
    newer.write_text(f"#!/bin/sh\nexec {GXX} -U__GNUC__ -D__GNUC__=99 \"$@\"\n")
    newer.chmod(0o755)
    (bin_dir / f"g++-{major}").symlink_to(GXX)
    assert hostcc.gnu_version(str(newer))[0] == 99
    chosen = hostcc.choose("13.0", toolkit_with_limit(tmp_path, major), env={"PATH": str(bin_dir)})
    assert chosen.path == str(bin_dir / f"g++-{major}")


@pytest.mark.skipif(not TOOLKITS, reason="needs an installed CUDA toolkit")
def test_nvcc_and_cmake_get_the_chosen_compiler(tmp_path):
    home = TOOLKITS[-1]
    link = tmp_path / "chosen-g++"
    link.symlink_to(GXX)
    toolchain = Toolchain("system", "13.0", nvcc_version(home / "bin" / "nvcc"), home, home / "bin" / "nvcc",
                          host_compiler=str(link))
    env = toolchain.env()
    assert env["CUDAHOSTCXX"] == env["NVCC_CCBIN"] == str(link)
    source = tmp_path / "k.cu"
    source.write_text("__global__ void k(int *x) { *x = 1; }\n")
    dry = subprocess.run([str(toolchain.nvcc), "--dryrun", "-c", str(source), "-o", str(tmp_path / "k.o")],
                         env=env, capture_output=True, text=True)
    assert dry.returncode == 0 and "chosen-g++" in dry.stderr
    real = subprocess.run([str(toolchain.nvcc), "-c", str(source), "-o", str(tmp_path / "k.o")], env=env,
                          capture_output=True, text=True)
    assert real.returncode == 0, real.stderr


@pytest.mark.skipif(not TOOLKITS, reason="needs an installed CUDA toolkit")
def test_the_build_refuses_before_anything_compiles(tmp_path):
    env = dict(os.environ, CUDAHOSTCXX="/bin/true", PATH=f"{TOOLKITS[-1] / 'bin'}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run(
        [sys.executable, "-m", "backend", "build", "-C", "sm=90", "-C", "isa=avx2", "-C", "cuda=13.0",
         "-C", "components=bitsandbytes", "-C", f"cache-dir={tmp_path / 'cache'}", "-C", f"wheelhouse={tmp_path / 'wh'}",
         "-C", f"source.torch={standin_tree('torch')}",
         "-C", f"source.bitsandbytes={standin_tree('bitsandbytes')}"],
        cwd=ROOT, capture_output=True, text=True, env=env)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "host compiler: CUDAHOSTCXX=/bin/true is not a GNU C++ compiler" in result.stderr.strip().splitlines()[-1]
    assert not list((tmp_path / "cache").rglob("*.log"))
