"""The whole pipeline, end to end, on the stand-in trees of tests/fixtures/standins.

Real frontends (pip, build, uv, ``python -m backend build``), real compilers
(g++, nvcc 13), real venvs.  The stand-ins take seconds where the real
components take hours; everything else is the real backend.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import venv
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from standin_helpers import find_nvcc, hermetic_pip_env, host_isa, runtime_links, standin_runtime_requirements, standin_tree
from conftest import kept_unchanged

ROOT = Path(__file__).resolve().parent.parent
NVCC = find_nvcc()
pytestmark = pytest.mark.skipif(NVCC is None, reason="needs a CUDA 13 nvcc (system /usr/local/cuda-13.0 or PyPI)")

ISA = host_isa()
COMPONENTS = "torch,torchvision,xformers,flashinfer,bitsandbytes"


def settings(tmp: Path, sm: str = "90", components: str = COMPONENTS, **extra: str) -> list[str]:
    pairs = {
        "sm": sm, "isa": ISA, "cuda": "13.0", "components": components,
        "cache-dir": str(tmp / "cache"), "wheelhouse": str(tmp / "wheelhouse"), "jobs": "2",
        "runtime-find-links": str(LINKS), "smoke": "cpu",
        # The stand-ins build in seconds from what the test environment has: the recipes' ranges, not the
        # real lock (tests/test_buildreqs.py), and megabytes of disk, not the real components' estimate.
        "build-requirements": "ranges", "free-disk-gb": "1",
        **{f"source.{c}": str(standin_tree(c)) for c in components.split(",")},
        **extra,
    }
    args = []
    for key, value in pairs.items():
        args += ["-C", f"{key}={value}"]
    return args


def variant_name(sm: str = "90") -> str:
    return f"vllm-python{sys.version_info.major}{sys.version_info.minor}-cuda13_0-sm{sm}-{ISA}"


def label(sm: str = "90") -> str:
    return f"cu130.sm{sm}.{ISA}"


# The stand-in PyPI of the stack's runtime dependencies (triton, nvidia-*, packaging): built once per run,
# so resolving them needs no network (runtime-find-links keeps pip.conf and the index out).
LINKS = runtime_links(Path(tempfile.mkdtemp(prefix="standin-links-")), standin_runtime_requirements()) if NVCC else None


def env_for_tests() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(NVCC).parent}{os.pathsep}{env['PATH']}"
    return env


def backend(*args: str, cwd: Path = ROOT, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "backend", *args], cwd=cwd, capture_output=True, text=True, env=env_for_tests())
    if check and result.returncode != 0:
        raise AssertionError(f"backend {' '.join(args)} failed:\n{result.stderr[-4000:]}")
    return result


def manifest(house: Path) -> dict:
    return json.loads((house / "manifest.json").read_text())


def metadata(wheel: Path) -> dict:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        message = Parser().parsestr(archive.read(name).decode())
    return {"version": message["Version"], "requires": message.get_all("Requires-Dist") or []}


@pytest.fixture(scope="module")
def first_build(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    result = backend("build", *settings(tmp))
    house = tmp / "wheelhouse" / variant_name()
    # tests that change a wheelhouse work on own_wheelhouse's copy; the cache is shared on purpose (reuse)
    with kept_unchanged(house, ignore=("*.lock",)):
        yield tmp, house, result


def test_wheelhouse_holds_every_wheel_labelled_and_pinned(first_build):
    tmp, house, result = first_build
    data = manifest(house)
    built = {n: e for n, e in data["wheels"].items() if e.get("origin") != "runtime"}  # runtime: their own versions
    names = sorted(built)
    assert {n.split("-")[0] for n in names} >= {"torch", "torchvision", "xformers", "flashinfer_python", "flashinfer_jit_cache", "bitsandbytes"}
    torch_version = f"2.9.1+{label()}"
    for name in names:
        version = name.split("-")[1]
        assert version.endswith("+" + label()), name
        meta = metadata(house / name)
        assert meta["version"] == version
        torch_pins = [r for r in meta["requires"] if r.split("==")[0].split(">")[0].split("<")[0].strip() == "torch"]
        if not name.startswith(("torch-", "flashinfer_jit_cache")):
            assert torch_pins == [f"torch=={torch_version}"], (name, meta["requires"])
    assert data["variant"] == variant_name()
    assert data["toolchain"] and data["toolchain_version"].startswith("13.0")
    torch_entry = next(e for n, e in data["wheels"].items() if n.startswith("torch-"))
    # the stand-in enables what real torch's CMake finds (USE_CUDNN=1, USE_NCCL=1, cuSPARSELt by default,
    # BLAS=MKL statically, NVSHMEM from torch's own nvidia-nvshmem build requirement)
    assert torch_entry["features"] == {"blas": True, "cudnn": True, "cudss": False, "cusparselt": True, "lapack": True,
                                       "mkl": True, "nccl": True, "nvshmem": True, "openblas": False}
    assert torch_entry["links"]["mkl"] == "static: defines mkl_get_version_string"
    assert torch_entry["links"]["lapack"] == "static: defines dgetrf_"
    # torchvision: its CPU codecs from the host's -dev packages, grafted into torchvision.libs as auditwheel repair
    # does (recipes/torchvision.py), so image.so needs the hashed copies and the wheel passed the linkage check
    vision_name, vision_entry = next((n, e) for n, e in data["wheels"].items() if n.startswith("torchvision-"))
    assert vision_entry["features"] == {"jpeg": True, "nvjpeg": False, "png": True, "webp": True}
    with zipfile.ZipFile(house / vision_name) as archive:
        grafted = sorted(n.split("/")[1].split("-")[0] for n in archive.namelist()
                         if n.startswith("torchvision.libs/") and not n.endswith("/"))
    assert grafted == ["libjpeg", "libpng16", "libwebp"], grafted
    assert vision_entry["links"]["png"].startswith("libpng16-"), vision_entry["links"]
    # where the ISA flags were passed and what they miss, per wheel (issue 22.8)
    assert torch_entry["isa_flags"]["variables"] == ["CFLAGS", "CXXFLAGS", "TORCH_NVCC_FLAGS"]
    assert torch_entry["isa_flags"]["not_reached"]
    bnb_entry = next(e for n, e in data["wheels"].items() if n.startswith("bitsandbytes-"))
    assert bnb_entry["isa_flags"]["variables"] == ["CFLAGS", "CXXFLAGS", "CUDAFLAGS"]
    for name, entry in built.items():
        assert entry["sha256"] and entry["size"] == (house / name).stat().st_size
        assert entry["build_key"] and entry["source_hash"] and entry["origin"] == "local"
    sums = (house / "SHA256SUMS").read_text()
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=house, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert len(sums.splitlines()) == len(data["wheels"])
    assert "summary" not in result.stdout  # progress and summary go to stderr
    assert "component" in result.stderr and "built" in result.stderr


def test_the_wheelhouse_is_closed_and_passes_its_smoke_check(first_build):
    """torch declares what PyTorch's wheel declares; every runtime dependency is in the folder, by hash."""
    tmp, house, result = first_build
    data = manifest(house)
    runtime = {e["distribution"] for e in data["wheels"].values() if e.get("origin") == "runtime"}
    assert {"triton", "packaging", "nvidia-cublas", "nvidia-cudnn-cu13"} <= runtime
    requires = metadata(next(house.glob("torch-*.whl")))["requires"]
    assert "triton==3.5.1" in requires and "nvidia-cudnn-cu13==9.13.0.50" in requires
    lock = (house / "requirements.txt").read_text()
    assert len([line for line in lock.splitlines() if "--hash=sha256:" in line]) == len(data["wheels"])
    assert "smoke check: ok" in result.stderr
    assert "PyTorch built with (stand-in)" in result.stderr  # torch.__config__.show() from the installed stack
    log = (tmp / "cache" / "work" / variant_name() / "smoke" / "smoke.log").read_text()
    assert "--no-index" in log and "== torchvision (CPU)" in log and "== bitsandbytes (CPU)" in log


def test_the_wheelhouse_states_the_driver_and_host_it_needs(first_build):
    """The manifest records the oldest NVIDIA driver (from the PTX each wheel holds, read by verification),
    and DEPLOY.md tells an operator what a host needs before and at first use."""
    tmp, house, result = first_build
    data = manifest(house)
    built = {n: e for n, e in data["wheels"].items() if e.get("origin") != "runtime"}
    assert all(isinstance(e["ptx_jit"], list) for e in built.values()), built
    # The stand-ins' cubins are sm_90 only: CUDA 13 code under minor-version compatibility.
    assert data["driver"]["minimum"] == "580.65.06", data["driver"]
    assert "minor-version compatibility" in data["driver"]["reasons"][0]
    assert "the wheelhouse needs NVIDIA driver 580.65.06+" in result.stderr
    deploy = (house / "DEPLOY.md").read_text()
    assert f"# Deploying {variant_name()}" in deploy
    assert "NVIDIA driver 580.65.06 or newer" in deploy
    assert "A C compiler and Python's headers" in deploy and "flashinfer" in deploy
    assert "requirements.txt" in deploy  # the closure was bundled


def test_a_missing_runtime_dependency_fails_the_build_not_the_install(first_build, tmp_path):
    tmp, house, _ = first_build
    links = tmp_path / "links"
    shutil.copytree(LINKS, links)
    next(links.glob("packaging-*.whl")).unlink()
    copy = tmp_path / "wheelhouse" / variant_name()
    shutil.copytree(house, copy, ignore=shutil.ignore_patterns(".runtime-closure.json", "packaging-*.whl", "*.lock"))
    args = settings(tmp, **{"wheelhouse": str(tmp_path / "wheelhouse"), "runtime-find-links": str(links)})
    result = backend("build", *args, check=False)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert "cannot be resolved" in last and "packaging>=20.9" in last and "bitsandbytes" in last, last
    assert "Traceback" not in result.stderr


def test_binaries_hold_only_the_variant(first_build):
    """The pipeline's own verification, re-run as a user would: sm_90 only, ISA flags applied."""
    tmp, house, _ = first_build
    out = backend("verify", str(house), "-C", "sm=90", "-C", f"isa={ISA}", "-C", "cuda=13.0", "--json")
    report = json.loads(out.stdout)
    assert report["ok"] is True
    text = json.dumps(report)
    assert "sm_90" in text and "sm_80" not in text
    torch_wheel = next(house.glob("torch-*.whl"))
    with zipfile.ZipFile(torch_wheel) as archive:
        lib = archive.read("torch/lib/libtorch_cpu.so")
    isa_flag = {"avx512": b"-mavx512f", "avx2": b"-mavx2", "avx": b"-mavx"}[ISA]
    assert isa_flag in lib  # the compile record (.GCC.command.line) that -frecord-gcc-switches leaves
    # nvcc's host compile of the stand-in's kernel too: TORCH_NVCC_FLAGS carried the flags and the switch
    # (issue 22.8); before, libtorch_cuda.so's host code left no record and had no ISA flags
    with zipfile.ZipFile(torch_wheel) as archive:
        cuda_lib = archive.read("torch/lib/libtorch_cuda.so")
    assert isa_flag in cuda_lib


def test_platform_tags_are_what_auditwheel_finds(first_build):
    """Each wheel with ELF objects carries the manylinux tag auditwheel show gives it (torch's and CUDA's
    libraries staying external); the manifest records each library's highest GLIBC/GLIBCXX/CXXABI."""
    from auditwheel.architecture import Architecture
    from auditwheel.libc import Libc
    from auditwheel.policy import WheelPolicies

    from backend.wheels import manylinux

    tmp, house, _ = first_build
    data = manifest(house)
    tagged = 0
    for wheel in sorted(house.glob("*.whl")):
        entry = data["wheels"][wheel.name]
        if wheel.name.endswith("-any.whl"):
            assert "symbol_versions" not in entry
            continue
        platform_tag = wheel.name[:-len(".whl")].rsplit("-", 1)[1]
        assert platform_tag.startswith("manylinux_") and platform_tag.endswith("_x86_64"), wheel.name
        assert entry["platform"] == platform_tag.split(".") and entry["symbol_versions"]
        shown = subprocess.run([sys.executable, "-m", "auditwheel", "show", "--json", "--disable-isa-ext-check",
                                str(wheel)], capture_output=True, text=True)
        if shown.returncode == 0:
            report = json.loads(shown.stdout)
            assert report["sym_tag"] == platform_tag.split(".")[0], (wheel.name, report)
            left = set(report["external_libs"])  # what auditwheel would graft: only other wheels' libraries
            assert all(any(fnmatch.fnmatchcase(lib, p) for p in manylinux.external_patterns()) for lib in left), left
        else:  # flashinfer-jit-cache's .data/purelib layout, which auditwheel's analysis refuses
            assert "platlib" in shown.stderr + shown.stdout
            versions = set().union(*(set(f"{k}_{v}" for k, v in libs.items()) for libs in entry["symbol_versions"].values()))
            policies = WheelPolicies(libc=Libc.GLIBC, arch=Architecture.x86_64)
            assert policies.versioned_symbols_policy({"all": versions}).name == platform_tag.split(".")[0]
        tagged += 1
    assert tagged >= 5


def test_second_run_rebuilds_nothing(first_build):
    tmp, house, _ = first_build
    before = {p.name: p.stat().st_mtime_ns for p in house.glob("*.whl")}
    result = backend("build", *settings(tmp))
    assert result.stderr.count(" cached ") >= 5, result.stderr[-3000:]
    rows = [l for l in result.stderr.splitlines() if l.split()[:1] and l.split()[0] in COMPONENTS.split(",")]
    assert rows and all(" cached " in r for r in rows), rows
    assert {p.name: p.stat().st_mtime_ns for p in house.glob("*.whl")} == before


def fresh_venv(path: Path) -> Path:
    venv.EnvBuilder(with_pip=True, clear=True).create(path)
    return path / "bin" / "python"


def test_pip_wheel_returns_the_variant_wheel_that_installs_the_stack(first_build, tmp_path):
    tmp, house, _ = first_build
    dist = tmp_path / "dist"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-build-isolation", "-w", str(dist), *settings(tmp)],
        capture_output=True, text=True, env=env_for_tests(),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    returned = list(dist.glob("*.whl"))
    assert [w.name for w in returned] == [f"{variant_name().replace('-', '_')}-0.15.1-py3-none-any.whl"]
    pins = metadata(returned[0])["requires"]
    assert f"torch==2.9.1+{label()}" in pins and len(pins) == len(manifest(house)["wheels"])

    python = fresh_venv(tmp_path / "venv")
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-index", "--find-links", str(house), str(returned[0])],
        capture_output=True, text=True, env=hermetic_pip_env(tmp_path / "no-links"),
    )
    assert install.returncode == 0, install.stdout + install.stderr
    check = subprocess.run(
        [str(python), "-c",
         "import torch, torchvision, bitsandbytes; print(torch.__version__); print(torch.add_one(41))"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.splitlines() == [f"2.9.1+{label()}", "42"]
    freeze = subprocess.run([str(python), "-m", "pip", "freeze"], capture_output=True, text=True).stdout
    assert f"torch==2.9.1+{label()}" in freeze


@pytest.mark.parametrize("frontend", ["build", "uv"])
def test_other_frontends_reuse_the_wheelhouse(first_build, tmp_path, frontend):
    tmp, house, _ = first_build
    out = tmp_path / "out"
    if frontend == "build":
        command = [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--skip-dependency-check", "--outdir", str(out), str(ROOT)]
    else:
        uv = shutil.which("uv")
        if uv is None:
            pytest.skip("uv is not installed")
        command = [uv, "build", "--wheel", "--no-build-isolation", "--python", sys.executable, "--out-dir", str(out), str(ROOT)]
    for pair in [settings(tmp)[i + 1] for i in range(0, len(settings(tmp)), 2)]:
        command += ["-C", pair] if frontend == "uv" else [f"-C{pair}"]
    result = subprocess.run(command, capture_output=True, text=True, env=env_for_tests(), cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert [w.name for w in out.glob("*.whl")] == [f"{variant_name().replace('-', '_')}-0.15.1-py3-none-any.whl"]
    assert "cached" in result.stdout + result.stderr


def copy_project(dest: Path) -> Path:
    dest.mkdir(parents=True)
    for part in ("pyproject.toml", "backend", "patches", "third_party"):
        source = ROOT / part
        if source.is_dir():
            shutil.copytree(source, dest / part, ignore=shutil.ignore_patterns("__pycache__", "downloads"))
        elif source.exists():
            shutil.copy2(source, dest / part)
    return dest


def own_wheelhouse(house: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the first build's wheelhouse for a test that changes it: (its parent, the copy)."""
    parent = tmp_path / "wheelhouse"
    shutil.copytree(house, parent / house.name, ignore=shutil.ignore_patterns("*.lock"))
    return parent, parent / house.name


def test_changed_patch_rebuilds_that_component_and_its_dependents(first_build, tmp_path):
    tmp, first_house, _ = first_build
    wheelhouse, house = own_wheelhouse(first_house, tmp_path)
    project = copy_project(tmp_path / "project")
    patch_dir = project / "patches" / "torch"
    patch_dir.mkdir(parents=True, exist_ok=True)
    original = (standin_tree("torch") / "csrc" / "c10.cpp").read_text().splitlines(keepends=True)
    patch = [
        "A test patch: adds a comment to the stand-in's c10.cpp.\n",
        "--- a/csrc/c10.cpp\n", "+++ b/csrc/c10.cpp\n",
        f"@@ -1,{min(3, len(original))} +1,{min(3, len(original)) + 1} @@\n",
        "+// patched by the test\n",
        *[" " + line for line in original[:3]],
    ]
    (patch_dir / "0001-test.patch").write_text("".join(patch))
    result = backend("build", *settings(tmp, components="torch,torchvision,bitsandbytes", wheelhouse=str(wheelhouse)),
                     cwd=project)
    rows = {l.split()[0]: l for l in result.stderr.splitlines() if l.split()[:1] and l.split()[0] in ("torch", "torchvision", "bitsandbytes")}
    assert " built " in rows["torch"] and " built " in rows["torchvision"], rows
    assert " cached " in rows["bitsandbytes"], rows
    torch_entry = next(e for n, e in manifest(house)["wheels"].items() if n.startswith("torch-"))
    assert any(p[0] == "0001-test.patch" for p in torch_entry["patches"])


def test_failing_component_leaves_the_wheelhouse_as_it_was(first_build, tmp_path):
    tmp, first_house, _ = first_build
    wheelhouse, house = own_wheelhouse(first_house, tmp_path)
    # the wheelhouse as it stands for these sources
    backend("build", *settings(tmp, components="torch,torchvision", wheelhouse=str(wheelhouse)))
    before = {p.name: p.read_bytes() for p in house.iterdir() if p.is_file() and p.suffix != ".lock"}
    broken = tmp_path / "torchvision"
    shutil.copytree(standin_tree("torchvision"), broken)
    cpp = next(broken.rglob("*.cpp"))
    cpp.write_text(cpp.read_text() + "\nthis is not C++;\n")
    args = settings(tmp, components="torch,torchvision", wheelhouse=str(wheelhouse))
    args[args.index(f"source.torchvision={standin_tree('torchvision')}")] = f"source.torchvision={broken}"
    result = backend("build", *args, check=False)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: torchvision failed") and "torchvision.log" in last
    assert "Traceback" not in result.stderr
    after = {p.name: p.read_bytes() for p in house.iterdir() if p.is_file() and p.suffix != ".lock"}
    assert after == before
    assert not list(house.glob("*.part")) and not list(house.glob(".*.part"))


def _processes_under(folder: Path) -> list[str]:
    """Command lines of live processes working in ``folder`` (their cwd or an argument is inside it)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue  # gone, or not ours to read
        if any(str(folder) in part for part in [cwd, *argv]):
            found.append(" ".join(argv))
    return found


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted_build_resumes_and_finishes(tmp_path, stop):
    """Ctrl-C, or SIGTERM (kill, a cancelled CI job), stops the running compile too, keeps torch, and the next run resumes."""
    args = settings(tmp_path, components="torch,torchvision")
    house = tmp_path / "wheelhouse" / variant_name()
    # A shell that starts pytest in the background makes it ignore SIGINT, and the child would inherit that.
    process = subprocess.Popen([sys.executable, "-m", "backend", "build", *args], cwd=ROOT, env=env_for_tests(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    seen = []
    assert process.stdout is not None
    for line in process.stdout:
        seen.append(line)
        if "[2/2 torchvision] building" in line:
            break
        assert time.monotonic() < deadline, "".join(seen)
    time.sleep(0.5)  # torchvision's compile has started
    assert _processes_under(tmp_path / "cache"), "no build process to stop"
    os.kill(process.pid, stop)
    rest, _ = process.communicate(timeout=60)
    assert process.returncode == 128 + stop, "".join(seen) + rest
    assert f"interrupted{' by SIGTERM' if stop == signal.SIGTERM else ''}; finished work is kept" in rest
    assert "Traceback" not in rest
    assert not _processes_under(tmp_path / "cache"), "a compile outlived the build"
    names = [p.name for p in house.glob("*.whl")]
    assert any(n.startswith("torch-") for n in names) and not any(n.startswith("torchvision-") for n in names)
    assert not [p for p in house.iterdir() if p.name.endswith(".part")]
    result = backend("build", *args)
    rows = {l.split()[0]: l for l in result.stderr.splitlines() if l.split()[:1] and l.split()[0] in ("torch", "torchvision")}
    assert " cached " in rows["torch"] and " built " in rows["torchvision"]


def test_offline_build_without_runtime_dependencies_skips_the_smoke_check_and_says_why(tmp_path):
    """offline + runtime-deps=none: nothing serves torch's runtime dependencies, so the check is skipped, not failed."""
    pairs = settings(tmp_path, components="torch", offline="true", **{"runtime-deps": "none"})[1::2]
    result = backend("build", *[x for pair in pairs if not pair.startswith("runtime-find-links=") for x in ("-C", pair)])
    assert "smoke check: skipped (offline with runtime-deps=none" in result.stderr
    assert list((tmp_path / "wheelhouse" / variant_name()).glob("torch-*.whl"))


@pytest.mark.skipif(shutil.which("ccache") is None, reason="needs ccache (apt-get install ccache)")
def test_second_sm_with_same_isa_hits_the_compiler_cache(tmp_path):
    backend("build", *settings(tmp_path, sm="90", components="torch", **{"compiler-cache": "ccache"}))
    ccache_dir = tmp_path / "cache" / "compiler-cache" / "ccache"
    env = {**os.environ, "CCACHE_DIR": str(ccache_dir)}
    subprocess.run(["ccache", "--zero-stats"], env=env, check=True, capture_output=True)
    backend("build", *settings(tmp_path, sm="80", components="torch", **{"compiler-cache": "ccache"}))
    stats = subprocess.run(["ccache", "--print-stats"], env=env, capture_output=True, text=True, check=True).stdout
    values = dict(line.split("\t", 1) for line in stats.splitlines() if "\t" in line)
    hits = int(values.get("direct_cache_hit", 0)) + int(values.get("preprocessed_cache_hit", 0))
    assert hits >= 2, stats


def test_the_log_names_the_version_a_local_checkout_states_not_the_locks(tmp_path):
    """A source.<component> checkout of another release: "preparing" names the version its wheels carry
    (seen on the GPU machine: an xformers 0.0.34 sdist was announced as the lock's 0.0.33.post2)."""
    tree = tmp_path / "bitsandbytes"
    shutil.copytree(standin_tree("bitsandbytes"), tree)
    # the recipe's version_file, and the version the stand-in's wheel is built with
    for stated in (tree / "bitsandbytes" / "__init__.py", tree / "pyproject.toml"):
        stated.write_text(stated.read_text().replace('"0.49.1"', '"0.49.2"'))
    result = backend("build", *settings(tmp_path, components="bitsandbytes", smoke="off", **{
        "source.bitsandbytes": str(tree), "runtime-deps": "none"}))
    assert f"preparing bitsandbytes 0.49.2+{label()} ({tree})" in result.stderr, result.stderr


def test_independent_components_build_side_by_side(tmp_path):
    """torch and bitsandbytes do not depend on each other: with memory to spare, both build at once."""
    result = backend("build", *settings(tmp_path, components="torch,bitsandbytes"))
    lines = result.stderr.splitlines()
    started = next(i for i, l in enumerate(lines) if l.startswith("[2/2 bitsandbytes] preparing"))
    torch_done = next(i for i, l in enumerate(lines) if l.startswith("[1/2 torch] built"))
    assert started < torch_done, result.stderr
    rows = {l.split()[0]: l for l in lines if l.split()[:1] and l.split()[0] in ("torch", "bitsandbytes")}
    assert " built " in rows["torch"] and " built " in rows["bitsandbytes"]
