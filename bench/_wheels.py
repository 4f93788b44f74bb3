"""Shared by the verify benchmarks: fetch a real wheel from PyPI into a cache folder and unpack its libraries."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

CACHE = Path(os.environ.get("VERIFY_BENCH_CACHE", Path.home() / ".cache" / "vllm-stack-bench"))
WHEEL = os.environ.get("VERIFY_BENCH_WHEEL", "bitsandbytes==0.49.1")


def libraries() -> list[Path]:
    """The shared objects of WHEEL (manylinux x86_64), unpacked once under CACHE."""
    name = WHEEL.replace("==", "-")
    folder = CACHE / name
    done = folder / ".unpacked"
    if not done.exists():
        download = CACHE / "downloads"
        download.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        "--platform", "manylinux_2_24_x86_64", "--platform", "manylinux_2_27_x86_64",
                        "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux2014_x86_64", "--python-version", "3.11", "-d", str(download), WHEEL],
                       check=True, stdout=subprocess.DEVNULL)
        wheel = sorted(download.glob(WHEEL.split("==")[0].replace("-", "_") + "-*.whl"))[-1]
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.namelist():
                if ".so" in member.rsplit("/", 1)[-1]:
                    archive.extract(member, folder)
        done.touch()
    return sorted(p for p in folder.rglob("*") if p.is_file() and ".so" in p.name)


def cuobjdump() -> str | None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from standin_helpers import find_cuobjdump

    return find_cuobjdump()

