"""First-call latency of a Triton kernel on a GPU host: an empty Triton cache against the prebuilt cuda_utils.

Issue 25 item 2. Builds Triton's ``cuda_utils`` with this interpreter's Triton as a wheelhouse build does
(``backend/wheels/triton_cache.py``), then runs the smoke check's Triton kernel (an add, float32) in fresh
processes, each with its own TRITON_CACHE_DIR and without CC/CXX:

- ``empty, compiler``: an empty cache, PATH as given (a host with gcc): cuda_utils, the launcher and the
  kernel all compile at the first call;
- ``prebuilt, compiler``: the cache holds only the prebuilt cuda_utils (a host that followed DEPLOY.md);
- ``prebuilt, no compiler``: the same with no compiler on PATH: the per-signature launcher cannot compile,
  the call fails (the need DEPLOY.md names);
- ``warm copy, no compiler``: a copy of a cache one ``empty, compiler`` run left (cuda_utils, launcher
  and kernel), no compiler on PATH: what copying a warm cache from one host to another gives.

Each condition runs ``--repeat`` times (fresh copy each); the JSON holds every run's first- and second-call
wall time, the C modules Triton compiled with their compile times (Triton's own ``build._build``, timed),
and the medians. The ratio printed is the median first call of ``prebuilt, compiler`` over ``empty,
compiler``, both measured here. Exits 1 when a condition expected to pass fails.

    python3 ci/device/check_triton_first_call.py [--repeat 5] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: backend/
from backend.wheels import triton_cache  # noqa: E402

CLEARED = ("CC", "CXX", "TRITON_CACHE_DIR", "TRITON_HOME", "TRITON_LIBCUDA_PATH")  # the host's own settings

FIRST_KERNEL = r'''
import json, os, time
start = time.perf_counter()
import torch, triton, triton.language as tl
import triton.runtime.build as build
compiles = []
real_build = build._build


def timed_build(name, *args, **kwargs):  # Triton's own compile step (runtime/build.py), timed
    began = time.perf_counter()
    try:
        return real_build(name, *args, **kwargs)
    finally:
        compiles.append([name, round((time.perf_counter() - began) * 1000, 1)])


build._build = timed_build


@triton.jit
def _add(x, y, out, n, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    tl.store(out + offsets, tl.load(x + offsets, mask=mask) + tl.load(y + offsets, mask=mask), mask=mask)


x = torch.arange(1000, device="cuda", dtype=torch.float32)
out = torch.empty_like(x)
torch.cuda.synchronize()
imported = time.perf_counter()
result = {"triton": triton.__version__, "torch": torch.__version__, "gpu": torch.cuda.get_device_name(),
          "import_ms": round((imported - start) * 1000, 1)}
try:
    _add[(triton.cdiv(1000, 256),)](x, x, out, 1000, BLOCK=256)
    torch.cuda.synchronize()
    first = time.perf_counter()
    _add[(triton.cdiv(1000, 256),)](x, x, out, 1000, BLOCK=256)
    torch.cuda.synchronize()
    result.update(ok=bool(torch.equal(out, x * 2)), first_call_ms=round((first - imported) * 1000, 1),
                  second_call_ms=round((time.perf_counter() - first) * 1000, 3))
except Exception as error:
    result.update(ok=False, error=f"{type(error).__name__}: {str(error).splitlines()[0][:300]}")
result["compiled"] = compiles
print("FIRST-CALL " + json.dumps(result))
'''


def run_once(script: Path, cache: Path, path: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env.update(PATH=path, TRITON_CACHE_DIR=str(cache))
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True)
    line = next((l for l in done.stdout.splitlines() if l.startswith("FIRST-CALL ")), None)
    if line is None:
        tail = [l for l in done.stderr.splitlines() if l.strip()]
        return {"ok": False, "error": tail[-1] if tail else f"exit {done.returncode}"}
    return json.loads(line.removeprefix("FIRST-CALL "))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None, help="folder for result.json (default: print only)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="triton-first-call-"))
    script = work / "first_kernel.py"
    script.write_text(FIRST_KERNEL)
    full_path = os.environ.get("PATH", "")
    no_compiler = work / "no-compiler"  # `file` only: the key a host with it computes (triton_cache.prebuild)
    no_compiler.mkdir()
    if shutil.which("file"):
        (no_compiler / "file").symlink_to(shutil.which("file"))
    env = {k: v for k, v in os.environ.items() if k not in ("CC", "CXX")}
    prebuilt = triton_cache.prebuild(Path(sys.executable), env, work / "prebuild", work / "shipped")
    report = {"python": sys.version.split()[0], "prebuilt": {"files": prebuilt.files, "skipped": prebuilt.skipped,
                                                              "triton": prebuilt.triton},
              "gcc": shutil.which("gcc"), "conditions": {}}
    conditions = {"empty, compiler": (None, full_path, True)}
    if not prebuilt.skipped:  # without a prebuilt module these would only repeat the empty cache
        conditions["prebuilt, compiler"] = (work / "shipped", full_path, True)
        conditions["prebuilt, no compiler"] = (work / "shipped", str(no_compiler), False)
    for name, (seed, path, expect_ok) in conditions.items():
        runs = [run_once(script, triton_cache.seed(work / "cache" / f"{name}-{i}", seed), path)
                for i in range(args.repeat)]
        report["conditions"][name] = {"runs": runs, "expected_ok": expect_ok}
    warm = work / "cache" / "empty, compiler-0"  # the first cold run's cache: cuda_utils, launcher, kernel
    runs = [run_once(script, triton_cache.seed(work / "cache" / f"warm-{i}", warm), str(no_compiler))
            for i in range(args.repeat)]
    report["conditions"]["warm copy, no compiler"] = {"runs": runs, "expected_ok": True}
    failed = []
    for name, entry in report["conditions"].items():
        firsts = [r["first_call_ms"] for r in entry["runs"] if r.get("ok")]
        entry["median_first_call_ms"] = statistics.median(firsts) if firsts else None
        entry["all_ok"] = all(r.get("ok") for r in entry["runs"])
        if entry["expected_ok"] and not entry["all_ok"]:
            failed.append(name)
    cold = report["conditions"]["empty, compiler"]["median_first_call_ms"]
    seeded = report["conditions"].get("prebuilt, compiler", {}).get("median_first_call_ms")
    report["ratio_prebuilt_over_empty"] = round(seeded / cold, 3) if cold and seeded else None
    report["failed"] = failed
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "triton_first_call.json").write_text(text)
    return 1 if failed or prebuilt.skipped else 0


if __name__ == "__main__":
    sys.exit(main())
