"""Orchestration overhead of a fully cached build, against the time to hash its inputs.

A second ``python -m backend build`` of the same variant must rebuild
nothing; what it costs beyond reading and hashing its inputs (the source
trees it snapshots, the wheels it re-verifies by sha256) is the backend's
own overhead.  Peer: hashing those same inputs alone, in the same run.

    python bench/orchestration_overhead.py [--repeat 5]

Needs a CUDA 13 nvcc (the stand-ins compile a kernel on the first run).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from backend.pipeline.snapshot import tree_digest  # noqa: E402
from standin_helpers import find_nvcc, host_isa, standin_tree  # noqa: E402

COMPONENTS = ("torch", "torchvision", "bitsandbytes")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    nvcc = find_nvcc()
    if nvcc is None:
        print("needs a CUDA 13 nvcc", file=sys.stderr)
        return 2
    env = dict(os.environ, PATH=f"{Path(nvcc).parent}{os.pathsep}{os.environ['PATH']}")
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "backend", "build", "-C", "sm=90", "-C", f"isa={host_isa()}", "-C", "cuda=13.0",
                   "-C", f"components={','.join(COMPONENTS)}", "-C", f"cache-dir={tmp}/cache", "-C", f"wheelhouse={tmp}/wh"]
        for component in COMPONENTS:
            command += ["-C", f"source.{component}={standin_tree(component)}"]
        subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True)  # the real build, once

        def cached_run() -> float:
            start = time.perf_counter()
            result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
            assert result.stderr.count(" cached ") >= len(COMPONENTS), result.stderr
            return time.perf_counter() - start

        def hash_inputs() -> float:
            start = time.perf_counter()
            for component in COMPONENTS:
                tree_digest(standin_tree(component))
            for wheel in Path(tmp, "wh").glob("*/*.whl"):
                hashlib.sha256(wheel.read_bytes()).hexdigest()
            return time.perf_counter() - start

        def python_start() -> float:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import backend.pipeline.run"], cwd=ROOT, check=True)
            return time.perf_counter() - start

        runs = [cached_run() for _ in range(args.repeat)]
        hashes = [hash_inputs() for _ in range(args.repeat)]
        starts = [python_start() for _ in range(args.repeat)]
    run_s, hash_s, start_s = statistics.median(runs), statistics.median(hashes), statistics.median(starts)
    print(f"cached build (nothing rebuilt), median of {args.repeat}: {run_s:.3f} s")
    print(f"hashing its inputs alone (peer):               {hash_s:.3f} s")
    print(f"interpreter start + imports alone:             {start_s:.3f} s")
    print(f"ratio cached build / hashing inputs: {run_s / hash_s:.1f}x; "
          f"overhead beyond hashing and start-up: {run_s - hash_s - start_s:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
