"""Editable developer builds: ``pip install -e . -C source.<component>=PATH`` (PEP 660).

The developer's checkout is a copy of the torchvision stand-in; the stack's
torch is the torch stand-in, installed in the target environment
(``-C torch=existing``).  Real pip, real compilers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from backend import needs
from standin_helpers import find_nvcc, host_isa, runtime_links, standin_runtime_requirements, standin_tree

ROOT = Path(__file__).resolve().parent.parent
NVCC = find_nvcc()
pytestmark = [
    pytest.mark.skipif(NVCC is None, reason="needs a CUDA 13 nvcc"),
    pytest.mark.skipif(shutil.which("ccache") is None, reason="needs ccache (apt-get install ccache)"),
]
ISA = host_isa()
# What the backend checks before every hook (backend/needs.py, one list), and the stand-ins' build backend.
BACKEND_NEEDS = [req for _, req in needs.RUNTIME + needs.PROGRAMS] + ["setuptools>=70", "wheel"]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PATH"] = f"{Path(NVCC).parent}{os.pathsep}{e['PATH']}"
    return e


@pytest.fixture
def target(tmp_path):
    """A developer's venv with the stack's torch installed, and a checkout of torchvision.

    Per test: the test edits the checkout and installs into the venv."""
    tmp = tmp_path
    common = ["-C", "compiler-cache=ccache", "-C", "sm=90", "-C", f"isa={ISA}", "-C", "cuda=13.0", "-C", f"cache-dir={tmp / 'cache'}",
              "-C", f"wheelhouse={tmp / 'wheelhouse'}"]
    links = runtime_links(tmp / "links", standin_runtime_requirements())  # torch's triton and nvidia-* pins, offline
    subprocess.run([sys.executable, "-m", "backend", "build", *common, "-C", "components=torch",
                    "-C", f"source.torch={standin_tree('torch')}", "-C", f"runtime-find-links={links}", "-C", "smoke=cpu",
                    "-C", "build-requirements=ranges", "-C", "free-disk-gb=1"],
                   cwd=ROOT, env=env(), check=True, capture_output=True)
    torch_wheel = next((tmp / "wheelhouse").glob("*/torch-*.whl"))
    venv.EnvBuilder(with_pip=True).create(tmp / "venv")
    python = str(tmp / "venv" / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "-q", *BACKEND_NEEDS], check=True, capture_output=True)
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", str(torch_wheel)], check=True, capture_output=True)
    checkout = tmp / "checkout"
    shutil.copytree(standin_tree("torchvision"), checkout, ignore=shutil.ignore_patterns("build", "*.so", "version.py"))
    args = [python, "-m", "pip", "install", "--no-build-isolation", "-e", str(ROOT), *common,
            "-C", "torch=existing", "-C", "components=torchvision", "-C", f"source.torchvision={checkout}"]
    return python, checkout, args


def install(args) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, env=env(), cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def run(python: str, code: str) -> str:
    # As with the real packages, torch (and its libc10.so) is loaded before torchvision._C,
    # whose in-place copy in the checkout has no rpath to site-packages/torch/lib.
    code = "import torch; torch.add_one(0); torch.scale([1.0], 2.0)\n" + code
    result = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd="/")
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_editable_install_live_python_and_incremental_cpp(target):
    python, checkout, args = target
    # The PEP 660 hook installs nothing itself (no frontend expects that): called alone, as pip calls it, through
    # pyproject_hooks, it returns a wheel whose requirements are the editable wheel it built in the checkout.
    out = checkout.parent / "hook-out"
    out.mkdir()
    config = dict(pair.split("=", 1) for pair in args[args.index("-C"):][1::2])
    call = ("import json, sys; from pyproject_hooks import BuildBackendHookCaller as Hooks; "
            f"print(Hooks({str(ROOT)!r}, 'backend', ['.'], python_executable=sys.executable)"
            f".build_editable({str(out)!r}, json.loads(sys.argv[1])))")
    returned = subprocess.run([python, "-c", call, json.dumps(config)], capture_output=True, text=True, env=env(),
                              cwd=ROOT)
    assert returned.returncode == 0, returned.stderr[-3000:]
    listed = subprocess.run([python, "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True).stdout
    assert "torchvision" not in listed, listed
    with zipfile.ZipFile(out / returned.stdout.strip().splitlines()[-1]) as wheel:
        metadata = next(wheel.read(n).decode() for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    [url] = [line.split(" @ ", 1)[1] for line in metadata.splitlines() if line.startswith("Requires-Dist: torchvision @ ")]
    assert url.startswith("file:///") and ".editable-" in url, url
    # A checkout whose build backend the build environment cannot import: pip shows one line naming it, no traceback.
    broken = checkout.parent / "broken"
    shutil.copytree(checkout, broken)
    (broken / "pyproject.toml").write_text('[build-system]\nrequires = []\nbuild-backend = "no_such_backend"\n')
    failed = subprocess.run([*args[:-1], f"source.torchvision={broken}"], capture_output=True, text=True, env=env(),
                            cwd=ROOT)
    output = failed.stdout + failed.stderr
    assert failed.returncode != 0 and "Traceback" not in output, output[-3000:]
    assert "its build backend no_such_backend cannot be imported in" in output, output[-3000:]

    install(args)
    where, value = run(python, "import torchvision; print(torchvision.__file__); print(torchvision.add_one(1))").splitlines()
    assert Path(where).resolve().is_relative_to(checkout.resolve()), where
    assert value == "2"
    extension = next(checkout.glob("torchvision/_C*.so"))
    first_mtime = extension.stat().st_mtime_ns

    # A Python edit is live at once, with no rebuild.
    init = checkout / "torchvision" / "__init__.py"
    init.write_text(init.read_text() + "\n\ndef edited():\n    return 'live'\n")
    assert run(python, "import torchvision; print(torchvision.edited())") == "live"

    # Installing again with nothing changed compiles nothing: setuptools' PEP 660
    # build starts from a fresh build folder, so every compile must be a
    # compiler-cache hit.
    ccache = {**os.environ, "CCACHE_DIR": str(checkout.parent / "cache" / "compiler-cache" / "ccache")}
    subprocess.run(["ccache", "--zero-stats"], env=ccache, check=True, capture_output=True)
    install(args)
    stats = dict(line.split("\t", 1) for line in subprocess.run(
        ["ccache", "--print-stats"], env=ccache, capture_output=True, text=True, check=True).stdout.splitlines() if "\t" in line)
    hits = int(stats.get("direct_cache_hit", 0)) + int(stats.get("preprocessed_cache_hit", 0))
    assert hits >= 2 and int(stats.get("cache_miss", 0)) == 0, stats

    # A C++ edit is picked up by the next install, which rebuilds the extension in place.
    ops = checkout / "csrc" / "ops.cpp"
    ops.write_text(ops.read_text().replace("c10::standin::add_one(static_cast<int>(x))",
                                           "c10::standin::add_one(static_cast<int>(x)) + 100"))
    install(args)
    assert run(python, "import torchvision; print(torchvision.add_one(1))") == "102"
    assert extension.stat().st_mtime_ns != first_mtime
    freeze = subprocess.run([python, "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True).stdout
    assert f"torchvision==0.24.1+cu130.sm90.{ISA}" in freeze
    # pip installed it, as a requirement of the variant's editable wheel
    shown = subprocess.run([python, "-m", "pip", "show", "torchvision"], capture_output=True, text=True).stdout
    variant = f"vllm-python{sys.version_info.major}{sys.version_info.minor}-cuda13_0-sm90-{ISA}"
    assert f"Required-by: {variant}" in shown.splitlines(), shown
