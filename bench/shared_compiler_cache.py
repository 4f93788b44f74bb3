"""A compiler cache shared by machines: the n-th build's cost against the first, and against no sharing.

One redis-server on 127.0.0.1 (started here) is the storage every "machine"
shares; a machine is a cache folder of its own.  In one run, for each tool:

    first           machine A builds variant V (sm90 and this host's ISA)
    fresh runner    A's folder wiped, V built again at the same path (a CI runner: one cache path everywhere)
    second machine  machine B (another folder, so every path differs) builds V
    second SM       B builds sm80 with the same ISA
    second ISA      B builds sm90 with the next lower ISA

Peer, in the same run: the same builds with no shared cache (what a CI runner
does today: its cache lives and dies with it), i.e. everything compiled.

Two workloads:
- the stand-in stack through the whole pipeline (`python -m backend build`;
  cost = the components' build commands, from the wheelhouse manifest);
- real translation units, compiled with the environment and cache session the
  pipeline gives a component: bitsandbytes 0.49.1's CUDA library as its CMake
  compiles it (``ops.cu``, ``kernels.cu`` by nvcc for the variant's SM;
  ``cpu_ops.cpp``, ``pythonInterface.cpp`` by g++ with the ISA flags; two at
  a time), from ``--bitsandbytes DIR`` (a checkout, or ``git archive 0.49.1
  csrc``), with ``--cuda-include DIR`` for cuBLAS/cuSPARSE headers when the
  toolkit lacks them (the ``include/`` of the nvidia-cublas and
  nvidia-cusparse wheels).

Hits are cache lookups served / lookups (sccache counts nvcc's cudafe++,
cicc, ptxas and host steps apart).  The last lines print the "second machine"
ratio of each tool and workload against the issue's target (95%).

What decides the second machine's ratio (docs/CI.md, "Why another folder
missed"): ccache makes every path relative to its base_dir, nvcc's included;
the C/C++ compiles get the pipeline's ``-frecord-gcc-switches`` through a
GCC specs file, because with the switch on the command line ccache hashes the
absolute command line (every CMake compile and CMake's probes would miss).
sccache strips its base directories from preprocessed text only, and nvcc's
cudafe++ and cicc steps carry the absolute source path as arguments, so its
nvcc compiles miss in another folder whatever the settings.

    python bench/shared_compiler_cache.py [--tools sccache,ccache] [--bitsandbytes DIR --cuda-include DIR] [--skip-stack]

e.g. with bitsandbytes 0.49.1 unpacked by ``git archive 0.49.1 | tar -x -C
third_party/downloads/bnb-0.49.1`` and the nvidia-cublas/nvidia-cusparse
wheels' ``include/`` copied to third_party/downloads/cu13-include (both
git-ignored).  Needs a CUDA 13 nvcc, redis-server, and the tools named.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from backend import cpu_isa  # noqa: E402
from backend.pipeline import compiler_cache  # noqa: E402
from standin_helpers import find_nvcc, host_isa, standin_tree  # noqa: E402

STACK = "torch,torchvision,xformers,flashinfer,bitsandbytes"
LOWER = {"avx512": "avx2", "avx2": "avx"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(folder: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no", "--dir", str(folder)], stdout=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return server, f"redis://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    raise SystemExit("redis-server did not start")


# -- the stand-in stack through the pipeline ------------------------------------------------------

def stack_build(machine: Path, sm: str, isa: str, tool: str, url: str | None, nvcc: str) -> tuple[float, int, int]:
    """(seconds of the components' build commands, hits, lookups) of one `python -m backend build`."""
    pairs = {"sm": sm, "isa": isa, "cuda": "13.0", "components": STACK, "jobs": "2",
             "cache-dir": str(machine / "cache"), "wheelhouse": str(machine / "wheelhouse"),
             "compiler-cache": tool, **({"compiler-cache-url": url} if url else {}),
             "free-disk-gb": "0",  # the stand-ins need megabytes; the disk check plans for real trees
             "runtime-deps": "none",  # downloads, not compiles
             **{f"source.{c}": str(standin_tree(c)) for c in STACK.split(",")}}
    args = [a for k, v in pairs.items() for a in ("-C", f"{k}={v}")]
    env = {**os.environ, "PATH": f"{Path(nvcc).parent}{os.pathsep}{os.environ['PATH']}"}
    out = subprocess.run([sys.executable, "-m", "backend", "build", *args], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"build failed:\n{out.stderr[-3000:]}")
    hits = lookups = 0
    for line in out.stderr.splitlines():
        found = re.match(r"(\w+)\s.*\sbuilt\s.*\s(\d+)/(\d+)\s*$", line)
        if found and found[1] in STACK.split(","):
            hits, lookups = hits + int(found[2]), lookups + int(found[3])
    variant = next(p for p in (machine / "wheelhouse").iterdir() if f"sm{sm}-{isa}" in p.name)
    wheels = json.loads((variant / "manifest.json").read_text())["wheels"].values()
    # Only the stack's own wheels carry build seconds (runtime dependencies are downloaded, not built).
    seconds = sum({w["component"]: w["seconds"] for w in wheels if w.get("seconds") is not None}.values())
    return seconds, hits, lookups


# -- real translation units -------------------------------------------------------------------------

def tu_build(machine: Path, sm: str, isa: str, tool: str, url: str | None, nvcc: str, bnb: Path,
             includes: list[str]) -> tuple[float, int, int]:
    """bitsandbytes' four units, two at a time, in the machine's tree for the variant."""
    from concurrent.futures import ThreadPoolExecutor

    variant = f"vllm-python3-cuda13_0-sm{sm}-{isa}"
    cache_root = machine / "cache"
    layout = types.SimpleNamespace(variant_dir=cache_root / "work" / variant, env_dir=cache_root / "envs" / variant,
                                   cache=cache_root)
    tree = layout.variant_dir / "bitsandbytes" / "tree"
    if not tree.exists():
        shutil.copytree(bnb / "csrc", tree / "csrc")
    build = tree / "_build"
    shutil.rmtree(build, ignore_errors=True)
    build.mkdir()
    cache = compiler_cache.choose(tool, cache_root / "compiler-cache", url=url)
    env = {**os.environ, **cache.env(compiler_cache.base_dirs(layout), os.environ["PATH"], nvcc=nvcc)}
    # The flags every C/C++ compile of the pipeline gets (backend.pipeline.plan.common_env), as the cache takes them.
    env["CXXFLAGS"] = " ".join([*cpu_isa.get(isa).flags, "-frecord-gcc-switches"])
    env.update(cache.flags(env))
    # What CMake runs for bitsandbytes (absolute paths, the launcher in front), trimmed to what compiles here.
    launcher = shlex.split(env.get("CMAKE_CXX_COMPILER_LAUNCHER", ""))
    cuda_home = Path(nvcc).resolve().parent.parent
    incs = [f"-I{tree / 'csrc'}", f"-I{cuda_home / 'include'}", *(f"-I{i}" for i in includes)]
    compiles = [
        [*launcher, nvcc, "-DBUILD_CUDA", "-O3", "--use_fast_math", "-std=c++17", *incs,
         f"-gencode=arch=compute_{sm},code=sm_{sm}", "-Xcompiler", "-fPIC",
         "-c", str(tree / "csrc" / f"{name}.cu"), "-o", str(build / f"{name}.o")] for name in ("kernels", "ops")
    ] + [
        [*launcher, "g++", "-DBUILD_CUDA", *shlex.split(env["CXXFLAGS"]), "-O3", "-std=c++17", "-fPIC", *incs,
         "-c", str(tree / "csrc" / f"{name}.cpp"), "-o", str(build / f"{name}.o")] for name in ("cpu_ops", "pythonInterface")
    ]

    def run(command):
        done = subprocess.run(command, cwd=build, env={**env, **session.env}, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{shlex.join(command)} failed:\n{done.stderr[-2000:]}")

    started = time.monotonic()
    with cache.session(env, machine / f"{variant}.ccache-stats") as session:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(run, compiles))
    seconds = time.monotonic() - started
    stats = session.stats
    return seconds, (stats.hits if stats else 0), (stats.lookups if stats else 0)


# -- the scenarios ------------------------------------------------------------------------------------

def scenarios(build, work: Path, tool: str, url: str, isa: str, title: str) -> tuple[int, int]:
    """Each row (scenario, seconds, hits, lookups, peer seconds) printed as soon as it is measured;
    returns the second machine's (hits, lookups)."""
    lower = LOWER.get(isa)
    a, b, peer = work / f"{tool}-A", work / f"{tool}-B", work / f"{tool}-peer"
    print(f"\n{title}")
    print(f"  {'build':<15} {'seconds':>8} {'hits':>9} {'hit ratio':>9} {'cost/first':>10} {'peer s':>8} {'peer/first':>10} {'cost/peer':>9}")
    first = build(a, "90", isa, tool, url)
    row("first", *first, first[0], first[0])
    shutil.rmtree(a)
    row("fresh runner", *build(a, "90", isa, tool, url), build(peer / "1", "90", isa, "none", None)[0], first[0])
    second = build(b, "90", isa, tool, url)
    row("second machine", *second, build(peer / "2", "90", isa, "none", None)[0], first[0])
    row("second SM", *build(b, "80", isa, tool, url), build(peer / "3", "80", isa, "none", None)[0], first[0])
    if lower:
        row("second ISA", *build(b, "90", lower, tool, url), build(peer / "4", "90", lower, "none", None)[0], first[0])
    return second[1], second[2]


def row(name: str, seconds: float, hits: int, lookups: int, peer: float, first: float) -> None:
    ratio = f"{hits / lookups:.1%}" if lookups else "-"
    print(f"  {name:<15} {seconds:8.1f} {f'{hits}/{lookups}':>9} {ratio:>9} {seconds / first:10.2f} "
          f"{peer:8.1f} {peer / first:10.2f} {seconds / peer:9.2f}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tools", default="sccache,ccache")
    parser.add_argument("--bitsandbytes", type=Path, help="a bitsandbytes 0.49.1 tree (csrc/); without it, no real TUs")
    parser.add_argument("--cuda-include", action="append", default=[], help="more header folders (cuBLAS, cuSPARSE)")
    parser.add_argument("--skip-stack", action="store_true", help="only the real translation units")
    args = parser.parse_args()
    nvcc = find_nvcc()
    if nvcc is None or shutil.which("redis-server") is None:
        print("needs a CUDA 13 nvcc and redis-server", file=sys.stderr)
        return 1
    isa = host_isa()
    with tempfile.TemporaryDirectory(prefix="shared-cache-bench-") as tmp:
        work = Path(tmp)
        redis, url = start_redis(work)
        summary: dict[str, tuple[int, int]] = {}
        try:
            for tool in args.tools.split(","):
                if shutil.which(tool) is None:
                    print(f"\n{tool}: not on PATH, skipped")
                    continue
                if args.bitsandbytes:
                    def tus(machine, sm, isa_, tool_, url_):
                        return tu_build(machine, sm, isa_, tool_, url_, nvcc, args.bitsandbytes.resolve(),
                                        [str(Path(i).resolve()) for i in args.cuda_include])
                    summary[f"{tool}, bitsandbytes 0.49.1 units"] = scenarios(
                        tus, work / "tu", tool, url, isa,
                        f"{tool} + Redis: bitsandbytes 0.49.1, its 4 CUDA-library units (host ISA {isa})")
                if not args.skip_stack:
                    def stack(machine, sm, isa_, tool_, url_):
                        return stack_build(machine, sm, isa_, tool_, url_, nvcc)
                    summary[f"{tool}, stand-in stack"] = scenarios(
                        stack, work / "stack", tool, url, isa,
                        f"{tool} + Redis: stand-in stack {STACK} through the pipeline (host ISA {isa})")
        finally:
            redis.terminate()
            redis.wait(timeout=10)
    print("\nsecond machine (another folder, same variant): compiles served from the shared cache (target 95%)")
    for name, (hits, lookups) in summary.items():
        print(f"  {name:<36} {hits}/{lookups} = {hits / lookups:.1%}" if lookups else f"  {name:<36} no lookups")
    return 0


if __name__ == "__main__":
    sys.exit(main())
