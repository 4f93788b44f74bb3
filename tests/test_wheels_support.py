"""Helpers for the wheel tests: tiny real wheels made with zipfile, venvs, RECORD checks.

Imported by the other test_wheels*/test_variant_wheel* modules; holds one
self-check so pytest collects it harmlessly.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import subprocess
import sys
import zipfile
from pathlib import Path


def record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_wheel(
    directory: Path,
    name: str,
    version: str,
    *,
    requires: tuple[str, ...] = (),
    files: dict[str, bytes] | None = None,
    data_files: dict[str, bytes] | None = None,
    tag: str = "py3-none-any",
    description: str = "A tiny test wheel.\n\nWith a body line: Version: not-a-header\n",
    big: int = 0,
) -> Path:
    """A tiny but real wheel, members deflated, RECORD complete (like bdist_wheel makes)."""
    norm = name.replace("-", "_").lower()
    dist_info = f"{norm}-{version}.dist-info"
    package = norm
    members: dict[str, bytes] = {}
    members[f"{package}/__init__.py"] = f"VERSION = {version!r}\nNAME = {name!r}\n".encode()
    if big:
        # Compressible but not trivial: a few MB of pseudo-random text.
        import random

        rng = random.Random(1)
        words = [bytes(rng.choices(b"abcdefghij", k=8)) for _ in range(1000)]
        members[f"{package}/blob.txt"] = b" ".join(rng.choices(words, k=big // 9))
    for path, data in (files or {}).items():
        members[path] = data
    for path, data in (data_files or {}).items():
        members[f"{norm}-{version}.data/{path}"] = data
    metadata = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}", "Summary: tiny"]
    metadata += [f"Requires-Dist: {r}" for r in requires]
    metadata += ["Description-Content-Type: text/plain", "", description]
    members[f"{dist_info}/METADATA"] = "\n".join(metadata).encode()
    members[f"{dist_info}/WHEEL"] = f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: {tag}\n".encode()
    record_rows = [[path, record_hash(data), str(len(data))] for path, data in members.items()]
    record_rows.append([f"{dist_info}/RECORD", "", ""])
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(record_rows)
    members[f"{dist_info}/RECORD"] = buffer.getvalue().encode()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{norm}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for member, data in members.items():
            archive.writestr(member, data)
    return path


def check_record(wheel: Path) -> dict[str, str]:
    """Assert every member is in RECORD with the right hash and size; return RECORD as a dict."""
    with zipfile.ZipFile(wheel) as archive:
        assert archive.testzip() is None
        names = [n for n in archive.namelist() if not n.endswith("/")]
        record_name = next(n for n in names if n.endswith(".dist-info/RECORD"))
        rows = list(csv.reader(io.StringIO(archive.read(record_name).decode())))
        table = {row[0]: row for row in rows if row}
        assert set(table) == set(names), (set(table) ^ set(names))
        for name in names:
            if name == record_name:
                assert table[name][1:] == ["", ""]
                continue
            data = archive.read(name)
            assert table[name][1] == record_hash(data), name
            assert table[name][2] == str(len(data)), name
    return {k: v[1] for k, v in table.items()}


def make_venv(path: Path) -> Path:
    """A fresh venv without pip (pip runs from outside with --python); returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    return path / "bin" / "python"


def pip_install(python: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
    )


def installed(python: Path) -> dict[str, str]:
    """name -> version of what is installed in the venv (read by its own interpreter)."""
    code = "import importlib.metadata as m, json; print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
    import json

    out = subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def test_make_wheel_is_valid(tmp_path):
    wheel = make_wheel(tmp_path, "tiny", "1.0", requires=("other>=1",))
    check_record(wheel)
