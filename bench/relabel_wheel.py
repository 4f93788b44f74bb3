"""Benchmark: rewriting the version of a large wheel, against `wheel tags` and a plain copy.

    python bench/relabel_wheel.py [WHEEL] [--repeat N] [--tags-runs N] [--work DIR]

WHEEL: a large wheel (500 MB or more).  Without it the script downloads
``torch==2.9.1`` with ``pip download --no-deps`` (the CUDA x86_64 wheel,
about 900 MB) into the work folder, or, with ``--generate SIZE_MB``, writes
a synthetic wheel of incompressible and compressible members instead.

Three ways of producing a changed copy, each timed ``--repeat`` times (the
best is kept; the file is read once first so every run starts from a warm
page cache):

* ``relabel``: :func:`backend.wheels.relabel.relabel` to a new local version
  (file name, dist-info, METADATA, RECORD), members copied compressed;
* ``wheel tags``: the ``wheel`` package's CLI changing the platform tag (it
  rewrites WHEEL and RECORD and recompresses every member);
* ``copy``: :func:`shutil.copyfile`.

Prints seconds and MB/s for each, and the ratios relabel / wheel tags and
relabel / copy.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backend.wheels import names as wheel_names  # noqa: E402
from backend.wheels.relabel import relabel  # noqa: E402


def download_torch(work: Path) -> Path:
    found = sorted(work.glob("torch-2.9.1-*.whl"))
    if found:
        return found[0]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "torch==2.9.1", "-d", str(work)], check=True
    )
    return sorted(work.glob("torch-2.9.1-*.whl"))[0]


def generate(work: Path, size_mb: int) -> Path:
    """A synthetic wheel: half random (stored-like after deflate) and half text members."""
    import zipfile

    path = work / "bigwheel-1.0-cp311-cp311-linux_x86_64.whl"
    if path.exists():
        return path
    chunk = 8 * 1024 * 1024
    members = []
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for index in range(max(1, size_mb // 8)):
            name = f"bigwheel/lib/part{index}.so"
            data = os.urandom(chunk // 2) + (b"text line %d\n" % index) * (chunk // 26)
            archive.writestr(name, data)
            members.append(name)
        dist = "bigwheel-1.0.dist-info"
        archive.writestr(f"{dist}/METADATA", "Metadata-Version: 2.1\nName: bigwheel\nVersion: 1.0\n")
        archive.writestr(f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: false\nTag: cp311-cp311-linux_x86_64\n")
        archive.writestr(f"{dist}/RECORD", "".join(f"{m},,\n" for m in members) + f"{dist}/METADATA,,\n{dist}/WHEEL,,\n{dist}/RECORD,,\n")
    return path


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheel", nargs="?", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tags-runs", type=int, default=1, help="runs of wheel tags (about 90 s each for torch; 0 skips it)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "relabel-bench")
    parser.add_argument("--generate", type=int, metavar="SIZE_MB", help="use a synthetic wheel of this size")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.wheel:
        wheel = args.wheel
    elif args.generate:
        wheel = generate(args.work, args.generate)
    else:
        wheel = download_torch(args.work)
    size_mb = wheel.stat().st_size / 1e6
    print(f"wheel: {wheel.name} ({size_mb:.0f} MB)")
    with open(wheel, "rb") as handle:  # warm the page cache
        while handle.read(64 * 1024 * 1024):
            pass

    out = Path(tempfile.mkdtemp(prefix="out-", dir=args.work))
    version = wheel_names.parse(wheel.name).version_text
    new_version = version + "+cu129.sm90.avx512" if "+" not in version else version + ".bench"
    tag_source = out / "tags-src" / wheel.name
    tag_source.parent.mkdir()
    os.link(wheel, tag_source) if os.stat(wheel).st_dev == os.stat(out).st_dev else shutil.copyfile(wheel, tag_source)

    def do_relabel():
        path = relabel(wheel, out / "relabel", version=new_version, pins={"triton": "3.5.1+bench"})
        path.unlink()

    def do_tags():
        subprocess.run(
            ["wheel", "tags", "--platform-tag", "linux_x86_64", str(tag_source)],
            check=True,
            capture_output=True,
        )
        for produced in tag_source.parent.glob("*.whl"):
            if produced.name != tag_source.name:
                produced.unlink()

    def do_copy():
        shutil.copyfile(wheel, out / "copy.whl")
        (out / "copy.whl").unlink()

    def do_copy_fsync():
        # What relabel guarantees too: the bytes are on disk before the rename.
        shutil.copyfile(wheel, out / "copy.whl")
        with open(out / "copy.whl", "rb+") as handle:
            os.fsync(handle.fileno())
        (out / "copy.whl").unlink()

    results = {}
    actions = [("copy", do_copy), ("copy+fsync", do_copy_fsync), ("relabel", do_relabel)]
    if args.tags_runs:
        actions.append(("wheel tags", do_tags))
    for label, action in actions:
        runs = [timed(action) for _ in range(args.repeat if label != "wheel tags" else max(1, args.tags_runs))]
        results[label] = min(runs)
        print(f"{label:>11}: {results[label]:7.2f} s  ({size_mb / results[label]:7.0f} MB/s)  runs: {', '.join(f'{r:.2f}' for r in runs)}")
    if "wheel tags" in results:
        print(f"relabel / wheel tags:  {results['relabel'] / results['wheel tags']:.3f}")
    print(f"relabel / copy:        {results['relabel'] / results['copy']:.2f}")
    print(f"relabel / copy+fsync:  {results['relabel'] / results['copy+fsync']:.2f}")
    shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
