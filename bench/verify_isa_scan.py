"""ISA-scan throughput: backend.verify.isa (iced-x86) against objdump -d, same files, same run, in MB of code per second.

    python bench/verify_isa_scan.py          # libnvrtc of the PyPI nvidia-cuda-nvrtc wheel (a compiler: host code)
    VERIFY_BENCH_WHEEL=nvidia-cublas==13.0.2.14 python bench/verify_isa_scan.py

objdump (binutils) decodes and prints every instruction; the scan decodes and
counts CPUID features.  MB are bytes of executable sections.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

os.environ.setdefault("VERIFY_BENCH_WHEEL", "nvidia-cuda-nvrtc==13.0.88")
from _wheels import WHEEL, libraries  # noqa: E402
from backend.verify import elf  # noqa: E402

LIMIT = int(os.environ.get("LIMIT", "6"))   # the largest N libraries by code size


def main() -> int:
    paths = libraries()
    sized = sorted(((elf.read_object(p, gpu=False).code_bytes, p) for p in paths), reverse=True)[:LIMIT]
    code = sum(size for size, _ in sized) / 1e6
    start = time.perf_counter()
    instructions = 0
    highest = {}
    for _size, path in sized:
        scan = elf.read_object(path, gpu=False, scan_code=True).scan
        instructions += scan.instructions
        highest[path.name] = (scan.highest, sorted(scan.features))
    t_ours = time.perf_counter() - start
    print(f"{WHEEL}: {len(sized)} largest libraries, {code:.1f} MB of code")
    print(f"backend.verify.isa  {t_ours:.2f} s  {code / t_ours:.1f} MB/s  ({instructions / t_ours / 1e6:.2f} M instructions/s)")
    tool = shutil.which("objdump")
    if tool:
        start = time.perf_counter()
        for _size, path in sized:
            subprocess.run([tool, "-d", "--no-show-raw-insn", str(path)], stdout=subprocess.DEVNULL, check=True)
        t_peer = time.perf_counter() - start
        print(f"objdump -d          {t_peer:.2f} s  {code / t_peer:.1f} MB/s")
        print(f"ratio (objdump time / backend.verify time): {t_peer / t_ours:.2f}")
    for name, (level, features) in highest.items():
        print(f"  {name}: highest {level}; {', '.join(features) or 'no tracked SIMD'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
