"""docs/NEW_USER.md: the README's first screen, run the way a new user runs it (issue 27).

    python3 ci/new_user_transcript.py           # run it, rewrite docs/NEW_USER.md
    python3 ci/new_user_transcript.py --check   # run it again; exit 1 when the output drifted

Each run starts from nothing: a fresh clone of this checkout's committed tree
(``git clone``: what a user clones), a fresh venv (``python3 -m venv``: pip
and nothing else; ``python`` and ``pip`` on PATH as in the README), an empty
backend cache and an empty pip cache of its own.  Then the README's first
screen in its order (``STEPS``; tests/test_new_user.py checks that they are
the README's commands): ``detect``, ``plan``, the build, the install command
and ``verify``, each through ``bash -c`` in the clone.

The one departure: the build is the headline command for one component, the
bitsandbytes stand-in (tests/fixtures/standins, compiled with CMake and nvcc
in about a minute) with CUDA from this machine (``-C toolchain=system``),
instead of the whole stack (torch alone compiles for hours).  Its runtime
dependency (``packaging``) comes from the index, as for a user.

``--check`` compares after normalising what differs between runs and hosts:
times, sizes, hashes, temporary paths, the host's CPU/GPU facts and job counts.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "NEW_USER.md"
VARIANT = f"vllm-python{sys.version_info.major}{sys.version_info.minor}-cuda13_0-sm90-avx512"
HOUSE = f"wheelhouse/{VARIANT}"
# The README's first-screen commands (tests/test_new_user.py: each is in the README's first screen, as written).
DETECT = "python -m backend detect"
PLAN = "python -m backend plan -C sm=90 -C isa=avx512 -C cuda=13.0 -C toolchain=pypi"
BUILD = "pip wheel . -C sm=90 -C isa=avx512 -C cuda=13.0 -C toolchain=pypi -w dist -v"
INSTALL = f"pip install --no-index --find-links {HOUSE} --require-hashes -r {HOUSE}/requirements.txt"
VERIFY = f"python -m backend verify {HOUSE} -C sm=90 -C isa=avx512 -C cuda=13.0"
README_COMMANDS = (DETECT, PLAN, BUILD, INSTALL, VERIFY)
# What the transcript runs: (heading, what is said about it, command).  The build differs as the docstring says.
STEP_BUILD = (BUILD.replace("-C toolchain=pypi", "-C toolchain=system")
              + " -C components=torch,bitsandbytes -C source.torch={torch} -C source.bitsandbytes={bitsandbytes}"
              + " -C runtime-find-links={links}")
STEPS = (
    ("What fits this machine", "On a bare interpreter: nothing is installed yet.", DETECT),
    ("The build's steps, before building", "Also on the bare interpreter (its first lines).",
     PLAN + " | head -n 30"),
    ("Build", "The headline command with three departures, so that it runs in minutes: the torch and "
              "bitsandbytes stand-ins (tests/fixtures/standins) instead of the whole stack from its sources, "
              "this machine's CUDA 13.0 (`-C toolchain=system`) instead of 3 GB of PyPI wheels, and torch's "
              "runtime pins (triton, nvidia-*) from a folder of small stand-in wheels (`-C runtime-find-links`). "
              "The backend's own lines of pip's `-v` output are shown.", STEP_BUILD),
    ("Install", "The README's install command, as written, into the same venv.", INSTALL),
    ("Verify", "What `verify` needs, then the README's verify command, as written.", "{needs} && " + VERIFY),
)
def _run_steps(work: Path) -> list[tuple[str, str, str, str, int]]:
    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
    from standin_helpers import cuda_home, find_nvcc, runtime_links, standin_runtime_requirements, standin_tree

    from backend.needs import install_command

    clone, venv_dir = work / "vllm-stack", work / "venv"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv_dir)], check=True)
    nvcc = find_nvcc()
    if nvcc is None:
        raise SystemExit("new_user_transcript: the build step needs a CUDA 13 nvcc (CUDA_HOME or /usr/local/cuda-13.0)")
    env = {
        "PATH": f"{venv_dir / 'bin'}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(work / "home"), "XDG_CACHE_HOME": str(work / "cache"), "TMPDIR": str(work / "tmp"),
        "VIRTUAL_ENV": str(venv_dir), "CUDA_HOME": cuda_home(nvcc), "LANG": "C.UTF-8",
        # pip's progress bars and its upgrade notice: noise in a transcript
        "PIP_PROGRESS_BAR": "off", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        # The machine's pip configuration (an index mirror) as a user's pip would read it.
        **{k: v for k, v in os.environ.items() if k.startswith("PIP_INDEX") or k == "PIP_CONFIG_FILE"},
    }
    for folder in ("home", "cache", "tmp"):
        (work / folder).mkdir()
    trees = {c: standin_tree(c) for c in ("torch", "bitsandbytes")}
    links = runtime_links(work / "links", standin_runtime_requirements())
    values = {**{c: shlex.quote(str(t)) for c, t in trees.items()}, "links": shlex.quote(str(links)),
              "needs": install_command()}
    paths = {str(clone): "<checkout>", str(venv_dir): "<venv>", str(links): "<links>", env["CUDA_HOME"]: "<cuda>",
             **{str(t): f"<{c} stand-in>" for c, t in trees.items()}, str(work): "<tmp>"}
    shown: list[tuple[str, str, str, str, int]] = []
    for heading, said, command in STEPS:
        result = subprocess.run(["bash", "-c", command.format(**values)], cwd=clone, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        output = result.stdout
        if command == STEP_BUILD:
            output = _build_lines(output)
        shown_command = command.format(**{**{c: f"<{c} stand-in>" for c in trees}, "links": "<links>",
                                          "needs": values["needs"]})
        shown.append((heading, said, shown_command, _paths(output, paths), result.returncode))
    return shown


def _build_lines(output: str) -> str:
    """The backend's own lines of pip's -v output (pip runs each hook under "Running command ..." and indents
    its output by two spaces), and pip's last lines; not pip's hundreds of requirement-install lines."""
    keep, inside = [], False
    for line in output.splitlines():
        if line.startswith("  Running command "):
            inside = line.startswith(("  Running command Getting requirements", "  Running command Building wheel"))
            continue
        if inside and (line.startswith("  Getting requirements") or line.startswith("  Building wheel for")):
            inside = False
            continue
        if inside:
            keep.append(line[2:])
        elif line.startswith(("Successfully built", "Saved ", "ERROR", "Failed")):
            keep.append(line)
    return "\n".join(keep) + "\n"


def _paths(text: str, paths: dict[str, str]) -> str:
    for path, name in sorted(paths.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(path, name)
    return text


def render(steps) -> str:
    lines = [
        "# A new user's first run (generated)",
        "",
        "<!-- generated by ci/new_user_transcript.py (python3 ci/new_user_transcript.py rewrites it, --check "
        "compares); do not edit -->",
        "",
        "The README's first screen, run in a fresh clone with a fresh venv (pip only) on an empty cache. How and "
        "what differs from a real build: [ci/new_user_transcript.py](../ci/new_user_transcript.py). Temporary "
        "paths read `<tmp>`, `<checkout>`, `<venv>`.",
        "",
    ]
    for number, (heading, said, command, output, status) in enumerate(steps, 1):
        lines += [f"## {number}. {heading}", "", said, "", "```console", f"$ {command}", output.rstrip("\n"),
                  *([f"[exit status {status}]"] if status else []), "```", ""]
    return "\n".join(lines)


HOST_LINES = re.compile(r"^(cpu|gpu|isa|sm|cuda|variant|note|build) {2,}.*$", re.M)


def comparable(text: str) -> str:
    """``text`` without what differs between runs and hosts: times, sizes, hashes, counts, host facts, and pip's
    lines on where it found a requirement (an index, its cache, already installed)."""
    text = re.sub(r"(?m)^\s*(Collecting|Downloading|Using cached|Requirement already satisfied|Looking in|Ignoring"
                  r"|\[notice\]|.*━).*\n", "", text)
    text = HOST_LINES.sub(lambda m: m.group(1) + " <host>", text)
    text = re.sub(r"\b[0-9a-f]{12,}\b", "<hash>", text)
    text = re.sub(r"\b\d+(\.\d+)? ?(B|KB|kB|MB|GB|KiB|MiB|GiB|bytes)\b", "<size>", text)
    text = re.sub(r"\b\d+(\.\d+)? ?(s|ms|min|seconds|minutes)\b", "<time>", text)
    text = re.sub(r"\bjobs? [=:]? ?\d+.*$", "jobs <n>", text, flags=re.M)
    text = re.sub(r"\d+(\.\d+)?", "<n>", text)  # what is left: memory, job counts, table minutes
    text = re.sub(r"/tmp/[^\s'\"]+", "<tmp>", text)
    text = re.sub(r"-{3,}", "---", text)  # table rules and padding follow the widths of what was normalised
    lines = [re.sub(r"\s+", " ", line).strip() for line in text.splitlines()]
    lines = [line for line in lines if not line.endswith(" elapsed")]  # the build's progress ticks
    # Components built side by side interleave their lines differently each run: the build's lines as a set.
    start = next(i for i, line in enumerate(lines) if line.endswith(". Build"))
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("## "))
    return "\n".join(lines[:start] + sorted(lines[start:end]) + lines[end:])


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="vllm-stack-new-user-") as tmp:
        text = render(_run_steps(Path(tmp)))
    if "--check" in argv:
        if not DOC.is_file():
            print(f"{DOC} is missing: run python3 ci/new_user_transcript.py", file=sys.stderr)
            return 1
        old, new = comparable(DOC.read_text()), comparable(text)
        if old != new:
            import difflib

            sys.stderr.writelines(difflib.unified_diff(old.splitlines(True), new.splitlines(True), str(DOC), "this run"))
            print(f"\n{DOC} drifted from what the README's first screen does now: "
                  "run python3 ci/new_user_transcript.py and review the diff", file=sys.stderr)
            return 1
        print(f"{DOC}: no drift")
        return 0
    DOC.write_text(text)
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
