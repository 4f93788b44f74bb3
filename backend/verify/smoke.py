"""The smoke check: the wheelhouse installs with no index into a fresh venv, and the stack runs there.

1. a fresh venv (the build's Python), pip's own configuration switched off
   (``PIP_CONFIG_FILE=/dev/null``), so nothing but the wheelhouse is seen;
2. ``pip install --no-index --find-links <wheelhouse> --require-hashes -r
   requirements.txt`` (every wheel, pinned by hash; without bundled runtime
   dependencies: the built wheels' pins, with the index);
3. every distribution of the wheelhouse imported (its top-level modules,
   from its installed RECORD), and every compiled extension and generated
   protobuf / gRPC module (``*_pb2.py``, ``*_pb2_grpc.py``: they check the
   installed protobuf and grpcio when imported) of the built wheels loaded;
4. each component's recipe snippet (``Recipe.smoke``): one CPU op of its
   compiled code; torch's prints ``torch.__config__.show()``;
5. with ``-C smoke=auto`` on a machine with a GPU, ``Recipe.smoke_gpu`` too:
   one CUDA op per component and a Triton kernel.

Each check runs with a Triton cache of its own, holding only the modules prebuilt beside the wheels
(``wheels/triton_cache.py``, built in this venv): a warm ``~/.triton/cache`` of the build host would
hide what a deployment host compiles at its first kernel.

With ``torch=existing`` nothing is bundled: the venv sees the environment
the build ran in (every folder of its import path that holds installed
distributions: torch's, and those of the built wheels' other requirements,
wherever they live), and installs the built wheels with ``--no-index`` from
the wheelhouse (and ``-C runtime-find-links``, when given).

A failure names the distribution, module or component, with the log's path.
A passed check is not rerun for the same wheels (``<variant>/smoke/passed``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import itertools
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from collections.abc import Callable, Sequence
from pathlib import Path

from packaging.utils import canonicalize_name

from .. import host as host_info
from ..cuda_driver import check_driver
from ..pipeline.environment import FRONTEND_NAMES, FRONTEND_PREFIXES
from ..wheels import triton_cache as prebuilt_triton
from ..wheels.files import read_manifest
from ..errors import BackendError
from ..hashing import sha256_file
from ..wheels.meta import pins_for
from . import emulate

BACKEND_PROJECT = Path(__file__).resolve().parents[2]  # backend-path ".": on sys.path inside the hooks

IMPORT_SCRIPT = r'''
import importlib, importlib.machinery, importlib.metadata as md, json, sys, traceback
from pathlib import PurePosixPath
names, ours = json.loads(sys.argv[1]), set(json.loads(sys.argv[2]))
# Tagged suffixes only (.cpython-312-x86_64-linux-gnu.so, .abi3.so): a bare .so is a shared library.
ext = tuple(s for s in importlib.machinery.EXTENSION_SUFFIXES if s != ".so")
problems, imported = [], 0

def modules(dist, is_ours):
    found, single = [], []
    files = [PurePosixPath(str(f)) for f in (dist.files or [])]
    present = {str(f) for f in files}
    for f in files:
        parts = f.parts
        if not parts or parts[0].endswith((".dist-info", ".data")) or parts[0] in ("..", "__pycache__"):
            continue
        if len(parts) == 1 and (f.suffix == ".py" or f.name.endswith(ext)):
            single.append(f.name.split(".")[0])
        elif len(parts) == 2 and f.name == "__init__.py":
            found.append(parts[0])
        elif len(parts) == 3 and f.name == "__init__.py" and f"{parts[0]}/__init__.py" not in present:
            found.append(f"{parts[0]}.{parts[1]}")  # a namespace package's packages (nvidia.cublas, google.protobuf)
        if is_ours and len(parts) > 1 and f.name.endswith(ext):
            stem = f.name[: -len(next(s for s in ext if f.name.endswith(s)))]
            found.append(".".join(parts[:-1] + (stem,)))
        # Generated protobuf / gRPC modules check the installed runtime's version on import
        # (vLLM's vllm/grpc/vllm_engine_pb2*.py): nothing imports them until a gRPC server starts.
        if is_ours and len(parts) > 1 and f.name.endswith(("_pb2.py", "_pb2_grpc.py")):
            found.append(".".join(parts[:-1] + (f.name[:-3],)))
    # Top-level single-file modules count when the distribution has no package (six, typing_extensions);
    # beside a package they are build helpers and the like (an in-tree build_backend.py).
    if not any("." not in m for m in found):
        found += single
    return [m for m in dict.fromkeys(found) if all(p.isidentifier() for p in m.split("."))]

for name in names:
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        problems.append(f"{name}: not installed"); continue
    for module in modules(dist, name in ours):
        print(f"import {module} ({name})", flush=True)
        try:
            importlib.import_module(module)
            imported += 1
        except BaseException as error:
            problems.append(f"{name}: import {module}: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
            traceback.print_exc()
print("SMOKE-RESULT " + json.dumps({"imported": imported, "problems": problems}), flush=True)
'''


@dataclasses.dataclass
class SmokeResult:
    ok: bool
    problems: list[str]
    log: Path
    summary: str
    needs: list[str] = dataclasses.field(default_factory=list)  # accepted first-use needs (a C compiler)
    triton_cache: prebuilt_triton.Prebuilt | None = None


def _clean_env() -> dict[str, str]:
    """The environment minus pip's configuration and anything that adds import paths."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV", *FRONTEND_PREFIXES)) and k not in FRONTEND_NAMES}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


# What points a process at a compiler or a CUDA toolkit; a deployment host has none of them.
TOOLCHAIN_VARIABLES = ("CC", "CXX", "CUDAHOSTCXX", "CUDACXX", "CUDA_HOME", "CUDA_PATH", "CUDA_ROOT", "NVCC")
# A C compiler as a distribution installs it: the driver and the assembler and linker it runs (binutils).
C_COMPILERS = ("cc", "gcc", "clang", "as", "ld", "ld.bfd", "ld.gold")


def _deploy_env(env: dict[str, str], venv_dir: Path, tools: Path | None) -> dict[str, str]:
    """``env`` as a deployment host has it: PATH holds the venv's bin (and ``tools``) only."""
    out = {k: v for k, v in env.items() if k not in TOOLCHAIN_VARIABLES}
    out["PATH"] = os.pathsep.join([str(venv_dir / "bin"), *([str(tools)] if tools else [])])
    return out


def _c_compiler_only(folder: Path, path: str) -> Path:
    """A folder holding links to the C compilers found on ``path`` and nothing else."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in C_COMPILERS:
        found = shutil.which(name, path=path)
        link = folder / name
        if found and not link.exists():
            link.symlink_to(found)
    return folder


def _last_line(result: subprocess.CompletedProcess) -> str:
    tail = [l for l in result.stderr.strip().splitlines() if l.strip()]
    return tail[-1].strip() if tail else f"exit {result.returncode}"


def _owner(path: str | None, env_dir: Path, wheels: Sequence[Path]) -> str:
    """'<wheel>: <file in it>: ' for a file the venv's installed distributions own (their RECORD), else ''."""
    if path is None:
        return ""
    target = Path(path).resolve()
    for site in (env_dir / "lib").glob("python*/site-packages"):
        for dist in importlib.metadata.distributions(path=[str(site)]):
            member = next((f for f in dist.files or () if (site / f).resolve() == target), None)
            if member is not None:
                name = canonicalize_name(dist.metadata["Name"])
                wheel = next((w.name for w in wheels if _dist_name(w) == name), dist.metadata["Name"])
                return f"{wheel}: {member}: "
    return ""


def _dist_name(wheel: Path) -> str:
    from packaging.utils import parse_wheel_filename

    return str(parse_wheel_filename(wheel.name)[0])


def run(
    house: Path,
    built: Sequence[Path],
    runtime: Sequence[Path],
    checks: Sequence[tuple[str, str]],
    *,
    work: Path,
    no_index: bool,
    see: Sequence[str] = (),
    links: Sequence[Path] = (),
    pip_python: Path | str = sys.executable,
    say: Callable[[str], None] = print,
    emulation: Callable[[Path, str, dict[str, str]], emulate.Launch] | None = None,
    triton_cache: Path | None = None,
) -> SmokeResult:
    """Install ``house`` into a fresh venv under ``work`` and run the checks; ``checks``: (label, code).

    With ``triton_cache`` (a folder beside the wheels), Triton's ``cuda_utils`` is built there by the
    venv's Triton before the checks, and each check's Triton cache starts as a copy of it.

    With ``emulation`` (``-C smoke=emulate``: ``emulate.smoke_launcher``) the imports and the checks run
    under QEMU as the variant's CPU, and one that dies of an illegal instruction is named with it."""
    work.mkdir(parents=True, exist_ok=True)
    log_path = work / "smoke.log"
    env = _clean_env()
    problems: list[str] = []
    needs: list[str] = []
    with log_path.open("w") as log:
        faults: dict[str, str] = {}   # step label -> the illegal instruction it died of (emulated)
        emulated_steps = itertools.count()
        shutil.rmtree(work / "emulate", ignore_errors=True)

        def step(label: str, argv: list[str], cwd: Path, emulated: bool = False,
                 run_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
            launched = None
            if emulated and emulation is not None:
                launched = emulation(work / "emulate" / f"step-{next(emulated_steps)}", argv[0], run_env or env)
                argv = [*launched.argv, *argv[1:]]
            log.write(f"\n== {label}\n$ {' '.join(argv)}\n")
            log.flush()
            if launched is not None:
                result = launched.run(argv[len(launched.argv):], cwd)
                if (fault := launched.explain(result.returncode)) is not None:
                    faults[label] = _owner(fault.path, work / "venv", [*built, *runtime]) + emulate.fault_text(
                        launched.model, fault)
            else:
                result = subprocess.run(argv, cwd=cwd, env=run_env or env, capture_output=True, text=True)
            log.write(result.stdout + result.stderr)
            log.flush()
            return result

        env_dir = work / "venv"
        if env_dir.exists():
            shutil.rmtree(env_dir)
        try:
            # pip itself need not be in the venv: the build's pip installs into it (--python).
            venv.EnvBuilder(with_pip=False, clear=True, symlinks=True).create(env_dir)
        except (OSError, subprocess.CalledProcessError) as error:
            raise BackendError(f"smoke check: could not create a venv in {env_dir}: {error}") from None
        python = str(env_dir / "bin" / "python")
        if see:  # torch=existing: the venv sees the folders the existing torch lives in
            site = next((env_dir / "lib").glob("python*/site-packages"))
            (site / "_vllm_stack_existing_torch.pth").write_text("".join(f"{p}\n" for p in see))
        lock = house / "requirements.txt"
        if no_index and lock.is_file() and runtime:
            install = ["--no-index", "--find-links", str(house), "--require-hashes", "-r", str(lock)]
        else:
            # The listed wheels themselves, never --find-links to the wheelhouse: a wheel dropped there by
            # hand (an unlisted depa-99) would win its dependencies' resolution and run at import.
            install = [*(["--no-index"] if no_index else []),
                       *[arg for link in links for arg in ("--find-links", str(link))],
                       *[str(w) for w in sorted(list(built) + list(runtime), key=lambda w: Path(w).name)]]
            pins_for(list(built) + list(runtime))  # one wheel per distribution, or one line
        quiet = work / "cwd"
        quiet.mkdir(exist_ok=True)
        result = step("install", [str(pip_python), "-m", "pip", "--python", python, "install", "--no-cache-dir", *install], quiet)
        if result.returncode != 0:
            lines = [l.strip().removeprefix("ERROR: ") for l in result.stderr.splitlines() if l.startswith("ERROR:")]
            why = "; ".join(lines[:2]) or f"pip exit {result.returncode}"
            how = "with --no-index" if no_index else "from the wheelhouse"
            return SmokeResult(False, [f"the wheelhouse does not install {how}: {why}"], log_path, "install failed")

        names = [_dist_name(w) for w in list(built) + list(runtime)]
        result = step("imports", [python, "-c", IMPORT_SCRIPT, json.dumps(names), json.dumps([_dist_name(w) for w in built])],
                      quiet, emulated=True)
        marker = next((l for l in result.stdout.splitlines() if l.startswith("SMOKE-RESULT ")), None)
        if marker is None:
            last = [l for l in result.stdout.splitlines() if l.startswith("import ")]
            at = f" at {last[-1].removeprefix('import ')}" if last else ""
            problems.append(f"the import check died{at}: {faults['imports']}" if "imports" in faults
                            else f"the import check crashed (exit {result.returncode}){at}")
            imported = 0
        else:
            data = json.loads(marker.removeprefix("SMOKE-RESULT "))
            problems += data["problems"]
            imported = data["imported"]

        prebuilt = None
        if triton_cache is not None:
            prebuilt = prebuilt_triton.prebuild(Path(python), {k: v for k, v in env.items() if k not in TOOLCHAIN_VARIABLES},
                                                work / "triton-prebuild", triton_cache)
            say("   smoke | Triton's cuda_utils: " + (f"not prebuilt: {prebuilt.skipped}" if prebuilt.skipped else
                f"prebuilt by triton {prebuilt.triton} into {triton_cache} ({len(prebuilt.files)} cache key(s)"
                + (f"; only a host without `file` finds it: {prebuilt.without_file})" if prebuilt.without_file else ")")))
        stages = itertools.count()

        def fresh_cache(run_env: dict[str, str]) -> dict[str, str]:
            seeded = prebuilt_triton.seed(work / "triton-cache" / str(next(stages)), triton_cache)
            return {**run_env, "TRITON_CACHE_DIR": str(seeded)}

        c_only = _c_compiler_only(work / "c-compiler", env.get("PATH", ""))
        for index, (label, code) in enumerate(checks):
            # From a file, not -c: triton.jit (and anything using inspect.getsource) needs the source.
            script = work / f"check-{index}.py"
            script.write_text(code)
            # As on a deployment host: no compiler and no CUDA bin on PATH.  Where that fails, once more with
            # a C compiler only (Triton's launcher: a need DEPLOY.md names), then with the build's PATH.
            stage = f"{label}, no compilers"
            result = step(stage, [python, str(script)], quiet, emulated=True,
                          run_env=fresh_cache(_deploy_env(env, env_dir, None)))
            if result.returncode != 0 and stage not in faults:
                bare = result
                stage = f"{label}, a C compiler only"
                result = step(stage, [python, str(script)], quiet, emulated=True,
                              run_env=fresh_cache(_deploy_env(env, env_dir, c_only)))
                if result.returncode == 0:
                    needs.append(f"{label}: a C compiler at first use ({_last_line(bare)})")
                elif stage not in faults:
                    stage = f"{label}, the build's PATH"
                    result = step(stage, [python, str(script)], quiet, emulated=True, run_env=fresh_cache(env))
                    if result.returncode == 0:
                        problems.append(f"{label}: needs the build host's tools at first use (nvcc, ninja or a "
                                        f"C++ compiler; a deployment host has none): {_last_line(bare)}")
                        continue
            if stage in faults:
                problems.append(f"{label}: {faults[stage]}")
            elif result.returncode != 0:
                problems.append(f"{label}: {_last_line(result)}")
            elif result.stdout.strip():
                for line in result.stdout.strip().splitlines():
                    say(f"   smoke | {label}: {line}")
        for need in needs:
            say(f"   smoke | needs {need}")
    summary = (f"{len(names)} distribution(s) installed {'with --no-index ' if no_index else ''}into a fresh venv, "
               f"{imported} module(s) imported, {len(checks)} check(s) run without compilers or CUDA's bin on PATH")
    return SmokeResult(not problems, problems, log_path, summary, needs, prebuilt)


def existing_environment(torch_folder: Path) -> list[str]:
    """The folders of this interpreter's import path that hold installed distributions (torch's first).

    The built wheels' requirements (flashinfer's ``apache-tvm-ffi``) may live beside torch or in another
    site folder (a venv over the system's, the user site, ``PYTHONPATH``); the standard library and the
    project itself are left out.
    """
    skip = {Path(sysconfig.get_paths()[key]).resolve() for key in ("stdlib", "platstdlib")} | {BACKEND_PROJECT}
    folders = [str(torch_folder)]
    for entry in sys.path:
        path = Path(entry or ".").resolve()
        if path.is_dir() and path not in skip and str(path) not in folders and any(path.glob("*.dist-info")):
            folders.append(str(path))
    return folders


def _key(built: Sequence[Path], runtime: Sequence[Path], checks, no_index: bool) -> str:
    digest = hashlib.sha256()
    # Content, not size and mtime: bytes swapped in place keep both (os.utime restores the mtime).
    for wheel in sorted(list(built) + list(runtime), key=lambda p: p.name):
        digest.update(f"{wheel.name}\0{sha256_file(wheel)}\n".encode())
    digest.update(json.dumps([list(checks), no_index]).encode())
    return digest.hexdigest()


def emulation_for(isa: str, sysroot: Path | None, say: Callable[[str], None]):
    """``-C smoke=emulate``: the launcher that runs the checks as the ISA's CPU, or None (said why) where QEMU
    has no model of it: the CPU checks then run natively and the scan's verdict stands."""
    model = emulate.model_for(isa)
    if model.unavailable:
        say(f"smoke check: {isa}: {model.unavailable}; the CPU checks run natively")
        return None
    return emulate.smoke_launcher(isa, sysroot)


def for_build(plan, result, say: Callable[[str], None]) -> None:
    """The engine's call after a build: the smoke check as ``-C smoke`` and ``-C verify`` ask."""
    settings = plan.settings
    if settings.smoke == "off" or settings.verify == "off":
        say(f"smoke check: off ({'smoke' if settings.smoke == 'off' else 'verify'}=off)")
        return
    if (settings.offline and settings.runtime_deps == "none" and not settings.runtime_find_links
            and settings.torch != "existing"):
        # Nothing could serve the runtime dependencies to the fresh venv: the check could only fail.
        say("smoke check: skipped (offline with runtime-deps=none: no index and no bundled runtime dependencies "
            "to install the wheelhouse with; -C runtime-find-links=DIR or -C runtime-deps=bundle enables it)")
        return
    see: list[str] = []
    if settings.torch == "existing":
        import importlib.util

        spec = importlib.util.find_spec("torch")
        if spec is None or not spec.submodule_search_locations:
            say("smoke check: skipped (torch=existing, but this interpreter imports no torch)")
            return
        see = existing_environment(Path(list(spec.submodule_search_locations)[0]).parent)
    host = host_info.current()
    gpu = settings.smoke == "auto" and bool(host.gpus)
    if gpu:
        check_driver(read_manifest(plan.layout.wheelhouse), host.driver, "smoke check")
    emulation = emulation_for(plan.variant.isa, settings.emulate_sysroot, say) if settings.smoke == "emulate" else None
    checks: list[tuple[str, str]] = []
    stack = [s.recipe for s in plan.steps if s.in_place is None]  # an editable one is not installed
    for recipe in ([plan.recipe("torch")] if "torch" not in [r.name for r in stack] else []) + stack:
        if recipe.smoke:
            checks.append((f"{recipe.name} (CPU)", recipe.smoke))
        if gpu and recipe.smoke_gpu:
            checks.append((f"{recipe.name} (GPU)", recipe.smoke_gpu))
    # Without bundled runtime dependencies the index must serve them (runtime-deps=none).
    no_index = settings.runtime_deps == "bundle" or settings.torch == "existing" or settings.offline
    work = plan.layout.smoke_dir
    key = _key(result.wheels(), result.runtime, checks + ([("emulate", plan.variant.isa)] if emulation else []), no_index)
    passed = work / "passed"
    if passed.is_file() and passed.read_text() == key:
        say("smoke check: passed before for these wheels")
        return
    passed.unlink(missing_ok=True)
    where = f" under QEMU as {emulate.model_for(plan.variant.isa).cpu}" if emulation else ""
    say(f"smoke check: installing the wheelhouse into a fresh venv ({'CPU and GPU' if gpu else 'CPU'} checks{where})")
    links = [settings.runtime_find_links] if settings.runtime_find_links else []
    house = plan.layout.wheelhouse
    outcome = run(house, result.wheels(), result.runtime, checks, work=work, no_index=no_index, see=see,
                  links=links, pip_python=plan.layout.python, say=say, emulation=emulation,
                  triton_cache=house / prebuilt_triton.FOLDER)
    if outcome.ok:
        passed.write_text(key)
        say(f"smoke check: ok: {outcome.summary}; log: {outcome.log}")
        return
    for problem in outcome.problems:
        say(f"   smoke: {problem}")
    message = f"smoke check failed: {outcome.problems[0]}" + (
        f" (and {len(outcome.problems) - 1} more)" if len(outcome.problems) > 1 else "") + f"; log: {outcome.log}"
    if settings.verify == "strict":
        raise BackendError(message + " (-C smoke=off skips it, -C verify=warn reports only)")
    say(f"{message} (verify=warn)")
