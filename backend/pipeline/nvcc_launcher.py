#!/usr/bin/env python3
"""nvcc, with the source's path in nvcc's own names made independent of the build folder.

Run by path (the build venv's ``python3`` is first on PATH) as CMake's CUDA
compiler launcher, ``nvcc_launcher.py nvcc ARGS...``, where the compiler
cache's own launcher comes from ``INNER_LAUNCHER_VARIABLE`` (one executable
path: CMake's launcher variable is a list, which not every build splits the
same way), and in front of ``PYTORCH_NVCC``: ``nvcc_launcher.py -- [ccache]
nvcc ARGS...``, the command complete.  Standard library only: it runs inside
component builds.

nvcc hands cudafe++ ``--orig_src_path_name "<absolute real path of the
.cu>"`` (even for a relative source, and through symlinks), and cudafe++
names every internal-linkage device symbol after a hash of it
(``_GLOBAL__N__<hash>_8_kernel_cu_...``, ``_INTERNAL_<hash>_...``): every unit
that has an anonymous namespace or includes CCCL has such names, in its host
stubs and in its cubins, so the same source built in two folders gives two
different binaries, and no prefix map reaches them.  cudafe++ takes the
option again through ``-Xcudafe`` and the later one wins; cicc reads the
module id cudafe++ writes, so host and device agree (checked:
tests/test_reproducible.py).  The path given is the real path with the
build's prefix maps applied (``VLLM_STACK_PREFIX_MAP``: ``old=new`` pairs
separated by ``PREFIX_MAP_SEPARATOR``, later pairs first), so it stays unique
per source within a build, as nvcc needs for ``-rdc`` module ids.

A unit with no external kernel to name its module after (all templates, or
all in an anonymous namespace: bitsandbytes' ``kernels.cu`` and ``ops.cu``)
gets a module id cudafe++ makes from a hash of its working folder and the
source's modification time, and its own process id
(``_<path hash>_6_ops_cu_<hash>_<pid>``; its ``make_module_id``), which goes
into the host stubs and, compressed, into the fatbin (found on the H100:
docs/VALIDATION.md, "Reproducible wheels").  With ``NAMESPACE_VARIABLE`` set
to a fixed folder, nvcc runs in a user namespace of its own (util-linux
``unshare``): a PID namespace, so its processes get the same ids in every
build, and a mount namespace in which the working folder is bound to that
fixed folder, so the hash sees one name; relative paths reach the same files.
``reproducible.nvcc_namespace`` sets it only where unprivileged user namespaces
work (checked once per build); elsewhere, and behind sccache (whose server
compiles outside the namespace), the difference stays, named by rebuild-check.
"""

from __future__ import annotations

import os
import sys

PREFIX_MAP_VARIABLE = "VLLM_STACK_PREFIX_MAP"
INNER_LAUNCHER_VARIABLE = "VLLM_STACK_CUDA_LAUNCHER"
PREFIX_MAP_SEPARATOR = "\n"
NAMESPACE_VARIABLE = "VLLM_STACK_NVCC_NAMESPACE"
CUDA_SOURCE_SUFFIXES = (".cu",)
# Launchers whose server, started outside the namespace, runs the compile in the client's working folder,
# which outside it is the empty fixed folder: nvcc stays outside, its module id differs by folder (rebuild-check
# names it).
SERVER_LAUNCHERS = ("sccache",)
# In the namespace: bind the real working folder ($1) to the fixed one ($2) and work there; give nvcc a temporary
# folder of its own at one fixed path ($3): every nvcc has the same process id in its namespace, so its tmpxft_<pid>_ files
# would collide in a shared /tmp with the nvcc compiling beside it.  A folder of its own under the real $TMPDIR
# is bound there (on disk, not in memory) and removed afterwards.  A working folder that cannot be bound (a file
# system that refuses it) is worked in as it is: its module id then differs by folder (rebuild-check names it);
# a temporary folder that cannot be bound is used by its own name (no collision; nvcc's names then hold it).
IN_NAMESPACE = """
if mount --bind "$1" "$2" 2>/dev/null; then cd "$2"; fi
own=$(mktemp -d "${TMPDIR:-/tmp}/vllm-stack-nvcc.XXXXXXXX") || exit 1
if mount --bind "$own" "$3" 2>/dev/null; then TMPDIR=$3; else TMPDIR=$own; fi
export TMPDIR
shift 3
"$@"
status=$?
rm -rf "$own"
exit $status
"""


def temporary_folder(fixed: str) -> str:
    """Where nvcc's temporary files go in the namespace (an empty mount point beside ``fixed``)."""
    return fixed.rstrip("/") + "-tmp"


def in_namespace(command: list[str], cwd: str, fixed: str) -> list[str]:
    """``command`` run with its own process ids, ``cwd`` seen as ``fixed`` and a temporary folder of its own at
    ``temporary_folder(fixed)`` (both must exist)."""
    return ["unshare", "--user", "--map-root-user", "--mount", "--pid", "--fork", "--kill-child",
            "sh", "-c", IN_NAMESPACE, "sh", cwd, fixed, temporary_folder(fixed), *command]


def prefix_map(environ) -> list[tuple[str, str]]:
    """The build's prefix maps, the one to try first first (GCC's order: the last given wins)."""
    pairs = []
    for line in environ.get(PREFIX_MAP_VARIABLE, "").split(PREFIX_MAP_SEPARATOR):
        old, sep, new = line.partition("=")
        if sep and old:
            pairs.append((old, new))
    return pairs[::-1]


def mapped(path: str, maps: list[tuple[str, str]]) -> str:
    for old, new in maps:
        if path == old or path.startswith(old.rstrip("/") + "/"):
            return new + path[len(old.rstrip("/")):]
    return path


def with_source_name(command: list[str], environ, cwd: str) -> list[str]:
    """``command`` with ``-Xcudafe --orig_src_path_name=<mapped real path>`` for its one .cu source."""
    maps = prefix_map(environ)
    sources = []
    skip = False
    for index, arg in enumerate(command):
        if skip:
            skip = False
            continue
        if arg in ("-o", "--output-file", "-MF", "-MT", "-MQ", "-x", "--x", "-ccbin", "--compiler-bindir"):
            skip = True
            continue
        if arg.endswith(CUDA_SOURCE_SUFFIXES) and not arg.startswith("-"):
            sources.append(index)
    if len(sources) != 1 or not maps:
        return command
    real = os.path.realpath(os.path.join(cwd, command[sources[0]]))
    name = mapped(real, maps)
    if name == real:
        return command  # a source outside the build's folders: nvcc's own name
    return [*command, "-Xcudafe", f"--orig_src_path_name={name}"]


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: nvcc_launcher.py NVCC ARGS... | nvcc_launcher.py -- [LAUNCHER...] NVCC ARGS...", file=sys.stderr)
        return 2
    if argv[0] == "--":
        command = argv[1:]
    else:
        inner = os.environ.get(INNER_LAUNCHER_VARIABLE, "")
        command = ([inner] if inner else []) + argv
    cwd = os.getcwd()
    command = with_source_name(command, os.environ, cwd)
    fixed = os.environ.get(NAMESPACE_VARIABLE, "")
    if fixed and os.path.basename(command[0]) not in SERVER_LAUNCHERS:
        os.makedirs(fixed, exist_ok=True)
        os.makedirs(temporary_folder(fixed), exist_ok=True)
        command = in_namespace(command, cwd, fixed)
    os.execvp(command[0], command)
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
