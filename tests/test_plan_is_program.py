"""The plan is the program: ``python -m backend plan --json`` holds exactly what the build runs.

A real build of the bitsandbytes stand-in from a local tree (real pip, CMake,
nvcc).  What ran is observed from inside: a ``.pth`` file in the build venv
records the command line, working folder and environment of every Python
started there, so the comparison does not trust the engine's own account.
Patches: a local tree gets the lock's patch only for its own release and
only when the patch fits (real ``patch --dry-run``); the plan and the
manifest say why not.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from standin_helpers import find_nvcc, host_isa, standin_tree

ROOT = Path(__file__).resolve().parent.parent
NVCC = find_nvcc()
ISA = host_isa()
PATCH = "0001-real-cubins-only.patch"

# Runs at the start of every Python of the build venv (site may read it twice: lib64 -> lib), one JSON line each.
RECORDER = ("import json, os, sys; "
            "open({log!r}, 'a').write(json.dumps({{'pid': os.getpid(), 'argv': sys.orig_argv, 'cwd': os.getcwd(), "
            "'env': dict(os.environ)}}) + '\\n')\n")


def backend(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if NVCC:
        env["PATH"] = f"{Path(NVCC).parent}{os.pathsep}{env['PATH']}"
    result = subprocess.run([sys.executable, "-m", "backend", *args], cwd=ROOT, capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"backend {' '.join(args)} failed:\n{result.stderr[-4000:]}")
    return result


def settings(tmp: Path, tree: Path, **extra: str) -> list[str]:
    pairs = {
        "sm": "90", "isa": ISA, "cuda": "13.0", "components": "bitsandbytes", "source.bitsandbytes": str(tree),
        "cache-dir": str(tmp / "cache"), "wheelhouse": str(tmp / "wheelhouse"), "jobs": "2",
        "build-requirements": "ranges", "free-disk-gb": "1", "runtime-deps": "none", "smoke": "off",
        **extra,
    }
    return [arg for key, value in pairs.items() for arg in ("-C", f"{key}={value}")]


def fork(tmp: Path, version: str | None = None, cmake_edit: tuple[str, str] | None = None) -> Path:
    """A copy of the stand-in: another release, or the same release with other CMake lines."""
    tree = tmp / "fork"
    shutil.copytree(standin_tree("bitsandbytes"), tree, ignore=shutil.ignore_patterns("build", "*.so", "__pycache__"))
    if version:
        init = tree / "bitsandbytes" / "__init__.py"
        init.write_text(init.read_text().replace('__version__ = "0.49.1"', f'__version__ = "{version}"'))
    if cmake_edit:
        cmake = tree / "CMakeLists.txt"
        old, new = cmake_edit
        assert old in cmake.read_text()
        cmake.write_text(cmake.read_text().replace(old, new))
    return tree


def manifest_entry(tmp: Path) -> dict:
    house = next((tmp / "wheelhouse").iterdir())
    data = json.loads((house / "manifest.json").read_text())
    return next(e for name, e in data["wheels"].items() if name.startswith("bitsandbytes-"))


@pytest.mark.skipif(NVCC is None, reason="needs a CUDA 13 nvcc (system /usr/local/cuda-13.0 or PyPI)")
def test_the_build_runs_exactly_the_planned_commands_environment_and_folder(tmp_path):
    args = settings(tmp_path, standin_tree("bitsandbytes"))
    step = json.loads(backend("plan", *args, "--json").stdout)["steps"][0]
    python = Path(step["python"])
    assert step["cwd"] == step["tree"] and step["tree"].endswith("/bitsandbytes/local-tree")  # the copy, not the checkout
    assert [(p["patch"], p["applied"]) for p in step["patches"]] == [(PATCH, True)]

    # The build venv the plan names, made here first, with the recorder in its site-packages.
    venv.EnvBuilder(with_pip=True, symlinks=True).create(python.parent.parent)
    site = next(python.parent.parent.glob("lib/python*/site-packages"))
    record = tmp_path / "ran.jsonl"
    (site / "zz_record_runs.pth").write_text(RECORDER.format(log=str(record)))

    result = backend("build", *args)
    runs = list({r["pid"]: r for r in map(json.loads, record.read_text().splitlines())}.values())
    builds = [r for r in runs if r["argv"][1:4] == ["-m", "pip", "wheel"]]
    assert [r["argv"] for r in builds] == step["command"], result.stderr[-3000:]
    assert builds[0]["argv"][0] == str(python)
    assert all(r["cwd"] == step["cwd"] for r in builds)
    planned_env = {**step["env"], **step["compiler_cache_env"]}  # ccache records the switches through a specs file
    for key, value in planned_env.items():
        assert builds[0]["env"].get(key) == value, key
    # the planned patch is what the copy got, and what the manifest records; the checkout is untouched
    patched = "list(APPEND CMAKE_CUDA_ARCHITECTURES ${_LATEST_CAPABILITY}-real)"
    assert patched in (Path(step["tree"]) / "CMakeLists.txt").read_text()
    assert patched not in (standin_tree("bitsandbytes") / "CMakeLists.txt").read_text()
    entry = manifest_entry(tmp_path)
    assert entry["patches"] == [[PATCH, step["patches"][0]["sha256"]]] and entry["patches_not_applied"] == []


@pytest.mark.skipif(NVCC is None, reason="needs a CUDA 13 nvcc (system /usr/local/cuda-13.0 or PyPI)")
def test_a_fork_of_another_release_builds_without_the_locks_patch(tmp_path):
    """Before, the lock's patch was forced onto every local tree and a fork stopped with 'does not apply'."""
    tree = fork(tmp_path, version="0.50.0", cmake_edit=("project(", "# a fork's own line\nproject("))
    args = settings(tmp_path, tree, verify="warn")  # without the patch the stand-in also embeds compute_90 PTX
    step = json.loads(backend("plan", *args, "--json").stdout)["steps"][0]
    assert step["patches"] == [{
        "patch": PATCH, "sha256": step["patches"][0]["sha256"], "when": "==0.49.1", "applied": False,
        "why": "it is for bitsandbytes ==0.49.1 and this tree is 0.50.0"}]
    text = backend("plan", *args).stdout
    assert f"patch {PATCH}: NOT applied (it is for bitsandbytes ==0.49.1 and this tree is 0.50.0)" in text
    result = backend("build", *args)
    assert "does not apply" not in result.stderr
    entry = manifest_entry(tmp_path)
    assert entry["patches"] == []
    assert entry["patches_not_applied"] == [[PATCH, "it is for bitsandbytes ==0.49.1 and this tree is 0.50.0"]]
    assert (Path(step["tree"]) / "CMakeLists.txt").read_text() == (tree / "CMakeLists.txt").read_text()


def test_a_tree_of_the_release_gets_the_patch_only_when_it_fits(tmp_path):
    """Plan only: the patch is tried with patch --dry-run on the checkout, which stays as it was."""
    from backend.pipeline.plan import make_plan
    from backend.pipeline.snapshot import tree_digest
    from backend.settings import resolve
    from backend.variants import Variant

    def patches_for(tree: Path):
        settings = resolve({"cache-dir": str(tmp_path / "cache"), "components": "bitsandbytes",
                            "source.bitsandbytes": str(tree)})
        plan = make_plan(settings, Variant(sm="90", isa="avx2", cuda="13.0"), project_dir=tmp_path, cores=4,
                         memory_bytes=16 << 30)
        return [(p.name, p.applied, p.why) for p in plan.step("bitsandbytes").patches]

    assert patches_for(standin_tree("bitsandbytes")) == [
        (PATCH, True, "it is for bitsandbytes ==0.49.1, this tree is 0.49.1, and it fits")]
    cmake = (standin_tree("bitsandbytes") / "CMakeLists.txt").read_text()
    patched_line = next(line[1:] for line in (ROOT / "patches/bitsandbytes" / PATCH).read_text().splitlines()
                        if line.startswith("-") and not line.startswith("---"))
    assert patched_line in cmake
    tree = fork(tmp_path, cmake_edit=(patched_line, patched_line + "  # changed in this checkout"))
    before = tree_digest(tree)
    [(name, applied, why)] = patches_for(tree)
    assert (name, applied) == (PATCH, False)
    assert why.startswith("this tree is 0.49.1 but the patch does not fit it: failed: hunk #1 of CMakeLists.txt"), why
    assert tree_digest(tree) == before


def test_a_locked_patch_for_another_release_is_an_error(tmp_path):
    from backend.errors import BackendError
    from backend.sources import prepare

    folder = tmp_path / "patches" / "bitsandbytes"
    folder.mkdir(parents=True)
    text = (ROOT / "patches/bitsandbytes" / PATCH).read_text().replace("When: ==0.49.1", "When: >=0.50,<0.51")
    (folder / PATCH).write_text(text)
    with pytest.raises(BackendError, match=rf"^patch {tmp_path}/patches/bitsandbytes/{PATCH} is for bitsandbytes "
                                           r">=0\.50,<0\.51, but the lock pins 0\.49\.1: update the patch"):
        prepare.planned_patches("bitsandbytes", local=None, tree_version=None, patches_dir=tmp_path / "patches")
    (folder / PATCH).write_text(text.replace("When: >=0.50,<0.51", "When: 0.49.1"))
    with pytest.raises(BackendError, match=r"When: '0\.49\.1' is not a release condition; accepted: a PEP 440"):
        prepare.planned_patches("bitsandbytes", local=None, tree_version=None, patches_dir=tmp_path / "patches")
