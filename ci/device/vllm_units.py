"""Configure vLLM with the lock's side trees through the recipe's own environment, then compile chosen units.

    python3 ci/device/vllm_units.py --vllm TREE --extra vllm-cutlass=DIR --extra vllm-flash-attn=DIR \
        --extra flashmla=DIR --extra qutlass=DIR --extra triton-kernels=DIR --out OUT \
        --unit hopper/instantiations/flash_fwd_hdim128_bf16_sm90.cu ...

What vLLM's setup.py would run (its ``cmake_build_ext.configure``: the same
arguments, CMAKE_ARGS appended), with the environment the pipeline gives the
vLLM recipe for sm=90 and CUDA 13.0 (``common_env`` plus
``recipes.vllm.environment``), and FetchContent fully disconnected, so a
download attempt fails the configure.  Then each chosen translation unit is
compiled with the exact command CMake generated (compile_commands.json),
all at once, each timed and its peak memory read (RUSAGE_CHILDREN covers
cicc and ptxas).  Every ``-gencode`` of every compile command is written to
OUT/gencodes.json.

``--derive NAME=UNIT:FROM`` compiles UNIT with FROM's command (FROM is a
unit above) less the ``--drop`` arguments, for a file the configured build
does not list (flash-attention's backward kernels, which vLLM compiles out
with FLASHATTENTION_DISABLE_BACKWARD); ``--alt NAME=FROM`` compiles FROM
again with every ``--swap OLD=NEW`` applied (another CUTLASS, an unpatched tree).
The trees are the caller's (nothing is downloaded or committed here).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from backend import recipes  # noqa: E402
from backend.pipeline.parallelism import choose_jobs  # noqa: E402
from backend.pipeline.plan import common_env  # noqa: E402
from backend.recipes.base import BuildContext  # noqa: E402
from backend.settings import resolve  # noqa: E402
from backend.sources import vllm_release  # noqa: E402
from backend.variants import Variant  # noqa: E402


def recipe_env(args, tree: Path, extras: dict[str, Path], build: Path) -> tuple[dict[str, str], dict]:
    settings = resolve({"sm": "90", "isa": args.isa, "cuda": "13.0", "torch": "existing"})
    variant = Variant(sm="90", isa=args.isa, cuda="13.0")
    recipe = recipes.get("vllm").for_line(vllm_release.release_line(args.line))  # -C vllm=<line>
    jobs = choose_jobs(recipe, settings, cores=os.cpu_count() or 1, memory_bytes=args.memory_gib << 30)
    ctx = BuildContext(
        variant=variant, settings=settings, tree=tree, extras=extras, wheel_dir=build / "wheels",
        build_dir=build, python=sys.executable,
    )
    env = common_env(variant, jobs)
    env.update(recipe.environment(ctx))
    return env, jobs.to_json()


def configure_command(tree: Path, build: Path, env: dict[str, str], cuda_home: str) -> list[str]:
    """setup.py's cmake_build_ext.configure (vLLM 0.14.1 to 0.16.0), ninja and no compiler launcher."""
    jobs = int(env["MAX_JOBS"]) // max(1, int(env.get("NVCC_THREADS", "1")))
    args = [
        "cmake", str(tree), "-G", "Ninja",
        f"-DCMAKE_BUILD_TYPE={env.get('CMAKE_BUILD_TYPE') or 'RelWithDebInfo'}",
        f"-DVLLM_TARGET_DEVICE={env['VLLM_TARGET_DEVICE']}",
        f"-DVLLM_PYTHON_EXECUTABLE={sys.executable}",
        f"-DVLLM_PYTHON_PATH={':'.join(sys.path)}",
        f"-DFETCHCONTENT_BASE_DIR={build / '.deps'}",
        f"-DNVCC_THREADS={env['NVCC_THREADS']}",
        "-DCMAKE_JOB_POOL_COMPILE:STRING=compile",
        f"-DCMAKE_JOB_POOLS:STRING=compile={jobs}",
        f"-DCMAKE_CUDA_COMPILER={cuda_home}/bin/nvcc",
    ]
    args += env.get("CMAKE_ARGS", "").split()
    return args + ["-DCMAKE_EXPORT_COMPILE_COMMANDS=ON"]


def gencodes(command: list[str]) -> list[str]:
    found = []
    for i, arg in enumerate(command):
        if arg in ("-gencode", "--generate-code") and i + 1 < len(command):
            found.append(command[i + 1])
        elif arg.startswith(("-gencode=", "--generate-code=")):
            found.append(arg.split("=", 1)[1])
        elif arg.startswith(("-arch=", "--gpu-architecture=")):
            found.append(arg)
    return found


def timed(name: str, command: list[str], cwd: str, log: Path, limit: float) -> dict:
    """Run one compile in a child Python, so RUSAGE_CHILDREN is this compile's alone."""
    probe = (
        "import resource, subprocess, sys, time, json\n"
        "t = time.monotonic()\n"
        "try:\n"
        "    rc = subprocess.run(json.loads(sys.argv[1]), cwd=sys.argv[2], stderr=subprocess.STDOUT, timeout=float(sys.argv[3])).returncode\n"
        "except subprocess.TimeoutExpired:\n"
        "    rc = 'timeout'\n"
        "r = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "print(json.dumps({'rc': rc, 'seconds': round(time.monotonic() - t, 1), 'peak_rss_gib': round(r.ru_maxrss / 2**20, 2), "
        "'cpu_seconds': round(r.ru_utime + r.ru_stime, 1)}), file=sys.stderr)\n"
    )
    with open(log, "w") as out:
        out.write(shlex.join(command) + "\n\n")
        out.flush()
        done = subprocess.run([sys.executable, "-c", probe, json.dumps(command), cwd, str(limit)],
                              stdout=out, stderr=subprocess.PIPE, text=True)
    result = json.loads(done.stderr.strip().splitlines()[-1])
    result["unit"] = name
    if result["rc"] != 0:
        result["error_tail"] = [l for l in log.read_text(errors="replace").splitlines() if "error" in l][:8]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vllm", type=Path, required=True)
    parser.add_argument("--extra", action="append", default=[], help="LOCK_ENTRY=DIR")
    parser.add_argument("--unit", action="append", default=[], help="source path (suffix) in compile_commands.json")
    parser.add_argument("--derive", action="append", default=[], help="NAME=UNIT:FROM")
    parser.add_argument("--drop", action="append", default=[], help="argument removed from --derive commands")
    parser.add_argument("--alt", action="append", default=[], help="NAME=FROM")
    parser.add_argument("--swap", action="append", default=[], help="OLD=NEW, applied in order to --alt commands")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--build", type=Path, default=Path("/tmp/vllm-units-build"))
    parser.add_argument("--isa", default="avx2")
    parser.add_argument("--line", default=vllm_release.BASE_RELEASE, help="the vLLM release line (-C vllm)")
    parser.add_argument("--memory-gib", type=int, default=120)
    parser.add_argument("--deadline", type=float, default=540.0, help="seconds from start for everything")
    args = parser.parse_args()
    start = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    extras = {}
    for item in args.extra:
        name, _, path = item.partition("=")
        extras[name] = Path(path).resolve()
    tree = args.vllm.resolve()
    build = args.build
    shutil.rmtree(build, ignore_errors=True)
    build.mkdir(parents=True)
    nvcc = shutil.which("nvcc")
    cuda_home = os.environ.get("CUDA_HOME") or str(Path(nvcc).resolve().parent.parent)
    env_vars, jobs = recipe_env(args, tree, extras, build)
    env = dict(os.environ, **env_vars, CUDA_HOME=cuda_home)
    command = configure_command(tree, build, env_vars, cuda_home)
    summary = {"recipe_env": env_vars, "jobs": jobs, "configure": command}
    print(json.dumps({"recipe_env": env_vars, "jobs": jobs}, indent=1), flush=True)

    t = time.monotonic()
    with open(args.out / "configure.log", "w") as log:
        rc = subprocess.run(command, cwd=build, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    summary["configure_seconds"] = round(time.monotonic() - t, 1)
    summary["configure_rc"] = rc
    print(f"configure: rc={rc} in {summary['configure_seconds']} s", flush=True)
    if rc != 0:
        print("\n".join(Path(args.out / "configure.log").read_text().splitlines()[-40:]))
        (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
        return 1

    entries = json.loads((build / "compile_commands.json").read_text())
    per_file = {}
    for entry in entries:
        argv = entry.get("arguments") or shlex.split(entry["command"])
        per_file[entry["file"]] = {"argv": argv, "dir": entry["directory"], "gencodes": gencodes(argv)}
    (args.out / "gencodes.json").write_text(json.dumps(
        {f: v["gencodes"] for f, v in sorted(per_file.items()) if v["gencodes"]}, indent=1))
    distinct: dict[str, int] = {}
    for value in per_file.values():
        key = " ".join(value["gencodes"])
        if key:
            distinct[key] = distinct.get(key, 0) + 1
    summary["gencode_sets"] = distinct
    summary["cuda_units"] = sum(1 for v in per_file.values() if v["gencodes"])
    print(f"{summary['cuda_units']} CUDA units; -gencode sets: {json.dumps(distinct, indent=1)}", flush=True)

    jobs_to_run = {}
    for unit in args.unit:
        match = [f for f in per_file if f.endswith(unit)]
        if len(match) != 1:
            print(f"unit {unit}: {len(match)} matches in compile_commands.json")
            summary.setdefault("missing_units", []).append(unit)
            continue
        jobs_to_run[unit] = per_file[match[0]]
    for item in args.derive:  # NAME=UNIT:FROM, another file with FROM's command
        name, _, rest = item.partition("=")
        unit, _, base = rest.partition(":")
        if base in jobs_to_run:
            source = jobs_to_run[base]
            argv = [a.replace(Path(base).name, Path(unit).name) for a in source["argv"] if a not in args.drop]
            jobs_to_run[name] = {"argv": argv, "dir": source["dir"], "gencodes": gencodes(argv)}
    for item in args.alt:  # NAME=FROM, FROM's command with --swap applied (another CUTLASS, an unpatched tree)
        name, _, base = item.partition("=")
        if base in jobs_to_run:
            argv = list(jobs_to_run[base]["argv"])
            for swap in args.swap:
                old, _, new = swap.partition("=")
                argv = [a.replace(old, new) for a in argv]
            argv = [a.replace(Path(base).name + ".o", f"{name}.o") for a in argv]
            jobs_to_run[name] = {"argv": argv, "dir": jobs_to_run[base]["dir"], "gencodes": gencodes(argv)}

    limit = args.deadline - (time.monotonic() - start)
    print(f"compiling {len(jobs_to_run)} units at once, {limit:.0f} s left", flush=True)
    results = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(jobs_to_run) or 1) as pool:
        futures = {
            pool.submit(timed, name, job["argv"], job["dir"], args.out / f"unit-{i}.log", limit): name
            for i, (name, job) in enumerate(jobs_to_run.items())
        }
        for future in concurrent.futures.as_completed(futures):
            result = future.result()
            result["gencodes"] = jobs_to_run[result["unit"]]["gencodes"]
            results.append(result)
            print(json.dumps(result), flush=True)
    summary["units"] = results
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    return 0 if results and all(r["rc"] == 0 for r in results) and not summary.get("missing_units") else 1


if __name__ == "__main__":
    sys.exit(main())
