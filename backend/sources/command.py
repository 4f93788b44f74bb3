"""``python -m backend fetch`` and ``python -m backend lock``."""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .. import cache_marker, variants
from ..errors import BackendError
from ..report_table import table
from ..pipeline.plan import closure
from ..pipeline.layout import cache_dir
from ..settings import Settings, redact_url
from . import buildreqs
from . import fetch as fetch_mod
from .lock import Entry, Lock, load
from .nar import nar_hash
from .prepare import FetchIncomplete, fetch_all
from .unpack import extract
from .vllm_release import lock_for, lock_from_vllm


def _size(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:.1f} MB"


def _unused_sources(settings: Settings, needed: list) -> list[str]:
    """Lock entries the chosen variant and settings do not build with (Recipe.unused_sources)."""
    if settings.sm is None or settings.isa is None:
        return []  # no variant named: everything any variant could use
    variant = variants.select(settings)
    return [name for recipe in needed for name in recipe.unused_sources(variant, settings)]


def fetch_main(settings: Settings, *, lock: Lock | None = None) -> int:
    """Download and verify everything the chosen components need, into the cache."""
    lock = lock if lock is not None else lock_for(settings.vllm, settings.sources.get("vllm"))[0]
    needed = closure(settings)  # the selected components' recipes and what they depend on, in build order
    components = [recipe.name for recipe in needed]
    skip = [lock.main_entry(c).name for c in components if c in settings.sources]
    unused = _unused_sources(settings, needed)
    cache = cache_dir(settings)
    cache_marker.claim(cache)  # a cache the backend creates carries its marker (clean checks it)
    incomplete = None
    try:  # everything reachable is fetched; what is not is listed at the end, with the ways out
        paths = fetch_all(
            components, cache_dir=cache, offline=settings.offline, allow_unverified=settings.allow_unverified,
            lock=lock, skip=skip + unused, keep_going=True,
        )
    except FetchIncomplete as error:
        incomplete, paths = error, error.paths
    by_file = {p.name: p for p in paths}
    rows = []
    for component in components:
        for entry in lock.for_component(component):
            if entry.name in skip:
                rows.append([entry.name, entry.version, "local tree", "-", "-"])
                continue
            if entry.name in unused:
                rows.append([entry.name, entry.version, "not used by these settings", "-", "-"])
                continue
            path = by_file.get(entry.filename)
            if path is None:
                rows.append([entry.name, entry.version, "NOT FETCHED", "-", redact_url(entry.url)])
                continue
            check = "nar+sha256" if entry.nar and entry.sha256 else "nar" if entry.nar else "sha256" if entry.sha256 else "UNVERIFIED"
            rows.append([entry.name, entry.version, check, _size(path), str(path)])
    if incomplete is not None:
        print(table(["source", "version", "verified", "size", "file"], rows))
        raise incomplete
    if settings.build_requirements == "locked" and not settings.offline:
        folder = buildreqs.fetch(cache)
        rows.append(["build requirements", buildreqs.DEFAULT_LOCK.name, "sha256", "-", str(folder)])
    print(table(["source", "version", "verified", "size", "file"], rows))
    print(f"\n{len(paths)} file(s) in {fetch_mod.downloads_dir(cache)}; "
          f"copy that folder to the same place in the cache of an offline machine (docs/SOURCES.md).")
    return 0


def _hash_kind(entry: Entry) -> str:
    """GitHub archives are pinned by their tree (bytes may change); other files by their bytes."""
    return "nar" if "/archive/" in entry.url else "sha256"


def record_hash(text: str, name: str, key: str, value: str) -> str:
    """``text`` (the lock) with ``key = "value"`` set in table ``[source.<name>]``."""
    header = re.compile(rf'^\[source\.(?:"{re.escape(name)}"|{re.escape(name)})\]\s*$', re.M)
    match = header.search(text)
    if not match:
        raise BackendError(f"lock: no [source.{name}] table to record a hash in")
    start = match.end()
    following = re.compile(r"^\[", re.M).search(text, start)
    end = following.start() if following else len(text)
    body = text[start:end]
    line = re.compile(rf"^{key}\s*=.*$", re.M)
    if line.search(body):
        body = line.sub(f'{key} = "{value}"', body, count=1)
    else:
        body = f'\n{key} = "{value}"' + body
    return text[:start] + body + text[end:]


def lock_main(settings: Settings, lock_path: Path | None = None, *, names: Sequence[str] = ()) -> int:
    """Record hashes for lock entries that have none (downloads them; needs network)."""
    lock = load(lock_path)
    path = lock.path
    todo = [e for e in lock.entries.values() if not e.verified and (not names or e.name in names)]
    if not todo:
        print(f"every source in {path} has a hash; nothing to record")
        return 0
    if settings.offline:
        raise BackendError(f"lock: {len(todo)} source(s) without a hash ({', '.join(e.name for e in todo)}); "
                           f"recording them downloads them, which offline=true forbids")
    cache = cache_dir(settings)
    cache_marker.claim(cache)  # a cache the backend creates carries its marker (clean checks it)
    text = path.read_text(encoding="utf-8")
    for entry in todo:
        file = fetch_mod.ensure(entry, cache_dir=cache, offline=False, allow_unverified=[entry.name], verify_tree=False)
        kind = _hash_kind(entry)
        if kind == "sha256":
            value = fetch_mod.cached_sha256(file)
        else:
            scratch_root = cache / "tmp"
            scratch_root.mkdir(parents=True, exist_ok=True)
            scratch = Path(tempfile.mkdtemp(prefix=f"lock-{entry.name}-", dir=scratch_root))
            try:
                extract(file, scratch / "tree", entry.strip, max_bytes=entry.max_unpacked_bytes)
                value = nar_hash(scratch / "tree")
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            fetch_mod.write_marker(file, nar=value)
        text = record_hash(text, entry.name, kind, value)
        print(f"{entry.name} {entry.version}: {kind} = {value}", file=sys.stderr)
    path.write_text(text, encoding="utf-8")
    load(path)  # still a valid lock
    print(f"recorded {len(todo)} hash(es) in {path}; review the diff: a hash recorded here is trust on first use")
    return 0


def lock_from_vllm_main(settings: Settings, spec: str, *, output: str | None = None, mirrors: Sequence[str] = ()) -> int:
    """``lock --from-vllm``: a release's lock from vLLM's own files, and what a person must review."""
    for folder in mirrors:
        if not Path(folder).is_dir():  # read as "no mirror holds it", a typo would drop pins silently
            raise BackendError(f"lock --git-mirrors: no folder {folder}; accepted: a folder of git mirrors "
                               "(<owner>+<name>/repo or <owner>+<name>)")
    cache = cache_dir(settings)
    cache_marker.claim(cache)
    path, generated = lock_from_vllm(spec, cache_dir=cache, offline=settings.offline,
                                     output=Path(output) if output else None, mirrors=[Path(m) for m in mirrors])
    print(f"wrote {path} (vLLM {generated.release.version}, from {generated.origin})")
    for line in generated.differences:
        print(f"  differs: {line}")
    if generated.unverified:
        print(f"  unverified (no hash known here; `python -m backend lock` with network records them): "
              f"{', '.join(generated.unverified)}")
    return 0
