"""The meta wheel build_wheel returns: name, pins, reproducible, same METADATA as prepared."""

from __future__ import annotations

import zipfile

import pytest

from backend.errors import BackendError
from backend.variants import Variant
from backend.wheels import meta
from backend.wheels.relabel import relabel
from conftest import make_wheel
from test_wheels_support import check_record, installed, make_venv, pip_install

VARIANT = Variant(sm="90", isa="avx512", cuda="12.9", python="313")
LABEL = VARIANT.label


def test_name_version_and_pins(tmp_path):
    requires = [f"torch==2.9.1+{LABEL}", f"vllm==0.15.1+{LABEL}"]
    basename = meta.build(tmp_path, VARIANT.name, "0.15.1", requires, f"vLLM stack for {VARIANT.name}")
    assert basename == "vllm_python313_cuda12_9_sm90_avx512-0.15.1-py3-none-any.whl"
    check_record(tmp_path / basename)
    with zipfile.ZipFile(tmp_path / basename) as archive:
        text = archive.read("vllm_python313_cuda12_9_sm90_avx512-0.15.1.dist-info/METADATA").decode()
        assert {i.date_time for i in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    assert "Name: vllm-python313-cuda12_9-sm90-avx512\n" in text
    assert "Version: 0.15.1\n" in text
    assert f"Requires-Dist: torch==2.9.1+{LABEL}\n" in text
    assert VARIANT.name in text.split("Summary: ")[1].splitlines()[0]


def test_reproducible_and_prepared_metadata_identical(tmp_path):
    args = (VARIANT.name, "0.15.1", [f"torch==2.9.1+{LABEL}"], "summary")
    first = meta.build(tmp_path / "a", *args)
    second = meta.build(tmp_path / "b", *args)
    assert (tmp_path / "a" / first).read_bytes() == (tmp_path / "b" / second).read_bytes()
    info = meta.write_metadata_dir(tmp_path / "prep", *args)
    assert info == "vllm_python313_cuda12_9_sm90_avx512-0.15.1.dist-info"
    with zipfile.ZipFile(tmp_path / "a" / first) as archive:
        for name in ("METADATA", "WHEEL"):
            assert archive.read(f"{info}/{name}") == (tmp_path / "prep" / info / name).read_bytes()
    # Preparing again replaces the folder cleanly.
    assert meta.write_metadata_dir(tmp_path / "prep", *args) == info
    assert sorted(p.name for p in (tmp_path / "prep").iterdir()) == [info]


def test_pins_for_wheel_files(tmp_path):
    wheels = [tmp_path / f"vllm-0.15.1+{LABEL}-cp38-abi3-linux_x86_64.whl", tmp_path / f"torch-2.9.1+{LABEL}-cp313-cp313-linux_x86_64.whl"]
    assert meta.pins_for(wheels) == [f"torch==2.9.1+{LABEL}", f"vllm==0.15.1+{LABEL}"]
    with pytest.raises(BackendError, match="two wheels of torch"):
        meta.pins_for(wheels + [tmp_path / "torch-2.9.2-py3-none-any.whl"])


def test_bad_inputs(tmp_path):
    with pytest.raises(BackendError, match="not a valid version"):
        meta.metadata_text(VARIANT.name, "x.y", [], "s")
    with pytest.raises(BackendError, match="not valid"):
        meta.metadata_text(VARIANT.name, "1.0", ["torch=="], "s")
    with pytest.raises(BackendError, match="distribution name"):
        meta.metadata_text("-bad-", "1.0", [], "s")


def test_pip_installs_exactly_the_pinned_wheels(tmp_path):
    """pip install --no-index --find-links <house> <meta wheel> into a fresh venv."""
    house = tmp_path / "wheelhouse" / VARIANT.name
    build = tmp_path / "build"
    torch = relabel(make_wheel(build, "torch", "2.9.1"), house, version=f"2.9.1+{LABEL}")
    vllm = relabel(
        make_wheel(build, "vllm", "0.15.1", requires=("torch==2.9.1",)),
        house,
        version=f"0.15.1+{LABEL}",
        pins={"torch": f"2.9.1+{LABEL}"},
    )
    # Decoys pip must not pick: another variant's torch, a newer plain torch, an unpinned extra wheel.
    relabel(make_wheel(build, "torch", "2.9.1"), house, version="2.9.1+cu128.sm90.avx512")
    make_wheel(house, "torch", "2.9.2")
    make_wheel(house, "unrelated", "1.0")
    dist = tmp_path / "dist"
    basename = meta.build(dist, VARIANT.name, "0.15.1", meta.pins_for([torch, vllm]), f"vLLM stack {VARIANT.name}")
    python = make_venv(tmp_path / "venv")
    result = pip_install(python, "--find-links", str(house), str(dist / basename))
    assert result.returncode == 0, result.stdout + result.stderr
    assert installed(python) == {
        "torch": f"2.9.1+{LABEL}",
        "vllm": f"0.15.1+{LABEL}",
        "vllm-python313-cuda12_9-sm90-avx512": "0.15.1",
    }
