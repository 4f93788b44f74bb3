"""The variant's build environment: a venv, and the process environment its builds run in.

The venv lives in the cache, one per variant, and is the interpreter every
component build runs.  It holds our own wheels (torch first of all) and
whatever build requirement the frontend could not supply.  For the length of
one build it *borrows* from the environment the backend runs in (the
frontend's isolated build env, or the user's env under
``--no-build-isolation``) exactly the distributions the build needs: the
planned components' build requirements and, with ``torch=existing``, torch,
each with its own dependencies.  Only the site folders that hold those
distributions go into a ``.pth`` (never pip's ``sitecustomize`` folder, never
the whole ``sys.path``), their console scripts (cmake, ninja) get launchers
in the venv's ``bin``, and both are removed when the build ends, so the venv
never points at a frontend's temporary folder that has vanished.  Where the
frontend supplies a build requirement, its copy wins: the venv's own copy of
that distribution (Python 3.11's bundled setuptools 65, an older install)
is removed.

A component build gets a clean process environment: no frontend hook
variables (an inner ``pip wheel`` would otherwise load its own backend from
the outer one's ``backend-path`` and stop with ``BackendInvalid``), no
``PYTHONPATH``, no pip option that changes what an inner pip does, and no
frontend ``bin`` folder on ``PATH``.  The plan's variables, the toolchain and
the compiler cache are added on top by the engine.

Of the caller's own variables a build sees only an allow-list
(``CALLER_KEPT``): where things come from and how to reach them (proxies,
certificates, pip's index options, the compiler cache's storage), who and
where the user is (home, locale, temporary folder), ``PATH`` and the C/C++
compiler (``CC``/``CXX``).  Flags and search paths the user exported for
something else (``LDFLAGS``, ``CPPFLAGS``, ``NVCC_APPEND_FLAGS``,
``LD_LIBRARY_PATH``, ``CMAKE_ARGS`` ...) would change the wheel without
changing its build key (issue 29): they never reach a build.  Those kept
that can change what is built (``CALLER_KEYED``) are part of the build key.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import sysconfig
import venv
from collections.abc import Iterable, Iterator, Mapping, Sequence
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from ..errors import BackendError
from ..hashing import sha256_file
from ..wheels import names as wheel_names

PTH_NAME = "_vllm_stack_borrowed.pth"
BORROWED_SCRIPTS = "vllm-stack-borrowed-scripts.json"

# Set by frontends for the hook process they start; an inner frontend would read them as its own.  CALLER_KEPT
# keeps none of them; the smoke check's environment drops them too.
FRONTEND_PREFIXES = ("_PYPROJECT_HOOKS_", "PEP517_", "UV_INTERNAL__")
FRONTEND_NAMES = frozenset({"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PIP_BUILD_TRACKER", "PIP_REQ_TRACKER"})
# The caller's variables a build may see; every other one is dropped (see the module's docstring).
CALLER_KEPT = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TMP", "TEMP",
    # how output looks, not what is built (CI sets PYTHONUNBUFFERED so logs stream)
    "PYTHONUNBUFFERED", "PYTHONIOENCODING", "NO_COLOR", "FORCE_COLOR", "CLICOLOR", "COLUMNS",
    "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_RUNTIME_DIR",
    "http_proxy", "https_proxy", "ftp_proxy", "all_proxy", "no_proxy",
    "HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "ALL_PROXY", "NO_PROXY",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NIX_SSL_CERT_FILE", "NETRC",
    # the compiler cache's storage and its credentials (cache_storage.py), sccache's GitHub Actions cache
    "CCACHE_REMOTE_STORAGE", "CCACHE_MAXSIZE", "ACTIONS_CACHE_URL", "ACTIONS_RESULTS_URL",
    "ACTIONS_RUNTIME_TOKEN", "ACTIONS_CACHE_SERVICE_V2",
    "CC", "CXX", "SOURCE_DATE_EPOCH",
    # pip options that say where packages come from and how pip talks: an inner pip keeps them.  Every other
    # PIP_* (PIP_TARGET, PIP_PREFIX, PIP_USER, PIP_NO_BUILD_ISOLATION, PIP_REQUIRE_VIRTUALENV, PIP_NO_DEPS,
    # PIP_CONSTRAINT, ...) would change what the component's own build does.
    "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_NO_INDEX", "PIP_FIND_LINKS", "PIP_TRUSTED_HOST",
    "PIP_CERT", "PIP_CLIENT_CERT", "PIP_PROXY", "PIP_RETRIES", "PIP_TIMEOUT", "PIP_DEFAULT_TIMEOUT",
    "PIP_CACHE_DIR", "PIP_NO_CACHE_DIR", "PIP_DISABLE_PIP_VERSION_CHECK", "PIP_NO_INPUT",
    "PIP_KEYRING_PROVIDER", "PIP_PROGRESS_BAR", "PIP_NO_COLOR", "PIP_CONFIG_FILE",
})
CALLER_KEPT_PREFIXES = ("LC_", "SCCACHE_", "AWS_")
# Of those, the ones that change what a build makes: part of the build key.
CALLER_KEYED = ("CC", "CXX", "SOURCE_DATE_EPOCH")


def caller_environ(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's variables a build may see (``CALLER_KEPT``)."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in environ.items() if k in CALLER_KEPT or k.startswith(CALLER_KEPT_PREFIXES)}


def keyed_caller_variables() -> dict[str, str]:
    """The kept caller variables that change what is built: the build key includes them."""
    return {k: os.environ[k] for k in CALLER_KEYED if k in os.environ}  # each of them is in CALLER_KEPT


# ------------------------------------------------------------------ the process environment

def _python_env_prefixes() -> set[str]:
    """Prefixes of the Python environments the running interpreter sees besides its base installation.

    pip's isolation adds ``<tmp>/overlay`` and ``<tmp>/normal``; build and uv
    run the hooks in a temporary venv; ``--no-build-isolation`` in a venv
    runs them in the user's venv.  Their ``bin`` folders are the frontend's.
    """
    tail = re.compile(r"/lib(64)?/python\d+\.\d+/site-packages/?$")
    prefixes = {tail.sub("", real) for real in map(os.path.realpath, filter(None, sys.path)) if tail.search(real)}
    return (prefixes | {os.path.realpath(sys.prefix)}) - {os.path.realpath(sys.base_prefix)}


def clean_environ(python: Path, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The process environment a component build starts from, before the plan's variables.

    ``environ``: the caller's kept variables (``caller_environ()``, the default), with the toolchain's on top."""
    env = dict(caller_environ() if environ is None else environ)  # the allow-list: no frontend variable is kept
    frontend_bins = {os.path.join(p, "bin") for p in _python_env_prefixes()}
    kept = [p for p in env.get("PATH", "").split(os.pathsep) if p and os.path.realpath(p) not in frontend_bins]
    return {**env, "PATH": os.pathsep.join([str(python.parent), *kept]), "VIRTUAL_ENV": str(python.parent.parent)}


# ------------------------------------------------------------------ the venv

def venv_site_packages(env_dir: Path) -> Path:
    return env_dir / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


def ensure(env_dir: Path) -> Path:
    """Create the venv once; return its interpreter."""
    python = env_dir / "bin" / "python"
    if not python.exists():
        try:  # EnvBuilder makes the folder and its parents
            venv.EnvBuilder(with_pip=True, clear=True, symlinks=True).create(env_dir)
        except (OSError, subprocess.CalledProcessError) as error:
            raise BackendError(f"could not create the build environment {env_dir}: {error}") from None
    return python


def _outer_closure(names: Iterable[str]) -> dict[str, metadata.Distribution]:
    """The distributions of the running interpreter that ``names`` need, by canonical name.

    Walks each distribution's own requirements (markers evaluated, extras
    not followed), so that what a borrowed package imports comes with it.
    """
    found: dict[str, metadata.Distribution] = {}
    todo = list(names)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        found[name] = dist
        for line in dist.requires or ():
            try:
                req = Requirement(line)
            except InvalidRequirement:
                continue
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return found


def _venv_distributions(python: Path, env: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """{canonical name: (version, site folder)} of every distribution the venv's interpreter sees."""
    script = ("import json\nfrom importlib import metadata\n"
              "print(json.dumps([(d.metadata['Name'] or '', d.version, str(d.locate_file(''))) "
              "for d in metadata.distributions()]))\n")
    result = subprocess.run([str(python), "-I", "-c", script], capture_output=True, text=True, env=dict(env))
    if result.returncode != 0:
        raise BackendError(f"the build environment's interpreter {python} does not run: {result.stderr.strip()[-300:]}")
    # reversed: where two share a name, the first on the path (the one imported) is written last and stays
    return {canonicalize_name(name): (version, location)
            for name, version, location in reversed(json.loads(result.stdout))}


def _write_launchers(python: Path, dists: Iterable[metadata.Distribution]) -> list[str]:
    """Console-script launchers, and links to installed script files, in the venv's bin for borrowed distributions.

    A name the venv's bin already holds is the venv's own (pip, an installed tool) and stays: what an earlier
    build borrowed is gone by now (``_release``)."""
    written = []
    for dist in dists:
        for entry in dist.entry_points.select(group="console_scripts"):
            target = python.parent / entry.name
            if re.fullmatch(r"[\w.-]+", entry.name) and not target.exists():
                # the launcher pip writes for an entry point (module:object.attr)
                target.write_text(f"#!{python}\nimport sys\nfrom {entry.module} import {entry.attr.split('.')[0]}"
                                  f"\nsys.exit({entry.attr}())\n")
                target.chmod(0o755)
                written.append(entry.name)
        # Scripts a wheel installs as files (its .data/scripts), not as entry points: the ninja and
        # cmake wheels' native programs. The frontend's bin leaves PATH, so link them in.
        for file in dist.files or ():
            if file.parent.name not in ("bin", "Scripts") or not re.fullmatch(r"[\w.-]+", file.name):
                continue
            program = Path(str(dist.locate_file(file))).resolve()
            target = python.parent / file.name
            if program.is_file() and os.access(program, os.X_OK) and not (target.exists() or target.is_symlink()):
                target.symlink_to(program)
                written.append(file.name)
    return written


def _release(python: Path) -> None:
    """Remove what an earlier (perhaps interrupted) build borrowed."""
    (venv_site_packages(python.parent.parent) / PTH_NAME).unlink(missing_ok=True)
    record = python.parent.parent / BORROWED_SCRIPTS
    with contextlib.suppress(OSError, ValueError):  # no record (or a damaged one): no scripts to remove
        for name in json.loads(record.read_text()):
            (python.parent / name).unlink(missing_ok=True)
    record.unlink(missing_ok=True)


@contextlib.contextmanager
def borrowing(python: Path, requirements: Sequence[str], *, torch: bool) -> Iterator[list[Path]]:
    """For one build: the venv sees the outer distributions ``requirements`` (and torch) need.

    Yields the borrowed site folders.  The venv's own copy of a borrowed
    distribution is uninstalled first unless it is newer, so the frontend's
    copy is used; an older outer copy (a venv's bundled setuptools 65) leaves
    the venv's own one in place.
    """
    _release(python)
    closure = _outer_closure([Requirement(r).name for r in requirements] + (["torch"] if torch else []))
    own_site = venv_site_packages(python.parent.parent).resolve()
    skip = {Path(sysconfig.get_path(name)).resolve() for name in ("stdlib", "platstdlib")} | {own_site}
    where = {name: Path(str(dist.locate_file(""))).resolve() for name, dist in closure.items()}
    folders = list(dict.fromkeys(path for path in where.values() if path not in skip and path.is_dir()))
    borrowed = {name: closure[name] for name, location in where.items() if location in folders}

    env = clean_environ(python)
    shadowing = sorted(
        name for name, (version, location) in _venv_distributions(python, env).items()
        if name in borrowed and Path(location).resolve() == own_site
        and _not_older(borrowed[name].version, version)
    )
    if shadowing:
        result = subprocess.run([str(python), "-m", "pip", "uninstall", "-y", "-q", *shadowing],
                                env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise BackendError(f"could not remove {', '.join(shadowing)} from the build environment: "
                               f"{result.stderr.strip()[-300:]}")
        for name in shadowing:  # install_wheels must put our own wheel back later
            (python.parent.parent / "installed-wheels" / name).unlink(missing_ok=True)
    (own_site / PTH_NAME).write_text("".join(f"{p}\n" for p in folders))
    scripts = _write_launchers(python, [borrowed[name] for name in sorted(borrowed)])
    (python.parent.parent / BORROWED_SCRIPTS).write_text(json.dumps(scripts))
    try:
        yield folders
    finally:
        _release(python)


def _not_older(outer: str, own: str) -> bool:
    try:
        return Version(outer) >= Version(own)
    except InvalidVersion:
        return False


def missing_requirements(python: Path, requirements: Sequence[str]) -> list[str]:
    """Requirements the venv (with what it borrows) does not satisfy."""
    if not requirements:
        return []
    seen = _venv_distributions(python, clean_environ(python))

    def unmet(req: Requirement) -> bool:  # for this interpreter (its marker holds), and not installed as asked
        have = seen.get(canonicalize_name(req.name))
        return (not req.marker or req.marker.evaluate()) and (
            have is None or bool(req.specifier) and not req.specifier.contains(have[0], prereleases=True))
    return [line for line in requirements if unmet(Requirement(line))]


def install_requirements(python: Path, requirements: Sequence[str], *, offline: bool) -> None:
    if not (missing := missing_requirements(python, requirements)):
        return
    if offline:
        raise BackendError(
            f"offline build: the build environment lacks {', '.join(missing)}; "
            "build through pip (which installs them), or install them and use --no-build-isolation"
        )
    print(f"installing build requirements into {python.parent.parent}: {', '.join(missing)}", file=sys.stderr, flush=True)
    result = subprocess.run([str(python), "-m", "pip", "install", "-q", *missing], env=clean_environ(python))
    if result.returncode != 0:
        raise BackendError(f"could not install build requirements {', '.join(missing)} (pip exit {result.returncode})")


def install_wheels(python: Path, wheels: Sequence[Path]) -> None:
    """Put our own wheels (torch first of all) into the build environment, unless already there."""
    marks = python.parent.parent / "installed-wheels"
    found = [(wheel, marks / wheel_names.project(Path(wheel).name), sha256_file(Path(wheel))) for wheel in wheels]
    pending = [(wheel, mark, digest) for wheel, mark, digest in found
               if not (mark.exists() and mark.read_text() == digest)]  # an earlier build installed it already
    if not pending:
        return
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", "--no-index",
         *(str(w) for w, _, _ in pending)],
        env=clean_environ(python),
    )
    if result.returncode != 0:
        raise BackendError(f"could not install {', '.join(Path(w).name for w, _, _ in pending)} into the build environment")
    marks.mkdir(exist_ok=True)
    for _, mark, digest in pending:
        mark.write_text(digest)
