"""Issue 27, the first hour of a new user: each item reproduced as the user met it, then held fixed.

Every test here runs the real command (``python -m backend``, pip, the PEP 517
hooks in a bare interpreter) the way the README tells a user to.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from backend import doc_tables, needs
from conftest import kept_unchanged

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory):
    """An interpreter with nothing installed: a venv without pip, not seeing the system site-packages."""
    path = tmp_path_factory.mktemp("bare") / "venv"
    venv.EnvBuilder(with_pip=False, system_site_packages=False).create(path)
    with kept_unchanged(path):
        yield path / "bin" / "python"


def _bare_env(tmp_path: Path) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "VLLM_STACK_CACHE_DIR": str(tmp_path / "cache"), "HOME": str(tmp_path)}


# 1. The README's dependency line is generated from backend/needs.py and lists every one of them.

def test_readme_names_every_requirement_build_fetch_lock_and_verify_import():
    text = README.read_text()
    block = re.search(r"<!-- generated: backend-needs [^\n]*-->\n(.*?)<!-- end: backend-needs -->", text, re.S)
    assert block, "README.md has no generated backend-needs line"
    line = block.group(1).strip()
    assert line.startswith("python3 -m pip install ")
    for _, requirement in needs.RUNTIME:
        assert requirement in line, f"README's install line lacks {requirement}"
    assert "backend-needs" not in doc_tables.stale_tables("README.md", text), "run python -m backend.doc_tables"


# 2. Every PEP 517 hook stops in one line when the backend's own requirements are missing.

HOOKS = [
    ("get_requires_for_build_wheel", "({'sm': '90', 'isa': 'avx512'})"),
    ("prepare_metadata_for_build_wheel", "(out, {'sm': '90', 'isa': 'avx512'})"),
    ("build_wheel", "(out, {'sm': '90', 'isa': 'avx512'})"),
    ("build_sdist", "(out)"),
    ("get_requires_for_build_editable", "({'sm': '90', 'isa': 'avx512'})"),
    ("prepare_metadata_for_build_editable", "(out, {'sm': '90', 'isa': 'avx512'})"),
    ("build_editable", "(out, {'sm': '90', 'isa': 'avx512'})"),
]


@pytest.mark.parametrize("hook, call", HOOKS, ids=[h for h, _ in HOOKS])
def test_every_hook_on_a_bare_interpreter_is_one_line(bare_python, tmp_path, hook, call):
    out = tmp_path / "out"
    out.mkdir()
    code = f"import backend; out = {str(out)!r}; backend.{hook}{call}"
    result = subprocess.run([str(bare_python), "-c", code], cwd=ROOT, capture_output=True, text=True,
                            env=_bare_env(tmp_path))
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("error: ") and "packaging>=23" in lines[0] and hook in lines[0]
    assert f"{bare_python} -m pip install" in lines[0]
    assert not list(out.iterdir())


def test_pip_wheel_without_build_isolation_on_a_bare_venv_is_one_line(tmp_path):
    """The user's path: a venv with pip only, ``pip wheel . --no-build-isolation``."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    result = subprocess.run([str(python), "-m", "pip", "wheel", str(ROOT), "--no-build-isolation", "--no-deps",
                             "-C", "sm=90", "-C", "isa=avx512", "-w", str(tmp_path / "dist")],
                            capture_output=True, text=True, env={**_bare_env(tmp_path), "PIP_NO_INDEX": "1"})
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Traceback" not in output and "ModuleNotFoundError" not in output, output
    ours = [line.strip() for line in output.splitlines() if line.strip().startswith("error: the PEP 517 hook")]
    assert len(ours) == 1 and "packaging>=23" in ours[0], output


# 9. An older Python: one line naming the Pythons the backend runs on; pip installs nothing first.

@pytest.mark.parametrize("entry", ["import backend", "import runpy; runpy.run_module('backend', run_name='__main__')"])
def test_python_39_is_one_line(tmp_path, entry):
    """Python 3.9 as the interpreter reports itself (the guard runs before any 3.10 syntax is evaluated)."""
    code = f"import sys; sys.version_info = (3, 9, 18, 'final', 0); sys.argv = ['backend', 'matrix']; {entry}"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()], result.stderr
    assert "needs Python 3.10 to 3.13; this is Python 3.9.18" in result.stderr
    assert "Traceback" not in result.stderr


def test_static_requirements_ask_nothing_of_python_39():
    """pip on 3.9 installs none of [build-system] requires (instead of refusing each for Requires-Python),
    then the backend's guard speaks; on 3.10 to 3.13 it installs them all."""
    from packaging.requirements import Requirement

    from backend.toml import loads

    declared = [Requirement(r) for r in loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]]
    assert not [r for r in declared if r.marker is None or r.marker.evaluate({"python_version": "3.9"})]
    for python in ("3.10", "3.13"):
        wanted = {r.name for r in declared if r.marker.evaluate({"python_version": python})}
        assert wanted >= {module_req.split("=")[0].split(">")[0] for _, module_req in needs.RUNTIME}


# 10. ``python -m backend matrix | head``: a closed pipe ends quietly, as Unix tools do.

def test_a_closed_pipe_ends_quietly(tmp_path):
    reader, writer = os.pipe()
    os.close(reader)  # the reader is gone before the command writes its first line
    process = subprocess.Popen([sys.executable, "-m", "backend", "matrix"], cwd=ROOT, stdout=writer,
                               stderr=subprocess.PIPE, text=True)
    os.close(writer)
    _, err = process.communicate(timeout=60)
    assert err == "", err
    assert process.returncode == 141  # 128 + SIGPIPE, what a shell reports for `yes | head`
