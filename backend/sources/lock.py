"""The source lock: every tree the stack is built from, pinned by hash.

``third_party/sources.lock`` is TOML, one table per source::

    [source.vllm-cutlass]
    component = "vllm"            # the component whose build uses it
    version = "4.2.1"
    url = "https://github.com/NVIDIA/cutlass/archive/refs/tags/v4.2.1.tar.gz"
    nar = "sha256-..."            # NAR hash of the unpacked tree (GitHub archives)
    # sha256 = "<hex>"            # or/and: hash of the downloaded file (PyPI files)
    strip = 1                     # leading path components dropped when unpacking
    # dest = "flashmla/csrc/cutlass"   # placed inside another entry's tree
    # filename = "cutlass-v4.2.1.tar.gz"  # cache file name (entries may share one)
    # main = true                 # the tree that is built (default: name == component)
    # max_mb = 100                # a download larger than this is refused (default 4096)
    # max_unpacked_mb = 1000      # an unpacked tree larger than this is refused (default 16384)
    why = "..."                   # free text: where the pin comes from

A test (or a mirror) uses its own lock file: ``load(path)``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from .. import toml
from ..errors import BackendError
from . import nar as nar_mod

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_LOCK = PROJECT_ROOT / "third_party" / "sources.lock"
LOCK_FORMAT = 1

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")
_KNOWN_KEYS = {
    "component", "version", "url", "sha256", "nar", "strip", "dest", "filename", "main", "why",
    "max_mb", "max_unpacked_mb", "completes_main",
}
# Generous ceilings for an entry that names none: larger than any source of the
# stack (torch's release asset with its submodules is the largest), small
# enough that a hostile mirror or archive cannot fill the disk.
DEFAULT_MAX_MB = 4096
DEFAULT_MAX_UNPACKED_MB = 16384
MB = 1_000_000


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str
    component: str
    version: str
    url: str
    sha256: str | None = None  # hex digest of the downloaded file
    nar: str | None = None  # SRI NAR hash of the unpacked (stripped) tree
    strip: int = 1
    dest: str | None = None  # None: its own tree; else "<entry>/<relative path>"
    filename: str = ""
    main: bool = False
    why: str = ""
    max_mb: int = DEFAULT_MAX_MB  # a larger download is refused
    max_unpacked_mb: int = DEFAULT_MAX_UNPACKED_MB  # a larger unpacked tree is refused
    completes_main: bool = False  # only completes the lock's main tree: not fetched for a local tree

    @property
    def max_bytes(self) -> int:
        return self.max_mb * MB

    @property
    def max_unpacked_bytes(self) -> int:
        return self.max_unpacked_mb * MB

    @property
    def verified(self) -> bool:
        return bool(self.sha256 or self.nar)

    @property
    def parent(self) -> str | None:
        return self.dest.split("/", 1)[0] if self.dest else None

    def describe(self) -> str:
        return f"{self.name} {self.version}"


@dataclasses.dataclass(frozen=True)
class Lock:
    entries: dict[str, Entry]
    path: Path | None = None
    release_line: str | None = None  # a vLLM release line's lock (vllm_release.line_lock): its patches may not apply
    # entry -> the versions the other vLLM release lines pin of it (vllm_release.line_lock): a patch whose When:
    # names one of those is that line's, not a mistake in this one
    other_lines: Mapping[str, frozenset[str]] = dataclasses.field(default_factory=dict, compare=False)

    def for_component(self, component: str) -> list[Entry]:
        """The component's entries, the tree that is built first, then lock order."""
        found = [e for e in self.entries.values() if e.component == component]
        if not found:
            return []
        mains = [e for e in found if e.main] or [e for e in found if e.name == component]
        if not mains:
            mains = [e for e in found if e.dest is None][:1]
        main = mains[0]
        return [main] + [e for e in found if e is not main]

    def main_entry(self, component: str) -> Entry:
        entries = self.for_component(component)
        if not entries:
            known = sorted({e.component for e in self.entries.values()})
            raise BackendError(
                f"source lock {self.path or ''}: no source for component {component!r}; "
                f"components in the lock: {', '.join(known)}"
            )
        return entries[0]

    @property
    def components(self) -> list[str]:
        seen: list[str] = []
        for entry in self.entries.values():
            if entry.component not in seen:
                seen.append(entry.component)
        return seen


_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+!-]*")


def _fail(path: Path, message: str) -> BackendError:
    return BackendError(f"source lock {path}: {message}")


def _filename(name: str, version: str, url: str) -> str:
    base = PurePosixPath(urlparse(url).path).name or "source"
    for ext in (".tar.gz", ".tgz", ".tar.xz", ".tar.bz2", ".tar", ".zip"):
        if base.endswith(ext):
            return f"{name}-{version}{ext}"
    return f"{name}-{version}-{base}"


def _entry(path: Path, name: str, table: dict) -> Entry:
    if not _NAME.fullmatch(name):
        raise _fail(path, f"source name {name!r}: use lower-case letters, digits, '.', '_' and '-'")
    unknown = set(table) - _KNOWN_KEYS
    if unknown:
        raise _fail(path, f"source {name!r}: unknown key(s) {', '.join(sorted(unknown))}; accepted: {', '.join(sorted(_KNOWN_KEYS))}")
    for key in ("component", "version", "url"):
        value = table.get(key)
        if not isinstance(value, str) or not value.strip():
            raise _fail(path, f"source {name!r}: '{key}' is missing or empty")
    if not _VERSION.fullmatch(table["version"].strip()):  # it becomes part of file and folder names
        raise _fail(path, f"source {name!r}: version {table['version']!r} is not a plain version; accepted: "
                          "letters, digits, '.', '_', '+', '!' and '-'")
    for key in ("main", "completes_main"):
        if key in table and not isinstance(table[key], bool):  # "false" (a string) would read as true
            raise _fail(path, f"source {name!r}: {key} must be true or false (TOML booleans), not {table[key]!r}")
    url = table["url"].strip()
    if urlparse(url).scheme not in ("http", "https", "file"):
        raise _fail(path, f"source {name!r}: url {url!r} is not http(s) or file")
    sha256 = table.get("sha256") or None
    if sha256 is not None:
        try:
            sha256 = nar_mod.parse_sha256(str(sha256)).hex()
        except ValueError as exc:
            raise _fail(path, f"source {name!r}: sha256: {exc}") from None
    nar = table.get("nar") or None
    if nar is not None:
        try:
            nar = nar_mod.normalize(str(nar))
        except ValueError as exc:
            raise _fail(path, f"source {name!r}: nar: {exc}") from None
    strip = table.get("strip", 1)
    if not isinstance(strip, int) or strip < 0:
        raise _fail(path, f"source {name!r}: strip must be a whole number >= 0, not {strip!r}")
    dest = table.get("dest") or None
    if dest is not None:
        parts = PurePosixPath(str(dest)).parts
        if len(parts) < 2 or PurePosixPath(dest).is_absolute() or ".." in parts or "." in parts:
            raise _fail(path, f"source {name!r}: dest {dest!r} must be '<entry name>/<relative path>'")
        dest = "/".join(parts)
    bounds = {}
    for key, default in (("max_mb", DEFAULT_MAX_MB), ("max_unpacked_mb", DEFAULT_MAX_UNPACKED_MB)):
        value = table.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise _fail(path, f"source {name!r}: {key} must be a whole number of MB >= 1, not {value!r}")
        bounds[key] = value
    filename = table.get("filename") or _filename(name, table["version"].strip(), url)
    if (not isinstance(filename, str) or "/" in filename or "\\" in filename or filename.startswith(".")
            or any(ord(c) < 32 or ord(c) == 127 for c in filename)):
        raise _fail(path, f"source {name!r}: filename {filename!r} must be a plain file name (no '/', '\\', "
                          "control characters or leading '.')")
    return Entry(
        name=name,
        component=table["component"].strip(),
        version=str(table["version"]).strip(),
        url=url,
        sha256=sha256,
        nar=nar,
        strip=strip,
        dest=dest,
        filename=filename,
        main=bool(table.get("main", False)),
        why=str(table.get("why", "")),
        completes_main=bool(table.get("completes_main", False)),
        **bounds,
    )


def parse(text: str, path: Path) -> Lock:
    try:
        data = toml.loads(text)
    except toml.TOMLDecodeError as exc:
        raise _fail(path, f"not valid TOML: {exc}") from None
    except RecursionError:
        raise _fail(path, "not valid TOML: nested too deep") from None
    fmt = data.get("format", LOCK_FORMAT)
    if fmt != LOCK_FORMAT:
        raise _fail(path, f"format {fmt!r} is not supported; accepted: {LOCK_FORMAT}")
    sources = data.get("source")
    if not isinstance(sources, dict) or not sources:
        raise _fail(path, "no [source.<name>] tables")
    entries: dict[str, Entry] = {}
    for name, table in sources.items():
        if not isinstance(table, dict):
            raise _fail(path, f"source {name!r} is not a table")
        entries[name] = _entry(path, name, table)
    for entry in entries.values():
        if entry.parent is not None:
            parent = entries.get(entry.parent)
            if parent is None:
                raise _fail(path, f"source {entry.name!r}: dest {entry.dest!r} names no source {entry.parent!r}")
            if parent.component != entry.component:
                raise _fail(path, f"source {entry.name!r}: dest {entry.dest!r} is in another component's tree")
            if list(entries).index(parent.name) > list(entries).index(entry.name):
                raise _fail(path, f"source {entry.name!r}: list it after {parent.name!r}, whose tree it goes into")
    by_file: dict[str, Entry] = {}
    for entry in entries.values():
        other = by_file.setdefault(entry.filename, entry)
        if other is not entry and (other.url != entry.url or other.sha256 != entry.sha256):
            raise _fail(path, f"sources {other.name!r} and {entry.name!r} share filename {entry.filename!r} but not url and sha256")
    return Lock(entries=entries, path=path)


def load(path: Path | None = None) -> Lock:
    path = Path(path) if path is not None else DEFAULT_LOCK
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BackendError(f"source lock {path} does not exist") from None
    except UnicodeDecodeError as error:
        raise BackendError(f"source lock {path}: not UTF-8 text (byte {error.start}: {error.reason}); "
                           "accepted: a TOML file in UTF-8") from None
    except OSError as error:
        raise BackendError(f"source lock {path}: cannot be read ({error.strerror or error})") from None
    return parse(text, path)
