"""The build-requirement lock (backend/sources/buildreqs.py, third_party/build-requirements.lock).

Real pip, hash-checking mode, against a --find-links folder of wheels made
here; pip's configuration of this machine is switched off.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from conftest import make_wheel  # noqa: E402

from standin_helpers import hermetic_pip_env  # noqa: E402

from backend.errors import BackendError  # noqa: E402
from backend.sources import buildreqs  # noqa: E402


def environment(python: str, machine: str) -> dict:
    from packaging.markers import default_environment

    env = default_environment()
    env.update(python_version=python, python_full_version=f"{python}.0", platform_machine=machine,
               sys_platform="linux", platform_system="Linux", implementation_name="cpython")
    return env


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
@pytest.mark.parametrize("python", buildreqs.PYTHONS)
def test_the_lock_covers_every_build_requirement(python, machine):
    wanted = buildreqs.all_build_requirements()
    assert buildreqs.uncovered(wanted, environment=environment(python, machine)) == [], (
        "a recipe's build requirements changed: python -m backend lock --build-requirements")
    pins = buildreqs.pins(environment=environment(python, machine))
    assert "numpy" in pins and "setuptools" in pins and "cmake" in pins


def test_every_lock_line_is_pinned_with_hashes():
    text = buildreqs.DEFAULT_LOCK.read_text()
    entries = [block for block in text.replace("\\\n", " ").splitlines() if block and not block.lstrip().startswith("#")]
    assert entries and all("==" in e and "--hash=sha256:" in e for e in entries)


@pytest.fixture
def lockset(tmp_path, monkeypatch):
    links = tmp_path / "links"
    links.mkdir()
    wheel = make_wheel(links, "lockedtool", "1.0", {"lockedtool/__init__.py": b"VALUE = 1\n"}, tag="py3-none-any")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    lock = tmp_path / "build-requirements.lock"
    lock.write_text(f"lockedtool==1.0 \\\n    --hash=sha256:{digest}\n")
    for key, value in hermetic_pip_env(links).items():
        monkeypatch.setenv(key, value)
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    return links, wheel, lock, env_dir / "bin" / "python", tmp_path / "cache"


def test_fetch_then_offline_install_checks_hashes(lockset):
    links, wheel, lock, python, cache = lockset
    out = buildreqs.fetch(cache, lock=lock)
    assert [p.name for p in out.glob("*.whl")] == [wheel.name]
    wheel.unlink()  # the index is gone: offline uses the cache alone
    lines: list[str] = []
    buildreqs.install(python, ["lockedtool>=1"], cache=cache, offline=True, lock=lock, say=lines.append)
    check = subprocess.run([str(python), "-c", "import lockedtool; print(lockedtool.VALUE)"], capture_output=True, text=True)
    assert check.stdout.strip() == "1", check.stderr
    assert lines and "installing the locked build requirements" in lines[0]


def test_the_lock_refuses_a_tampered_wheel(lockset):
    links, wheel, lock, python, cache = lockset
    out = buildreqs.fetch(cache, lock=lock)
    fetched = out / wheel.name
    make_wheel(out, "lockedtool", "1.0", {"lockedtool/__init__.py": b"import os; VALUE = 'evil'\n"}, tag="py3-none-any")
    assert fetched.read_bytes() != wheel.read_bytes()
    with pytest.raises(BackendError) as error:
        buildreqs.install(python, ["lockedtool"], cache=cache, offline=True, lock=lock, say=lambda _: None)
    message = str(error.value)
    assert "does not match its hash" in message and "lockedtool" in message and "\n" not in message
    check = subprocess.run([str(python), "-c", "import lockedtool"], capture_output=True, text=True)
    assert check.returncode != 0  # nothing was installed


def test_offline_without_fetched_files_says_what_to_run(lockset):
    links, wheel, lock, python, cache = lockset
    lines: list[str] = []
    with pytest.raises(BackendError, match="offline build: the build environment lacks lockedtool>=1"):
        buildreqs.install(python, ["lockedtool>=1"], cache=cache, offline=True, lock=lock, say=lines.append)
    assert lines and "python -m backend fetch" in lines[0] and "unpinned" in lines[0]


def test_a_build_installs_only_the_lock_lines_its_requirements_need():
    import re

    def names(text):
        return sorted(set(re.findall(r"^([a-z0-9_.-]+)==", text, re.M)))

    assert names(buildreqs.subset(["ninja"])) == ["ninja"]
    assert {"certifi", "idna", "urllib3", "charset-normalizer", "requests"} <= set(names(buildreqs.subset(["requests"])))
    bnb = names(buildreqs.subset(["scikit-build-core", "cmake>=3.22.1"]))
    assert "packaging" in bnb and "numpy" not in bnb and not [n for n in bnb if n.startswith("nvidia")]


def test_a_requirement_the_lock_lacks_is_named(tmp_path):
    lock = tmp_path / "l.lock"
    lock.write_text("setuptools==80.9.0 \\\n    --hash=sha256:" + "0" * 64 + "\n")
    assert buildreqs.uncovered(["setuptools>=77", "setuptools<70", "grpcio-tools"], lock) == ["setuptools<70", "grpcio-tools"]
    lock.write_text("setuptools>=80\n")
    with pytest.raises(BackendError, match="not pinned with =="):
        buildreqs.pins(lock)


@pytest.mark.slow
def test_the_real_lock_installs_for_this_python_with_hash_checking(tmp_path):
    """Downloads torch's locked build requirements (numpy, cmake, setuptools ...) from the index."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    lines: list[str] = []
    from backend import recipes

    torch_needs = recipes.get("torch").build_requires  # numpy, cmake, setuptools ... (not the GPU wheels)
    buildreqs.install(python, torch_needs, cache=tmp_path / "cache", offline=False, say=lines.append)
    assert not [line for line in lines if "not in" in line]
    pins = buildreqs.pins()
    script = "import numpy, setuptools, cmake; print(numpy.__version__, setuptools.__version__)"
    out = subprocess.run([str(python), "-c", script], capture_output=True, text=True, check=True).stdout.split()
    assert out == [pins["numpy"], pins["setuptools"]]
