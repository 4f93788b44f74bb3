"""`python -m backend` as a user runs it: matrix, plan, detect, and errors as one line."""

import json
import platform
import re
import subprocess
from pathlib import Path

import pytest

from backend.cli import detect_variant
from backend.host import Gpu, Host
from conftest import ROOT, bare_env


def test_matrix_with_python_313_lists_the_seed_names(run_backend):
    out = run_backend("matrix", "--python", "3.13", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    seed = [r["name"] for r in rows if r["seed"]]
    assert len(seed) == 88
    assert "vllm-python313-cuda12_9-sm90-avx512" in seed
    assert "vllm-python313-cuda12_8-sm103-avx512" not in seed
    extension = [r for r in rows if not r["seed"]]
    assert extension and all(r["cuda"] == "13.0" or r["sm"] in ("70", "121") for r in extension)
    assert {"name", "sm", "isa", "cuda", "platform"} <= set(rows[0])


def test_matrix_table_marks_cuda13_rows(run_backend):
    out = run_backend("matrix", "--python", "3.13")
    assert out.returncode == 0
    line = next(l for l in out.stdout.splitlines() if l.startswith("vllm-python313-cuda13_0-sm90-avx512"))
    assert "extension" in line
    assert "88 of the seed's matrix" in out.stdout
    v100 = next(l for l in out.stdout.splitlines() if l.startswith("vllm-python313-cuda12_9-sm70-avx512 "))
    assert "sm_70 (extension)" in v100 and "no flashinfer" in v100
    gb10 = next(l for l in out.stdout.splitlines() if l.startswith("vllm-python313-cuda12_9-sm121-armv9"))
    assert "sm_121 (extension)" in gb10




def test_matrix_defaults_to_running_python(run_backend):
    import sys

    out = run_backend("matrix", "--json", "--cuda", "12.9")
    tag = f"python{sys.version_info.major}{sys.version_info.minor}"
    assert all(tag in r["name"] for r in json.loads(out.stdout))


BAD = [
    (["-C", "sm=91", "-C", "isa=avx2"], ["'sm'", "'91'", "did you mean '90'"]),
    (["-C", "sm=90", "-C", "isa=avx-512"], ["'isa'", "'avx-512'", "did you mean 'avx512'"]),
    (["-C", "sm=103", "-C", "isa=avx2", "-C", "cuda=12.8"], ["'cuda'", "'12.8'", "sm=103", "12.9"]),
    (["-C", "sm=61", "-C", "isa=avx512"], ["'isa'", "'avx512'", "sm=61", "avx, avx2"]),
    (["-C", "sm=90", "-C", "isa=armv9"], ["'isa'", "'armv9'", "aarch64"]),
    (["-C", "sm=90", "-C", "sm=80", "-C", "isa=avx2"], ["'sm'", "given 2 times"]),
    (["-C", "smm=90"], ["unknown setting 'smm'", "did you mean 'sm'"]),
    (["-C", "sm=90", "-C", "isa=avx2", "-C", "jobs=0"], ["'jobs'", "'0'"]),
    (["-C", "sm=90", "-C", "isa=avx2", "-C", "jobs=abc"], ["'jobs'", "'abc'"]),
    (["-C", "sm=90", "-C", "isa=avx2", "-C", "components=foo"], ["'components'", "'foo'"]),
    (["-C", "sm=90", "-C", "isa=avx2", "-C", "components=all,torch"],
     ["'components'", "'all,torch'", "give it alone", "accepted: all, a comma list of torch"]),
    (["-C", "sm=90", "-C", "isa=avx2", "-C", "source.torch=/nonexistent/torch"], ["'source.torch'", "does not exist"]),
]


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the armv9-on-x86 case assumes an x86_64 host")
@pytest.mark.parametrize("args, parts", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_plan_bad_input_is_one_line_without_traceback(run_backend, args, parts):
    out = run_backend("plan", *args)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    lines = [l for l in out.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, out.stderr
    for part in parts:
        assert part in lines[0], (part, lines[0])


def test_detect_without_gpu_still_reports_isa(run_backend):
    out = run_backend("detect", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["isa"] in ("avx512bf16", "avx512vnni", "avx512", "avx2", "avx", "armv9", "armv8_2")
    if not data["gpus"]:
        assert data["sm"] is None
        assert any("no NVIDIA GPU" in r for r in data["remarks"])
    assert data["command"][:3] == ["pip", "wheel", "."]


def test_detect_maps_host_to_variant():
    h100_host = Host("x86_64", frozenset("avx avx2 fma f16c avx512f avx512dq avx512vl avx512bw avx512_vnni".split()),
                     gpus=(Gpu("NVIDIA H100", "90"),))
    assert detect_variant(h100_host)[:2] == ("90", "avx512vnni")
    pascal = Host("x86_64", frozenset("avx avx2 fma f16c avx512f avx512dq avx512vl avx512bw".split()),
                  gpus=(Gpu("Tesla P40", "61"),))
    assert detect_variant(pascal)[:2] == ("61", "avx2")
    grace = Host("aarch64", frozenset("asimdhp asimddp sve2 svebf16 svei8mm".split()), gpus=(Gpu("GH200", "90"),))
    assert detect_variant(grace)[:2] == ("90", "armv9")
    jetson = Host("aarch64", frozenset("asimdhp asimddp".split()), gpus=(Gpu("Orin", "87"),))
    sm, isa, remarks, _, _ = detect_variant(jetson)
    assert sm is None and any("sm_87" in r for r in remarks)


def _toolkit(root: Path, version: str, *, cublas: bool) -> Path:
    """A CUDA toolkit folder whose nvcc is a script printing the release line real nvcc prints."""
    home = root / f"cuda-{version}"
    (home / "bin").mkdir(parents=True)
    (home / "lib64").mkdir()
    (home / "include").mkdir()
    (home / "include" / "cuda_runtime.h").write_text("")
    nvcc = home / "bin" / "nvcc"
    nvcc.write_text(f"#!/bin/sh\necho 'Cuda compilation tools, release {version}, V{version}.80'\n")
    nvcc.chmod(0o755)
    major = version.split(".")[0]
    (home / "lib64" / f"libcudart.so.{major}").write_text("")
    if cublas:
        (home / "lib64" / f"libcublas.so.{major}").write_text("")
    return home


def test_detect_recommends_a_cuda_this_host_can_build(tmp_path):
    """Only a CUDA 13.0 toolkit here (no 12.x, no nix): the 12.9 variant cannot be built, 13.0 can."""
    h100 = Host("x86_64", frozenset("avx avx2 fma f16c avx512f avx512dq avx512vl avx512bw".split()),
                gpus=(Gpu("NVIDIA H100", "90"),))
    complete13 = _toolkit(tmp_path / "a", "13.0", cublas=True)
    sm, isa, remarks, cuda, toolchain = detect_variant(h100, {"PATH": str(tmp_path / "empty"), "CUDA_HOME": str(complete13)})
    assert (sm, cuda, toolchain) == ("90", "13.0", "system")
    assert any("CUDA 12.9" in r and "no nix" in r for r in remarks)

    # nvcc without cuBLAS (this CI machine's /usr/local/cuda-13.0): CUDA 13.0 from PyPI instead.
    bare13 = _toolkit(tmp_path / "b", "13.0", cublas=False)
    sm, isa, remarks, cuda, toolchain = detect_variant(h100, {"PATH": str(tmp_path / "empty"), "CUDA_HOME": str(bare13)})
    assert (cuda, toolchain) == ("13.0", "pypi")
    assert any("no cuBLAS" in r for r in remarks)

    # A complete 12.9 toolkit: the seed's default.
    complete129 = _toolkit(tmp_path / "c", "12.9", cublas=True)
    assert detect_variant(h100, {"PATH": str(tmp_path / "empty"), "CUDA_HOME": str(complete129)})[3:] == ("12.9", "system")

    # SM61 has no CUDA 13.0 variant: with neither 12.x nor nix, nothing can be built, and detect says so.
    pascal = Host("x86_64", frozenset("avx avx2 fma f16c".split()), gpus=(Gpu("Tesla P40", "61"),))
    sm, isa, remarks, cuda, toolchain = detect_variant(pascal, {"PATH": str(tmp_path / "empty"), "CUDA_HOME": str(complete13)})
    assert cuda is None and toolchain is None
    assert any("no CUDA toolchain can be had here" in r for r in remarks)

    # nix on PATH gives 12.9.
    nixdir = tmp_path / "nixbin"
    nixdir.mkdir()
    (nixdir / "nix").write_text("#!/bin/sh\n")
    (nixdir / "nix").chmod(0o755)
    assert detect_variant(h100, {"PATH": str(nixdir), "CUDA_HOME": str(bare13)})[3:] == ("12.9", "nix")


def test_detect_command_names_the_cuda_it_chose(run_backend, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    toolkit = _toolkit(tmp_path, "13.0", cublas=True)
    out = run_backend("detect", "--json", env={"PATH": str(empty), "CUDA_HOME": str(toolkit)})
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["cuda"] == "13.0"
    assert data["command"][-6:] == ["-C", "cuda=13.0", "-C", "toolchain=system", "-w", "dist"]


def _run_bare(python, tmp_path, *args):
    return subprocess.run([str(python), "-m", "backend", *args], cwd=ROOT, capture_output=True, text=True,
                          env=bare_env(tmp_path))


@pytest.mark.parametrize("args", [("matrix",), ("plan", "-C", "sm=90", "-C", "isa=avx512"), ("detect",)])
def test_read_only_commands_need_nothing_installed(bare_python, tmp_path, args):
    out = _run_bare(bare_python, tmp_path, *args)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("command", ["build", "fetch", "verify", "rebuild-check"])
def test_working_commands_on_a_bare_interpreter_say_what_to_install(bare_python, tmp_path, command):
    args = [command, "-C", "sm=90", "-C", "isa=avx512", "-C", "components=bitsandbytes"]
    if command == "verify":
        args = ["verify", "README.md"]
    if command == "rebuild-check":
        args = ["rebuild-check", str(tmp_path)]
    out = _run_bare(bare_python, tmp_path, *args)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "pyelftools>=0.31" in lines[0] and "filelock>=3.12" in lines[0]
    assert f"{bare_python} -m pip install" in lines[0]
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.whl"))


def test_static_build_requirements_are_what_the_backend_checks():
    from backend import needs
    from backend.toml import loads

    root = Path(__file__).resolve().parent.parent
    declared = loads((root / "pyproject.toml").read_text())["build-system"]["requires"]
    assert sorted(declared) == sorted(needs.requirements())


def test_a_recipe_cycle_is_one_line_naming_it(tmp_path):
    """In a copy of the project where torch and bitsandbytes depend on each other, each command says so in one line."""
    import shutil
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    project = tmp_path / "project"
    for folder in ("backend", "third_party", "patches"):
        shutil.copytree(root / folder, project / folder, ignore=shutil.ignore_patterns("__pycache__", "downloads"))
    shutil.copy(root / "pyproject.toml", project / "pyproject.toml")
    for name, depends in (("torch", "bitsandbytes"), ("bitsandbytes", "torch")):
        recipe = project / "backend" / "recipes" / f"{name}.py"
        text, found = re.subn(r"^    depends ?= ?\(\)(,?)$", rf"    depends = ({depends!r},)\1", recipe.read_text(), flags=re.M)
        assert found == 1, name
        recipe.write_text(text)
    for command in (["fetch", "-C", "offline=true"], ["plan", "-C", "sm=90", "-C", "isa=avx2"]):
        result = subprocess.run([sys.executable, "-m", "backend", *command, "-C", "components=bitsandbytes",
                                 "-C", f"cache-dir={tmp_path / 'cache'}"], cwd=project, capture_output=True, text=True)
        assert result.returncode != 0, command
        assert result.stderr.strip().splitlines() == ["error: recipe dependency cycle: torch -> bitsandbytes -> torch"], \
            (command, result.stderr[-2000:])
