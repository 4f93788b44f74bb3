"""GPU-code listing: backend.verify (Python, pyelftools) against cuobjdump --list-elf/--list-ptx, same files, same run.

    python bench/verify_gpu_listing.py            # bitsandbytes 0.49.1's CUDA libraries from PyPI
    VERIFY_BENCH_WHEEL=nvidia-cublas==13.0.2.14 python bench/verify_gpu_listing.py

Prints the median wall time of each over REPEAT rounds and their ratio.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _wheels import WHEEL, cuobjdump, libraries  # noqa: E402
from backend.verify import elf  # noqa: E402

REPEAT = int(os.environ.get("REPEAT", "5"))


def ours(paths: list[Path]) -> int:
    count = 0
    for path in paths:
        info = elf.read_object(path)
        count += sum(len(s.entries) for s in info.gpu if s.name == ".nv_fatbin")
    return count


def peer(tool: str, paths: list[Path]) -> int:
    count = 0
    for path in paths:
        for what in ("elf", "ptx"):
            result = subprocess.run([tool, f"--list-{what}", str(path)], capture_output=True, text=True)
            count += sum(1 for line in result.stdout.splitlines() if line.startswith(("ELF file", "PTX file")))
    return count


def median_time(function, *args) -> tuple[float, int]:
    times, result = [], 0
    for _ in range(REPEAT):
        start = time.perf_counter()
        result = function(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> int:
    tool = cuobjdump()
    if tool is None:
        print("cuobjdump not found: pip install nvidia-cuda-cuobjdump")
        return 1
    paths = [p for p in libraries() if elf.read_object(p).gpu]
    size = sum(p.stat().st_size for p in paths) / 1e6
    ours(paths)  # warm the page cache and imports
    t_ours, n_ours = median_time(ours, paths)
    t_peer, n_peer = median_time(peer, tool, paths)
    print(f"{WHEEL}: {len(paths)} CUDA libraries, {size:.0f} MB")
    print(f"backend.verify listing   {t_ours:.3f} s median of {REPEAT}  ({n_ours} .nv_fatbin entries)")
    print(f"cuobjdump --list-elf/ptx {t_peer:.3f} s median of {REPEAT}  ({n_peer} entries listed)")
    print(f"ratio (backend.verify / cuobjdump): {t_ours / t_peer:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
