"""Running one build command: log, ninja progress, and what a failure says."""

import io
import sys

import pytest

from backend.pipeline.runner import CommandFailed, run_logged

NINJA_LIKE = "import time\nfor i in range(1, 6):\n    print(f'[{i}/5] Building CXX object x{i}.o', flush=True)\n    time.sleep(0.01)\n"


def test_progress_and_log(tmp_path):
    stream = io.StringIO()
    log = tmp_path / "logs" / "c.log"
    run_logged([sys.executable, "-c", NINJA_LIKE], env={"PATH": "/usr/bin:/bin"}, cwd=tmp_path, log=log,
               label="[1/1 c]", stream=stream, interval=0)
    text = log.read_text()
    assert "[5/5] Building CXX object x5.o" in text and "[exit 0 after" in text
    assert "[1/1 c] [1/5]" in stream.getvalue() and "left" in stream.getvalue()


def test_a_killed_compiler_is_recognised(tmp_path):
    script = "import os, signal\nprint('[1/9] nvcc kernel.cu', flush=True)\nos.kill(os.getpid(), signal.SIGKILL)\n"
    with pytest.raises(CommandFailed) as info:
        run_logged([sys.executable, "-c", script], env={"PATH": "/usr/bin:/bin"}, cwd=tmp_path,
                   log=tmp_path / "k.log", label="k", stream=io.StringIO())
    assert info.value.killed and info.value.returncode == -9
    assert info.value.tail == ["[1/9] nvcc kernel.cu"]


def test_an_ordinary_failure_is_not_called_a_kill(tmp_path):
    with pytest.raises(CommandFailed) as info:
        run_logged([sys.executable, "-c", "print('error: expected ;'); raise SystemExit(1)"], env={"PATH": "/usr/bin:/bin"},
                   cwd=tmp_path, log=tmp_path / "f.log", label="f", stream=io.StringIO())
    assert not info.value.killed and info.value.returncode == 1
