"""torch's CMake inputs the recipe supplies, run through the real cmake: NNPACK's six (issue 22, item 3).

tests/fixtures/nnpack_six is torch 2.9.1's NNPACK configure cut to its six
handling (its README says what it copies).  Without the recipe's CMake file
NNPACK runs a child cmake on DownloadSix.cmake, which CMake 4 refuses, and the
PeachPy step cannot import six; with it nothing is downloaded and the step
imports the six of the build venv.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import six

from backend.recipes import BuildContext
from backend.recipes import torch as torch_recipe
from backend.settings import Settings
from backend.variants import Variant

FIXTURE = Path(__file__).parent / "fixtures" / "nnpack_six"
SM61 = Variant(sm="61", isa="avx2", cuda="12.8", python="311")  # no NVSHMEM: the file holds six alone
pytestmark = pytest.mark.skipif(shutil.which("cmake") is None or shutil.which("ninja") is None,
                                reason="needs cmake and ninja")


def _cmake_major() -> int:
    return int(re.search(r"version (\d+)", subprocess.run(["cmake", "--version"], capture_output=True, text=True).stdout)[1])


def _context(tmp_path: Path) -> BuildContext:
    """A torch build context whose interpreter is this one (it imports six, as the build venv the locked wheel)."""
    return BuildContext(variant=SM61, settings=Settings(sm="61", isa="avx2", cuda="12.8"), tree=FIXTURE,
                        extras={}, wheel_dir=tmp_path / "wheels", build_dir=tmp_path / "build",
                        python=sys.executable)


def _configure_and_build(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    build = tmp_path / "cmake-build"
    configure = subprocess.run(["cmake", "-G", "Ninja", "-S", str(FIXTURE), "-B", str(build),
                                f"-DPYTHON_EXECUTABLE={sys.executable}", *extra], capture_output=True, text=True)
    built = subprocess.run(["cmake", "--build", str(build)], capture_output=True, text=True)
    return configure, built


def test_without_the_recipe_file_nnpack_downloads_six_and_the_build_fails(tmp_path):
    configure, built = _configure_and_build(tmp_path)
    assert "Downloading six" in configure.stdout
    if _cmake_major() >= 4:
        assert "Compatibility with CMake < 3.5 has been removed" in configure.stdout + configure.stderr
    assert built.returncode != 0 and "six" in built.stdout + built.stderr


def test_the_recipe_file_gives_nnpack_the_locked_six(tmp_path):
    ctx = _context(tmp_path)
    env = torch_recipe.RECIPE.environment(ctx)
    write, _build = torch_recipe.RECIPE.commands(ctx)
    subprocess.run([sys.executable, *write[1:]], check=True)  # the recipe's own writer, run for real
    include = Path(env["CMAKE_PROJECT_INCLUDE_BEFORE"])
    configure, built = _configure_and_build(tmp_path, f"-DCMAKE_PROJECT_INCLUDE_BEFORE={include}")
    assert configure.returncode == 0, configure.stderr
    assert "Downloading six" not in configure.stdout and "has been removed" not in configure.stdout + configure.stderr
    assert built.returncode == 0, built.stdout + built.stderr
    cache = (tmp_path / "cmake-build" / "CMakeCache.txt").read_text()
    assert f"PYTHON_SIX_SOURCE_DIR:STRING={Path(six.__file__).parent}" in cache
