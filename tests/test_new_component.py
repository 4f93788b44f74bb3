"""A new component is its recipe module plus its lock entry, and nothing else.

In a copy of the project (the repository is not touched), a copy of the
bitsandbytes recipe under a new name and one lock entry for it are added;
then the settings accept it, ``matrix`` and ``plan`` list it, and
``python -m backend build`` builds it from a local tree (the bitsandbytes
stand-in under the new name: a real CMake + nvcc build) into the wheelhouse.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from standin_helpers import find_nvcc, host_isa, standin_tree
from conftest import kept_unchanged

ROOT = Path(__file__).resolve().parent.parent
NVCC = find_nvcc()
NAME = "quantcopy"  # the throwaway component
COPIED = "bitsandbytes"  # the recipe and stand-in it is a copy of


def renamed(text: str) -> str:
    return text.replace(COPIED, NAME)


def copy_renamed(source: Path, target: Path) -> None:
    """``source``'s files under ``target``, every "bitsandbytes" in names and text made the new name."""
    for path in sorted(source.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and "build" not in path.parts:
            destination = target / renamed(str(path.relative_to(source)))
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_text(renamed(path.read_text()))


def tree_files(folder: Path) -> dict[Path, bytes]:
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """(a copy of the project with the new component, its local tree)."""
    tmp = tmp_path_factory.mktemp("new-component")
    project = tmp / "project"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "downloads")
    for folder in ("backend", "third_party", "patches"):
        shutil.copytree(ROOT / folder, project / folder, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", project / "pyproject.toml")
    tree = tmp / "src" / NAME
    copy_renamed(standin_tree(COPIED), tree)
    # Patches are per component and the new one has none: its own tree is the stand-in as patches/bitsandbytes
    # leaves it (real cubins only: the unpatched CMakeLists also embeds compute_90 PTX, which verification
    # reports), so the new component's wheel is what bitsandbytes' is.
    for patch in sorted((ROOT / "patches" / COPIED).glob("*.patch")):
        subprocess.run(["patch", "-p1", "--quiet", "-d", str(tree), "-i", str(patch)], check=True)
    archive = tmp / f"{NAME}-standin.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname=NAME)

    # The two additions: the recipe module, and the lock entry naming the new component.
    recipe = (ROOT / "backend" / "recipes" / f"{COPIED}.py").read_text()
    (project / "backend" / "recipes" / f"{NAME}.py").write_text(renamed(recipe))
    with (project / "third_party" / "sources.lock").open("a") as lock:
        lock.write(f'\n[source.{NAME}]\ncomponent = "{NAME}"\nversion = "0.49.1"\nurl = "{archive.as_uri()}"\n'
                   f'sha256 = "{hashlib.sha256(archive.read_bytes()).hexdigest()}"\n'
                   f'why = "the throwaway component of tests/test_new_component.py"\n')
    before, after = (tree_files(base / "backend") for base in (ROOT, project))
    assert {path: data for path, data in after.items() if before.get(path) != data} == {
        Path("recipes") / f"{NAME}.py": renamed(recipe).encode()} and before.keys() <= after.keys()
    assert (project / "third_party" / "sources.lock").read_text().startswith(
        (ROOT / "third_party" / "sources.lock").read_text())
    with kept_unchanged(tmp):  # the project copy, the local tree and its archive: builds run on snapshots
        yield project, tree


def backend(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if NVCC:
        env["PATH"] = f"{Path(NVCC).parent}{os.pathsep}{env['PATH']}"
    env.pop("PYTHONPATH", None)  # the copy's backend, not the repository's
    result = subprocess.run([sys.executable, "-m", "backend", *args], cwd=project, capture_output=True, text=True,
                            env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"backend {' '.join(args)} failed:\n{result.stderr[-4000:]}")
    return result


def settings(tmp: Path, tree: Path | None, **extra: str) -> list[str]:
    pairs = {"sm": "90", "isa": host_isa(), "cuda": "13.0", "components": NAME,
             **({f"source.{NAME}": str(tree)} if tree else {}), "cache-dir": str(tmp / "cache"), "wheelhouse": str(tmp / "wheelhouse"), "jobs": "2",
             # what the built wheel requires (torch, pinned) is not built here: the built wheels only
             "runtime-deps": "none", "smoke": "off", "build-requirements": "ranges", "free-disk-gb": "1", **extra}
    return [arg for key, value in pairs.items() for arg in ("-C", f"{key}={value}")]


def test_settings_matrix_and_plan_pick_it_up(project, tmp_path):
    project, tree = project
    help_text = backend(project, "build", "--help").stdout
    assert NAME in help_text.split("\n  components: ")[1].splitlines()[0]
    rows = json.loads(backend(project, "matrix", "--json", "--cuda", "13.0").stdout)
    assert rows and all(NAME in row["components"] for row in rows)
    assert f", {NAME}" in backend(project, "matrix", "--cuda", "13.0").stdout
    plan = json.loads(backend(project, "plan", "--json", *settings(tmp_path, tree)).stdout)
    (step,) = plan["steps"]
    assert step["component"] == NAME and step["source"] == str(tree)
    assert step["version"] == f"0.49.1+{plan['label']}" and step["distributions"] == [NAME]
    assert f"-DCOMPUTE_CAPABILITY=90" in step["env"]["CMAKE_ARGS"]
    # its lock entry is its source: without a local tree the plan builds the lock's
    locked = json.loads(backend(project, "plan", "--json", *settings(tmp_path, None)).stdout)
    assert [s["source"] for s in locked["steps"]] == [f"lock:{NAME}"]
    # a near miss is refused in one line that offers it
    refused = backend(project, "plan", *settings(tmp_path, tree, components=NAME[:-1]), check=False)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert f"did you mean '{NAME}'" in refused.stderr.strip().splitlines()[-1], refused.stderr


@pytest.mark.skipif(NVCC is None, reason="needs a CUDA 13 nvcc (system /usr/local/cuda-13.0 or PyPI)")
def test_it_builds_from_a_local_tree_into_the_wheelhouse(project, tmp_path):
    project, tree = project
    result = backend(project, "build", *settings(tmp_path, tree))
    houses = list((tmp_path / "wheelhouse").iterdir())
    assert len(houses) == 1
    house = houses[0]
    wheels = sorted(p.name for p in house.glob("*.whl"))
    assert len(wheels) == 1 and wheels[0].startswith(f"{NAME}-0.49.1+cu130.sm90."), wheels
    manifest = json.loads((house / "manifest.json").read_text())
    assert manifest["wheels"][wheels[0]]["origin"] == "local"
    assert NAME in result.stderr and "built" in result.stderr
