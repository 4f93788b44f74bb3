"""The reuse check of a toolchain farm (``farm.is_whole``) against resolving every link of it.

A farm is reused on every build only while whole.  ``is_whole`` stats the
few paths its links point into (``.needs``: Nix store paths, the PyPI root's
``nvidia/<folder>`` folders); the peer walks the farm and resolves every link,
in the same run, on the same farm.

    python bench/farm_check.py [FARM ...] [--repeat 20]

Without FARM, a synthetic farm like the PyPI compiler-only one (1,850 links in
40 folders, two needs) is made in a temporary folder.  With FARM (for example
``<cache>/toolchains/pypi-cu130-<hash>``), that farm is measured as it is.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backend.toolchains.farm import farm, is_whole, link  # noqa: E402


def every_link_resolves(home: Path) -> bool:
    for folder, dirs, files in os.walk(home):
        for name in files + dirs:
            path = os.path.join(folder, name)
            if os.path.islink(path) and not os.path.exists(path):
                return False
    return True


def synthetic(where: Path, links: int = 1850, folders: int = 40) -> Path:
    installed = where / "site" / "nvidia"
    for n in range(links):
        target = installed / ("cu13" if n % 2 else "cudnn") / f"d{n % folders}" / f"f{n}"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"")

    def fill(home: Path) -> None:
        for n in range(links):
            part = "cu13" if n % 2 else "cudnn"
            link(home / f"d{n % folders}" / f"f{n}", installed / part / f"d{n % folders}" / f"f{n}")

    return farm(where / "toolchains", "bench", ["synthetic"], fill, needs=[installed / "cu13", installed / "cudnn"])


def timed(check, home: Path, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        assert check(home)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("farms", nargs="*", type=Path)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        homes = args.farms or [synthetic(Path(scratch))]
        for home in homes:
            count = sum(1 for p in home.rglob("*") if p.is_symlink())
            whole = timed(is_whole, home, args.repeat)
            walk = timed(every_link_resolves, home, args.repeat)
            print(f"{home.name}: {count} links; is_whole {whole * 1e3:.3f} ms, every link resolved "
                  f"{walk * 1e3:.2f} ms (median of {args.repeat}); ratio {walk / whole:.0f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
