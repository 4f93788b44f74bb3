"""AArch64 scan throughput: backend.verify.isa_arm (Capstone 6) against aarch64-linux-gnu-objdump -d, same files, same run.

    python bench/verify_arm_scan.py          # libnvrtc of the PyPI nvidia-cuda-nvrtc wheel for aarch64
    VERIFY_BENCH_WHEEL=nvidia-cublas==13.0.2.14 python bench/verify_arm_scan.py

objdump (Debian's binutils-aarch64-linux-gnu) decodes and prints every
instruction, the way one would grep a library for z registers; the scan
classes every instruction word by the extension it needs.  MB are bytes of
executable sections.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from backend.verify import elf  # noqa: E402

CACHE = Path(os.environ.get("VERIFY_BENCH_CACHE", Path.home() / ".cache" / "vllm-stack-bench"))
WHEEL = os.environ.get("VERIFY_BENCH_WHEEL", "nvidia-cuda-nvrtc==13.0.88")
OBJDUMP = shutil.which("aarch64-linux-gnu-objdump")


def libraries() -> list[Path]:
    folder = CACHE / (WHEEL.replace("==", "-") + "-aarch64")
    if not (folder / ".unpacked").exists():
        download = CACHE / "downloads-aarch64"
        download.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        "--platform", "manylinux2014_aarch64", "--platform", "manylinux_2_28_aarch64",
                        "--python-version", "3.11", "-d", str(download), WHEEL], check=True, stdout=subprocess.DEVNULL)
        wheel = sorted(download.glob(WHEEL.split("==")[0].replace("-", "_") + "-*aarch64*.whl"))[-1]
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.namelist():
                if ".so" in member.rsplit("/", 1)[-1]:
                    archive.extract(member, folder)
        (folder / ".unpacked").touch()
    return sorted(p for p in folder.rglob("*") if p.is_file() and ".so" in p.name)


def main() -> int:
    if OBJDUMP is None:
        print("needs aarch64-linux-gnu-objdump (apt-get install binutils-aarch64-linux-gnu)")
        return 1
    paths = [p for p in libraries() if elf.read_object(p, gpu=False).machine == "aarch64"]
    code = sum(elf.read_object(p, gpu=False).code_bytes for p in paths) / 1e6
    start = time.perf_counter()
    found = {p.name: elf.read_object(p, gpu=False, scan_code=True).scan for p in paths}
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    for path in paths:
        subprocess.run([OBJDUMP, "-d", "--no-show-raw-insn", str(path)], stdout=subprocess.DEVNULL, check=True)
    t_objdump = time.perf_counter() - start
    for name, scan in found.items():
        print(f"{name}: {scan.instructions} instructions, highest {scan.highest}, {dict(scan.features)}")
    print(f"{WHEEL} (aarch64): {len(paths)} libraries, {code:.1f} MB of code")
    print(f"isa_arm scan {t_ours:.2f} s ({code / t_ours:.1f} MB/s); objdump -d {t_objdump:.2f} s ({code / t_objdump:.1f} MB/s); "
          f"ratio ours/objdump {t_ours / t_objdump:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
