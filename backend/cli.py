"""``python -m backend``: the same settings as ``pip wheel . -C ...``, without a frontend."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from . import cpu_isa
from . import host as host_info
from . import cuda_driver, needs, project, recipes, variants
from .pipeline import clean as cache_clean
from .pipeline.plan import format_plan
from .sources import vllm_release
from .toolchains import command as toolchain_command
from .toolchains.select import available
from .errors import BackendError, describe_os_error
from .interrupts import describe, exit_status, sigterm_interrupts
from .report_table import table
from .cpu_isa import ISAS
from .cuda_target import CudaTarget
from .settings import SMS, Settings, help_text

def _settings_epilog() -> str:
    return ("settings (-C KEY=VALUE, VLLM_STACK_<KEY> in the environment as VLLM_STACK_CACHE_DIR=DIR, or "
            "[tool.vllm-stack] in pyproject.toml; -C wins over the environment, the environment over "
            "pyproject.toml):\n") + help_text(project.owned_words())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m backend", description=__doc__, epilog=_settings_epilog(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, settings: bool = True, as_json: bool = True) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help_text, description=help_text,
                                 epilog=_settings_epilog() if settings else None,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
        if settings:
            command.add_argument("-C", "--config-setting", dest="config", action="append", default=[],
                                 metavar="KEY=VALUE", help="a setting, as with pip's -C (repeatable)")
        if as_json:
            command.add_argument("--json", action="store_true", help="machine-readable output")
        return command

    matrix = add("matrix", "list the variants", settings=False)
    matrix.add_argument("--python", help="Python version for the names, e.g. 3.13 (default: this interpreter)")
    matrix.add_argument("--cuda", action="append", help="only these CUDA versions (repeatable)")
    add("plan", "show the build steps of a variant")
    detect = add("detect", "the variant that fits this host", settings=False)
    detect.add_argument("--driver", metavar="VERSION",
                        help="choose the CUDA release for a host with this NVIDIA driver (e.g. 550.54.15), "
                             "not this host's")
    add("build", "build a variant's wheelhouse", as_json=False)
    add("fetch", "download every source a variant needs, ahead of time", as_json=False)
    lock = add("lock", "record hashes for lock entries that have none (needs network)", as_json=False)
    lock.add_argument("--build-requirements", action="store_true",
                      help="rewrite third_party/build-requirements.lock from the recipes (uv pip compile)")
    lock.add_argument("--from-vllm", metavar="SDIST|TREE|RELEASE",
                      help="write a vLLM release's lock (third_party/locks/vllm-<release>.lock) from its own "
                           "CMake and requirements files: an sdist, its unpacked tree, or a version on PyPI")
    lock.add_argument("--lock", metavar="FILE", dest="lock_file",
                      help="record hashes in this lock instead of third_party/sources.lock (a release lock)")
    lock.add_argument("--output", metavar="FILE", help="with --from-vllm: write the lock here instead")
    lock.add_argument("--git-mirrors", metavar="DIR", action="append", default=[],
                      help="with --from-vllm: folders of git mirrors (<owner>+<name>/repo) to read "
                           "flash-attention's and FlashMLA's CUTLASS submodule pins from")
    clean = add("clean", "remove a variant's build trees and build environment (downloads are kept)", as_json=False)
    clean.add_argument("--all", action="store_true", dest="everything", help="every variant's")
    clean.add_argument("--downloads", action="store_true", help="the downloaded sources too")
    clean.add_argument("--toolchains", action="store_true",
                       help="the CUDA toolchains under the cache too (PyPI install roots, symlink farms and the Nix "
                            "GC roots in them; the Nix store is not touched: nix-collect-garbage then frees it)")
    toolchain = add("toolchain", "show the CUDA toolchain a variant would use (installs nothing unless --install)")
    toolchain.add_argument("--install", action="store_true",
                           help="install or realise it now (PyPI wheels into the cache, nixpkgs into the Nix store), "
                                "as a build would first")
    verify = add("verify", "check wheels, a wheelhouse or shared objects")
    verify.add_argument("paths", nargs="+", metavar="PATH")
    verify.add_argument("--emulate", action="store_true",
                        help="also load every shared object under QEMU as the -C isa CPU (docs/VERIFY.md)")
    rebuild = add("rebuild-check", "build a wheelhouse's components again from its manifest in a scratch folder "
                  "and compare the wheels byte for byte", settings=False)
    rebuild.add_argument("wheelhouse", metavar="WHEELHOUSE", help="the variant's folder (wheelhouse/<variant>/)")
    rebuild.add_argument("--scratch", metavar="DIR", help="where the rebuild goes (default: a new temporary folder)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:  # the parser's help lists the recipes: a broken registry is a one-line error too
        with sigterm_interrupts():
            status = _dispatch(_parser().parse_args(argv))
            sys.stdout.flush()  # here, where a closed pipe is caught, not at interpreter exit
            return status
    except BrokenPipeError:
        # The reader stopped (``| head``): end quietly with SIGPIPE's status, as Unix tools do.  Later
        # writes (the interpreter's own flush at exit) go to /dev/null instead of raising again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except BackendError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: {describe_os_error(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        print(describe(interrupt), file=sys.stderr)
        return exit_status(interrupt)


def _settings(args: argparse.Namespace) -> Settings:
    return project.load_settings_from_cli(args.config)


# Commands that download, build or read ELF files; matrix, plan, detect and toolchain need nothing installed.
NEEDS_RUNTIME = ("build", "fetch", "lock", "verify")


def _dispatch(args: argparse.Namespace) -> int:
    command = args.command
    if command == "matrix":
        return _matrix(args)
    if command == "detect":
        return _detect(args)
    if command == "rebuild-check":
        needs.require("python -m backend rebuild-check")
        from .wheels import rebuild_check  # imports filelock and packaging: only once the check above passed

        return rebuild_check.main(args.wheelhouse, args.scratch, args.json, project.PROJECT_DIR)
    settings = _settings(args)
    if command in NEEDS_RUNTIME:
        needs.require(f"python -m backend {command}")
    if command == "plan":
        plan = project.make_plan(settings)
        if args.json:
            print(json.dumps(plan.to_json(), indent=2))
        else:
            print(format_plan(plan))
        return 0
    if command == "build":
        from .pipeline import run

        run.build(project.make_plan(settings))  # a failed step raises BackendError: one line, exit 2
        return 0
    if command == "fetch":
        from .sources import command as sources_command

        return sources_command.fetch_main(settings)
    if command == "lock":
        from .sources import command as sources_command

        if args.build_requirements:
            from .sources import buildreqs

            return buildreqs.write_lock()
        if args.from_vllm:
            return sources_command.lock_from_vllm_main(settings, args.from_vllm, output=args.output,
                                                       mirrors=args.git_mirrors)
        return sources_command.lock_main(settings, Path(args.lock_file) if args.lock_file else None)
    if command == "clean":
        return cache_clean.clean(settings, everything=args.everything, downloads=args.downloads,
                           toolchains=args.toolchains)
    if command == "toolchain":
        return toolchain_command.main(settings, args.json, install=args.install)
    if command == "verify":
        from .verify import command as verify_command

        return verify_command.main(args.paths, settings, args.json, emulate=args.emulate)
    raise AssertionError(command)


def _python_tag(text: str | None) -> str | None:
    if text is None:
        return None
    digits = text.replace("python", "").replace(".", "")
    if not digits.isdigit() or len(digits) < 2:
        raise BackendError(f"--python: bad value {text!r}; accepted: a version such as 3.13")
    return digits


def _matrix(args: argparse.Namespace) -> int:
    cudas = tuple(args.cuda) if args.cuda else ("12.9", "12.8", "13.0")
    for cuda in cudas:
        if cuda not in ("12.8", "12.9", "13.0"):
            raise BackendError(f"--cuda: bad value {cuda!r}; accepted: 12.8, 12.9, 13.0")
    rows = variants.matrix(python=_python_tag(args.python), cudas=cudas)
    problems = {v.name: _component_problems(v) for v in rows}
    refused = {name: next(iter(found.values()), None) for name, found in problems.items()}
    if args.json:
        print(json.dumps([
            {"name": v.name, "sm": v.sm, "isa": v.isa, "cuda": v.cuda, "platform": v.platform,
             "python": v.python, "label": v.label, "seed": v.seed, "refused": refused[v.name],
             "components": [c for c in recipes.names() if c not in problems[v.name]]}
            for v in rows
        ], indent=2))
        return 0
    print(table(
        ["name", "sm", "isa", "cuda", "platform", ""],
        [[v.name, v.sm, v.isa, v.cuda, v.platform,
          "; ".join(filter(None, ["" if v.seed else variants.extension_reason(v),
                                  f"full stack refused: no {', '.join(problems[v.name])}" if refused[v.name] else ""]))]
         for v in rows],
    ))
    seed = sum(v.seed for v in rows)
    print(f"\n{len(rows)} variants: {seed} of the seed's matrix, {len(rows) - seed} our extension "
          "(CUDA 13.0, sm_70, sm_121)")
    print(f"components, in build order: {', '.join(recipes.names())}")
    if any(refused.values()):
        print(f"{sum(map(bool, refused.values()))} refuse the full stack (python -m backend plan says why); "
              "their other components build")
    lines = vllm_release.line_rows()
    # whether a line builds is its plan's word (release_problem), for the seed's sm=90/avx512 row
    refusals = {release: project.make_plan(project.load_settings_from_cli(
        ["sm=90", "isa=avx512", f"vllm={release}"])).release_problem for release in dict.fromkeys(r for r, _, _ in lines)}
    print("\nvLLM release lines (-C vllm=<release>; the seed's branch table, then newer release locks):")
    print(table(
        ["release", "python", "torch", "flashinfer", "names", "builds"],
        [[release, python, facts["torch"], facts["flashinfer"], f"vllm-python{python.replace('.', '')}-...",
          "planned only: python -m backend plan -C vllm=" + release + " says why" if refusals[release] else
          f"yes, once `lock --lock` hashes {', '.join(facts['unverified'])}" if facts["unverified"] else "yes"]
         for release, python, facts in lines],
    ))
    return 0


def _component_problems(variant) -> dict[str, str]:
    """Component -> why the plan refuses it for the variant (the rule make_plan applies), in build order."""
    python = f"{variant.python[0]}.{variant.python[1:]}"
    found = {}
    for recipe in recipes.all_recipes():
        if problem := recipe.python_problem(python) or recipe.variant_problem(variant):
            found[recipe.name] = problem
    return found


CUDA_PREFERENCE = ("12.9", "12.8", "13.0")  # the seed's default first


def _driver_order(sm: str | None, driver: str | None, remarks: list[str]) -> tuple[str, ...]:
    """The CUDA releases to try, in order: with a known driver, those it runs for the stack, newest first."""
    if driver is None:
        return CUDA_PREFERENCE
    if sm is None:  # no GPU here: judge for the newest GPU of the matrix without a driver floor of its own
        remarks.append(f"no GPU here: the driver {driver} is judged for sm_90, whose GPUs JIT the stack's PTX")
        sm = "90"
    # A recipe's "8.0+PTX" kernels carry the sm_80 cubin too: GPUs of the same major run that, later ones JIT.
    ptx = tuple(r.name for r in recipes.all_recipes()
                if CudaTarget(sm).jits_ptx(r.ptx_by_design, cubins=r.ptx_by_design))
    runs = cuda_driver.releases_for(driver, sm, CUDA_PREFERENCE, ptx)
    refused = [c for c in sorted(CUDA_PREFERENCE, key=variants.version_key, reverse=True) if c not in runs]
    for cuda in refused:
        why = cuda_driver.need(cuda, sm, ptx).problem(driver)
        remarks.append(f"not CUDA {cuda}: {why}")
    if runs:
        remarks.append(f"CUDA {runs[0]}: the newest release NVIDIA driver {driver} runs for sm_{sm}"
                       + (f" (with {', '.join(ptx)}, whose PTX this GPU JIT-compiles)" if ptx else ""))
    else:
        remarks.append(f"NVIDIA driver {driver} runs no CUDA release of this stack for sm_{sm}: update the driver "
                       f"(R580 runs them all)")
    return tuple(runs)


def detect_variant(host: host_info.Host, environ=None, driver: str | None = None, nixpkgs: str | None = None
                   ) -> tuple[str | None, str | None, list[str], str | None, str | None]:
    """(sm, isa, remarks, cuda, toolchain) for this host; sm is None without a supported GPU.

    With a known NVIDIA driver (``driver``, else the host's), the CUDA release is the newest
    the driver runs for the stack (``backend/cuda_driver.py``) that a toolchain here can
    provide; without one, the first of 12.9, 12.8, 13.0 that the variant allows and a
    toolchain here can provide (``toolchains.available``, the judgement ``toolchain`` and
    the build show too); None when none can.  Each release passed over, and each installed
    toolkit passed over, is a remark saying why.
    """
    remarks: list[str] = []
    runnable = [i for i in cpu_isa.preferred_first() if variants.host_violation(i, host) is None]
    sm = None
    if host.gpus:
        sms = sorted({g.sm for g in host.gpus})
        if len(sms) > 1:
            remarks.append(f"GPUs of several architectures ({', '.join(sms)}); a variant targets one, the first is taken")
        if sms[0] in SMS:
            sm = sms[0]
        else:
            remarks.append(f"GPU architecture sm_{sms[0]} is not in the matrix ({', '.join(SMS)})")
    else:
        remarks.append(f"no NVIDIA GPU found ({host.gpu_probe}); pass -C sm= for the GPU you build for")
    isa = None
    for candidate in runnable:
        if sm is None or any(variants.rule_violation(sm, candidate, c) is None for c in CUDA_PREFERENCE):
            isa = candidate
            break
    if isa is None:
        remarks.append(f"this CPU runs none of the ISAs {', '.join(ISAS)}")
    cuda = toolchain = None
    missing = []
    order = _driver_order(sm, driver or host.driver, remarks)
    for candidate in order:
        if sm is not None and isa is not None and variants.rule_violation(sm, isa, candidate) is not None:
            continue
        provider, why = available(candidate, environ, *([nixpkgs] if nixpkgs else []))
        if provider is None:
            missing.append(f"CUDA {candidate}: {why}")
            continue
        cuda, toolchain = candidate, provider
        remarks += [f"not {m}" for m in missing]
        if missing or provider != "system":
            remarks.append(f"CUDA {candidate} from {provider}: {why}")
        break
    if cuda is None and order:
        remarks.append("no CUDA toolchain can be had here: " + "; ".join(missing)
                       + "; install a CUDA 12.8/12.9 toolkit (CUDA_HOME) or Nix")
    return sm, isa, remarks, cuda, toolchain


def _detect(args: argparse.Namespace) -> int:
    host = host_info.current()
    if args.driver is not None and not cuda_driver.is_driver_version(args.driver):
        raise BackendError(f"--driver: bad value {args.driver!r}; accepted: an NVIDIA driver version such as 575.57.08")
    sm, isa, remarks, cuda, toolchain = detect_variant(host, driver=args.driver)
    command = ["pip", "wheel", ".", "-C", f"sm={sm or '<SM>'}", "-C", f"isa={isa or '<ISA>'}"]
    if cuda is not None and cuda != "12.9":
        command += ["-C", f"cuda={cuda}"]
    if toolchain in ("pypi", "nix") or (toolchain == "system" and cuda != "12.9"):
        command += ["-C", f"toolchain={toolchain}"]
    command += ["-w", "dist"]
    if args.json:
        print(json.dumps({
            "machine": host.machine, "cpu": host.cpu_name, "gpus": [g.__dict__ for g in host.gpus],
            "driver": args.driver or host.driver, "driver_cuda": None if args.driver else host.driver_cuda,
            "sm": sm, "isa": isa, "cuda": cuda, "toolchain": toolchain, "remarks": remarks, "command": command,
        }, indent=2))
        return 0
    print(f"cpu      {host.cpu_name} ({host.machine})")
    print("gpu      " + (", ".join(f"{g.name} (sm_{g.sm})" for g in host.gpus) or "none"))
    if args.driver or host.driver:
        print(f"driver   {args.driver or host.driver}" + (" (--driver)" if args.driver else
                                                          f" (CUDA {host.driver_cuda})" if host.driver_cuda else ""))
    print(f"sm       {sm or '-'}")
    print(f"isa      {isa or '-'}")
    print(f"cuda     {cuda or '-'}" + (f" ({toolchain})" if toolchain else ""))
    if sm and isa and cuda:
        print(f"variant  {variants.Variant(sm=sm, isa=isa, cuda=cuda).name}")
    for remark in remarks:
        print(f"note     {remark}")
    print("build    " + " ".join(command))
    return 0
