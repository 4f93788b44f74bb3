"""Run one build command: all output to the component's log, progress to stderr."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path

NINJA_PROGRESS = re.compile(r"^\[(\d+)/(\d+)\]")
# Builds running now (several when independent components build side by side).
_LIVE: set[subprocess.Popen] = set()
_LIVE_LOCK = threading.Lock()
_STOPPING = threading.Event()
_SAY_LOCK = threading.Lock()


def say(message: str) -> None:
    """One whole line (or block) to stderr: components building side by side do not interleave mid-line."""
    with _SAY_LOCK:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()


def allow_builds() -> None:
    _STOPPING.clear()


def stop_all() -> None:
    """Stop every running build's process group, and start no new one (Ctrl-C in the main thread)."""
    with _LIVE_LOCK:
        _STOPPING.set()
        live = list(_LIVE)
    for process in live:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
KILLED_CODES = (137, -9, 247)


class CommandFailed(Exception):
    def __init__(self, command: Sequence[str], returncode: int, tail: list[str], log: Path):
        super().__init__(f"{command[0]} exited with {returncode}")
        self.command = list(command)
        self.returncode = returncode
        self.tail = tail
        self.log = log

    @property
    def killed(self) -> bool:
        if self.returncode in KILLED_CODES:
            return True
        return any("Killed" in line or "signal 9" in line or "out of memory" in line.lower() for line in self.tail)


def _fmt(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else f"{seconds // 60}:{seconds % 60:02d}"


def run_logged(
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    log: Path,
    label: str,
    stream=None,
    interval: float = 5.0,
) -> None:
    """Run ``command``; raise CommandFailed with the log's last lines on failure."""
    stream = stream or sys.stderr
    log.parent.mkdir(parents=True, exist_ok=True)
    tail: deque[str] = deque(maxlen=40)
    start = time.monotonic()
    last_report = 0.0
    with log.open("a", encoding="utf-8", errors="replace") as handle:
        handle.write(f"\n$ {' '.join(command)}\n")
        handle.flush()
        process = subprocess.Popen(
            list(command), cwd=str(cwd), env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, errors="replace", bufsize=1, start_new_session=True,
        )
        with _LIVE_LOCK:
            _LIVE.add(process)
            stopping = _STOPPING.is_set()
        try:
            if stopping:  # stop_all ran while this build was starting
                raise KeyboardInterrupt
            assert process.stdout is not None
            for line in process.stdout:
                handle.write(line)
                tail.append(line.rstrip("\n"))
                now = time.monotonic()
                match = NINJA_PROGRESS.match(line)
                if match and now - last_report >= interval:
                    done, total = int(match.group(1)), int(match.group(2))
                    elapsed = now - start
                    eta = elapsed / done * (total - done) if done else 0
                    stream.write(f"  {label} [{done}/{total}] {_fmt(elapsed)} elapsed, ~{_fmt(eta)} left\n")
                    stream.flush()
                    last_report = now
                elif now - last_report >= 60:
                    stream.write(f"  {label} {_fmt(now - start)} elapsed\n")
                    stream.flush()
                    last_report = now
            returncode = process.wait()
        except BaseException:
            # Ctrl-C or a failure here: stop the whole build process group, keep its files.
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            process.wait()
            raise
        finally:
            with _LIVE_LOCK:
                _LIVE.discard(process)
        handle.write(f"[exit {returncode} after {_fmt(time.monotonic() - start)}]\n")
    if returncode != 0:
        raise CommandFailed(command, returncode, list(tail), log)
