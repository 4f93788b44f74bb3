"""``patches/<component>/*.patch``, applied in name order with the ``patch`` program.

``patches/<component>/<lock entry>/*.patch`` apply to that lock entry's tree
instead (vLLM's flash-attention, say, which is a tree of its own beside vLLM's).

Each patch says which releases it is for, as Spack's ``patch(..., when="@0.49.1")``
does: a ``When:`` line in its header holds a PEP 440 specifier set
(``When: ==0.49.1``, ``When: >=0.15.1,<0.16``), or ``==<commit>`` for a tree
the lock pins by commit.  A patch without one is for the release the lock
pins.  A locked tree gets every patch, and one whose ``When:`` excludes the
locked release is an error in the repository.  A local tree
(``source.<component>``) gets a patch only when its own version matches and
the patch fits (``decide_local``); otherwise the plan and the manifest say
why not.

Each patch is first tried with ``--dry-run`` and applied only when it fits
exactly (``--fuzz=0``), so a failing patch leaves the tree as it was and the
error names the patch file, the file it patches and the failing hunk.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import shutil
import subprocess
from collections.abc import Collection
from pathlib import Path

from ..errors import BackendError
from .lock import PROJECT_ROOT

PATCHES_ROOT = PROJECT_ROOT / "patches"
EXACT = re.compile(r"==\s*([0-9A-Za-z._+!-]+)")  # one release (or commit), exactly
WHEN_LINE = re.compile(r"^When:[ \t]*(.*?)[ \t]*$", re.MULTILINE)
PLAIN_RELEASE = re.compile(r"\d+(?:\.\d+)*")
SIMPLE_CLAUSE = re.compile(r"\s*(==|!=|>=|<=|>|<)\s*(\d+(?:\.\d+)*)\s*")  # one clause on a plain release


@dataclasses.dataclass(frozen=True)
class PatchDecision:
    """One patch of a step, whether it is applied and why: what the plan shows and the manifest keeps."""

    name: str  # file name; "<entry>/<file name>" for a lock entry's tree
    sha256: str
    when: str  # the releases it is for, as its When: line says (or the locked release)
    applied: bool
    why: str
    path: Path

    def to_json(self) -> dict:
        return {"patch": self.name, "sha256": self.sha256, "when": self.when, "applied": self.applied, "why": self.why}


def when_of(path: Path) -> str | None:
    """The ``When:`` of a patch's header (the text before its first ``--- ``), or None."""
    text = path.read_text(errors="replace")
    header = text.split("\n--- ", 1)[0] if not text.startswith("--- ") else ""
    found = WHEN_LINE.findall(header)
    if len(found) > 1:
        raise BackendError(f"patch {_shown(path)} has {len(found)} When: lines; accepted: one")
    if found and not found[0]:
        raise BackendError(f"patch {_shown(path)}: an empty When: line; accepted: a PEP 440 specifier set such as ==0.49.1")
    return found[0] if found else None


def _release(version: str) -> tuple[int, ...] | None:
    return tuple(int(part) for part in version.split(".")) if PLAIN_RELEASE.fullmatch(version) else None


def _compare(have: tuple[int, ...], op: str, want: tuple[int, ...]) -> bool:
    width = max(len(have), len(want))  # 0.15 == 0.15.0, as PEP 440 pads releases
    have, want = have + (0,) * (width - len(have)), want + (0,) * (width - len(want))
    return {"==": have == want, "!=": have != want, ">=": have >= want, "<=": have <= want,
            ">": have > want, "<": have < want}[op]


def matches(when: str, version: str) -> bool:
    """Whether ``version`` is one of the releases ``when`` names (a PEP 440 specifier set, or ``==<commit>``)."""
    exact = EXACT.fullmatch(when)
    if exact and exact.group(1) == version:  # the usual case, and no packaging needed (plan runs on a bare Python)
        return True
    if exact and (_release(exact.group(1)) is None or _release(version) is None):
        return False  # a commit, or a release against a commit: only the same text is the same
    clauses = [SIMPLE_CLAUSE.fullmatch(part) for part in when.split(",")]
    if _release(version) is not None and all(clauses):  # plain releases (>=0.14.0,<0.15): no packaging either
        return all(_compare(_release(version), c.group(1), _release(c.group(2))) for c in clauses)
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import InvalidVersion, Version

    try:
        wanted = SpecifierSet(when)
        return wanted.contains(Version(version), prereleases=True)
    except (InvalidSpecifier, InvalidVersion):
        return when.replace(" ", "") == f"=={version}"


def _shown(path: Path) -> Path:
    return path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path


def _check_when(when: str, path: Path) -> None:
    if EXACT.fullmatch(when) or all(SIMPLE_CLAUSE.fullmatch(part) for part in when.split(",")):
        return
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        SpecifierSet(when)
    except InvalidSpecifier:
        raise BackendError(
            f"patch {_shown(path)}: When: {when!r} is not a release condition; accepted: a PEP 440 specifier "
            "set such as ==0.49.1 or >=0.15.1,<0.16, or ==<commit>"
        ) from None


def decide_locked(component: str, locked_version: str, root: Path | None = None,
                  entry: str | None = None, release_line: str | None = None,
                  other_lines: Collection[str] = ()) -> list[PatchDecision]:
    """Every patch of a locked tree, applied: one written for another release is an error here, not a skip.

    ``release_line``: the lock is another vLLM release line's (-C vllm); a patch written for the versions of
    the hand-written lock is then not applied, and the plan says why (docs/RELEASES.md).  ``other_lines``:
    the versions the other release lines pin of this tree; in the hand-written line a patch for one of those
    is that line's and is left out (its plan stays as it was before the lines had patches of their own).
    """
    decisions = []
    for path, digest in collect(component, root, entry):
        declared = when_of(path)
        when = declared or f"=={locked_version}"
        if declared is not None:
            _check_when(declared, path)
            if not matches(declared, locked_version) and not release_line and any(
                    matches(declared, version) for version in other_lines):
                continue
            if not matches(declared, locked_version) and release_line:
                decisions.append(PatchDecision(
                    f"{entry}/{path.name}" if entry else path.name, digest, declared, False,
                    f"it is for {entry or component} {declared} and vllm={release_line}'s lock pins {locked_version}",
                    path))
                continue
            if not matches(declared, locked_version):
                raise BackendError(
                    f"patch {_shown(path)} is for {entry or component} {declared}, but the lock pins "
                    f"{locked_version}: update the patch and its When: line, or remove it"
                )
        name = f"{entry}/{path.name}" if entry else path.name
        decisions.append(PatchDecision(name, digest, when, True, f"the locked release {locked_version}", path))
    return decisions


def decide_local(component: str, checkout: Path, tree_version: str | None, locked_version: str,
                 root: Path | None = None, no_version_why: str = "") -> list[PatchDecision]:
    """Which of the component's patches a local checkout gets: its version must match, the patch must fit.

    The fit is tried with ``--dry-run`` on the checkout itself (nothing is
    written); the engine applies the chosen ones to its per-variant copy.
    ``no_version_why``: why the checkout states no version (the reason shown then).
    """
    decisions = []
    for path, digest in collect(component, root):
        declared = when_of(path)
        if declared is not None:
            _check_when(declared, path)
        when = declared or f"=={locked_version}"
        if tree_version is None:
            applied, why = False, f"it is for {component} {when} and this tree states no version" + (
                f" ({no_version_why})" if no_version_why else "")
        elif not matches(when, tree_version):
            applied, why = False, f"it is for {component} {when} and this tree is {tree_version}"
        else:
            problem = _dry_run(path, checkout)
            applied = problem is None
            why = (f"it is for {component} {when}, this tree is {tree_version}, and it fits" if applied
                   else f"this tree is {tree_version} but the patch does not fit it: {problem}")
        decisions.append(PatchDecision(path.name, digest, when, applied, why, path))
    return decisions


def collect(component: str, root: Path | None = None, entry: str | None = None) -> list[tuple[Path, str]]:
    """The patch files of the component's main tree (or of its lock ``entry``) in the order they apply, with their sha256."""
    folder = Path(root or PATCHES_ROOT) / component
    if entry is not None:
        folder = folder / entry
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob("*.patch"), key=lambda p: p.name):
        if not path.is_file():  # a FIFO blocks the reading for ever, a device never ends
            raise BackendError(f"patch {_shown(path)} is not a regular file; accepted: regular .patch files")
        data = path.read_bytes()
        if _CREATES_LINK.search(data):
            raise BackendError(f"patch {_shown(path)} creates a symbolic link (git mode 120000), which the "
                               "unpacker's checks would not see; accepted: patches of regular files")
        found.append((path, hashlib.sha256(data).hexdigest()))
    return found


# git's extended header for a symlink; GNU patch 2.7 creates the link from it
_CREATES_LINK = re.compile(rb"^(?:new file mode|new mode) 120000\s*$", re.MULTILINE)


def _patch_program() -> str:
    program = shutil.which("patch")
    if not program:
        raise BackendError("the 'patch' program is needed to apply patches/; install it (Debian: apt-get install patch)")
    return program


def _describe_failure(output: str) -> str:
    current = None
    failures = []
    missing = None
    for line in output.splitlines():
        match = re.match(r"(?:checking|patching) file (.+)", line)
        if match:
            current = match.group(1).strip().strip("'\"")
            continue
        match = re.match(r"Hunk #(\d+) FAILED at (\d+)", line)
        if match:
            failures.append(f"hunk #{match.group(1)} of {current or '?'} (at line {match.group(2)})")
            continue
        if "can't find file to patch" in line:
            missing = "a file it patches does not exist"
        if "Reversed (or previously applied) patch detected" in line:
            failures.append(f"{current or 'a file'} looks already patched")
    if failures:
        return "failed: " + ", ".join(failures)
    if missing:
        return missing
    tail = [l for l in output.strip().splitlines() if l.strip()]
    return tail[-1] if tail else "patch failed"


def _run(args: list[str], tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=tree, capture_output=True, text=True, stdin=subprocess.DEVNULL)


def entry_folders(component: str, root: Path | None = None) -> list[str]:
    """The lock entries of the component that have patches of their own (sub-folders of patches/<component>/)."""
    folder = Path(root or PATCHES_ROOT) / component
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and any(p.glob("*.patch")))


def _patch_command(path: Path) -> list[str]:
    return [_patch_program(), "-p1", "--forward", "--batch", "--fuzz=0", "--no-backup-if-mismatch", "-i", str(path)]


def _dry_run(path: Path, tree: Path) -> str | None:
    """Why the patch does not fit ``tree``, or None when it does."""
    check = _run(_patch_command(path) + ["--dry-run"], tree)
    return None if check.returncode == 0 else _describe_failure(check.stdout + check.stderr)


def apply(tree: Path, component: str, root: Path | None = None, entry: str | None = None,
          version: str | None = None) -> list[tuple[str, str]]:
    """Apply the component's patches (or its lock ``entry``'s) to ``tree``; returns (file name, sha256) of each.
    ``version``: the tree's release; a patch whose When: names others is another release line's, not applied."""
    return apply_files(tree, for_release(collect(component, root, entry), version), entry or component)


def for_release(found: list[tuple[Path, str]], version: str | None) -> list[tuple[Path, str]]:
    """The patches (``collect``'s) for ``version``: those without a When: and those whose When: names it."""
    if version is None:
        return found
    return [(path, digest) for path, digest in found if (when := when_of(path)) is None or matches(when, version)]


def apply_files(tree: Path, patches: list[tuple[Path, str]], what: str) -> list[tuple[str, str]]:
    """Apply these (patch file, sha256) in order; the first that does not fit stops with a one-line error."""
    applied = []
    for path, digest in patches:
        problem = _dry_run(path, tree)
        if problem is not None:
            raise BackendError(f"patch {_shown(path)} does not apply to {what}: {problem}")
        done = _run(_patch_command(path) + ["--reject-file=-"], tree)
        if done.returncode != 0:
            raise BackendError(f"patch {path.name} failed after a clean dry run: {_describe_failure(done.stdout + done.stderr)}")
        applied.append((path.name, digest))
    return applied
