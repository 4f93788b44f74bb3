"""The source trees of one component's build, fetched, verified, unpacked and patched.

Layout of ``workdir`` (the pipeline's ``Layout.source_workdir``)::

    <workdir>/<entry>/            one tree per lock entry of the component
    <workdir>/<entry>/<path>/     entries with ``dest`` are placed inside another's tree
    <workdir>/.vllm-stack-prepared.json   what was prepared (its key decides reuse)
    <workdir>/local-tree/         a local checkout's per-variant copy (``prepare_for_build``)

Anything else in ``workdir`` (the pipeline's ``_build``, ``_wheels``) is left
alone.  A workdir prepared with the same key is reused as is, so incremental
builds keep their state in the trees.  ``planned_trees`` and
``planned_patches`` say beforehand where the trees will be and which patches
they get; the plan shows that, and ``prepare_for_build`` does exactly that.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ..errors import BackendError
from ..pipeline import snapshot
from . import fetch as fetch_mod
from . import patches as patches_mod
from .lock import Entry, Lock, load
from .unpack import extract

STAMP = ".vllm-stack-prepared.json"
LOCAL_TREE = "local-tree"  # where a local checkout's per-variant copy is built
STAMP_FORMAT = 1


@dataclasses.dataclass(frozen=True)
class PreparedSource:
    component: str
    root: Path  # the tree to build
    extras: dict[str, Path]  # further entries of the component, by lock entry name
    origin: str  # "lock" | "local"
    source_hash: str  # file sha256 / NAR hash of the verified main source; local: tree digest
    patches: list[tuple[str, str]]  # (patch file name, sha256) applied to root; '<entry>/<name>' to an entry's tree
    build_key: str  # hash over source_hash, extras and patches
    reused: bool = False  # the workdir was already prepared with this key


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _identity(entry: Entry, file_sha256: str) -> dict:
    return {
        "name": entry.name, "version": entry.version, "file_sha256": file_sha256, "nar": entry.nar,
        "strip": entry.strip, "dest": entry.dest,
    }


def _hash_of(entry: Entry, file_sha256: str) -> str:
    return entry.nar if entry.nar else f"sha256:{file_sha256}"


def _placement(entry: Entry, workdir: Path) -> Path:
    return workdir / entry.dest if entry.dest else workdir / entry.name


def _read_stamp(workdir: Path) -> dict:
    """The stamp of the last prepare; anything not of its shape (damaged, edited) is no stamp: unpack anew."""
    try:
        stamp = json.loads((workdir / STAMP).read_text())
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(stamp, dict):
        return {}
    trees = stamp.get("trees", [])
    if not isinstance(trees, list) or not all(isinstance(t, str) for t in trees):
        stamp["trees"] = []
    return stamp


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def _unpack_entries(entries: list[Entry], files: dict[str, Path], workdir: Path) -> None:
    """Unpack every entry, check its NAR hash in a staging folder, then move it into place."""
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=workdir))
    try:
        for entry in entries:
            tree = staging / entry.name
            print(f"unpack {entry.name} {entry.version}", file=sys.stderr, flush=True)
            try:
                extract(files[entry.name], tree, entry.strip, max_bytes=entry.max_unpacked_bytes)
                fetch_mod.check_nar(entry, files[entry.name], tree)
            except BackendError as error:
                # A damaged or wrong cached file must not stay: every later run would hit it again.
                why = str(error).removeprefix(f"source {entry.name} {entry.version}: ")
                raise fetch_mod.discard(entry, files[entry.name], why) from None
            target = _placement(entry, workdir)
            if entry.dest:
                parent_root = workdir / entry.parent
                if not parent_root.is_dir():
                    raise BackendError(f"source {entry.name}: dest {entry.dest!r}: {entry.parent} is not prepared")
                if target.is_symlink() or (target.exists() and not target.is_dir()):
                    raise BackendError(f"source {entry.name}: dest {entry.dest!r} exists and is not a folder")
                if target.is_dir():
                    if any(target.iterdir()):
                        print(f"note: {entry.dest} was not empty; replaced by {entry.name}", file=sys.stderr)
                    shutil.rmtree(target)
                target.parent.mkdir(parents=True, exist_ok=True)
            tree.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def prepare(
    component: str,
    *,
    cache_dir: Path,
    workdir: Path,
    offline: bool = False,
    allow_unverified: Sequence[str] = (),
    local: Path | None = None,
    lock: Lock | None = None,
    base_url_override: str | None = None,
    patches_dir: Path | None = None,
    patch_local: bool = False,
    unused: Sequence[str] = (),
) -> PreparedSource:
    """Fetch (or take from the cache), verify, unpack, place and patch a component's sources.

    ``local``: a tree to build in place (``-C source.<component>=PATH``); the
    lock's main entry is then not used and no patch is applied to it.  The
    other entries of the component (vLLM's CUTLASS...) still come from the lock.
    ``unused``: entries this build does not use (``Recipe.unused_sources``).
    ``patch_local``: the caller applies the patches to ``local`` (a copy of
    the user's checkout), so no note is printed.
    """
    lock = lock if lock is not None else load()
    cache_dir = Path(cache_dir)
    workdir = Path(workdir)
    main = lock.main_entry(component)
    entries = lock.for_component(component)
    wanted = _wanted(lock, component, local=local is not None, unused=unused)

    files: dict[str, Path] = {}
    identities = []
    for entry in wanted:
        path = fetch_mod.ensure(
            entry, cache_dir=cache_dir, offline=offline, allow_unverified=allow_unverified,
            base_url_override=base_url_override, verify_tree=False,
        )
        files[entry.name] = path
        identities.append(_identity(entry, fetch_mod.cached_sha256(path)))

    # another release line's patches (a When: naming other releases) are not this tree's (docs/RELEASES.md)
    patch_files = patches_mod.for_release(patches_mod.collect(component, patches_dir), main.version) if local is None else []
    patch_list = [(p.name, digest) for p, digest in patch_files]
    entry_patches = _entry_patches(component, entries, wanted, patches_dir)
    patch_list += [(f"{name}/{p.name}", digest) for name, files in entry_patches.items() for p, digest in files]
    workdir_key = _digest({"format": STAMP_FORMAT, "component": component, "entries": identities, "patches": patch_list})

    if local is not None:
        local = Path(local)
        if not local.is_dir():
            raise BackendError(f"source.{component}: {local} is not a folder")
        if not patch_local and patch_files_exist(component, patches_dir):
            print(f"note: {component}: building the local tree {local} as is; patches/{component}/ is not applied to it",
                  file=sys.stderr)
        root = local
        source_hash = snapshot.tree_digest(local, exclude=workdir)
        origin = "local"
    else:
        root = workdir / main.name
        source_hash = _hash_of(main, identities[0]["file_sha256"])
        origin = "lock"

    extras = {e.name: _placement(e, workdir) for e in wanted if e is not main}
    build_key = _digest({"source": source_hash, "origin": origin, "extras": [i for i in identities if i["name"] != main.name],
                         "patches": patch_list})

    stamp = _read_stamp(workdir)
    placed = [_placement(e, workdir) for e in wanted]
    if stamp.get("key") == workdir_key and all(p.is_dir() for p in placed):
        return PreparedSource(component, root, extras, origin, source_hash, patch_list, build_key, reused=True)

    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / STAMP).unlink(missing_ok=True)
    previous = set(stamp.get("trees", [])) | {e.name for e in wanted if not e.dest}
    for name in previous:
        if "/" not in name and not name.startswith((".", "_")) and name != LOCAL_TREE:
            _remove(workdir / name)

    _unpack_entries(wanted, files, workdir)

    applied: list[tuple[str, str]] = []
    if local is None:
        applied = patches_mod.apply(root, component, patches_dir, version=main.version)
    by_name = {e.name: e for e in wanted}
    for name in entry_patches:
        done = patches_mod.apply(_placement(by_name[name], workdir), component, patches_dir, entry=name,
                                 version=by_name[name].version)
        applied += [(f"{name}/{file}", digest) for file, digest in done]
    if applied != patch_list:
        raise BackendError(f"patches/{component} changed while being applied; run again")

    (workdir / STAMP).write_text(json.dumps({
        "format": STAMP_FORMAT, "key": workdir_key, "component": component, "origin": origin,
        "trees": sorted(e.name for e in wanted if not e.dest), "entries": identities, "patches": patch_list,
        "build_key": build_key, "source_hash": source_hash,
    }, indent=1))
    return PreparedSource(component, root, extras, origin, source_hash, patch_list, build_key)


def _wanted(lock: Lock, component: str, *, local: bool, unused: Sequence[str]) -> list[Entry]:
    """The lock entries a build of the component prepares: a local tree replaces the main one and what completes it."""
    main = lock.main_entry(component)
    entries = lock.for_component(component)
    wanted = [e for e in entries[1:] if not e.completes_main] if local else entries
    wanted = [e for e in wanted if e.name not in unused]
    if local and any(e.parent == main.name for e in wanted):
        names = ", ".join(e.name for e in wanted if e.parent == main.name)
        raise BackendError(f"source.{component}: the lock places {names} inside {main.name}'s tree; "
                           f"put them into your local tree yourself and remove them from the lock")
    return wanted


def planned_trees(component: str, *, workdir: Path, local: bool, unused: Sequence[str] = (),
                  lock: Lock | None = None) -> tuple[Path, dict[str, Path]]:
    """Where ``prepare_for_build`` puts the tree that is built and the component's other lock entries.

    A local tree is built from its per-variant copy (``<workdir>/local-tree``):
    builds write into their tree, and patches must not touch the checkout.
    """
    lock = lock if lock is not None else load()
    workdir = Path(workdir)
    main = lock.main_entry(component)
    root = workdir / LOCAL_TREE if local else _placement(main, workdir)
    wanted = _wanted(lock, component, local=local, unused=unused)
    return root, {e.name: _placement(e, workdir) for e in wanted if e is not main}


def planned_patches(component: str, *, local: Path | None, tree_version: str | None, unused: Sequence[str] = (),
                    lock: Lock | None = None, patches_dir: Path | None = None,
                    no_version_why: str = "") -> list[patches_mod.PatchDecision]:
    """Every patch a build of the component meets, whether it is applied and why (the plan shows these).

    A locked tree and the lock entries beside a local tree get all of theirs;
    a local tree those its version and its files take (``patches.decide_local``).
    """
    lock = lock if lock is not None else load()
    main = lock.main_entry(component)
    if local is None:
        decisions = patches_mod.decide_locked(component, main.version, patches_dir, release_line=lock.release_line,
                                              other_lines=lock.other_lines.get(main.name, ()))
    else:
        decisions = patches_mod.decide_local(component, Path(local), tree_version, main.version, patches_dir,
                                             no_version_why=no_version_why)
    wanted = _wanted(lock, component, local=local is not None, unused=unused)
    by_name = {e.name: e for e in wanted}
    for name in _entry_patches(component, lock.for_component(component), wanted, patches_dir):
        decisions += patches_mod.decide_locked(component, by_name[name].version, patches_dir, entry=name,
                                               release_line=lock.release_line,
                                               other_lines=lock.other_lines.get(name, ()))
    return decisions


def prepare_for_build(
    component: str,
    *,
    cache_dir: Path,
    workdir: Path,
    patches: Sequence[patches_mod.PatchDecision],
    local: Path | None = None,
    offline: bool = False,
    allow_unverified: Sequence[str] = (),
    unused: Sequence[str] = (),
    patches_dir: Path | None = None,
    lock: Lock | None = None,
) -> PreparedSource:
    """The trees of one planned build, with exactly the planned ``patches`` (``planned_patches``) applied.

    A local checkout is copied to ``<workdir>/local-tree`` (``pipeline/snapshot.py``) and
    the planned patches of its main tree are applied to the copy.  Patch files
    that changed since the plan stop the build.
    """
    planned = [(d.name, d.sha256) for d in patches if d.applied]
    if local is None:
        prepared = prepare(component, cache_dir=cache_dir, workdir=workdir, offline=offline,
                           allow_unverified=allow_unverified, unused=unused, patches_dir=patches_dir, lock=lock)
        if prepared.patches != planned:
            raise BackendError(f"patches/{component} changed since the plan was made; run again")
        return prepared
    prepared = prepare(component, cache_dir=cache_dir, workdir=workdir, offline=offline, lock=lock,
                       allow_unverified=allow_unverified, local=local, patch_local=True, unused=unused,
                       patches_dir=patches_dir)
    copy = Path(workdir) / LOCAL_TREE
    copied = snapshot.sync(Path(local), copy)
    # The hash of what was copied, i.e. of what is built (the checkout may have changed since it was hashed).
    built_hash = snapshot.copy_digest(copy, copied)
    if built_hash != prepared.source_hash:
        prepared = dataclasses.replace(prepared, source_hash=built_hash,
                                       build_key=_digest({"was": prepared.build_key, "copied": built_hash}))
    main_tree = [d for d in patches if d.applied and "/" not in d.name]
    for decision in main_tree:
        if not decision.path.is_file() or hashlib.sha256(decision.path.read_bytes()).hexdigest() != decision.sha256:
            raise BackendError(f"patches/{component}/{decision.name} changed since the plan was made; run again")
    applied = patches_mod.apply_files(copy, [(d.path, d.sha256) for d in main_tree], component)
    if applied + prepared.patches != planned:
        raise BackendError(f"patches/{component} changed since the plan was made; run again")
    key = hashlib.sha256(json.dumps([prepared.build_key, applied]).encode()).hexdigest()[:32]
    return dataclasses.replace(prepared, root=copy, patches=applied + prepared.patches, build_key=key)


def _entry_patches(component: str, entries: list[Entry], wanted: list[Entry], patches_dir: Path | None) -> dict:
    """patches/<component>/<entry>/*.patch of the entries being prepared; a folder naming no lock entry is an error."""
    known = {e.name for e in entries}
    preparing = {e.name for e in wanted}
    found = {}
    for name in patches_mod.entry_folders(component, patches_dir):
        if name not in known:
            raise BackendError(
                f"patches/{component}/{name}/ names no lock entry of {component} "
                f"(entries: {', '.join(sorted(known))})"
            )
        if name in preparing:
            version = next(e.version for e in wanted if e.name == name)
            found[name] = patches_mod.for_release(patches_mod.collect(component, patches_dir, name), version)
    return found


def patch_files_exist(component: str, patches_dir: Path | None = None) -> bool:
    return bool(patches_mod.collect(component, patches_dir))


def missing_offline(component: str, *, cache_dir: Path, local: bool, unused: Sequence[str] = (),
                    lock: Lock | None = None) -> list[Entry]:
    """The lock entries a build of ``component`` would prepare that are not in the cache's downloads/."""
    lock = lock if lock is not None else load()
    return [e for e in _wanted(lock, component, local=local, unused=unused)
            if not fetch_mod.cache_path(e, Path(cache_dir)).is_file()]


class FetchIncomplete(BackendError):
    """``fetch_all(keep_going=True)``: what could not be downloaded (the message), what could (``paths``)."""

    def __init__(self, message: str, paths: list[Path]):
        super().__init__(message)
        self.paths = paths


def fetch_all(
    components: Sequence[str],
    *,
    cache_dir: Path,
    offline: bool,
    allow_unverified: Sequence[str] = (),
    lock: Lock | None = None,
    base_url_override: str | None = None,
    skip: Sequence[str] = (),
    keep_going: bool = False,
) -> list[Path]:
    """Download and verify (file hash and NAR hash) every source the components need.

    ``skip``: entry names not to fetch (the main entry of a component built from a local tree).
    Offline, this checks that everything is already in the cache.  ``keep_going`` (``python -m backend
    fetch``): a source the network does not give does not stop the others; at the end one error lists
    every one of them with its URL, and the ways out.
    """
    lock = lock if lock is not None else load()
    paths: list[Path] = []
    seen: set[str] = set()
    missing: list[str] = []
    unreachable: list[str] = []
    for component in components:
        entries = lock.for_component(component)
        if not entries:
            lock.main_entry(component)  # raises with the list of known components
        for entry in entries:
            if entry.name in seen or entry.name in skip:
                continue
            seen.add(entry.name)
            try:
                paths.append(fetch_mod.ensure(
                    entry, cache_dir=Path(cache_dir), offline=offline, allow_unverified=allow_unverified,
                    base_url_override=base_url_override, verify_tree=True,
                ))
            except fetch_mod.Unreachable as exc:
                if not keep_going:
                    raise
                why = str(exc).split("; ")[0].removeprefix(f"download of {entry.name} {entry.version} ")
                unreachable.append(f"{entry.name} {entry.version} ({why})")
                print(f"   not fetched: {entry.name} {entry.version}: {why}", file=sys.stderr, flush=True)
            except BackendError as exc:
                if offline and str(exc).startswith("offline:"):
                    missing.append(entry.name)
                    continue
                raise
    if unreachable:
        raise FetchIncomplete(
            f"fetch: {len(unreachable)} of {len(seen)} source(s) could not be downloaded: {'; '.join(unreachable)}; "
            f"the other {len(paths)} are verified in {fetch_mod.downloads_dir(Path(cache_dir))}; "
            f"{fetch_mod.ways_out(Path(cache_dir))}", paths)
    if missing:
        where = fetch_mod.downloads_dir(Path(cache_dir))
        raise BackendError(
            f"offline: {len(missing)} source(s) not in the cache: {', '.join(missing)}; "
            f"run `python -m backend fetch` with network and copy its downloads/ to {where} "
            f"(docs/SOURCES.md, 'Air-gapped builds')"
        )
    return paths
