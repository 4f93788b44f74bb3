"""``toolchain=pypi``: CUDA 13.x assembled from NVIDIA's PyPI wheels.

Every wheel is installed once, into one shared root per CUDA release
(``<cache>/toolchains/pypi-cu130/site``, ``pip install --target``, under a
file lock): the cuDNN wheel alone is 700 MB.  The CUDA_HOME a build gets is
not that root but a symlink farm for exactly its library set,
``<cache>/toolchains/pypi-cu130-<hash>`` (hash of the pinned requirements,
``farm.py``), joined from the files each of the set's wheels installed (their
``*.dist-info/RECORD``): ``nvidia/cu13/...`` and ``nvidia/<library>/...``
(cuDNN, NCCL, cuSPARSELt, NVSHMEM) both land at the farm's top.  A
bitsandbytes build after a torch build therefore finds no cuDNN, NCCL or
cuSPARSELt, whatever the shared root holds.  The farm gets the fixes CMake
needs (measured, see docs/TOOLCHAINS.md): a ``lib64 -> lib`` link and
unversioned ``lib*.so`` links next to the versioned ones; nvcc is named
through ``CUDACXX`` (``Toolchain.env``).  nvcc finds ``nvcc.profile``, cicc
and its headers from the path it was started as (``_HERE_`` is argv[0]'s
folder, not the symlink's target), so compiles through the farm see the
farm's include/ and lib/ only.

CUDA 12.x cannot come from PyPI: the cu12 wheels have ptxas and headers but
no nvcc, cicc, fatbinary or nvlink.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from importlib.metadata import distributions
from pathlib import Path

from ..errors import BackendError
from .base import Toolchain, check_toolkit, last_error_line, runtime_sonames
from .farm import farm, link

NAME = "pypi"

# CUDA 13.0 Update 2 (the versions /usr/local/cuda-13.0 here was built from).
# compiler: needed to compile, not at run time.
COMPILER = {
    "13.0": (
        "nvidia-cuda-nvcc==13.0.88",
        "nvidia-nvvm==13.0.88",
        "nvidia-cuda-crt==13.0.88",
        "nvidia-cuda-cccl==13.0.85",
        "nvidia-cuda-runtime==13.0.96",
    ),
}
# library name -> the wheel that carries it (a run-time requirement of wheels built with it).
LIBRARIES = {
    "13.0": {
        "cudart": "nvidia-cuda-runtime==13.0.96",
        "nvrtc": "nvidia-cuda-nvrtc==13.0.88",
        "cupti": "nvidia-cuda-cupti==13.0.85",
        "nvtx": "nvidia-nvtx==13.0.85",
        "nvjitlink": "nvidia-nvjitlink==13.0.88",
        "cublas": "nvidia-cublas==13.1.0.3",
        "cufft": "nvidia-cufft==12.0.0.61",
        "curand": "nvidia-curand==10.4.0.35",
        "cusolver": "nvidia-cusolver==12.0.4.66",
        "cusparse": "nvidia-cusparse==12.6.3.3",
        "cufile": "nvidia-cufile==1.15.1.6",
        "cudnn": "nvidia-cudnn-cu13==9.13.0.50",
        "nccl": "nvidia-nccl-cu13==2.27.7",
        "cusparselt": "nvidia-cusparselt-cu13==0.8.0",
        "nvshmem": "nvidia-nvshmem-cu13==3.3.24",
        # torchvision's NVJPEG decoder (its setup.py: nvjpeg.h in CUDA_HOME/include, -lnvjpeg); CUDA 13.0
        # Update 2 shipped no new nvJPEG, so Update 1's (uploaded with nvcc 13.0.88, 2025-09-04)
        "nvjpeg": "nvidia-nvjpeg==13.0.1.86",
    },
}
SUPPORTED = tuple(COMPILER)


def refuse_12(cuda: str) -> BackendError:
    return BackendError(
        f"toolchain 'pypi': CUDA {cuda} cannot come from PyPI (the cu12 wheels such as nvidia-cuda-nvcc-cu12 hold "
        f"ptxas and headers but no nvcc, cicc, fatbinary or nvlink); get CUDA {cuda} from -C toolchain=nix "
        f"(nixpkgs cudaPackages_{cuda.replace('.', '_')}) or an installed toolkit (-C toolchain=system with "
        f"CUDA_HOME=/usr/local/cuda-{cuda}), or build -C cuda=13.0 with -C toolchain=pypi"
    )


def requirements_for(cuda: str, libraries: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """(everything to install, the run-time subset) for CUDA ``cuda`` and the named libraries."""
    if cuda.startswith("12."):
        raise refuse_12(cuda)
    if cuda not in COMPILER:
        raise BackendError(
            f"toolchain 'pypi': no pinned PyPI wheel set for CUDA {cuda}; accepted: {', '.join(SUPPORTED)}"
        )
    table = LIBRARIES[cuda]
    names = list(table) if libraries is None else ["cudart", *libraries]
    unknown = [n for n in names if n not in table]
    if unknown:
        raise BackendError(f"toolchain 'pypi': unknown CUDA library {unknown[0]!r}; accepted: {', '.join(table)}")
    # In the table's order, whatever order they were asked in: the same set is the same farm.
    runtime = list(dict.fromkeys(table[n] for n in table if n in names))
    everything = list(dict.fromkeys([*COMPILER[cuda], *runtime]))
    return everything, runtime


def root_for(cache_dir: Path, cuda: str) -> Path:
    return Path(cache_dir) / "toolchains" / f"pypi-cu{cuda.replace('.', '')}"


def missing(cuda: str, cache_dir: Path, libraries: Sequence[str] | None = None) -> list[str]:
    """The pinned wheels ``resolve`` would install for this set (none: it only arranges the farm)."""
    everything, _ = requirements_for(cuda, libraries)
    installed = set(_installed(root_for(cache_dir, cuda)))
    return [r for r in everything if r not in installed]


def resolve(cuda: str, *, cache_dir: Path, offline: bool = False,
            libraries: Sequence[str] | None = None) -> Toolchain:
    everything, runtime = requirements_for(cuda, libraries)
    root = root_for(cache_dir, cuda)
    root.mkdir(parents=True, exist_ok=True)
    from filelock import FileLock  # not at the top: detect and toolchain run on a bare interpreter

    with FileLock(str(root / ".lock")):
        installed = _installed(root)
        missing = [r for r in everything if r not in installed]
        if missing:
            if offline:
                raise BackendError(
                    f"toolchain 'pypi': offline, and the CUDA {cuda} wheels {', '.join(missing)} are not in "
                    f"{root}; run once with network (python -m backend toolchain -C cuda={cuda} -C toolchain=pypi)"
                )
            _pip_install(root, missing)
            _write_installed(root, sorted(set(installed) | set(missing)))
        files = installed_files(root / "site", everything)
        home = farm(root.parent, root.name, everything, lambda folder: _fill(folder, files, root),
                    needs=linked_folders(root / "site", files))
    nvcc, version = check_toolkit(
        home, cuda, provider=NAME, origin="the PyPI wheels joined at",
        ways_out=f"remove {root} and {home} and run again",
    )
    return Toolchain(
        provider=NAME, cuda=cuda, version=version, cuda_home=home, nvcc=nvcc,
        runtime_libraries=runtime_sonames(home), requirements=tuple(runtime),
    )


def installed_files(site: Path, requirements: Sequence[str]) -> list[tuple[Path, Path]]:
    """(place in CUDA_HOME, installed file) for every toolkit file the wheels pinned by ``requirements`` installed.

    Read from each wheel's ``*.dist-info/RECORD``; ``nvidia/<folder>/<path>`` becomes ``<path>``
    (``nvidia/cu13/bin/nvcc`` -> ``bin/nvcc``, ``nvidia/cudnn/include/cudnn.h`` -> ``include/cudnn.h``);
    the Python package files (``__init__.py``, caches) stay out.
    """
    from packaging.utils import canonicalize_name  # not at the top: detect and toolchain run on a bare interpreter

    found = {(canonicalize_name(d.metadata["Name"] or ""), d.version): d for d in distributions(path=[str(site)])}
    files: list[tuple[Path, Path]] = []
    for requirement in requirements:
        name, _, version = requirement.partition("==")
        distribution = found.get((canonicalize_name(name), version))
        if distribution is None or distribution.files is None:
            raise BackendError(
                f"toolchain 'pypi': {requirement} is listed as installed in {site.parent} but its "
                f"dist-info/RECORD is not there; remove {site.parent} and run again"
            )
        for entry in distribution.files:
            parts = entry.parts
            if len(parts) < 3 or parts[0] != "nvidia" or parts[-1] == "__init__.py" or "__pycache__" in parts:
                continue
            files.append((Path(*parts[2:]), site / entry))
    return files


def linked_folders(site: Path, files: list[tuple[Path, Path]]) -> list[Path]:
    """The ``nvidia/<folder>`` folders a farm of these files links into: gone (the root removed), it is stale."""
    return sorted({site.joinpath(*installed.relative_to(site).parts[:2]) for _, installed in files})


_VERSIONED = re.compile(r"^(lib[\w+-]+?\.so)\.\d+(\.\d+)*$")


def _fill(home: Path, files: list[tuple[Path, Path]], root: Path) -> None:
    """Link the wheels' files into ``home`` (the first wheel wins a clash) and make it a CUDA_HOME CMake accepts."""
    for relative, installed in files:
        if not installed.is_file():
            raise BackendError(
                f"toolchain 'pypi': {installed} is in its wheel's RECORD but not installed; "
                f"remove {root} and run again"
            )
        link(home / relative, installed)
    lib = home / "lib"
    if not lib.is_dir():
        return
    link(home / "lib64", "lib")
    # Unversioned links: libcudart.so -> libcudart.so.13, picking the shortest versioned name.
    versioned: dict[str, str] = {}
    for entry in sorted(lib.iterdir(), key=lambda p: (len(p.name), p.name)):
        match = _VERSIONED.match(entry.name)
        if match and match.group(1) not in versioned:
            versioned[match.group(1)] = entry.name
    for plain, target in versioned.items():
        link(lib / plain, target)


def _installed(root: Path) -> list[str]:
    try:
        return list(json.loads((root / "installed.json").read_text()))
    except (OSError, ValueError):
        return []


def _write_installed(root: Path, requirements: list[str]) -> None:
    tmp = root / "installed.json.tmp"
    tmp.write_text(json.dumps(requirements, indent=1) + "\n")
    os.replace(tmp, root / "installed.json")


def pip_command() -> list[str]:
    """How to run pip here: this interpreter's pip, else uv's."""
    try:
        import pip  # noqa: F401

        return [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
    except ImportError:
        uv = shutil.which("uv")
        if uv:
            return [uv, "pip", "install", "--python", sys.executable]
        raise BackendError(
            "toolchain 'pypi': neither pip nor uv is available to install the CUDA wheels; "
            "install pip in this environment (python -m ensurepip)"
        ) from None


def _announce(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _pip_install(root: Path, requirements: list[str]) -> None:
    """pip install --target, announced: the wheels are GBs, and a build or ``toolchain --install`` waits for them.
    pip's lines naming each download and its size are shown as they come."""
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
    try:
        _announce(f"toolchain 'pypi': installing {len(requirements)} CUDA wheel(s) from PyPI into {root} (once per "
                  "cache; the full set is about 3 GB, cuDNN alone 700 MB): " + ", ".join(requirements))
        argv = [*pip_command(), "--no-deps", "--only-binary", ":all:", "--target", str(staging),
                "--progress-bar", "off", *requirements]
        if "uv" in Path(argv[0]).name:
            argv.remove("--progress-bar")
            argv.remove("off")
        output: list[str] = []
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
            assert process.stdout is not None
            for line in process.stdout:
                output.append(line)
                if line.lstrip().startswith(("Downloading", "Using cached", "Processing", "Installing collected")):
                    _announce(f"   pip | {line.strip()}")
        if process.returncode != 0:
            raise BackendError(
                f"toolchain 'pypi': pip could not install {' '.join(requirements)}: "
                f"{last_error_line(''.join(output))}"
            )
        _announce(f"toolchain 'pypi': installed {len(requirements)} wheel(s)")
        _merge(staging, root / "site")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _merge(source: Path, target: Path) -> None:
    """Move every file of ``source`` into ``target``, keeping what is already there."""
    for folder, dirs, files in os.walk(source):
        relative = Path(folder).relative_to(source)
        (target / relative).mkdir(parents=True, exist_ok=True)
        for name in files + [d for d in dirs if (Path(folder) / d).is_symlink()]:
            destination = target / relative / name
            if not os.path.lexists(destination):
                os.replace(Path(folder) / name, destination)
