"""What the execution check costs: QEMU user mode against the static scan (the named peer), same files, same run.

    python bench/verify_emulate.py                   # bitsandbytes 0.49.1 (PyPI), 12 libraries, avx2 (Haswell)
    VERIFY_BENCH_ISA=avx python bench/verify_emulate.py

Per check, three timings of the same libraries:
  scan      backend.verify.verify_paths with -C isa (iced-x86 over every executable byte, ELF, links);
  emulate   backend.verify.emulate.verify: every library dlopen'd by a Python under qemu-x86_64 -cpu <model>;
  native    the same driver, this machine's CPU, no QEMU (what emulation adds to it).
Then one op, bitsandbytes' blockwise 8-bit round trip through its CPU library (tests/fixtures/emulate/
bnb_blockwise.py), natively and emulated: the cost of -C smoke=emulate per CPU check.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _wheels import WHEEL, libraries  # noqa: E402
from backend.verify import Expectation, emulate, verify_paths  # noqa: E402

ISA = os.environ.get("VERIFY_BENCH_ISA", "avx2")
RUNS = 3
OP = ROOT / "tests" / "fixtures" / "emulate" / "bnb_blockwise.py"


def timed(action) -> tuple[float, object]:
    times, result = [], None
    for _ in range(RUNS):
        start = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> int:
    paths = libraries()
    expectation = Expectation(sm=None, isa=ISA, cuda=None, ptx=False, label=None, torch_version=None)
    t_scan, _report = timed(lambda: verify_paths(paths, expectation))
    t_emulate, outcome = timed(lambda: emulate.verify(paths, ISA))
    with tempfile.TemporaryDirectory() as scratch:
        driver = Path(scratch) / "driver.py"
        driver.write_text(emulate.DRIVER)
        events = Path(scratch) / "events.jsonl"
        argv = [sys.executable, "-I", "-S", str(driver), str(events), json.dumps([str(p) for p in paths])]
        t_native, _ = timed(lambda: subprocess.run(argv, check=True, capture_output=True))
        cpu_library = next(p for p in paths if p.name == "libbitsandbytes_cpu.so")
        op_native, _ = timed(lambda: subprocess.run([sys.executable, "-I", "-S", str(OP), str(cpu_library)],
                                                    check=True, capture_output=True))
        work = Path(scratch) / "op"
        work.mkdir()
        python = emulate.emulated_python(ISA, work)
        op_emulated, result = timed(lambda: python.run(["-I", "-S", str(OP), str(cpu_library)], work))
        assert result.returncode == 0, result.stderr
    size = sum(p.stat().st_size for p in paths) / 1e6
    print(f"{WHEEL}: {len(paths)} libraries, {size:.0f} MB; isa {ISA} (QEMU -cpu {emulate.model_for(ISA).cpu}); "
          f"median of {RUNS}")
    print("\n".join("  " + line for line in outcome.lines()))
    print(f"  scan (peer)        {t_scan:7.2f} s")
    print(f"  emulate (loads)    {t_emulate:7.2f} s   ratio to the scan {t_emulate / t_scan:.2f}")
    print(f"  native (loads)     {t_native:7.2f} s   emulation adds {t_emulate - t_native:.2f} s "
          f"({t_emulate / t_native:.1f}x native)")
    print(f"  op native          {op_native:7.2f} s")
    print(f"  op emulated        {op_emulated:7.2f} s   {op_emulated / op_native:.1f}x native, "
          f"ratio to the scan {op_emulated / t_scan:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
