"""Wheelhouse: complete wheels only, manifest + SHA256SUMS, replace-after-complete, lookup."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from backend.errors import BackendError

from backend.wheels import wheelhouse as wheelhouse_module
from backend.wheels.wheelhouse import Wheelhouse
from conftest import make_wheel

VARIANT = "vllm-python313-cuda12_9-sm90-avx512"
LABEL = "cu129.sm90.avx512"


def record(component, key="k1", **more):
    return {"component": component, "source": f"https://example.invalid/{component}.tar.gz", "source_hash": "sha256:00", "build_key": key, "seconds": 12.5, **more}


@pytest.fixture
def house(tmp_path):
    return Wheelhouse(tmp_path / "wheelhouse" / VARIANT, toolchain="nix", toolchain_version="12.9.86", flags=["-mavx512f"])


def leftovers(root):
    return sorted(p.name for p in root.iterdir() if p.name.endswith(".part"))


def test_add_writes_manifest_and_sums(tmp_path, house):
    torch = make_wheel(tmp_path / "build", "torch", f"2.9.1+{LABEL}")
    vllm = make_wheel(tmp_path / "build", "vllm", f"0.15.1+{LABEL}")
    placed = house.add(torch, record("torch"))
    house.add(vllm, record("vllm", key="k2"), move=True)
    assert placed == house.root / torch.name
    assert not vllm.exists() and torch.exists()
    manifest = json.loads((house.root / "manifest.json").read_text())
    assert manifest["variant"] == VARIANT
    assert manifest["toolchain"] == "nix" and manifest["toolchain_version"] == "12.9.86"
    assert manifest["flags"] == ["-mavx512f"] and manifest["created"]
    entry = manifest["wheels"][torch.name]
    assert entry["distribution"] == "torch" and entry["version"] == f"2.9.1+{LABEL}"
    assert entry["size"] == torch.stat().st_size
    assert {"sha256", "source", "source_hash", "build_key", "seconds", "component"} <= set(entry)
    assert [p.name for p in house.wheels()] == sorted([torch.name, vllm.name])
    done = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=house.root, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(": OK") == 2
    assert leftovers(house.root) == []


def test_newer_wheel_replaces_older_only_when_complete(tmp_path, house, monkeypatch):
    old = make_wheel(tmp_path / "a", "torch", f"2.9.1+{LABEL}")
    house.add(old, record("torch"))
    manifest_before = (house.root / "manifest.json").read_bytes()
    sums_before = (house.root / "SHA256SUMS").read_bytes()
    new = make_wheel(tmp_path / "b", "torch", f"2.9.2+{LABEL}", big=3_000_000)

    # A copy failing half-way (disk full at the fsync) leaves everything as it was.
    real_fsync = os.fsync

    def failing(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(wheelhouse_module.os, "fsync", failing)
    with pytest.raises(BackendError, match="No space left on device.*as it was before"):
        house.add(new, record("torch", key="k2"))
    monkeypatch.setattr(wheelhouse_module.os, "fsync", real_fsync)
    assert sorted(p.name for p in house.root.glob("*.whl")) == [old.name]
    assert (house.root / "manifest.json").read_bytes() == manifest_before
    assert (house.root / "SHA256SUMS").read_bytes() == sums_before
    assert leftovers(house.root) == []

    # Ctrl-C in the middle of the copy: the same.
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(wheelhouse_module.Wheelhouse, "_write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        house.add(new, record("torch", key="k2"))
    monkeypatch.undo()
    assert (house.root / old.name).exists()  # the older wheel is never removed before the manifest
    assert (house.root / "manifest.json").read_bytes() == manifest_before
    assert leftovers(house.root) == []

    house.add(new, record("torch", key="k2"))
    assert [p.name for p in house.root.glob("*.whl")] == [new.name]
    assert list(house.manifest()["wheels"]) == [new.name]
    assert house.lookup("torch", "k2") == [house.root / new.name]
    assert house.lookup("torch", "k1") == []


def test_lookup_misses_when_the_wheel_changed_or_vanished(tmp_path, house):
    wheel = make_wheel(tmp_path / "a", "xformers", f"0.0.33+{LABEL}")
    path = house.add(wheel, record("xformers", key="abc"))
    assert house.lookup("xformers", "abc") == [path]
    assert house.lookup("xformers", "other") == []
    assert house.lookup("vllm", "abc") == []
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF  # same size, different bytes
    path.write_bytes(bytes(data))
    assert house.lookup("xformers", "abc") == []
    path.unlink()
    assert house.lookup("xformers", "abc") == []
    assert house.wheels() == []


def test_two_processes_adding_at_once_keep_every_wheel(tmp_path):
    import sys
    import textwrap

    root = tmp_path / "wheelhouse" / VARIANT
    wheels = [make_wheel(tmp_path / "w", name, f"1.0+{LABEL}") for name in ("a1", "b2", "c3", "d4", "e5", "f6")]
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        sys.path.insert(0, sys.argv[1])
        from backend.wheels.wheelhouse import Wheelhouse
        house = Wheelhouse(Path(sys.argv[2]))
        for wheel in sys.argv[3:]:
            house.add(Path(wheel), {"component": Path(wheel).name.split("-")[0], "build_key": "k"})
        """
    )
    from conftest import ROOT

    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(ROOT), str(root), *map(str, wheels[i::2])]) for i in range(2)
    ]
    assert [p.wait() for p in procs] == [0, 0]
    house = Wheelhouse(root)
    assert [p.name for p in house.wheels()] == sorted(w.name for w in wheels)
    assert subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=root).returncode == 0


def test_a_new_header_keeps_wheels_and_created(tmp_path, house):
    house.add(make_wheel(tmp_path / "a", "torch", "2.9.1"), record("torch"))
    created = house.manifest()["created"]
    later = Wheelhouse(house.root, toolchain="pypi", toolchain_version="13.0.96")  # flags not given: kept
    later.add(make_wheel(tmp_path / "b", "xformers", "0.0.33"), record("xformers"))
    manifest = house.manifest()
    assert manifest["toolchain"] == "pypi" and manifest["toolchain_version"] == "13.0.96"
    assert manifest["created"] == created
    assert manifest["flags"] == ["-mavx512f"] and len(manifest["wheels"]) == 2
