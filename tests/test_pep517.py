"""The PEP 517 hooks through real pip: bad input is one line, the requirements fit the variant."""

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

import backend

ROOT = Path(__file__).resolve().parent.parent

BAD = [
    (["sm=91", "isa=avx2"], ["'sm'", "'91'", "did you mean '90'"]),
    (["sm=90", "isa=avx-512"], ["'isa'", "did you mean 'avx512'"]),
    (["sm=103", "isa=avx2", "cuda=12.8"], ["'cuda'", "'12.8'", "sm=103"]),
    (["sm=61", "isa=avx512"], ["'isa'", "sm=61"]),
    (["sm=90", "isa=armv9"], ["'isa'", "'armv9'", "aarch64"]),
    (["sm=90", "sm=80", "isa=avx2"], ["'sm'", "given 2 times"]),
    (["smm=90"], ["unknown setting 'smm'", "did you mean 'sm'"]),
    (["sm=90", "isa=avx2", "jobs=0"], ["'jobs'", "'0'"]),
    (["sm=90", "isa=avx2", "jobs=abc"], ["'jobs'", "'abc'"]),
    (["sm=90", "isa=avx2", "components=foo"], ["'components'", "'foo'"]),
    (["sm=90", "isa=avx2", "source.torch=/nonexistent/torch"], ["'source.torch'", "does not exist"]),
]


def pip_wheel(pairs, tmp_path, isolation=False, env=None):
    args = [sys.executable, "-m", "pip", "wheel", str(ROOT), "-w", str(tmp_path / "dist"), "--no-deps"]
    if not isolation:
        args.append("--no-build-isolation")
    for pair in pairs:
        args += ["-C", pair]
    return subprocess.run(args, capture_output=True, text=True, env=env)


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the armv9-on-x86 case assumes an x86_64 host")
@pytest.mark.parametrize("pairs, parts", BAD, ids=[" ".join(p) for p, _ in BAD])
def test_bad_input_through_pip_is_one_line(pairs, parts, tmp_path):
    result = pip_wheel(pairs, tmp_path)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    ours = [line.strip() for line in output.splitlines() if line.strip().startswith("error: ") and "setting" in line]
    assert len(ours) == 1, output
    for part in parts:
        assert part in ours[0], (part, ours[0])
    assert not (tmp_path / "dist").exists() or not list((tmp_path / "dist").iterdir())


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the armv9-on-x86 case assumes an x86_64 host")
def test_a_bad_variable_through_pip_names_the_variable(tmp_path):
    """VLLM_STACK_ISA=armv9 on an x86_64 host: refused at plan time in one line that names the variable set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLLM_STACK_")}
    env.update(VLLM_STACK_ISA="armv9", VLLM_STACK_CACHE_DIR=str(tmp_path / "cache"))
    result = pip_wheel(["sm=90"], tmp_path, env=env)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" not in output
    ours = [line.strip() for line in output.splitlines() if line.strip().startswith("error: ") and "setting" in line]
    assert len(ours) == 1, output
    assert ours[0].startswith("error: setting 'VLLM_STACK_ISA': bad value 'armv9': it is an aarch64 ISA and this "
                              "host is x86_64; accepted here: avx"), ours[0]


def test_bad_input_with_build_isolation(tmp_path):
    """pip's default: it installs the static requirements, then our hook refuses."""
    result = pip_wheel(["sm=91", "isa=avx2"], tmp_path, isolation=True)
    assert result.returncode != 0
    assert "setting 'sm': bad value '91'" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_requirements_follow_the_variant():
    full = backend.get_requires_for_build_wheel({"sm": "90", "isa": "avx2", "cuda": "13.0", "toolchain": "pypi"})
    assert "ninja" in full and any(r.startswith("numpy") for r in full)
    # The backend's own needs (pyelftools, ...) are static: pyproject.toml lists them, not this hook.
    assert not any(r.startswith("pyelftools") for r in full)
    assert "pip" in full  # the PyPI toolchain installs CUDA 13 with pip
    bnb = backend.get_requires_for_build_wheel({"sm": "90", "isa": "avx2", "components": "bitsandbytes"})
    assert any(r.startswith("scikit-build-core") for r in bnb)
    assert not any(r.startswith("numpy") for r in bnb)  # torch's build needs are not asked for
    existing = backend.get_requires_for_build_wheel({"sm": "90", "isa": "avx2", "components": "xformers", "torch": "existing"}) \
        if _torch_importable() else None
    if existing is not None:
        assert not any(r.startswith("torch") for r in existing)


def test_a_line_that_is_not_built_is_refused_before_its_requirements(capsys):
    """pip installs what get_requires_for_build_wheel returns before build_wheel runs: a release line the plan
    refuses (vLLM 0.16.0: flashinfer 0.6.3 unknown to its recipe) stops there, with the plan's reasons."""
    with pytest.raises(SystemExit) as stopped:
        backend.get_requires_for_build_wheel({"sm": "90", "isa": "avx512", "vllm": "0.16.0"})
    assert stopped.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: vllm=0.16.0 is planned, not built: ") and "flashinfer 0.6.3" in err
    assert "build requirement(s) first" not in err


def _torch_importable():
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def test_prepare_metadata_names_the_variant(tmp_path):
    name = backend.prepare_metadata_for_build_wheel(str(tmp_path), {"sm": "90", "isa": "avx2", "cuda": "12.8"})
    py = f"{sys.version_info.major}{sys.version_info.minor}"
    assert name == f"vllm_python{py}_cuda12_8_sm90_avx2-0.15.1.dist-info"
    text = (tmp_path / name / "METADATA").read_text()
    assert f"Name: vllm-python{py}-cuda12_8-sm90-avx2" in text and "Version: 0.15.1" in text
    assert "Requires-Dist" not in text  # pip would resolve them before they exist


def test_building_from_the_sdist_needs_an_explicit_wheelhouse(tmp_path):
    """python -m build (no --wheel) builds the wheel from an unpacked sdist in a temporary folder."""
    import tarfile

    sdist = backend.build_sdist(str(tmp_path), {})
    with tarfile.open(tmp_path / sdist) as archive:
        archive.extractall(tmp_path / "unpacked", filter="data")
    tree = next((tmp_path / "unpacked").iterdir())
    assert (tree / "PKG-INFO").is_file() and (tree / "backend" / "__init__.py").is_file()
    code = ("import backend; backend.prepare_metadata_for_build_wheel("
            "'meta', {'sm': '90', 'isa': 'avx2'})")
    result = subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True, text=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "setting 'wheelhouse' is required when building from the sdist" in result.stderr
    code_ok = code.replace("'isa': 'avx2'", f"'isa': 'avx2', 'wheelhouse': '{tmp_path / 'wh'}'")
    ok = subprocess.run([sys.executable, "-c", code_ok], cwd=tree, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
