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

from conftest import make_wheel, record_hash


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
