"""A local checkout's own version: its version file, or what setuptools-scm derives from its git tags.

Which patches a ``source.<component>`` tree gets, and the version its wheel is
stamped with, follow from this (``Recipe.tree_version``).  Two ways a
checkout states its version, each a recipe field:

* a **version file** (``version_file``): ``version.txt`` (the version on its
  first line), or a Python module that assigns ``__version__``, including the
  chained form setuptools-scm writes (``__version__ = version = '0.16.0'``,
  vLLM's ``vllm/_version.py`` in its sdists and in a checkout built once);
* **git tags, as setuptools-scm reads them** (``version_from_git_tags``): a
  tree that is the top of a git work tree is described with setuptools-scm's
  own command, ``git describe --dirty --tags --long --match *[0-9]*``, and the
  result is turned into a version by its default ``guess-next-dev`` scheme: a
  clean checkout at tag ``v0.15.1`` is ``0.15.1``; 5 commits later, or with
  local changes to tracked files, it is ``0.15.2.dev5`` / ``0.15.2.dev0``.  The
  scheme is setuptools-scm's own; running git is ours (below: its runner would
  let the tree's ``core.fsmonitor`` run).  The local part (``+g<hash>.d<date>``) is
  dropped: the build stamps its own label.
  In a git checkout the tags win over a ``_version.py`` left by an earlier
  build, as with setuptools-scm.

A checkout without release tags (a shallow clone of a branch) states no
version here, where setuptools-scm would invent ``0.1.dev<N>``.  Version
override variables (``SETUPTOOLS_SCM_*``, ``VLLM_VERSION_OVERRIDE``) are not
read (setuptools-scm gets an environment without them): the recipe sets them for the build
from this answer, and the user's environment must not decide which patches a
tree gets.  git runs with argument lists only, without optional locks (a plan
never writes the user's index), and any repository-redirecting ``GIT_*``
variable of the caller is dropped.

Reading a version never runs code of the tree (issue 29): git is pointed at
the tree's own ``.git`` folder and work tree explicitly (a ``.git`` *file*,
``gitdir: elsewhere``, or a ``commondir`` would let another repository decide
the version and the patches, so such a tree states no version from git), no
``GIT_*`` variable of the caller and no system or global config is read, and
every configuration that makes ``git describe --dirty`` start a program or
write a file is overridden on its command line: ``core.fsmonitor`` (a hook
run on every index refresh), each filter driver the repository's config
names (``filter.<driver>.clean``/``process``, run on files whose stat
changed), hooks and trace2 targets.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import warnings
from pathlib import Path

# setuptools-scm's defaults (vcs_versioning's DEFAULT_DESCRIBE and DEFAULT_TAG_REGEX), which vLLM does not change
DESCRIBE = ["describe", "--dirty", "--tags", "--long", "--abbrev=40", "--match", "*[0-9]*"]
DESCRIBED = re.compile(r"^(?P<tag>.+)-(?P<distance>\d+)-g(?P<node>[0-9a-f]+)(?P<dirty>-dirty)?$")
SETUPTOOLS_SCM = "setuptools-scm>=10,<11"
# `__version__ = "1.2"`, and setuptools-scm's `__version__ = version = '0.16.0'`
ASSIGNED = re.compile(r"""^__version__\s*=\s*(?:[A-Za-z_]\w*\s*=\s*)*["']([^"']+)["']""", re.MULTILINE)
GIT_TIMEOUT_S = 30
# Overrides on git's command line (they win over the repository's config): nothing of the tree runs.
GIT_SAFE = ("-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null", "-c", "core.untrackedCache=false",
            "-c", "trace2.normalTarget=", "-c", "trace2.perfTarget=", "-c", "trace2.eventTarget=")


@dataclasses.dataclass(frozen=True)
class Stated:
    """What a checkout says its version is: the public version, or None and why there is none."""

    version: str | None
    why_none: str = ""


def stated(tree: Path, version_file: str | None = None, from_git_tags: bool = False) -> Stated:
    """The public version the checkout at ``tree`` states, or why it states none (the plan shows that)."""
    tree = Path(tree)
    dot_git = tree / ".git"
    if from_git_tags and dot_git.is_dir() and not dot_git.is_symlink():  # the top of a work tree, its own repository
        return from_git(tree)
    if from_git_tags and (dot_git.exists() or dot_git.is_symlink()) and not version_file:
        return Stated(None, "its .git is not a folder of its own (a link, or a file naming another repository): "
                      "its version is not read from git")
    if version_file:
        return from_file(tree / version_file, version_file)
    return Stated(None, "its recipe reads no version from a checkout")


def from_file(path: Path, shown: str | None = None) -> Stated:
    """version.txt's first line, or the ``__version__`` a Python module assigns."""
    shown = shown or path.name
    try:
        content = path.read_text()
    except FileNotFoundError:
        return Stated(None, f"it has no {shown}")
    except (OSError, UnicodeDecodeError) as exc:
        return Stated(None, f"{shown} cannot be read: {exc.strerror or exc}" if isinstance(exc, OSError)
                      else f"{shown} is not text")
    assigned = ASSIGNED.search(content)
    lines = content.strip().splitlines()
    text = assigned.group(1) if assigned else (lines[0].strip() if lines else "")
    version = _public(text)
    return Stated(version, "" if version else f"{shown} states no version that PEP 440 reads ({text[:40]!r})")


def from_git(tree: Path) -> Stated:
    """What setuptools-scm's default scheme makes of ``git describe``; None without git or a release tag."""
    git = shutil.which("git")
    if git is None:
        return Stated(None, "it is a git checkout, whose version its tags give, and git is not installed")
    dot_git = tree / ".git"
    if (dot_git / "commondir").exists():
        return Stated(None, "its .git names another repository (a commondir file): its version is not read from git")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_TERMINAL_PROMPT="0")
    base = [git, "--no-optional-locks", f"--git-dir={dot_git}", f"--work-tree={tree}", *GIT_SAFE]
    try:
        filters = _filter_overrides(base, env)
        done = subprocess.run([*base, *filters, *DESCRIBE], capture_output=True,
                              text=True, env=env, stdin=subprocess.DEVNULL, timeout=GIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return Stated(None, f"git describe took over {GIT_TIMEOUT_S} s")
    except OSError as exc:
        return Stated(None, f"git could not run: {exc}")
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        if any("No names found" in line or "No tags can describe" in line for line in lines):
            return Stated(None, "its git history has no release tag: a shallow clone needs git fetch --tags")
        return Stated(None, "git describe failed: " + (lines[-1].strip() if lines else f"exit {done.returncode}"))
    described = done.stdout.strip()
    try:
        version = version_of_description(described, tree)
    except ImportError:
        return Stated(None, f"it is a git checkout, whose version its tags give as setuptools-scm reads them, "
                      f"and setuptools-scm is not installed: pip install '{SETUPTOOLS_SCM}'")
    return Stated(version, "" if version else f"its nearest tag ({described}) is not a release version")


def _filter_overrides(base: list[str], env: dict[str, str]) -> list[str]:
    """``-c filter.<driver>.clean=`` (and process, smudge) for every driver the repository's config names:
    an empty command is no filter, so describe's index refresh hashes the files as they are."""
    listed = subprocess.run([*base, "config", "--null", "--name-only", "--includes", "--list"], capture_output=True,
                            env=env, stdin=subprocess.DEVNULL, timeout=GIT_TIMEOUT_S)
    drivers = sorted({name.rsplit(".", 1)[0] for name in listed.stdout.decode(errors="replace").split("\0")
                      if name.lower().startswith("filter.") and name.count(".") >= 2})
    return [arg for driver in drivers for key in ("clean", "smudge", "process")
            for arg in ("-c", f"{driver}.{key}=")] + [
            arg for driver in drivers for arg in ("-c", f"{driver}.required=false")]


def version_of_description(described: str, tree: Path) -> str | None:
    """``v0.15.1-0-g<node>`` -> 0.15.1; ``v0.15.1-5-g<node>`` -> 0.15.2.dev5; ``...-dirty`` is not exact."""
    # Not at the top: plan runs on a bare interpreter (backend/needs.py), and only a git checkout needs it.
    from setuptools_scm.version import format_version, meta, tag_to_version
    from vcs_versioning import VcsEnvironment  # setuptools-scm 10's core, installed with it

    found = DESCRIBED.match(described)
    if found is None:
        return None
    own = {k: v for k, v in os.environ.items() if not k.startswith(("SETUPTOOLS_SCM_", "VCS_VERSIONING_"))}
    config = VcsEnvironment.from_env("SETUPTOOLS_SCM", env=own).build_config_from_data(
        relative_to=tree / "pyproject.toml", data={"version_scheme": "guess-next-dev", "local_scheme": "no-local-version"})
    with warnings.catch_warnings():  # "tag ... no version found": the plan says why instead
        warnings.simplefilter("ignore")
        tag = tag_to_version(found.group("tag"), config)
    if tag is None:
        return None
    scm = meta(tag, distance=int(found.group("distance")), dirty=bool(found.group("dirty")),
               node="g" + found.group("node"), config=config)
    return _public(format_version(scm))


def _public(text: str) -> str | None:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(text).public
    except InvalidVersion:
        return None
