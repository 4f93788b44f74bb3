"""Benchmark: the whole post-processing of a built torch-sized wheel, against a plain copy of it.

    python bench/postprocess.py [--size-mb 900] [--work /tmp/postprocess-bench] [--repeat 1]

What the executor does after a component's build (``StepExecutor.finish``,
backend/pipeline/executor.py): the version relabelled, the stack pins and the
CUDA requirements added, the platform tag decided and written, the wheel made
reproducible, verified, its features read, and added to the wheelhouse with
its manifest record.  It runs on a stand-in of torch's wheel, generated once
under ``--work`` (never committed): ``torch-2.9.1-cp311-cp311-linux_x86_64.whl``
of about ``--size-mb`` MB, whose bulk is shared objects compiled here by gcc
(real code, DT_NEEDED, SONAME, GLIBC symbol versions) carrying
incompressible ``.nv_fatbin`` sections laid out as nvcc 13 writes them
(zstd-flagged cubin entries for sm_90, backend/verify/fatbin.py) and
incompressible read-only data; one library names nvcc's temporary files
(``tmpxft_...``, so it is rewritten as a real CUDA library is), beside
about 2000 small Python files and headers, all deflated as setuptools does.

The named peer, measured in the same run on the same file: ``shutil.copyfile``
of the wheel followed by an fsync (one read and one write of it: the least
any post-processing that writes a changed wheel can do; the post-processing
fsyncs what it writes).  Bytes are the process's own ``rchar``/``wchar`` from
``/proc/self/io``, which include reaped child processes (auditwheel runs in
one) and every file (temporary extractions too), so "reads" is all bytes read
divided by the wheel's size.  Both start from a warm page cache.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import types
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WHEEL_NAME = "torch-2.9.1-cp311-cp311-linux_x86_64.whl"
DIST_INFO = "torch-2.9.1.dist-info"
MB = 1 << 20


def io_counters() -> tuple[int, int]:
    """(rchar, wchar) of this process and its reaped children."""
    fields = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return int(fields["rchar"]), int(fields["wchar"])


def fatbin(size: int, sm: int = 90) -> bytes:
    """``size`` bytes of fatbins as nvcc 13 lays them out: zstd-flagged sm_90 cubins of random payload."""
    out = bytearray()
    chunk = 4 * MB
    while len(out) < size:
        payload = os.urandom(min(chunk, max(4096, size - len(out) - 0x50)))
        entry = struct.pack("<HHIQ", 2, 0x101, 0x40, len(payload))
        entry += struct.pack("<IHHI", len(payload), 8, 1, sm).ljust(0x18, b"\0")
        entry += struct.pack("<Q", 0x8000).ljust(0x10, b"\0") + struct.pack("<Q", len(payload) * 3)
        entry = entry.ljust(0x40, b"\0") + payload
        out += struct.pack("<IHHQ", 0xBA55ED50, 1, 0x10, len(entry)) + entry
        out += bytes(-len(out) % 8)
    return bytes(out)


def shared_object(work: Path, soname: str, sections: dict[str, bytes], needed: tuple[str, ...] = ()) -> bytes:
    """A shared object compiled by gcc (a few functions calling libc and libm), with ``sections`` added."""
    source = work / "object.c"
    source.write_text(
        "#include <math.h>\n#include <stdio.h>\n#include <string.h>\n"
        "double stack_norm(const double *v, int n) { double s = 0; for (int i = 0; i < n; i++) s += v[i] * v[i];"
        " return sqrt(s); }\n"
        "int stack_name(char *out, int n) { return snprintf(out, n, \"%s\", \"stand-in\"); }\n"
        "void stack_copy(char *a, const char *b, size_t n) { memcpy(a, b, n); }\n")
    base = work / "base.so"
    links = [f"-l:{n}" for n in needed]
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", f"-Wl,-soname,{soname}", "-o", str(base), str(source),
                    "-L", str(work), *links, "-lm"], check=True)
    out = work / soname
    args = ["objcopy"]
    for name, data in sections.items():
        blob = work / f"section{name.replace('/', '_')}"
        blob.write_bytes(data)
        args += ["--add-section", f"{name}={blob}"]
    subprocess.run([*args, str(base), str(out)], check=True)
    data = out.read_bytes()
    for name in sections:
        (work / f"section{name.replace('/', '_')}").unlink()
    return data


def generate(work: Path, size_mb: int) -> Path:
    """The stand-in torch wheel (see the module's docstring), written once per size."""
    folder = work / f"wheel-{size_mb}"
    wheel = folder / WHEEL_NAME
    if wheel.exists():
        return wheel
    folder.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="objects-", dir=work))
    total = size_mb * MB
    members: dict[str, bytes] = {}
    # libtorch_cpu first: the others link it (DT_NEEDED, provided inside the wheel)
    members["torch/lib/libtorch_cpu.so"] = shared_object(
        scratch, "libtorch_cpu.so", {".stand_in_data": os.urandom(int(total * 0.30))})
    (scratch / "libtorch_cpu.so").write_bytes(members["torch/lib/libtorch_cpu.so"])
    members["torch/lib/libtorch_cuda.so"] = shared_object(
        scratch, "libtorch_cuda.so", {".nv_fatbin": fatbin(int(total * 0.62))}, needed=("libtorch_cpu.so",))
    members["torch/lib/libc10_cuda.so"] = shared_object(
        scratch, "libc10_cuda.so", {".nv_fatbin": fatbin(int(total * 0.03)),
                                    ".nv_names": b"/tmp/tmpxft_0001a2b3_00000000-6_Copy.cudafe1.cpp\0"})
    members["torch/lib/libc10.so"] = shared_object(scratch, "libc10.so", {".stand_in_data": os.urandom(2 * MB)})
    shutil.rmtree(scratch)
    for index in range(1600):
        text = "".join(f"def op_{index}_{n}(x):\n    return x * {n} + {index}\n\n" for n in range(60))
        members[f"torch/_stand_in/module_{index:04d}.py"] = text.encode()
    for index in range(400):
        members[f"torch/include/ATen/ops/op_{index:04d}.h"] = (f"#pragma once\n// op {index}\n" * 80).encode()
    members[f"{DIST_INFO}/METADATA"] = (
        "Metadata-Version: 2.1\nName: torch\nVersion: 2.9.1\nRequires-Dist: filelock\n"
        "Requires-Dist: typing-extensions>=4.10.0\nRequires-Dist: sympy>=1.13.3\nRequires-Dist: triton==3.5.1\n"
        "\nPyTorch stand-in for bench/postprocess.py\n").encode()
    members[f"{DIST_INFO}/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: bdist_wheel (0.45.1)\nRoot-Is-Purelib: false\n"
        "Tag: cp311-cp311-linux_x86_64\n").encode()
    members[f"{DIST_INFO}/entry_points.txt"] = b"[console_scripts]\ntorchrun = torch.distributed.run:main\n"
    rows = []
    for name, data in members.items():
        digest = hashlib.sha256(data).digest()
        rows.append(f"{name},sha256={base64.urlsafe_b64encode(digest).rstrip(b'=').decode()},{len(data)}\n")
    rows.append(f"{DIST_INFO}/RECORD,,\n")
    members[f"{DIST_INFO}/RECORD"] = "".join(rows).encode()
    partial = folder / (WHEEL_NAME + ".part")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=(2025, 11, 12, 10, 0, 0))
            info.external_attr = (0o100755 if name.endswith(".so") else 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data, compresslevel=1)
    partial.replace(wheel)
    return wheel


def warm(path: Path) -> None:
    with open(path, "rb") as handle:
        while handle.read(64 * MB):
            pass


def executor_for(work: Path):
    """The torch step of a plan for sm_90/avx512/CUDA 13.0 and an executor over an empty wheelhouse in ``work``."""
    from backend import project
    from backend.pipeline.executor import StepExecutor
    from backend.toolchains.base import Toolchain
    from backend.wheels.wheelhouse import Wheelhouse

    settings = project.load_settings_from_cli([
        "sm=90", "isa=avx512", "cuda=13.0", "components=torch", f"cache-dir={work / 'cache'}",
        f"wheelhouse={work / 'wheelhouse'}", "verify=warn"])
    plan = project.make_plan(settings)
    step = next(s for s in plan.steps if s.component == "torch")
    house = Wheelhouse(plan.layout.wheelhouse, variant=plan.variant.name, toolchain="none")
    # A step's toolchain is never None (ed3bf54): a CUDA 13.0 toolkit that declares no runtime libraries and no
    # requirements, as the stand-in wheel links none of CUDA's libraries (it need not exist here).
    home = Path("/usr/local/cuda-13.0")
    toolchain = Toolchain("system", "13.0", "13.0.88", home, home / "bin" / "nvcc")
    return StepExecutor(plan=plan, toolchain=toolchain, house=house), step


def postprocess(executor, step, built: Path):
    """The executor's post-processing of ``built`` as the torch step's build output; returns the added wheels."""
    prepared = types.SimpleNamespace(origin="bench", source_hash="sha256:bench", patches=[])
    quiet = io.StringIO()
    stderr, sys.stderr = sys.stderr, quiet
    stdout, sys.stdout = sys.stdout, quiet
    try:
        return executor.finish(step, [built], "bench-key", prepared, 0.0, "[bench]")
    finally:
        sys.stderr, sys.stdout = stderr, stdout


def measure(action) -> tuple[float, int, int]:
    read0, written0 = io_counters()
    start = time.perf_counter()
    action()
    seconds = time.perf_counter() - start
    read1, written1 = io_counters()
    return seconds, read1 - read0, written1 - written0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=900)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "postprocess-bench")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each (the fastest is kept)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    wheel = generate(args.work, args.size_mb)
    size = wheel.stat().st_size
    print(f"wheel: {wheel} ({size / 1e6:.0f} MB)")

    def copy() -> None:
        target = args.work / "copy.whl"
        shutil.copyfile(wheel, target)
        with open(target, "rb+") as handle:
            os.fsync(handle.fileno())
        target.unlink()

    added: list[str] = []

    def run() -> None:
        postprocess(*prepared_run)

    def prepare() -> tuple:
        run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=args.work))
        executor, step = executor_for(run_dir)
        built = run_dir / "built" / wheel.name
        built.parent.mkdir()
        os.link(wheel, built)  # the build's output (a link: not part of what is measured)
        runs_dirs.append(run_dir)
        return executor, step, built

    runs_dirs: list[Path] = []
    prepared_run: tuple = ()
    results = {}
    for label, action in (("copy+fsync", copy), ("postprocess", run)):
        runs = []
        for _ in range(max(1, args.repeat)):
            if action is run:
                prepared_run = prepare()
            warm(wheel)
            runs.append(measure(action))
            if action is run:
                added[:] = sorted(p.name for p in prepared_run[0].house.wheels())
                shutil.rmtree(runs_dirs.pop(), ignore_errors=True)
        results[label] = min(runs)
        seconds, read, written = results[label]
        print(f"{label:>12}: {seconds:7.2f} s  read {read / 1e6:8.0f} MB ({read / size:5.2f} x the wheel)  "
              f"written {written / 1e6:8.0f} MB ({written / size:5.2f} x the wheel)")
    print(f"added: {', '.join(added)}")
    seconds, read, written = results["postprocess"]
    print(f"postprocess / copy+fsync: time {seconds / results['copy+fsync'][0]:.2f}, "
          f"reads of the wheel {read / size:.2f} (copy: {results['copy+fsync'][1] / size:.2f}), "
          f"writes of the wheel {written / size:.2f} (copy: {results['copy+fsync'][2] / size:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
