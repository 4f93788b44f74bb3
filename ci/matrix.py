#!/usr/bin/env python3
"""The GitHub Actions matrix of the build-variants workflow.

It asks the backend for its variants (``python -m backend matrix --json``)
and only filters them: which (sm, isa, cuda) combinations exist is the
backend's business, never repeated here.  What this adds per row is CI
policy: the runner labels of the row's platform and the CUDA toolchain
(Nix for 12.x, PyPI for 13.0).

    python ci/matrix.py --sm 90,100 --isa all --cuda 12.9 --python 3.13
    python ci/matrix.py --set scheduled --github-output "$GITHUB_OUTPUT"

Output: ``{"include": [row, ...]}``, each row the backend's fields (name,
sm, isa, cuda, platform, python, label, seed) plus ``python_version``,
``toolchain`` and ``runner`` (a list of labels).  A bad filter value stops
with one line naming the input, the value and the accepted values.

Each job builds the full stack, so a row whose full stack the backend's plan
refuses (its ``refused`` field: SM103 with CUDA 12.x, where vLLM would get
sm_101a kernels) is never emitted: it drops out of every set and filter, and
a filter that leaves only such rows stops with the backend's reason.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Named sets, for the schedule (and for workflow_dispatch's `set` input).
# Each is a filter over the backend's matrix, never a list of variants, so a
# combination the backend's rules exclude simply drops out.
SETS: dict[str, dict[str, str]] = {
    "all": {"sm": "all", "isa": "all", "cuda": "all"},
    "seed": {"sm": "all", "isa": "all", "cuda": "12.8,12.9"},
    "smoke": {"sm": "90", "isa": "avx512", "cuda": "12.9,13.0"},
    # What the weekly schedule builds: today's data-centre GPUs on the CPUs
    # they ship with, for the default CUDA and for CUDA 13.0.
    "scheduled": {"sm": "80,90,100,103,120", "isa": "avx512,avx512bf16,armv9", "cuda": "12.9,13.0"},
}

# Runner labels per platform: large self-hosted build machines.  The
# repository variables CI_RUNNER_X86_64 / CI_RUNNER_AARCH64 (comma-separated
# labels, set as environment variables by the workflow) replace them.
RUNNERS = {
    "x86_64": ("self-hosted", "linux", "x64", "gpu-build"),
    "aarch64": ("self-hosted", "linux", "arm64", "gpu-build"),
}

FILTERS = ("sm", "isa", "cuda")


class MatrixError(Exception):
    """One line for the user: the input, the bad value, what is accepted."""


def toolchain_for(cuda: str) -> str:
    """CI policy: CUDA 12.x from Nix (the seed's pinned nixpkgs), 13.x from PyPI."""
    return "nix" if cuda.split(".")[0] == "12" else "pypi"


def runner_for(platform: str, env: dict[str, str] | None = None) -> list[str]:
    env = os.environ if env is None else env
    override = env.get(f"CI_RUNNER_{platform.upper()}", "").strip()
    if override:
        return [label.strip() for label in override.split(",") if label.strip()]
    return list(RUNNERS[platform])


def backend_rows(python: str | None, backend: str | None = None) -> list[dict]:
    """Every variant the backend knows (all CUDA versions), as it prints them."""
    command = shlex.split(backend) if backend else [sys.executable, "-m", "backend"]
    command += ["matrix", "--json"]
    if python:
        command += ["--python", python]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        message = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise MatrixError(f"{shlex.join(command)} failed: {message}")
    return json.loads(result.stdout)


def parse_filter(name: str, text: str | None, rows: list[dict]) -> set[str] | None:
    """A comma list or 'all' (or empty: all) -> the accepted values, or None for all."""
    accepted = list(dict.fromkeys(str(r[name]) for r in rows))  # the backend's order
    values = [v.strip() for v in (text or "").split(",") if v.strip()]
    if not values or values == ["all"]:
        return None
    bad = [v for v in values if v not in accepted]
    if "all" in values and len(values) > 1:
        bad = ["all"] + [b for b in bad if b != "all"]
    if bad:
        raise MatrixError(
            f"--{name}: bad value {bad[0]!r}; accepted: {', '.join(accepted)}, or all (comma-separated)"
        )
    return set(values)


def select(rows: list[dict], sm: str | None, isa: str | None, cuda: str | None, set_name: str | None = None) -> list[dict]:
    chosen = {"sm": sm, "isa": isa, "cuda": cuda}
    if set_name:
        if set_name not in SETS:
            raise MatrixError(f"--set: bad value {set_name!r}; accepted: {', '.join(SETS)}")
    wanted = {name: parse_filter(name, chosen[name], rows) for name in FILTERS}
    if set_name:
        for name in FILTERS:
            from_set = parse_filter(name, SETS[set_name][name], rows)
            if from_set is not None:
                wanted[name] = from_set if wanted[name] is None else wanted[name] & from_set
    matched = [r for r in rows if all(wanted[n] is None or str(r[n]) in wanted[n] for n in FILTERS)]
    picked = [{k: v for k, v in r.items() if k != "refused"} for r in matched if not r.get("refused")]
    if not picked:
        shown = " ".join(f"{n}={chosen[n] or 'all'}" for n in FILTERS)
        if set_name:
            shown += f" set={set_name}"
        if matched:
            raise MatrixError(f"no variant matches {shown} whose full stack the backend builds: {matched[0]['refused']}")
        raise MatrixError(
            f"no variant matches {shown}: the backend's rules exclude every such combination "
            "(python -m backend matrix lists the variants)"
        )
    return picked


def github_rows(rows: list[dict], env: dict[str, str] | None = None) -> dict:
    include = []
    for row in rows:
        tag = str(row["python"])
        include.append({
            **row,
            "python_version": f"{tag[0]}.{tag[1:]}",
            "toolchain": toolchain_for(row["cuda"]),
            "runner": runner_for(row["platform"], env),
        })
    return {"include": include}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sm", default="all", help="comma list of SMs, or all")
    parser.add_argument("--isa", default="all", help="comma list of ISAs, or all")
    parser.add_argument("--cuda", default="all", help="comma list of CUDA versions, or all")
    parser.add_argument("--set", dest="set_name", default="", help=f"a named set: {', '.join(SETS)}")
    parser.add_argument("--python", default="3.13", help="Python version the wheels are for (default 3.13)")
    parser.add_argument("--backend", default=os.environ.get("VLLM_STACK_BACKEND"),
                        help="command that runs the backend (default: this Python's -m backend)")
    parser.add_argument("--github-output", metavar="FILE",
                        help="also append matrix=<json> and count=<n> to this file ($GITHUB_OUTPUT)")
    args = parser.parse_args(argv)
    try:
        rows = select(backend_rows(args.python, args.backend), args.sm, args.isa, args.cuda, args.set_name or None)
    except MatrixError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    matrix = github_rows(rows)
    text = json.dumps(matrix, separators=(",", ":"))
    if args.github_output:
        with open(args.github_output, "a", encoding="utf-8") as handle:
            handle.write(f"matrix={text}\ncount={len(rows)}\n")
        names = "\n".join(f"  {r['name']}  ({r['toolchain']}, {','.join(r['runner'])})" for r in matrix["include"])
        print(f"{len(rows)} variants:\n{names}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
