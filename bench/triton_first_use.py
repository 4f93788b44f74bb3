"""Benchmark: Triton's host-side work before a first kernel, with an empty cache against the prebuilt cuda_utils.

    python bench/triton_first_use.py [--python PY] [--repeat N] [--work DIR]

PY: an interpreter with Triton installed. Without it the script downloads ``triton==3.5.1`` (torch 2.9.1's
pin, about 170 MB) with ``pip download --no-deps`` into the work folder and installs it into a venv there.

What a host's Triton does before the first kernel of one signature, without a GPU: ``CudaUtils()``
(``cuda_utils`` from ``driver.c``, ``backends/nvidia/driver.py:62-69``) and the launcher of the smoke
check's kernel signature (``make_launcher`` then ``compile_module_from_src``, as ``CudaLauncher.__init__``
does, ``driver.py:675-688``), each in a fresh process with its own Triton cache:

* ``empty``: nothing cached, both modules compiled with the host's gcc;
* ``prebuilt``: the cache holds ``cuda_utils`` as ``backend/wheels/triton_cache.py`` ships it;
* ``warm``: both modules cached (a cache copied from a host that ran the kernel).

libcuda.so.1 is a stub of the functions the modules call (the load needs one; this is not a GPU run).
The kernel's own compile (ptxas) and load are GPU work: ``ci/device/check_triton_first_call.py``.
Prints the median of each and the ratios prebuilt / empty and warm / empty, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backend.wheels import triton_cache  # noqa: E402

FIRST_USE = r'''
import json, time
start = time.perf_counter()
from triton.backends.nvidia import driver
from triton.runtime.build import compile_module_from_src
imported = time.perf_counter()
driver.CudaUtils()
utils = time.perf_counter()
source = driver.make_launcher({}, {"x": "*fp32", "y": "*fp32", "out": "*fp32", "n": "i32", "BLOCK": "constexpr"}, None)
compile_module_from_src(src=source, name="__triton_launcher", library_dirs=driver.library_dirs(),
                        include_dirs=driver.include_dirs, libraries=driver.libraries)
done = time.perf_counter()
print("FIRST-USE " + json.dumps({"cuda_utils_ms": (utils - imported) * 1000, "launcher_ms": (done - utils) * 1000,
                                 "total_ms": (done - imported) * 1000}))
'''


def triton_python(work: Path) -> Path:
    python = work / "venv" / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d",
                        str(work / "wheels"), "triton==3.5.1"], check=True, stdout=subprocess.DEVNULL)
        venv.EnvBuilder(with_pip=False).create(work / "venv")
        subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                        *map(str, (work / "wheels").glob("triton-*.whl"))], check=True, stdout=subprocess.DEVNULL)
    return python


def stub_libcuda(folder: Path, python: Path) -> Path:
    """A stand-in for the driver's libcuda: every function Triton's bundled cuda.h declares or renames, doing
    nothing (the modules only need the names to load), as libcuda.so and libcuda.so.1."""
    include = subprocess.run([str(python), "-c", "from triton.backends.nvidia import driver; print(driver.include_dirs[0])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    header = (Path(include) / "cuda.h").read_text()
    names = set(re.findall(r"\b(cu[A-Z]\w*)\s*\(", header)) | set(re.findall(r"#define\s+cu\w+\s+(cu[A-Z]\w*)", header))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "stub.c").write_text("".join(f"void {n}(void) {{}}\n" for n in sorted(names)))
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o", str(folder / "libcuda.so.1"),
                    str(folder / "stub.c")], check=True)
    if not (folder / "libcuda.so").exists():
        (folder / "libcuda.so").symlink_to("libcuda.so.1")
    return folder


def first_use(python: Path, script: Path, cache: Path, libcuda: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("CC", "CXX", "TRITON_HOME")}
    env.update(TRITON_CACHE_DIR=str(cache), TRITON_LIBCUDA_PATH=str(libcuda), LD_LIBRARY_PATH=str(libcuda))
    done = subprocess.run([str(python), str(script)], env=env, capture_output=True, text=True, check=True)
    return json.loads(next(l for l in done.stdout.splitlines() if l.startswith("FIRST-USE ")).removeprefix("FIRST-USE "))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "vllm-stack-bench-triton")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    python = args.python or triton_python(args.work)
    env = {k: v for k, v in os.environ.items() if k not in ("CC", "CXX")}
    shipped = args.work / "shipped"
    shutil.rmtree(shipped, ignore_errors=True)
    built = triton_cache.prebuild(python, env, args.work / "prebuild", shipped)
    if built.skipped:
        sys.exit(f"cuda_utils was not prebuilt: {built.skipped}")
    libcuda = stub_libcuda(args.work / "driver", python)
    script = args.work / "first_use.py"
    script.write_text(FIRST_USE)
    warm = triton_cache.seed(args.work / "warm-source", None)
    first_use(python, script, warm, libcuda)  # leaves cuda_utils and the launcher in it
    runs: dict[str, list[dict]] = {"empty": [], "prebuilt": [], "warm": []}
    for i in range(args.repeat):  # interleaved, so a slower stretch of the machine hits every condition
        for name, seed in (("empty", None), ("prebuilt", shipped), ("warm", warm)):
            cache = triton_cache.seed(args.work / "cache" / f"{name}-{i}", seed)
            runs[name].append(first_use(python, script, cache, libcuda))
    version = subprocess.run([str(python), "-c", "import triton; print(triton.__version__)"], capture_output=True,
                             text=True, check=True).stdout.strip()
    report = {"triton": version, "repeat": args.repeat, "cores": os.cpu_count()}
    for name, results in runs.items():
        report[name] = {key: round(statistics.median(r[key] for r in results), 1)
                        for key in ("cuda_utils_ms", "launcher_ms", "total_ms")}
    report["ratio_prebuilt_over_empty"] = round(report["prebuilt"]["total_ms"] / report["empty"]["total_ms"], 3)
    report["ratio_warm_over_empty"] = round(report["warm"]["total_ms"] / report["empty"]["total_ms"], 3)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
