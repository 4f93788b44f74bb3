"""The build venv borrows the frontend's tools: console-script entry points and installed script files alike.

Found on the H200: the image's ninja wheel installs ``bin/ninja`` as a file
(no entry point); the frontend's bin leaves the build's PATH, so
flashinfer-jit-cache's ``ninja`` call failed until such files were linked too.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _fake_distribution(site: Path, name: str, record: list[str], entry_points: str = "") -> None:
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    if entry_points:
        (info / "entry_points.txt").write_text(entry_points)
    (info / "RECORD").write_text("".join(f"{line},,\n" for line in record + [f"{info.name}/RECORD"]))


def test_borrowed_script_files_and_entry_points_are_on_the_builds_path(tmp_path):
    outer = tmp_path / "outer"  # the frontend's environment (a user's venv under --no-build-isolation)
    venv.EnvBuilder(with_pip=False, system_site_packages=True, symlinks=True).create(outer)
    site = next((outer / "lib").glob("python*/site-packages"))
    program = outer / "bin" / "vs-native-tool"  # a wheel's .data/scripts file, as ninja's bin/ninja
    program.write_text("#!/bin/sh\necho native tool ran\n")
    program.chmod(0o755)
    _fake_distribution(site, "vs-native-tool", ["../../../bin/vs-native-tool"])
    (site / "vs_entry_tool.py").write_text("def main():\n    print('entry tool ran')\n")
    _fake_distribution(site, "vs-entry-tool", ["vs_entry_tool.py"],
                       "[console_scripts]\nvs-entry-tool = vs_entry_tool:main\n")
    script = textwrap.dedent(f"""
        import os, subprocess, sys
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from backend.pipeline import environment
        python = environment.ensure(Path({str(tmp_path / "build-env")!r}))
        with environment.borrowing(python, ["vs-native-tool", "vs-entry-tool"], torch=False):
            env = environment.clean_environ(python)
            assert {str(outer / "bin")!r} not in env["PATH"].split(os.pathsep), env["PATH"]
            for tool in ("vs-native-tool", "vs-entry-tool"):
                print(subprocess.run([tool], env=env, capture_output=True, text=True, check=True).stdout.strip())
        print("left:", sorted(p.name for p in python.parent.iterdir() if p.name.startswith("vs-")))
    """)
    result = subprocess.run([str(outer / "bin" / "python"), "-c", script], capture_output=True, text=True,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines() == ["native tool ran", "entry tool ran", "left: []"]
