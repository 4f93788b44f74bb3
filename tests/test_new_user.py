"""Issue 27, the first hour of a new user: each item reproduced as the user met it, then held fixed.

Every test here runs the real command (``python -m backend``, pip, the PEP 517
hooks in a bare interpreter) the way the README tells a user to.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from backend import doc_tables, needs, recipes
from conftest import bare_env

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


# 1. The README's dependency line is generated from backend/needs.py and lists every one of them.

def test_readme_names_every_requirement_build_fetch_lock_and_verify_import():
    text = README.read_text()
    block = re.search(r"<!-- generated: backend-needs [^\n]*-->\n(.*?)<!-- end: backend-needs -->", text, re.S)
    assert block, "README.md has no generated backend-needs line"
    line = block.group(1).strip()
    assert line.startswith("python3 -m pip install ")
    for _, requirement in needs.RUNTIME + needs.PROGRAMS:
        assert requirement in line, f"README's install line lacks {requirement}"
    assert "backend-needs" not in doc_tables.stale_tables("README.md", text), "run python -m backend.doc_tables"


# 2. Every PEP 517 hook stops in one line when the backend's own requirements are missing.

HOOKS = [
    ("get_requires_for_build_wheel", "({'sm': '90', 'isa': 'avx512'})"),
    ("prepare_metadata_for_build_wheel", "(out, {'sm': '90', 'isa': 'avx512'})"),
    ("build_wheel", "(out, {'sm': '90', 'isa': 'avx512'})"),
    ("build_sdist", "(out)"),
    ("get_requires_for_build_editable", "({'sm': '90', 'isa': 'avx512'})"),
    ("build_editable", "(out, {'sm': '90', 'isa': 'avx512'})"),
]


@pytest.mark.parametrize("hook, call", HOOKS, ids=[h for h, _ in HOOKS])
def test_every_hook_on_a_bare_interpreter_is_one_line(bare_python, tmp_path, hook, call):
    out = tmp_path / "out"
    out.mkdir()
    code = f"import backend; out = {str(out)!r}; backend.{hook}{call}"
    result = subprocess.run([str(bare_python), "-c", code], cwd=ROOT, capture_output=True, text=True,
                            env=bare_env(tmp_path))
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("error: ") and "packaging>=23" in lines[0] and hook in lines[0]
    assert f"{bare_python} -m pip install" in lines[0]
    assert not list(out.iterdir())


def test_pip_wheel_without_build_isolation_on_a_bare_venv_is_one_line(bare_python, tmp_path):
    """The user's path: ``pip wheel . --no-build-isolation`` with an interpreter that has nothing installed
    (pip runs with it through ``--python``, as it would from inside the venv)."""
    result = subprocess.run([sys.executable, "-m", "pip", "--python", str(bare_python), "wheel", str(ROOT),
                             "--no-build-isolation", "--no-deps", "-C", "sm=90", "-C", "isa=avx512",
                             "-w", str(tmp_path / "dist")],
                            capture_output=True, text=True, env={**bare_env(tmp_path), "PIP_NO_INDEX": "1"})
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


# Items 3 to 6 meet torch=existing: a torch installed outside the backend, here a small stand-in of its
# installed layout: torch/version.py with the annotated ``cuda: Optional[str] = ...`` line torch's
# tools/generate_torch_version.py writes (v2.9.1), its dist-info,
# and (optionally) torch/lib/libtorch_cuda.so with GPU code for given SMs.

def fake_torch(site: Path, version: str, cuda: str | None, sms: tuple[str, ...] = ()) -> Path:
    package = site / "torch"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(f"__version__ = {version!r}\n")
    (package / "version.py").write_text(f"from typing import Optional\n__version__ = {version!r}\ndebug = False\n"
                                         f"cuda: Optional[str] = {cuda!r}\n")
    info = site / f"torch-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: torch\nVersion: {version}\n")
    if sms:
        from standin_helpers import find_nvcc

        (package / "lib").mkdir()
        source = site / "kernel.cu"
        source.write_text("__global__ void one(float *x) { *x = 1.0f; }\n")
        gencode = [arg for sm in sms for arg in ("-gencode", f"arch=compute_{sm},code=sm_{sm}")]
        subprocess.run([find_nvcc(), "-shared", "-Xcompiler", "-fPIC", *gencode, "-o",
                        str(package / "lib" / "libtorch_cuda.so"), str(source)], check=True, capture_output=True)
    return site


def _host_isa() -> str:
    from standin_helpers import host_isa

    return host_isa()


def _build_existing(run_backend, tmp_path, site: Path, sm: str = "90", *extra: str):
    return run_backend("build", "-C", f"sm={sm}", "-C", f"isa={_host_isa()}", "-C", "cuda=13.0",
                       "-C", "components=flashinfer", "-C", "torch=existing", "-C", "offline=true",
                       "-C", f"wheelhouse={tmp_path / 'wheelhouse'}", *extra, env={"PYTHONPATH": str(site)})


# 5. An existing torch that does not fit the variant stops the build before anything is fetched or compiled.

def test_a_cpu_torch_of_another_release_stops_the_build_in_one_line(run_backend, tmp_path):
    site = fake_torch(tmp_path / "site", "2.13.0+cpu", None)
    out = _build_existing(run_backend, tmp_path, site)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert "Traceback" not in out.stderr and len([l for l in lines if l.startswith("error:")]) == 1, out.stderr
    error = lines[-1]
    assert "torch 2.13.0+cpu" in error and "the stack's torch is 2.9.1" in error, error
    assert "it is a CPU build (the variant is CUDA 13.0)" in error and "-C existing-torch=accept" in error
    assert not (tmp_path / "cache" / "downloads").exists() and not (tmp_path / "cache" / "work").exists()


def _plan_like(tmp_path, sm: str, mode: str):
    from types import SimpleNamespace

    from backend.variants import Variant

    return SimpleNamespace(settings=SimpleNamespace(torch="existing", existing_torch=mode),
                           variant=Variant(sm=sm, isa=_host_isa(), cuda="13.0"),
                           steps=[SimpleNamespace(component="flashinfer", recipe=recipes.get("flashinfer"))],
                           recipe=recipes.get)


def test_existing_torch_accept_warns_and_goes_on(tmp_path, monkeypatch):
    from backend.pipeline import existing_torch

    monkeypatch.syspath_prepend(str(fake_torch(tmp_path / "site", "2.13.0+cpu", None)))
    said = []
    existing_torch.check(_plan_like(tmp_path, "90", "accept"), said.append)
    assert len(said) == 1 and said[0].startswith("   warning: torch=existing: torch 2.13.0+cpu")
    assert "it is a CPU build" in said[0] and "existing-torch=accept" in said[0]


@pytest.mark.skipif(not __import__("standin_helpers").find_nvcc(), reason="needs a CUDA 13 nvcc")
def test_existing_torch_without_code_for_the_sm_stops(tmp_path, monkeypatch):
    """GPU code for sm_80 only: an sm_86 GPU runs it (same major), sm_90 does not."""
    from backend.errors import BackendError
    from backend.pipeline import existing_torch

    monkeypatch.syspath_prepend(str(fake_torch(tmp_path / "site", "2.9.1+cu130", "13.0", sms=("80",))))
    with pytest.raises(BackendError, match=r"its libtorch_cuda.so has no code for sm_90 \(cubins: sm_80\)"):
        existing_torch.check(_plan_like(tmp_path, "90", "match"), print)
    said = []
    existing_torch.check(_plan_like(tmp_path, "86", "match"), said.append)
    assert said and "fits" in said[0]


# 6. The wheel pip returns for a build without vLLM says so, and what it pins.

def test_the_returned_wheel_of_a_partial_build_says_it_holds_no_vllm(tmp_path):
    import backend

    partial = backend.prepare_metadata_for_build_wheel(str(tmp_path), {"sm": "90", "isa": "avx2",
                                                                       "components": "bitsandbytes"})
    summary = next(l for l in (tmp_path / partial / "METADATA").read_text().splitlines() if l.startswith("Summary:"))
    assert "without vLLM: bitsandbytes for sm_90" in summary and "components=bitsandbytes" in summary
    full = backend.prepare_metadata_for_build_wheel(str(tmp_path / "full"), {"sm": "90", "isa": "avx2"})
    summary = next(l for l in (tmp_path / "full" / full / "METADATA").read_text().splitlines()
                   if l.startswith("Summary:"))
    assert summary.startswith("Summary: The vLLM stack for sm_90") and "without" not in summary


# 3. With torch=existing the smoke venv sees the environment the build ran in, not only torch's folder.

SMOKE_SCRIPT = r'''
import json, sys
from pathlib import Path
from backend.verify import smoke
torch_site, house, work = map(Path, sys.argv[1:4])
wheel = next(house.glob("*.whl"))
see = smoke.existing_environment(torch_site)
outcomes = {}
for name, folders in (("build environment", see), ("torch's folder only", [str(torch_site)])):
    result = smoke.run(house, [wheel], [], [], work=work / name.replace(" ", "-"), no_index=True, see=folders)
    outcomes[name] = [result.ok, result.problems]
print(json.dumps({"see": see, "outcomes": outcomes}))
'''


def test_smoke_check_with_existing_torch_sees_the_requirements_beside_it(tmp_path):
    """flashinfer's apache-tvm-ffi importable in the build's environment, but in another folder than torch."""
    import json

    from conftest import make_wheel

    torch_site = fake_torch(tmp_path / "torch-site", "2.13.0+cpu", None)
    other = tmp_path / "other-site"
    (other / "tvm_ffi").mkdir(parents=True)
    (other / "tvm_ffi" / "__init__.py").write_text("")
    (other / "apache_tvm_ffi-0.1.6.dist-info").mkdir()
    (other / "apache_tvm_ffi-0.1.6.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: apache-tvm-ffi\nVersion: 0.1.6\n")
    house = tmp_path / "house"
    house.mkdir()
    make_wheel(house, "flashinfer-python", "0.6.1+cu130.sm90.avx2", requires=["torch==2.13.0+cpu", "apache-tvm-ffi"])
    env = {**os.environ, "PYTHONPATH": f"{torch_site}{os.pathsep}{other}{os.pathsep}{ROOT}"}
    result = subprocess.run([sys.executable, "-c", SMOKE_SCRIPT, str(torch_site), str(house), str(tmp_path / "work")],
                            capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert str(other) in report["see"] and str(ROOT) not in report["see"]
    assert report["outcomes"]["build environment"] == [True, []]
    ok, problems = report["outcomes"]["torch's folder only"]  # what the smoke check did before: it could only fail
    assert not ok and "apache-tvm-ffi" in problems[0]


# 4. A wheelhouse without its runtime dependencies has a requirements.txt, and the printed command installs it.

def test_a_torch_existing_wheelhouse_installs_with_the_printed_command(tmp_path):
    from conftest import make_wheel

    from backend.wheels import closure
    from backend.wheels.wheelhouse import Wheelhouse

    built = make_wheel(tmp_path / "built", "flashinfer-python", "0.6.1+cu130.sm90.avx2", requires=["torch==2.13.0"])
    house = Wheelhouse(tmp_path / "wheelhouse" / "vllm-python311-cuda13_0-sm90-avx2")
    house.add(built, {"component": "flashinfer", "source": "test", "source_hash": None, "build_key": "k",
                      "seconds": 1.0})
    closure.write_built_requirements(house)
    lines = [l for l in (house.root / "requirements.txt").read_text().splitlines() if not l.startswith("#")]
    assert lines == ["flashinfer-python==0.6.1+cu130.sm90.avx2"]
    command = closure.install_command(house.root, bundled=False, torch_existing="2.13.0")
    assert "torch 2.13.0" in command
    # The user's environment: a venv holding the torch the build used (pip runs in it through --python).
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    pip = [sys.executable, "-m", "pip", "--python", str(env_dir / "bin" / "python")]
    torch_wheel = make_wheel(tmp_path / "torch", "torch", "2.13.0")
    pip_env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_CONFIG_FILE": os.devnull}
    subprocess.run([*pip, "install", "-q", str(torch_wheel)], check=True, env=pip_env)
    argv = command.split(" (")[0].split()
    assert argv[:2] == ["pip", "install"]
    result = subprocess.run([*pip, *argv[1:]], capture_output=True, text=True, env=pip_env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    shown = subprocess.run([*pip, "show", "flashinfer-python"], capture_output=True, text=True, env=pip_env)
    assert "Version: 0.6.1+cu130.sm90.avx2" in shown.stdout


# 7. Heavy work is announced: ``toolchain`` shows without installing; an install names each wheel as it comes.

def _pip_offline(links: Path | None = None) -> dict[str, str]:
    env = {"PIP_NO_INDEX": "1", "PIP_CONFIG_FILE": os.devnull, "CUDA_HOME": "/nonexistent", "PATH": "/usr/bin:/bin"}
    if links is not None:
        env["PIP_FIND_LINKS"] = str(links)
    return env


def test_toolchain_shows_what_it_would_install_without_installing(run_backend, tmp_path):
    cache = tmp_path / "cache"
    out = run_backend("toolchain", "-C", "cuda=13.0", "-C", "toolchain=pypi", "-C", f"cache-dir={cache}",
                      env=_pip_offline())
    assert out.returncode == 0, out.stderr
    assert "not yet" in out.stdout and "nvidia-cuda-nvcc==13.0.88" in out.stdout and "--install" in out.stdout
    assert not (cache / "toolchains" / "pypi-cu130" / "site").exists()
    data = json.loads(run_backend("toolchain", "-C", "cuda=13.0", "-C", "toolchain=pypi", "-C", f"cache-dir={cache}",
                                  "--json", env=_pip_offline()).stdout)
    assert data["installed"] is False and "nvidia-cudnn-cu13==9.13.0.50" in data["requirements"]


def test_toolchain_install_announces_each_wheel(run_backend, tmp_path):
    """--install with the wheels served from a local folder (tiny stand-ins named as the pinned wheels): the
    install is announced with what it takes before pip starts, and pip's line for each wheel is shown."""
    from conftest import make_wheel

    from backend.toolchains import pypi

    links = tmp_path / "links"
    everything, _ = pypi.requirements_for("13.0")
    for requirement in everything:
        name, _, version = requirement.partition("==")
        make_wheel(links, name, version)
    out = run_backend("toolchain", "-C", "cuda=13.0", "-C", "toolchain=pypi", "-C", f"cache-dir={tmp_path / 'c'}",
                      "--install", env=_pip_offline(links))
    lines = out.stderr.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith(f"toolchain 'pypi': installing {len(everything)} CUDA"))
    assert "about 3 GB" in lines[start] and "nvidia-cudnn-cu13==9.13.0.50" in lines[start]
    shown = [l for l in lines[start + 1:] if l.startswith("   pip | ")]
    assert any("nvidia_cudnn_cu13-9.13.0.50" in l for l in shown), out.stderr
    # The stand-ins hold no nvcc: it stops after the install, in one line.
    assert out.returncode == 2 and lines[-1].startswith("error: ") and "Traceback" not in out.stderr


# 11. One judgement of a toolchain, shown the same way by detect, toolchain and the build.

def _toolkit_without_cublas(root: Path) -> Path:
    """A CUDA 13.0 toolkit folder with nvcc (a script printing the release line real nvcc prints), no cuBLAS."""
    home = root / "cuda-13.0"
    for folder in ("bin", "lib64", "include"):
        (home / folder).mkdir(parents=True)
    (home / "include" / "cuda_runtime.h").write_text("")
    (home / "bin" / "nvcc").write_text("#!/bin/sh\necho 'Cuda compilation tools, release 13.0, V13.0.88'\n")
    (home / "bin" / "nvcc").chmod(0o755)
    (home / "lib64" / "libcudart.so.13").write_text("")
    return home


def test_toolchain_says_the_toolkit_lacks_cublas_as_the_build_does(run_backend, tmp_path):
    home = _toolkit_without_cublas(tmp_path)
    out = run_backend("toolchain", "-C", "cuda=13.0", "-C", "toolchain=system", env={"CUDA_HOME": str(home)})
    assert out.returncode == 0, out.stderr
    note = next(l for l in out.stdout.splitlines() if l.startswith("note"))
    assert f"the CUDA 13.0.88 toolkit at {home} has nvcc but no cuBLAS" in note and "toolchain=pypi" in note


def test_detect_passes_over_nix_when_nixpkgs_cannot_be_had(tmp_path):
    """Nix installed, its nixpkgs neither in the store nor reachable: detect recommends no Nix build, says why,
    and names the installed toolkit it passes over."""
    from backend.cli import detect_variant
    from backend.host import Gpu, Host

    nixdir = tmp_path / "nixbin"
    nixdir.mkdir()
    (nixdir / "nix").write_text("#!/bin/sh\necho 'error: cannot fetch in offline mode' >&2\nexit 1\n")
    (nixdir / "nix").chmod(0o755)
    h100 = Host("x86_64", frozenset("avx avx2 fma f16c avx512f avx512dq avx512vl avx512bw".split()),
                gpus=(Gpu("NVIDIA H100", "90"),))
    environ = {"PATH": str(nixdir), "CUDA_HOME": str(_toolkit_without_cublas(tmp_path))}
    sm, isa, remarks, cuda, toolchain = detect_variant(h100, environ, nixpkgs="git+https://127.0.0.1:9/nixpkgs")
    assert (cuda, toolchain) == ("13.0", "pypi"), remarks
    assert any(r.startswith("not CUDA 12.9") and "nix on PATH, but nixpkgs git+https://127.0.0.1:9/nixpkgs" in r
               and "127.0.0.1:9" in r for r in remarks), remarks
    assert any("has nvcc but no cuBLAS" in r and r.startswith("CUDA 13.0 from pypi") for r in remarks), remarks
    # A local nixpkgs checkout that exists can be had.
    local = tmp_path / "nixpkgs"
    local.mkdir()
    assert detect_variant(h100, environ, nixpkgs=f"path:{local}")[3:] == ("12.9", "nix")


# 8. A network failure: everything reachable is fetched, then one error lists each missing source, its URL
#    and the ways out.

def test_fetch_gets_what_it_can_and_lists_what_it_cannot(tmp_path):
    from test_sources import Server, make_tar, sha, write_lock

    from backend.errors import BackendError
    from backend.sources import prepare

    server = Server()
    try:
        data = make_tar({"setup.py": "print('demo')\n"})
        server.files["/demo.tar.gz"] = data
        dead = "http://127.0.0.1:9/demo-extra-1.0.tar.gz"  # nothing listens: refused at once
        lk = write_lock(tmp_path, {
            "demo-extra": {"component": "demo", "version": "1.0", "url": dead, "sha256": "0" * 64},
            "demo": {"component": "demo", "version": "1.0", "url": server.url("/demo.tar.gz"), "sha256": sha(data)},
        })
        cache = tmp_path / "c"
        with pytest.raises(BackendError) as error:
            prepare.fetch_all(["demo"], cache_dir=cache, offline=False, lock=lk, keep_going=True)
    finally:
        server.stop()
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("fetch: 1 of 2 source(s) could not be downloaded: demo-extra 1.0 (from " + dead)
    assert "host 127.0.0.1" in message and "the other 1 are verified in" in message
    for way_out in ("run again", "VLLM_STACK_SOURCE_MIRROR=", "-C offline=true", "docs/SOURCES.md"):
        assert way_out in message, way_out
    assert (cache / "downloads" / "demo-1.0.tar.gz").read_bytes() == data  # fetched although listed second


# 12. The test command keeps its caches and temporary files under one folder, and removes it at its end.

WRITES = r'''
import json, subprocess, sys, tempfile
from pathlib import Path
import platformdirs
cache = Path(platformdirs.user_cache_dir("vllm-stack-tests"))  # tests/test_frontends.py's torch venv
cache.mkdir(parents=True)
pip = subprocess.run([sys.executable, "-m", "pip", "cache", "dir"], capture_output=True, text=True).stdout.strip()
uv = subprocess.run(["uv", "cache", "dir"], capture_output=True, text=True).stdout.strip()
print(json.dumps({"platformdirs": str(cache), "tempfile": tempfile.mkdtemp(), "pip": pip, "uv": uv}))
'''


@pytest.mark.parametrize("kept", [False, True], ids=["default", "VLLM_STACK_TEST_DIR set"])
def test_the_test_run_writes_under_one_folder_and_removes_it(tmp_path, kept):
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    folder = tmp_path / "mine" if kept else tmp / "vllm-stack-tests"
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "TMPDIR": str(tmp),
           **({"VLLM_STACK_TEST_DIR": str(folder)} if kept else {})}
    script = f"source ci/test_folder.sh; {shlex.join([sys.executable, '-c', WRITES])}; exit 3"
    result = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 3, result.stderr  # the command's status, whatever the cleanup does
    wrote = json.loads(next(l for l in result.stdout.splitlines() if l.startswith("{")))
    for what, path in wrote.items():
        assert Path(path).is_relative_to(folder), (what, path)
    assert list(home.iterdir()) == []
    assert folder.exists() == kept
    assert f"{'kept' if kept else 'removed'} {folder}" in result.stdout


def test_ci_run_moves_the_caches_before_it_installs_anything():
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    first = lambda text: next(i for i, line in enumerate(lines) if line.startswith(text))  # noqa: E731
    assert first("source ci/test_folder.sh") < first("for pkg in") < first("python3 -m pip install")
    assert "VLLM_STACK_TEST_DIR" in README.read_text()


# Found by the transcript: a build of bitsandbytes alone ends in "ResolutionImpossible" without its cause.

def test_an_unresolvable_runtime_dependency_names_its_cause(tmp_path):
    from conftest import make_wheel

    from backend.errors import BackendError
    from backend.wheels.closure import close
    from backend.wheels.wheelhouse import Wheelhouse

    house = Wheelhouse(tmp_path / "wheelhouse" / "v", variant="v")
    built = make_wheel(tmp_path / "built", "bitsandbytes", "0.49.1+cu130.sm90.avx512",
                       requires=["torch==2.9.1+cu130.sm90.avx512"])
    placed = house.add(built, {"component": "bitsandbytes", "source": "lock", "source_hash": None, "build_key": "k",
                               "seconds": 1.0})
    with pytest.raises(BackendError) as error:
        close(house, [placed], python=Path(sys.executable), offline=True, say=lambda line: None)
    message = str(error.value)
    assert "\n" not in message
    assert "bitsandbytes 0.49.1+cu130.sm90.avx512 depends on torch==2.9.1+cu130.sm90.avx512" in message, message


def test_toolchain_says_nix_cannot_give_cuda_when_nixpkgs_cannot_be_had(run_backend, tmp_path):
    nixdir = tmp_path / "nixbin"
    nixdir.mkdir()
    (nixdir / "nix").write_text("#!/bin/sh\necho 'error: cannot fetch in offline mode' >&2\nexit 1\n")
    (nixdir / "nix").chmod(0o755)
    out = run_backend("toolchain", "-C", "cuda=12.9", "-C", "nixpkgs=git+https://127.0.0.1:9/nixpkgs",
                      env={"PATH": f"{nixdir}:/usr/bin:/bin", "CUDA_HOME": "/nonexistent"})
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith("error: toolchain 'auto': CUDA 12.9 cannot come from Nix here: nixpkgs "
                                 "git+https://127.0.0.1:9/nixpkgs is neither in the Nix store nor reachable")
# 13. The README's first screen: in the order a user acts, and every command of it runs as written.

FIRST_SCREEN_END = "<!-- end of the first screen -->"
PYTHON_TAG = f"python{sys.version_info.major}{sys.version_info.minor}"


def _transcript():
    import importlib.util

    spec = importlib.util.spec_from_file_location("new_user_transcript", ROOT / "ci" / "new_user_transcript.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def first_screen_commands() -> list[str]:
    """The indented command lines above the README's first-screen marker (a trailing backslash continues one);
    the variant's Python tag read as this interpreter's (the README shows python311)."""
    text = README.read_text()
    assert FIRST_SCREEN_END in text, f"README.md has no {FIRST_SCREEN_END!r}"
    commands, current = [], ""
    for line in text.split(FIRST_SCREEN_END)[0].splitlines():
        if line.startswith("    ") and line.strip():
            current += line.strip()
            if current.endswith("\\"):
                current = current[:-1].rstrip() + " "
                continue
            commands.append(current.replace("python311", PYTHON_TAG))
            current = ""
    return commands


def test_the_first_screen_is_what_the_transcript_runs():
    transcript = _transcript()
    commands = first_screen_commands()
    assert set(transcript.README_COMMANDS) <= set(commands), set(transcript.README_COMMANDS) - set(commands)
    # Nothing on the first screen escapes a test: the rest is the backend's needs line and the test command.
    assert set(commands) <= {*transcript.README_COMMANDS, needs.install_command(), "bash .ci/run"}, commands
    order = [commands.index(c) for c in transcript.README_COMMANDS]
    assert order == sorted(order), "the first screen's order is the transcript's: detect, plan, build, install, verify"
    assert (ROOT / "docs" / "NEW_USER.md").is_file()


@pytest.mark.parametrize("which", ["DETECT", "PLAN"])
def test_detect_and_plan_run_as_written_on_a_bare_venv(bare_python, tmp_path, which):
    command = getattr(_transcript(), which)
    assert command in first_screen_commands()
    env = {**bare_env(tmp_path), "PATH": f"{bare_python.parent}:/usr/bin:/bin"}
    result = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, env=env)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert ("build    pip wheel . -C sm=" if which == "DETECT" else "variant  vllm-") in result.stdout


def test_install_and_verify_run_as_written(tmp_path):
    """In a copy of the checkout holding a wheelhouse as a build leaves it (wheels, manifest, requirements.txt
    with hashes): the README's install command, then its verify command, as written, with a venv's python/pip."""
    import shutil

    from conftest import make_wheel

    from backend.wheels import closure
    from backend.wheels.wheelhouse import Wheelhouse

    transcript = _transcript()
    commands = first_screen_commands()
    assert transcript.INSTALL in commands and transcript.VERIFY in commands
    project = tmp_path / "vllm-stack"
    for part in ("backend", "third_party", "patches"):
        shutil.copytree(ROOT / part, project / part, ignore=shutil.ignore_patterns("__pycache__", "downloads"))
    shutil.copy(ROOT / "pyproject.toml", project)
    house = Wheelhouse(project / transcript.HOUSE, variant=transcript.VARIANT)
    built = make_wheel(tmp_path / "built", "bitsandbytes", "0.49.1+cu130.sm90.avx512", requires=["demo-dep>=1"])
    house.add(built, {"component": "bitsandbytes", "source": "lock", "source_hash": None, "build_key": "k",
                      "seconds": 1.0})
    dep = make_wheel(tmp_path / "runtime", "demo-dep", "1.2")
    house.add(dep, {"component": None, "origin": closure.ORIGIN, "source": "https://example.invalid/demo-dep",
                    "source_hash": None, "build_key": None, "seconds": None})
    closure._write_lock(house)
    env_dir = tmp_path / "venv"  # the user's venv: pip, and the backend's needs from this machine
    venv.EnvBuilder(with_pip=True, system_site_packages=True).create(env_dir)
    env = {"PATH": f"{env_dir / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "PIP_CONFIG_FILE": os.devnull,
           "PIP_DISABLE_PIP_VERSION_CHECK": "1", "VLLM_STACK_CACHE_DIR": str(tmp_path / "cache")}
    for command in (transcript.INSTALL, transcript.VERIFY):
        result = subprocess.run(["bash", "-c", command], cwd=project, capture_output=True, text=True, env=env)
        assert result.returncode == 0, (command, result.stdout[-2000:], result.stderr[-2000:])
    assert "Successfully installed" in subprocess.run(["bash", "-c", transcript.INSTALL.replace(
        "pip install", "pip install --force-reinstall")], cwd=project, capture_output=True, text=True,
        env=env).stdout
    assert "verification: 1 checked, 0 errors" in result.stdout


@pytest.mark.slow
def test_the_new_user_transcript_has_not_drifted():
    """docs/NEW_USER.md against a fresh run (a fresh clone of the committed tree: commit first)."""
    result = subprocess.run([sys.executable, str(ROOT / "ci" / "new_user_transcript.py"), "--check"],
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-6000:]


