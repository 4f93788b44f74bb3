"""The free-disk check before compiling (backend/pipeline/disk.py) and ``python -m backend clean``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from standin_helpers import host_isa

from backend import project
from backend.errors import BackendError
from backend.pipeline import disk
from backend.settings import resolve
from backend.wheels.wheelhouse import Wheelhouse

ROOT = Path(__file__).resolve().parent.parent
ISA = host_isa()


def plan_for(tmp: Path, **extra: str):
    return project.make_plan(resolve({"sm": "90", "isa": ISA, "cuda": "13.0", "cache-dir": str(tmp / "cache"),
                                      "wheelhouse": str(tmp / "wheelhouse"), **extra}))


def test_need_is_the_planned_components_less_those_already_built(tmp_path):
    plan = plan_for(tmp_path, components="torchvision")
    assert [s.component for s in plan.steps] == ["torch", "torchvision"]
    assert disk.needed_gb(plan) == 32.0
    from conftest import make_wheel

    wheel = make_wheel(tmp_path, "torch", "2.9.1", {"torch/__init__.py": b""}, tag="cp311-cp311-linux_x86_64")
    Wheelhouse(plan.layout.wheelhouse).add(wheel, {"component": "torch", "build_key": "k"})
    assert disk.needed_gb(plan) == 2.0
    assert disk.needed_gb(plan_for(tmp_path, components="torchvision", **{"free-disk-gb": "7.5"})) == 7.5


def test_a_small_local_tree_needs_ten_times_its_size(tmp_path):
    tree = tmp_path / "tree"
    (tree / ".git").mkdir(parents=True)
    (tree / ".git" / "pack").write_bytes(b"x" * 10_000_000)  # history is not built
    (tree / "setup.py").write_bytes(b"x" * 1_000_000)
    plan = plan_for(tmp_path, components="torch", **{"source.torch": str(tree)})
    assert disk.needed_gb(plan) == pytest.approx(0.01)


def test_too_little_space_stops_with_one_line_naming_need_free_and_where(tmp_path):
    plan = plan_for(tmp_path, **{"free-disk-gb": "100000000"})
    with pytest.raises(BackendError) as error:
        disk.check(plan, lambda _: None)
    message = str(error.value)
    free = shutil.disk_usage(tmp_path).free / 1e9
    assert message.startswith(f"not enough disk space: the planned build needs about 100000000 GB in {tmp_path}")
    stated = float(message.split(" GB are free")[0].rsplit(", ", 1)[1])
    assert abs(stated - free) < 1 and "\n" not in message


def test_the_line_names_other_variants_build_trees(tmp_path):
    (tmp_path / "cache" / "work" / "vllm-python311-cuda12_9-sm80-avx2" / "torch").mkdir(parents=True)
    lines: list[str] = []
    disk.check(plan_for(tmp_path, **{"free-disk-gb": "0"}), lines.append)
    assert len(lines) == 1 and lines[0].startswith("   disk: needs about 0 GB, ")
    assert "build trees of 1 other variant(s) (vllm-python311-cuda12_9-sm80-avx2): python -m backend clean --all" in lines[0]


def test_bad_free_disk_value_is_one_line():
    with pytest.raises(BackendError, match=r"setting 'free-disk-gb': bad value 'lots'; accepted: a number of GB >= 0"):
        resolve({"free-disk-gb": "lots"})


def run_clean(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "backend", "clean", *args], cwd=ROOT, capture_output=True, text=True)


def test_clean_removes_a_variants_trees_then_all_keeping_downloads(tmp_path):
    plan = plan_for(tmp_path)
    cache = tmp_path / "cache"
    other = cache / "work" / "vllm-python311-cuda12_9-sm80-avx2"
    for folder in (plan.layout.variant_dir / "torch", plan.layout.env_dir / "bin", other, cache / "envs" / other.name,
                   cache / "downloads", cache / "compiler-cache"):
        folder.mkdir(parents=True)
        (folder / "file").write_bytes(b"x" * 1000)
    common = ["-C", f"cache-dir={cache}"]
    result = run_clean("-C", "sm=90", "-C", f"isa={ISA}", "-C", "cuda=13.0", *common)
    assert result.returncode == 0, result.stderr
    assert not plan.layout.variant_dir.exists() and not plan.layout.env_dir.exists()
    assert other.exists() and (cache / "downloads" / "file").exists()
    assert "downloads kept" in result.stdout
    result = run_clean("--all", *common)
    assert result.returncode == 0, result.stderr
    assert not (cache / "work").exists() and not (cache / "envs").exists()
    assert (cache / "downloads").exists() and (cache / "compiler-cache" / "file").exists()
    result = run_clean("--all", "--downloads", *common)
    assert not (cache / "downloads").exists() and (cache / "compiler-cache" / "file").exists()
    assert result.stdout.strip().splitlines()[-1] == "freed 0.00 GB; CUDA toolchains kept (--toolchains removes them)"
