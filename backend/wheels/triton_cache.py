"""Triton's ``cuda_utils`` module, prebuilt beside the wheels: one compile fewer at a host's first kernel.

Triton 3.5.1 (the version torch 2.9.1 pins) compiles two kinds of C module at run time, with the host
C compiler and Python's headers (``triton/runtime/build.py:19-52``, ``_build``: ``$CC``, else gcc, else
clang; ``Python.h`` from ``sysconfig``):

* ``cuda_utils`` from the fixed ``backends/nvidia/driver.c``, once per cache (``CudaUtils.__init__``,
  ``backends/nvidia/driver.py:62-69``);
* a ``__triton_launcher`` per kernel argument signature: ``CudaLauncher.__init__``
  (``driver.py:675-688``) writes its C source from the signature and constants of the call
  (``make_launcher``), known only when a kernel is first called.

Both go through ``compile_module_from_src`` (``build.py:70-93``), which looks in the Triton cache
(``$TRITON_CACHE_DIR``, default ``~/.triton/cache``) first.  Its key is
``sha256(source + platform_key())`` with ``platform_key()`` = machine, system and
``platform.architecture()`` (``build.py:55-58``), the file ``<name><EXT_SUFFIX>``; a cached file that
does not load is compiled again (``build.py:78-83``).  The compiler, the include paths and where
libcuda lives are not in the key, so a ``cuda_utils`` built here by the Triton the wheelhouse installs,
for its Python (``EXT_SUFFIX``) and CPU architecture, is the file a deployment host would build and
look for.  The launchers are not: vLLM's kernels are called with signatures seen only at run time, so
a host still compiles one per signature and still needs the C compiler (``DEPLOY.md`` says so).

The module is built in the smoke check's venv (the wheelhouse installed as a host installs it) by
Triton's own ``compile_module_from_src``, called as ``CudaUtils`` calls it.  Linking ``-lcuda`` and
Triton's load after the compile need a libcuda, which a build host without a GPU lacks: a stub
library of the ``cu*`` functions ``driver.c`` calls (read from its object file), soname
``libcuda.so.1``, stands in; the module records only ``NEEDED libcuda.so.1``, which the host's driver
provides.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

from .files import write_atomic

FOLDER = "triton-cache"   # beside the wheels; its contents go into a host's Triton cache
# What the build needs on PATH: a C compiler as Triton finds it (and its assembler and linker), nm for the stub.
TOOLS = ("cc", "gcc", "clang", "as", "ld", "ld.bfd", "ld.gold", "nm")

PREBUILD_SCRIPT = r'''
import ctypes, json, os, re, shutil, subprocess, sys, sysconfig, tempfile
from pathlib import Path
os.environ["TRITON_CACHE_DIR"] = sys.argv[1]
try:
    import triton
    from triton.backends.nvidia import driver
    from triton.runtime.build import compile_module_from_src
except ImportError as error:
    print("TRITON-CACHE " + json.dumps({"skipped": f"the venv has no Triton NVIDIA backend ({error})"}))
    sys.exit()
cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("clang")   # build.py's own choice
source = Path(driver.dirname, "driver.c")
with tempfile.TemporaryDirectory() as stub:
    # The cu* functions driver.c calls, as a stub libcuda.so.1 to link against and to load with.
    obj = os.path.join(stub, "driver.o")
    subprocess.run([cc, "-c", "-fPIC", str(source), "-o", obj,
                    *(f"-I{d}" for d in (*driver.include_dirs, sysconfig.get_paths()["include"]))], check=True)
    undefined = subprocess.run(["nm", "-u", obj], check=True, capture_output=True, text=True).stdout
    names = sorted(set(re.findall(r"\bU (cu[A-Z]\w*)$", undefined, re.M)))
    Path(stub, "stub.c").write_text("".join(f"void {name}(void) {{}}\n" for name in names))
    library = os.path.join(stub, "libcuda.so")
    subprocess.run([cc, "-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o", library,
                    os.path.join(stub, "stub.c")], check=True)
    os.symlink("libcuda.so", os.path.join(stub, "libcuda.so.1"))   # Triton 3.6 links -l:libcuda.so.1
    ctypes.CDLL(library, mode=ctypes.RTLD_GLOBAL)   # the loaded soname satisfies the module's NEEDED
    os.environ["TRITON_LIBCUDA_PATH"] = stub        # knobs.nvidia.libcuda_path: driver.libcuda_dirs()
    # CudaUtils.__init__'s own call (backends/nvidia/driver.py:63-69).
    compile_module_from_src(src=source.read_text(), name="cuda_utils", library_dirs=driver.library_dirs(),
                            include_dirs=driver.include_dirs, libraries=driver.libraries)
print("TRITON-CACHE " + json.dumps({"triton": triton.__version__, "cuda_functions": len(names)}))
'''


@dataclasses.dataclass
class Prebuilt:
    files: list[str]          # paths under FOLDER, "<key>/cuda_utils.cpython-311-x86_64-linux-gnu.so"
    triton: str | None = None
    skipped: str | None = None
    without_file: str | None = None   # why only the key of a host without `file` was built


def prebuild(python: Path, env: dict[str, str], scratch: Path, dest: Path) -> Prebuilt:
    """Build ``cuda_utils`` with the Triton ``python`` imports into ``dest`` (a Triton cache folder).

    Once with ``file`` on PATH and once without: ``platform_key()`` holds ``platform.architecture()``,
    which runs ``file -b`` on the interpreter and reports the linkage ``ELF`` only where ``file`` is
    installed (a slim container image has none), so the two hosts look under two keys.  A file already
    in ``dest`` under the same key is left alone (a rebuild changes nothing); keys this Triton no longer
    makes (an older Triton's) are removed."""
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    path = env.get("PATH", "")
    searches = [_tools(scratch / "tools", path, TOOLS)]
    if shutil.which("file", path=path):
        searches.append(_tools(scratch / "tools-and-file", path, (*TOOLS, "file")))
    data: dict = {}
    for search in searches:
        result = subprocess.run([str(python), "-c", PREBUILD_SCRIPT, str(scratch / "cache")],
                                env={**env, "PATH": str(search)}, capture_output=True, text=True)
        marker = next((l for l in result.stdout.splitlines() if l.startswith("TRITON-CACHE ")), None)
        if result.returncode != 0 or marker is None:
            tail = [l.strip() for l in result.stderr.splitlines() if l.strip()]
            return Prebuilt([], skipped=f"Triton's cuda_utils did not build: {tail[-1] if tail else result.returncode}")
        data = json.loads(marker.removeprefix("TRITON-CACHE "))
        if "skipped" in data:
            return Prebuilt([], skipped=data["skipped"])
    built = sorted(p.relative_to(scratch / "cache") for p in (scratch / "cache").glob("*/*.so"))
    for relative in built:
        target = dest / relative
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(target, (scratch / "cache" / relative).read_bytes())
    keep = {relative.parts[0] for relative in built}
    for stale in (dest.iterdir() if dest.is_dir() else ()):
        if stale.name not in keep:
            shutil.rmtree(stale) if stale.is_dir() and not stale.is_symlink() else stale.unlink()
    return Prebuilt([str(r) for r in built], triton=data["triton"],
                    without_file=None if len(searches) > 1 else "`file` is not installed on the build host")


def _tools(folder: Path, path: str, names: tuple[str, ...]) -> Path:
    """A folder of links to ``names`` as found on ``path``, and nothing else."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        found = shutil.which(name, path=path)
        if found and not (folder / name).exists():
            (folder / name).symlink_to(found)
    return folder


def shipped(wheelhouse: Path) -> list[Path]:
    """The prebuilt modules beside a wheelhouse's wheels."""
    return sorted((wheelhouse / FOLDER).glob("*/*.so"))


def seed(cache: Path, prebuilt: Path | None) -> Path:
    """A fresh Triton cache at ``cache``, holding a copy of ``prebuilt`` (a host that followed DEPLOY.md)."""
    shutil.rmtree(cache, ignore_errors=True)
    if prebuilt is not None and prebuilt.is_dir():
        shutil.copytree(prebuilt, cache, symlinks=True)
    cache.mkdir(parents=True, exist_ok=True)
    return cache
