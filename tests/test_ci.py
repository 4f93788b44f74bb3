"""The build-variants workflow and the scripts it runs (ci/*.py), with real tools.

- actionlint on the workflow;
- ci/matrix.py against `python -m backend matrix --json`;
- ci/merge_wheelhouses.py on two small wheelhouses of real wheels, read
  back by `pip download` through --find-links and through the simple index;
- ci/build_variant.py on a fixture variant: real `matrix`, `fetch`
  (stand-in trees, offline) and `verify`, a real sccache server; only the
  `build` command is a stand-in that writes a tiny wheelhouse, unless the
  backend has its recipes (then the slow test builds the bitsandbytes
  stand-in for real).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_wheel
from standin_helpers import standin_tree

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "build-variants.yml"


def _load(name: str):
    """A ci/ script as a module, without putting ci/ on sys.path."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"ci_{name}", ROOT / "ci" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ci_matrix = _load("matrix")
merge_wheelhouses = _load("merge_wheelhouses")


def run(*args, env=None, cwd=ROOT, timeout=120):
    full = dict(os.environ)
    full.update(env or {})
    return subprocess.run([str(a) for a in args], cwd=cwd, env=full, capture_output=True, text=True, timeout=timeout)


def backend_matrix(*extra):
    out = run(sys.executable, "-m", "backend", "matrix", "--json", *extra)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


# -- the workflow --------------------------------------------------------------

def test_actionlint_passes_on_the_workflow():
    actionlint = shutil.which("actionlint")
    assert actionlint, "actionlint is not on PATH (pip install -r ci/requirements/ci.txt)"
    out = run(actionlint, "-no-color", WORKFLOW.relative_to(ROOT))
    assert out.returncode == 0, out.stdout + out.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path):
    """The check above is not vacuous: a typo'd matrix key and a bad expression fail."""
    broken = WORKFLOW.read_text().replace("${{ matrix.runner }}", "${{ matrix.runer }}", 1)
    broken = broken.replace("fromJSON(needs.matrix.outputs.matrix)", "fromJSON(needs.matrx.outputs.matrix)", 1)
    path = tmp_path / ".github" / "workflows" / "broken.yml"
    path.parent.mkdir(parents=True)
    path.write_text(broken)
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    out = run(shutil.which("actionlint"), "-no-color", path, cwd=tmp_path)
    assert out.returncode != 0
    assert "matrx" in out.stdout


def _workflow():
    yaml = pytest.importorskip("yaml")
    data = yaml.safe_load(WORKFLOW.read_text())
    # YAML 1.1 reads the key `on` as True.
    return data, data.get("on", data.get(True))


def test_workflow_inputs_schedule_jobs_and_artifacts():
    data, on = _workflow()
    assert {"sm", "isa", "cuda", "set"} <= set(on["workflow_dispatch"]["inputs"])
    assert on["schedule"][0]["cron"]
    jobs = data["jobs"]
    assert list(jobs) == ["matrix", "build", "merge"]
    assert "ci/matrix.py" in json.dumps(jobs["matrix"])
    assert jobs["build"]["strategy"]["matrix"] == "${{ fromJSON(needs.matrix.outputs.matrix) }}"
    assert jobs["build"]["runs-on"] == "${{ matrix.runner }}"
    steps = jobs["build"]["steps"]
    uses = {s.get("uses", "").split("@")[0]: s for s in steps}
    assert uses["cachix/install-nix-action"]["if"].startswith("matrix.toolchain == 'nix'")
    caches = [s for s in steps if s.get("uses", "").startswith("actions/cache@")]
    assert any("downloads" in s["with"]["path"] for s in caches)
    assert any("compiler-cache" in s["with"]["path"] for s in caches)
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert upload["with"]["name"] == "wheelhouse-${{ matrix.name }}"
    merge = jobs["merge"]
    assert merge["needs"] == "build"
    text = json.dumps(merge)
    assert "wheelhouse-*" in text and "ci/merge_wheelhouses.py" in text


def test_workflow_passes_only_options_the_scripts_have():
    data, _ = _workflow()
    for job in data["jobs"].values():
        for step in job["steps"]:
            for script in ("matrix.py", "build_variant.py", "merge_wheelhouses.py"):
                if f"ci/{script}" not in step.get("run", ""):
                    continue
                options = set(re.findall(r"(--[a-z][a-z-]+)", step["run"])) - {"--quiet"}
                helptext = run(sys.executable, ROOT / "ci" / script, "--help").stdout
                for option in options:
                    assert option in helptext, f"{script} has no {option}"


# -- ci/matrix.py ---------------------------------------------------------------

def ci_rows(*args, env=None):
    out = run(sys.executable, ROOT / "ci" / "matrix.py", "--python", "3.13", *args, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["include"]


def test_all_with_cuda_129_is_the_backends_rows_whose_full_stack_builds():
    rows = ci_rows("--sm", "all", "--isa", "all", "--cuda", "12.9")
    backend = backend_matrix("--python", "3.13", "--cuda", "12.9")
    # the seed's 47 rows for 12.9, five sm_70 rows (one per x86 ISA) and sm_121 on armv9
    assert len(backend) == 47 + 5 + 1 and sum(r["seed"] for r in backend) == 47
    # SM103 on CUDA 12.9: the plan refuses vLLM (sm_101a kernels), so no job could build the stack;
    # sm_70: flashinfer has no kernels for it.
    refused = [r["name"] for r in backend if r["refused"]]
    assert refused and all("-sm103-" in name or "-sm70-" in name for name in refused)
    assert all("sm=103" in r["refused"] and "cuda=13.0" in r["refused"] for r in backend if "-sm103-" in r["name"] and r["refused"])
    assert all("sm=70" in r["refused"] for r in backend if "-sm70-" in r["name"])
    assert len(rows) == len(backend) - len(refused)
    fields = ("name", "sm", "isa", "cuda", "platform", "python", "label", "seed")
    assert [{k: r[k] for k in fields} for r in rows] == [
        {k: r[k] for k in fields} for r in backend if not r["refused"]]


def test_every_row_is_a_real_variant_and_filters_work():
    backend = {r["name"]: r for r in backend_matrix("--python", "3.13")}
    rows = ci_rows("--sm", "90,100", "--isa", "avx512,armv9", "--cuda", "all")
    assert rows
    for row in rows:
        assert row["name"] in backend
        assert row["sm"] in ("90", "100") and row["isa"] in ("avx512", "armv9")
    expected = [n for n, r in backend.items()
                if r["sm"] in ("90", "100") and r["isa"] in ("avx512", "armv9") and not r["refused"]]
    assert [r["name"] for r in rows] == expected


def test_toolchain_and_runner_per_row():
    rows = ci_rows("--sm", "90", "--isa", "avx512,armv9")
    by = {(r["cuda"], r["platform"]): r for r in rows}
    assert by[("12.9", "x86_64")]["toolchain"] == "nix"
    assert by[("12.8", "x86_64")]["toolchain"] == "nix"
    assert by[("13.0", "aarch64")]["toolchain"] == "pypi"
    assert by[("12.9", "x86_64")]["runner"] == ["self-hosted", "linux", "x64", "gpu-build"]
    assert by[("12.9", "aarch64")]["runner"] == ["self-hosted", "linux", "arm64", "gpu-build"]
    assert all(r["python_version"] == "3.13" for r in rows)
    custom = ci_rows("--sm", "90", "--isa", "avx512", "--cuda", "12.9", env={"CI_RUNNER_X86_64": "self-hosted, big-x86"})
    assert custom[0]["runner"] == ["self-hosted", "big-x86"]


def test_backends_exclusions_are_not_emitted():
    # sm61 has no CUDA 13.0 variant and no avx512; the backend decides, matrix.py only filters.
    rows = ci_rows("--sm", "61", "--cuda", "all")
    assert {r["isa"] for r in rows} == {"avx", "avx2"}
    assert {r["cuda"] for r in rows} == {"12.8", "12.9"}


@pytest.mark.parametrize("args, words", [
    (["--sm", "91"], ["--sm", "'91'", "61, 70, 75, 80, 86, 89, 90, 100, 103, 120, 121", "all"]),
    (["--isa", "avx-512"], ["--isa", "'avx-512'", "avx512", "armv9"]),
    (["--cuda", "11.8"], ["--cuda", "'11.8'", "12.9, 12.8, 13.0"]),
    (["--cuda", "12.9,all"], ["--cuda", "'all'"]),
    (["--set", "nightly"], ["--set", "'nightly'", "all, seed, smoke, scheduled"]),
    (["--sm", "61", "--cuda", "13.0"], ["no variant matches", "sm=61", "cuda=13.0"]),
])
def test_bad_filters_are_one_line_errors(args, words):
    out = run(sys.executable, ROOT / "ci" / "matrix.py", "--python", "3.13", *args)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    for word in words:
        assert word in lines[0]


def test_sets_and_github_output(tmp_path):
    output = tmp_path / "github_output"
    out = run(sys.executable, ROOT / "ci" / "matrix.py", "--sm", "all", "--isa", "all", "--cuda", "all",
              "--set", "scheduled", "--python", "3.13", "--github-output", output)
    assert out.returncode == 0, out.stderr
    values = dict(line.split("=", 1) for line in output.read_text().splitlines())
    rows = json.loads(values["matrix"])["include"]
    assert int(values["count"]) == len(rows) > 0
    assert {r["cuda"] for r in rows} == {"12.9", "13.0"}
    assert {r["isa"] for r in rows} <= {"avx512", "avx512bf16", "armv9"}
    # Filters narrow a set further.
    assert [r["name"] for r in ci_rows("--set", "scheduled", "--sm", "90", "--isa", "avx512")] == [
        "vllm-python313-cuda12_9-sm90-avx512", "vllm-python313-cuda13_0-sm90-avx512"]
    # Every set names only values the backend knows, and every row of it is a stack the plan builds.
    rows = backend_matrix("--python", "3.13")
    for name in ci_matrix.SETS:
        ci_matrix.select(rows, None, None, None, name)
    scheduled = ci_matrix.select(rows, None, None, None, "scheduled")
    assert {("103", "13.0")} == {(r["sm"], r["cuda"]) for r in scheduled if r["sm"] == "103"}
    # The plan itself (x86_64 rows: this host plans only its own platform) builds each (sm, cuda) it schedules.
    for sm, cuda in sorted({(r["sm"], r["cuda"]) for r in scheduled}):
        plan = run(sys.executable, "-m", "backend", "plan", "-C", f"sm={sm}", "-C", "isa=avx512", "-C", f"cuda={cuda}")
        assert plan.returncode == 0, (sm, cuda, plan.stderr)
    refused = run(sys.executable, "-m", "backend", "plan", "-C", "sm=103", "-C", "isa=avx512", "-C", "cuda=12.9")
    assert refused.returncode != 0 and "sm_101a" in refused.stderr


def test_a_filter_of_refused_rows_only_stops_with_the_backends_reason():
    out = run(sys.executable, ROOT / "ci" / "matrix.py", "--python", "3.13", "--sm", "103", "--cuda", "12.9")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no variant matches sm=103"), out.stderr
    assert "sm_101a" in lines[0] and "cuda=13.0" in lines[0]


# -- tiny real wheels -------------------------------------------------------------

def make_wheelhouse(folder: Path, label: str, names=("fake-torch", "fake_vllm")) -> Path:
    for name in names:
        make_wheel(folder, name, f"1.0+{label}")
    sums = "".join(f"{hashlib.sha256(w.read_bytes()).hexdigest()}  {w.name}\n" for w in sorted(folder.glob("*.whl")))
    (folder / "SHA256SUMS").write_text(sums)
    (folder / "manifest.json").write_text(json.dumps({"variant": folder.name, "label": label}))
    return folder


# -- ci/merge_wheelhouses.py --------------------------------------------------------

def merged(tmp_path):
    artifacts = tmp_path / "artifacts"
    make_wheelhouse(artifacts / "wheelhouse-a" / "vllm-python313-cuda12_9-sm90-avx512", "cu129.sm90.avx512")
    make_wheelhouse(artifacts / "wheelhouse-b" / "vllm-python313-cuda13_0-sm100-avx512", "cu130.sm100.avx512")
    out = run(sys.executable, ROOT / "ci" / "merge_wheelhouses.py", artifacts, "--out", tmp_path / "index")
    assert out.returncode == 0, out.stderr
    return tmp_path / "index"


def pip_download(tmp_path, *source, requirement):
    dest = tmp_path / "dl"
    shutil.rmtree(dest, ignore_errors=True)
    out = run(sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir", "--isolated",
              "--disable-pip-version-check", "-d", dest, *source, requirement, env={"PIP_CONFIG_FILE": os.devnull})
    assert out.returncode == 0, out.stdout + out.stderr
    return sorted(p.name for p in dest.iterdir())


def test_merge_gives_a_simple_index_and_a_find_links_folder(tmp_path):
    index = merged(tmp_path)
    wheels = sorted(p.name for p in index.glob("*.whl"))
    assert len(wheels) == 4
    project = (index / "simple" / "fake-torch" / "index.html").read_text()
    for wheel in wheels:
        if wheel.startswith("fake_torch"):
            digest = hashlib.sha256((index / wheel).read_bytes()).hexdigest()
            assert f"#sha256={digest}" in project
    assert 'href="fake-torch/"' in (index / "simple" / "index.html").read_text()
    assert sorted((index / "manifests").iterdir())[0].name == "vllm-python313-cuda12_9-sm90-avx512.json"
    assert len((index / "SHA256SUMS").read_text().splitlines()) == 4
    # pip resolves through the PEP 503 index (checking the sha256 fragment) ...
    got = pip_download(tmp_path, "--index-url", (index / "simple").as_uri(), requirement="fake-torch==1.0+cu130.sm100.avx512")
    assert got == ["fake_torch-1.0+cu130.sm100.avx512-py3-none-any.whl"]
    # ... and through --find-links on the folder.
    got = pip_download(tmp_path, "--no-index", "--find-links", index, requirement="fake-vllm==1.0+cu129.sm90.avx512")
    assert got == ["fake_vllm-1.0+cu129.sm90.avx512-py3-none-any.whl"]


def test_merge_refuses_two_different_files_of_one_name(tmp_path):
    artifacts = tmp_path / "artifacts"
    one = make_wheel(artifacts / "a" / "v1", "fake-torch", "1.0+cu129.sm90.avx512", {"fake_torch/__init__.py": b"X = 1\n"})
    two = make_wheel(artifacts / "b" / "v2", "fake-torch", "1.0+cu129.sm90.avx512", {"fake_torch/__init__.py": b"X = 2\n"})
    assert one.name == two.name
    out = run(sys.executable, ROOT / "ci" / "merge_wheelhouses.py", artifacts, "--out", tmp_path / "index")
    assert out.returncode == 1
    assert "two different files named fake_torch-1.0+cu129.sm90.avx512-py3-none-any.whl" in out.stderr
    assert not (tmp_path / "index").exists()


def test_merge_keeps_one_copy_of_identical_files_and_checks_sums(tmp_path):
    artifacts = tmp_path / "artifacts"
    wheel = make_wheel(artifacts / "a" / "v1", "fake-torch", "1.0+cu129.sm90.avx512")
    (artifacts / "b" / "v2").mkdir(parents=True)
    shutil.copy2(wheel, artifacts / "b" / "v2" / wheel.name)
    files, _ = merge_wheelhouses.collect([artifacts])
    assert list(files) == [wheel.name]
    (artifacts / "a" / "v1" / "SHA256SUMS").write_text(f"{'0' * 64}  {wheel.name}\n")
    out = run(sys.executable, ROOT / "ci" / "merge_wheelhouses.py", artifacts, "--out", tmp_path / "index")
    assert out.returncode == 1 and "differs from its SHA256SUMS" in out.stderr
    out = run(sys.executable, ROOT / "ci" / "merge_wheelhouses.py", tmp_path / "empty", "--out", tmp_path / "index")
    assert out.returncode == 1 and "not a folder" in out.stderr


# -- ci/build_variant.py ------------------------------------------------------------

STUB_BACKEND = r'''
"""The backend, except that `build` writes a tiny wheelhouse instead of compiling."""
import hashlib, json, os, subprocess, sys
sys.path.insert(0, os.environ["TESTS_DIR"])
from test_ci import make_wheelhouse

args = sys.argv[1:]
with open(os.environ["STUB_LOG"], "a") as log:
    env = {k: v for k, v in os.environ.items() if k.startswith(("SCCACHE_", "AWS_"))}
    log.write(json.dumps({"argv": args, "env": env}) + "\n")
if args[0] != "build":
    os.execv(sys.executable, [sys.executable, "-m", "backend", *args])
settings = dict(a.split("=", 1) for a in args[2::2])
rows = json.loads(subprocess.run([sys.executable, "-m", "backend", "matrix", "--json", "--cuda", settings["cuda"]],
                                 capture_output=True, text=True, check=True).stdout)
row = next(r for r in rows if r["sm"] == settings["sm"] and r["isa"] == settings["isa"])
label = os.environ.get("STUB_LABEL", row["label"])
make_wheelhouse(__import__("pathlib").Path(settings["wheelhouse"]) / row["name"], label)
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def build_job(tmp_path):
    stub = tmp_path / "stub_backend.py"
    stub.write_text(STUB_BACKEND)
    log = tmp_path / "calls.jsonl"
    env = {
        "TESTS_DIR": str(ROOT / "tests"), "STUB_LOG": str(log),
        "VLLM_STACK_BACKEND": f"{sys.executable} {stub}",
        # A server of our own: never the port another build's sccache listens on.
        "SCCACHE_SERVER_PORT": str(free_port()), "SCCACHE_DIR": str(tmp_path / "sccache"),
        "SCCACHE_IDLE_TIMEOUT": "30",
        "GITHUB_OUTPUT": str(tmp_path / "github_output"), "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
    }

    def job(*extra, more_env=None):
        args = ["--sm", "90", "--isa", "avx512", "--cuda", "12.9", "--toolchain", "nix",
                "--cache-dir", tmp_path / "cache", "--wheelhouse", tmp_path / "wheelhouse",
                "--out", tmp_path / "artifact",
                "-C", "components=bitsandbytes", "-C", "offline=true",
                "-C", f"source.torch={standin_tree('torch')}", "-C", f"source.bitsandbytes={standin_tree('bitsandbytes')}",
                *extra]
        out = run(sys.executable, ROOT / "ci" / "build_variant.py", *args, env={**env, **(more_env or {})}, timeout=180)
        calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        return out, calls

    return job


needs_sccache = pytest.mark.skipif(shutil.which("sccache") is None, reason="needs sccache")


@needs_sccache
def test_build_script_fetches_builds_verifies_and_packs(build_job, tmp_path):
    out, calls = build_job(more_env={"SCCACHE_BUCKET": "", "AWS_SECRET_ACCESS_KEY": "", "SCCACHE_S3_KEY_PREFIX": "ci/"})
    assert out.returncode == 0, out.stdout + out.stderr
    variant = f"vllm-python{sys.version_info.major}{sys.version_info.minor}-cuda12_9-sm90-avx512"
    commands = [c["argv"][0] for c in calls]
    assert commands == ["matrix", "fetch", "build", "verify"]
    fetch, build, verify = calls[1]["argv"], calls[2]["argv"], calls[3]["argv"]
    for settings in (fetch, build):
        assert "toolchain=nix" in settings and "components=bitsandbytes" in settings
        assert f"cache-dir={tmp_path / 'cache'}" in settings
    assert "compiler-cache=sccache" in build and f"wheelhouse={tmp_path / 'wheelhouse'}" in build
    assert not any(a.startswith("jobs=") for a in build), "jobs is the backend's memory-aware default"
    assert verify[1] == str(tmp_path / "wheelhouse" / variant) and "--json" in verify
    # sccache's own variables pass through; empty ones do not (sccache would read them as set).
    env = calls[2]["env"]
    assert env["SCCACHE_S3_KEY_PREFIX"] == "ci/" and "SCCACHE_BUCKET" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    assert "empty, so not passed on: AWS_SECRET_ACCESS_KEY, SCCACHE_BUCKET" in out.stdout
    assert f"storage: local disk {tmp_path / 'sccache'} (SCCACHE_DIR from the environment)" in out.stdout
    assert not any(a.startswith("compiler-cache-url=") for a in build)
    packed = tmp_path / "artifact" / variant
    assert sorted(p.name for p in packed.iterdir()) == [
        "SHA256SUMS", "fake_torch-1.0+cu129.sm90.avx512-py3-none-any.whl",
        "fake_vllm-1.0+cu129.sm90.avx512-py3-none-any.whl", "manifest.json", "verify.json"]
    assert json.loads((packed / "verify.json").read_text())["ok"] is True
    assert f"variant={variant}" in (tmp_path / "github_output").read_text()
    assert "fake_torch" in (tmp_path / "summary.md").read_text()
    # The packed folder merges into an index.
    merged_out = run(sys.executable, ROOT / "ci" / "merge_wheelhouses.py", tmp_path / "artifact", "--out", tmp_path / "index")
    assert merged_out.returncode == 0, merged_out.stderr


@needs_sccache
def test_build_script_fails_when_verify_fails(build_job, tmp_path):
    out, calls = build_job("--jobs", "3", more_env={"STUB_LABEL": "cu130.sm100.avx512"})
    assert out.returncode == 1
    assert "error: verify failed" in out.stderr
    assert "jobs=3" in calls[2]["argv"]
    assert not (tmp_path / "artifact").exists()


def test_build_script_stops_on_a_combination_the_backend_excludes(tmp_path):
    out = run(sys.executable, ROOT / "ci" / "build_variant.py", "--sm", "61", "--isa", "avx512", "--cuda", "12.9",
              "--out", tmp_path / "artifact", "--dry-run")
    assert out.returncode == 1
    assert out.stderr.strip() == "error: sm=61 isa=avx512 cuda=12.9 is not a variant (python -m backend matrix lists them)"


def test_build_script_dry_run_prints_every_step(tmp_path):
    out = run(sys.executable, ROOT / "ci" / "build_variant.py", "--sm", "90", "--isa", "armv9", "--cuda", "13.0",
              "--toolchain", "pypi", "--out", tmp_path / "artifact", "--dry-run", env={"SCCACHE_GHA_ENABLED": "on"})
    assert out.returncode == 0, out.stderr
    steps = [l for l in out.stdout.splitlines() if l.startswith("$ ")]
    assert any(" fetch -C sm=90 -C isa=armv9 -C cuda=13.0 -C toolchain=pypi" in s for s in steps)
    assert any(" build " in s and "compiler-cache=sccache" in s for s in steps)
    assert any(" verify " in s for s in steps)
    assert "storage: GitHub Actions cache (SCCACHE_GHA_ENABLED from the environment)" in out.stdout


def test_build_script_passes_the_shared_cache_url_and_hides_its_password(tmp_path):
    out = run(sys.executable, ROOT / "ci" / "build_variant.py", "--sm", "90", "--isa", "avx512", "--cuda", "13.0",
              "--out", tmp_path / "artifact", "--dry-run", env={"VLLM_STACK_COMPILER_CACHE_URL": "redis://:hunter2@cache:6379"})
    assert out.returncode == 0, out.stderr
    build = next(l for l in out.stdout.splitlines() if l.startswith("$ ") and " build " in l)
    assert "compiler-cache-url=redis://:***@cache:6379" in build
    assert "compiler-cache=ccache" in build  # auto: ccache shares nvcc objects across folders (docs/CI.md)
    assert "storage: Redis redis://:***@cache:6379 (-C compiler-cache-url)" in out.stdout
    assert "hunter2" not in out.stdout + out.stderr
    # ccache reaches Redis too (the workflow's VLLM_STACK_COMPILER_CACHE), but not S3.
    ccache = run(sys.executable, ROOT / "ci" / "build_variant.py", "--sm", "90", "--isa", "avx512", "--cuda", "13.0",
                 "--out", tmp_path / "artifact", "--dry-run", env={"VLLM_STACK_COMPILER_CACHE": "ccache",
                                                                    "VLLM_STACK_COMPILER_CACHE_URL": "redis://cache:6379"})
    assert "compiler-cache=ccache" in ccache.stdout and "storage: Redis redis://cache:6379" in ccache.stdout
    s3 = run(sys.executable, ROOT / "ci" / "build_variant.py", "--sm", "90", "--isa", "avx512", "--cuda", "13.0",
             "--out", tmp_path / "artifact", "--dry-run", "--compiler-cache-url", "s3://b/p")
    assert s3.returncode == 0 and "compiler-cache=sccache" in s3.stdout and "storage: S3 s3://b/p" in s3.stdout
    no_s3 = run(sys.executable, ROOT / "ci" / "build_variant.py", "--sm", "90", "--isa", "avx512", "--cuda", "13.0",
                "--out", tmp_path / "artifact", "--dry-run", "--compiler-cache", "ccache", "--compiler-cache-url", "s3://b/p")
    assert no_s3.returncode == 1 and "needs sccache" in no_s3.stderr
    # Storage chosen twice is refused before anything runs, in one line.
    clash = run(sys.executable, ROOT / "ci" / "build_variant.py", "--sm", "90", "--isa", "avx512", "--cuda", "13.0",
                "--out", tmp_path / "artifact", "--dry-run", "--compiler-cache-url", "s3://bucket/ci",
                env={"SCCACHE_REDIS_ENDPOINT": "redis://cache:6379"})
    assert clash.returncode == 1 and not any(l.startswith("$ ") for l in clash.stdout.splitlines())
    assert clash.stderr.startswith("error: setting 'compiler-cache-url'") and "SCCACHE_REDIS_ENDPOINT" in clash.stderr


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc")
def test_build_script_builds_the_standins_for_real(tmp_path):
    """The whole job with the real backend: stand-in torch and bitsandbytes compiled through sccache."""
    out = run(sys.executable, ROOT / "ci" / "build_variant.py", "--sm", "90", "--isa", "avx2", "--cuda", "13.0",
              "--cache-dir", tmp_path / "cache", "--wheelhouse", tmp_path / "wheelhouse", "--out", tmp_path / "artifact",
              # offline, with no index to bundle the runtime dependencies from: the built wheels only
              "-C", "components=torch,bitsandbytes", "-C", "offline=true", "-C", "runtime-deps=none",
              "-C", f"source.torch={standin_tree('torch')}", "-C", f"source.bitsandbytes={standin_tree('bitsandbytes')}",
              env={"SCCACHE_SERVER_PORT": str(free_port()), "SCCACHE_DIR": str(tmp_path / "sccache")}, timeout=1800)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert list((tmp_path / "artifact").glob("*/bitsandbytes-*.whl"))
