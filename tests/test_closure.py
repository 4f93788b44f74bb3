"""The closed wheelhouse (backend/wheels/closure.py) and the smoke check (backend/verify/smoke.py).

Real pip resolves and downloads against a --find-links folder of small wheels
made here (standing in for PyPI; pip's configuration of this machine is
switched off), then a fresh venv installs the wheelhouse with --no-index.
"""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from conftest import make_wheel  # noqa: E402

from standin_helpers import hermetic_pip_env  # noqa: E402

from backend.errors import BackendError  # noqa: E402
from backend.verify import smoke  # noqa: E402
from backend.wheels import closure  # noqa: E402
from backend.wheels.wheelhouse import Wheelhouse  # noqa: E402


def module(name: str, body: str = "") -> dict:
    return {f"{name}/__init__.py": (body or f"VALUE = {name!r}\n").encode()}


@pytest.fixture
def index(tmp_path, monkeypatch):
    """links/: depa 1.0 (needs depb), depa 0.5, depb 2.0; a built wheel stackpkg 1.0+lbl needing depa>=1."""
    links = tmp_path / "links"
    links.mkdir()
    make_wheel(links, "depa", "1.0", module("depa"), requires=["depb>=2"], tag="py3-none-any")
    make_wheel(links, "depa", "0.5", module("depa"), tag="py3-none-any")
    make_wheel(links, "depb", "2.0", module("depb"), tag="py3-none-any")
    built_dir = tmp_path / "built"
    built_dir.mkdir()
    built = make_wheel(built_dir, "stackpkg", "1.0+lbl", module("stackpkg", "import depa\nVALUE = depa.VALUE\n"),
                       requires=["depa>=1"], tag="py3-none-any")
    for key, value in hermetic_pip_env(links).items():
        monkeypatch.setenv(key, value)
    for key in [k for k in __import__("os").environ if k.startswith("PIP_") and k not in hermetic_pip_env(links)]:
        monkeypatch.delenv(key)
    house = Wheelhouse(tmp_path / "wheelhouse" / "variant", variant="variant")
    added = house.add(built, {"component": "stack", "build_key": "k"})
    return links, house, added


def close(house, built, lines=None):
    return closure.close(house, [built], python=Path(sys.executable), offline=False,
                         say=(lines.append if lines is not None else lambda _: None))


def test_runtime_dependencies_are_bundled_hash_pinned_and_install_with_no_index(index, tmp_path):
    links, house, built = index
    runtime = close(house, built)
    assert sorted(p.name for p in runtime) == ["depa-1.0-py3-none-any.whl", "depb-2.0-py3-none-any.whl"]
    entries = house.manifest()["wheels"]
    for wheel in runtime:
        entry = entries[wheel.name]
        assert entry["origin"] == "runtime" and entry["source"].startswith("file:")
        assert entry["source_hash"] == f"sha256:{entry['sha256']}"
    assert "depa-0.5" not in " ".join(entries)
    lock = (house.root / "requirements.txt").read_text()
    for name, entry in entries.items():
        assert f"{entry['distribution']}=={entry['version']} --hash=sha256:{entry['sha256']}" in lock
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=house.root, capture_output=True, text=True)
    assert check.returncode == 0 and len(check.stdout.splitlines()) == 3

    # The index is gone: the wheelhouse alone installs the stack, and it runs.
    (links / "depa-1.0-py3-none-any.whl").unlink()
    result = smoke.run(house.root, [built], runtime, [("stack", "import stackpkg; assert stackpkg.VALUE == 'depa'")],
                       work=tmp_path / "smoke", no_index=True)
    assert result.ok, (result.problems, result.log.read_text()[-3000:])
    assert "--no-index" in result.log.read_text() and "--require-hashes" in result.log.read_text()
    assert result.summary.startswith("3 distribution(s) installed with --no-index")


def test_a_missing_runtime_dependency_fails_the_build_naming_it(index):
    links, house, built = index
    (links / "depb-2.0-py3-none-any.whl").unlink()
    with pytest.raises(BackendError) as error:
        close(house, built)
    message = str(error.value)
    assert "cannot be resolved" in message and "depb>=2" in message and "runtime-deps=none" in message
    assert "\n" not in message
    assert not (house.root / "requirements.txt").exists()
    assert sorted(house.manifest()["wheels"]) == [built.name]


def test_the_closure_is_not_redone_for_the_same_wheels(index):
    links, house, built = index
    close(house, built)
    for wheel in links.glob("*.whl"):
        wheel.unlink()  # a second resolution would fail now
    lines: list[str] = []
    again = close(house, built, lines)
    assert sorted(p.name for p in again) == ["depa-1.0-py3-none-any.whl", "depb-2.0-py3-none-any.whl"]
    assert lines == ["runtime dependencies: unchanged, 2 wheel(s) in the wheelhouse"]


def test_offline_resolves_from_the_wheelhouse_alone(index):
    links, house, built = index
    close(house, built)
    (house.root / closure.STATE_FILE).unlink()
    for wheel in links.glob("*.whl"):
        wheel.unlink()
    runtime = closure.close(house, [built], python=Path(sys.executable), offline=True, say=lambda _: None)
    assert len(runtime) == 2


def test_a_dependency_that_was_dropped_leaves_the_wheelhouse(index, tmp_path):
    links, house, built = index
    close(house, built)
    newer = make_wheel(tmp_path / "built", "stackpkg", "1.1+lbl", module("stackpkg"), tag="py3-none-any")
    built2 = house.add(newer, {"component": "stack", "build_key": "k2"})
    runtime = close(house, built2)
    assert runtime == []
    assert sorted(house.manifest()["wheels"]) == [built2.name]
    assert not list(house.root.glob("dep*.whl"))


def test_smoke_names_the_distribution_that_does_not_import(index, tmp_path):
    links, house, built = index
    broken = make_wheel(tmp_path / "built", "brokenpkg", "1.0", {
        **module("brokenpkg", "raise ImportError('libfoo.so.1: cannot open shared object file')\n"),
        **module("fine"),
    }, tag="py3-none-any")
    house.add(broken, {"component": "broken", "build_key": "b"})
    runtime = closure.close(house, [built, house.root / broken.name], python=Path(sys.executable), offline=False,
                            say=lambda _: None)
    result = smoke.run(house.root, [built, house.root / broken.name], runtime,
                       [("stack (CPU)", "import stackpkg; assert stackpkg.VALUE == 'nope', 'stack CPU op'")],
                       work=tmp_path / "smoke", no_index=True)
    assert not result.ok
    assert result.problems == [
        "brokenpkg: import brokenpkg: ImportError: libfoo.so.1: cannot open shared object file",
        "stack (CPU): AssertionError: stack CPU op",
    ]


def test_smoke_reports_a_wheelhouse_that_does_not_install_without_an_index(index, tmp_path):
    links, house, built = index
    result = smoke.run(house.root, [built], [], [], work=tmp_path / "smoke", no_index=True)
    assert not result.ok
    assert result.problems[0].startswith("the wheelhouse does not install with --no-index")
    assert "depa" in result.problems[0]


def test_the_smoke_venv_ignores_the_pip_configuration(tmp_path, monkeypatch):
    """A pip.conf find-links or index must not make a wheelhouse look closed."""
    links = tmp_path / "links"
    links.mkdir()
    make_wheel(links, "depa", "1.0", module("depa"), tag="py3-none-any")
    house = tmp_path / "house"
    house.mkdir()
    built = make_wheel(house, "stackpkg", "1.0", module("stackpkg"), requires=["depa"], tag="py3-none-any")
    config = tmp_path / "pip.conf"
    config.write_text(f"[global]\nfind-links = {links}\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(config))
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    result = smoke.run(house, [built], [], [], work=tmp_path / "smoke", no_index=True)
    assert not result.ok and "depa" in result.problems[0]


def test_manifest_lists_runtime_wheels_for_the_returned_wheel(index, tmp_path):
    from backend.wheels import meta

    links, house, built = index
    runtime = close(house, built)
    pins = meta.pins_for([built] + runtime)
    assert pins == ["depa==1.0", "depb==2.0", "stackpkg==1.0+lbl"]
    data = json.loads((house.root / "manifest.json").read_text())
    assert {e["origin"] for e in data["wheels"].values() if e["distribution"] != "stackpkg"} == {"runtime"}


@pytest.mark.slow
def test_a_real_index_dependency_is_bundled_with_the_index_hash(tmp_path):
    """Through pip's own configuration (the index this machine reaches): the URL and sha256 come from the index."""
    built_dir = tmp_path / "built"
    built_dir.mkdir()
    built = make_wheel(built_dir, "stackpkg", "1.0+lbl", module("stackpkg"), requires=["idna==3.10"], tag="py3-none-any")
    house = Wheelhouse(tmp_path / "wheelhouse" / "variant", variant="variant")
    added = house.add(built, {"component": "stack", "build_key": "k"})
    runtime = closure.close(house, [added], python=Path(sys.executable), offline=False, say=lambda _: None)
    assert [p.name for p in runtime] == ["idna-3.10-py3-none-any.whl"]
    entry = house.manifest()["wheels"]["idna-3.10-py3-none-any.whl"]
    assert entry["source"].startswith(("https://", "file:")) and entry["source_hash"] == f"sha256:{entry['sha256']}"
