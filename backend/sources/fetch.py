"""Downloads into the cache: resumable, with progress on stderr, verified before use.

Layout under ``<cache>/downloads/``:

- ``<filename>``: a complete download (only ever renamed into place);
- ``<filename>.part``: an interrupted one, resumed with an HTTP Range request;
- ``<filename>.verified.json``: what was verified about the file (its
  sha256, and the NAR hash of its unpacked tree when the lock pins one),
  with the file's identity (device, inode, size, mtime and ctime), so a warm
  cache is not re-hashed on every build; other bytes put in its place
  cannot keep that identity (``os.utime`` sets mtime, never ctime);
- ``<filename>.lock``: a file lock, so two builds never write one download.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import stat
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from ..hashing import sha256_file
from ..errors import BackendError
from ..settings import redact_url
from .lock import Entry
from .nar import nar_hash
from .unpack import extract

_BLOCK = 1 << 20
USER_AGENT = "vllm-stack-backend (sources)"
MIRROR_ENV = "VLLM_STACK_SOURCE_MIRROR"


class Unreachable(BackendError):
    """A download the network did not give (no answer, refused, an HTTP error): other sources may still come."""


def ways_out(cache_dir: Path | None = None) -> str:
    """What to do when sources cannot be downloaded here (named by every such error)."""
    where = f" to {downloads_dir(cache_dir)}" if cache_dir is not None else ""
    return (f"ways out: run again (downloads resume); set {MIRROR_ENV}=http(s)://HOST/PATH to fetch the same "
            f"files from a mirror; or run `python -m backend fetch` on a machine with network, copy its cache's "
            f"downloads/{where} and build with -C offline=true (docs/SOURCES.md, 'Air-gapped builds')")


def downloads_dir(cache_dir: Path) -> Path:
    return Path(cache_dir) / "downloads"


def cache_path(entry: Entry, cache_dir: Path) -> Path:
    return downloads_dir(cache_dir) / entry.filename


def source_url(entry: Entry, base_url_override: str | None = None) -> str:
    """The URL to download from: the lock's, or ``<mirror>/<filename>``."""
    base = base_url_override if base_url_override is not None else os.environ.get(MIRROR_ENV) or None
    if base and "@" in base.partition("://")[2]:
        # urllib sends no credentials from a URL: it reads them as part of the host, and its errors then
        # quote pieces of the password. Refused by position, before any request.
        raise BackendError(f"{MIRROR_ENV}: bad value {redact_url(base)!r} (credentials in the URL are never "
                           "sent); accepted: http(s)://HOST[/PATH] of a mirror that needs none")
    if base:
        return base.rstrip("/") + "/" + entry.filename
    return entry.url


file_sha256 = sha256_file


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


def read_marker(path: Path) -> dict:
    try:
        data = json.loads(_marker(path).read_text())
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(data, dict):
        return {}
    try:
        info = path.stat()
    except OSError:
        return {}
    if any(data.get(key) != value for key, value in _identity(info).items()):
        return {}
    return data


def _identity(info: os.stat_result) -> dict:
    """What changes whenever the file's bytes are replaced, even with the old mtime put back."""
    return {"size": info.st_size, "mtime_ns": info.st_mtime_ns, "ctime_ns": info.st_ctime_ns,
            "inode": info.st_ino, "device": info.st_dev}


def write_marker(path: Path, **values) -> None:
    info = path.stat()
    identity = _identity(info)
    data = {k: v for k, v in read_marker(path).items() if k not in identity}
    data.update(values, **identity)
    tmp = _marker(path).with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, _marker(path))


def cached_sha256(path: Path) -> str:
    """The file's sha256, from its marker when size and mtime are unchanged."""
    known = read_marker(path).get("sha256")
    if known:
        return known
    digest = file_sha256(path)
    write_marker(path, sha256=digest)
    return digest


class _Progress:
    def __init__(self, label: str, total: int | None, start: int):
        self.label = label
        self.total = total
        self.done = start
        self.tty = sys.stderr.isatty()
        self.started = time.monotonic()
        self.last = self.started
        self.start = start

    def show(self, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last < (0.5 if self.tty else 5.0):
            return
        self.last = now
        mb = self.done / 1e6
        text = f"fetch {self.label}: {mb:.1f} MB"
        if self.total:
            text += f" of {self.total / 1e6:.1f} MB ({100 * self.done / self.total:.0f}%)"
        rate = (self.done - self.start) / max(now - self.started, 1e-6) / 1e6
        text += f", {rate:.1f} MB/s"
        if self.tty:
            print("\r" + text + ("\n" if final else ""), end="", file=sys.stderr, flush=True)
        else:
            print(text, file=sys.stderr, flush=True)


class TooLarge(BackendError):
    """A server sent (or announced) more bytes than the entry's bound."""


# A download slower than this, over a whole window, is stalled (curl's --speed-limit/--speed-time): a server
# dripping a byte every few seconds never trips the per-read timeout.
MIN_RATE_BYTES_S = 1024
RATE_WINDOW_S = 60.0


def _local_file(url: str, label: str) -> None:
    """A file: URL must name a regular file: reading a FIFO or a device blocks or never ends."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme != "file":
        return
    path = urllib.parse.unquote(parsed.path)
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise BackendError(f"download of {label} failed: {url}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        raise BackendError(f"download of {label} refused: {url} is not a regular file (a FIFO, a device or a "
                           "folder); accepted: a file: URL of a regular file, or http(s)")


def download(
    url: str, dest: Path, *, label: str, attempts: int = 4, timeout: float = 60.0, progress: bool = True,
    max_bytes: int | None = None, deadline_s: float | None = None, min_rate: float = MIN_RATE_BYTES_S,
    rate_window_s: float = RATE_WINDOW_S,
) -> None:
    """Download ``url`` to ``dest``, resuming ``dest.part`` (HTTP Range) when it exists.

    ``max_bytes``: stop (and delete what was written) as soon as the file
    would grow past it, or before writing when the server announces more.
    ``deadline_s``: the whole download, every attempt included (default: one
    hour plus the time ``max_bytes`` takes at 100 kB/s); an attempt that gets
    fewer than ``min_rate`` bytes per second over ``rate_window_s`` is stalled.
    What arrived stays in ``.part`` for the next run either way.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _local_file(url, label)
    part = dest.with_name(dest.name + ".part")
    if deadline_s is None:
        deadline_s = 3600.0 + (max_bytes or 0) / 100e3
    deadline = time.monotonic() + deadline_s
    last_error = "no attempt made"
    for attempt in range(attempts):
        if time.monotonic() >= deadline:
            break
        if attempt:
            time.sleep(min(0.2 * 2 ** attempt, 3.0))
        have = part.stat().st_size if part.exists() else 0
        headers = {"User-Agent": USER_AGENT}
        if have:
            headers["Range"] = f"bytes={have}-"
        try:
            response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:
                part.unlink()  # the partial file is not a prefix of this resource: start over
                last_error = "HTTP 416 on resume"
                continue
            raise Unreachable(f"download of {label} failed: {redact_url(url)} answered HTTP {exc.code} {exc.reason}; "
                              f"{ways_out()}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            last_error = f"{type(exc).__name__}: {reason}"
            continue
        with response:
            status = getattr(response, "status", 200)
            resumed = bool(have) and status == 206
            if resumed:
                content_range = response.headers.get("Content-Range", "")
                if not content_range.startswith(f"bytes {have}-"):
                    resumed = False
            if not resumed:
                have = 0
            length = response.headers.get("Content-Length")
            total = int(length) + have if length and length.isascii() and length.isdigit() else None
            if max_bytes is not None and total is not None and total > max_bytes:
                part.unlink(missing_ok=True)
                raise _too_large(label, url, f"announces {total} bytes", max_bytes)
            bar = _Progress(label, total, have) if progress else None
            window_start, window_have = time.monotonic(), have
            try:
                with open(part, "ab" if resumed else "wb") as out:
                    while True:
                        now = time.monotonic()
                        if now >= deadline:
                            raise _Stalled(f"over the {deadline_s:.0f} s deadline after {have} bytes")
                        if now - window_start >= rate_window_s:
                            if (have - window_have) / (now - window_start) < min_rate:
                                raise _Stalled(f"under {min_rate:.0f} bytes/s for {rate_window_s:.0f} s "
                                               f"after {have} bytes")
                            window_start, window_have = now, have
                        block = response.read1(_BLOCK) if hasattr(response, "read1") else response.read(_BLOCK)
                        if not block:
                            break
                        if max_bytes is not None and have + len(block) > max_bytes:
                            out.close()
                            part.unlink(missing_ok=True)
                            raise _too_large(label, url, f"sent more than {max_bytes} bytes", max_bytes)
                        out.write(block)
                        have += len(block)
                        if bar:
                            bar.done = have
                            bar.show()
            except _Stalled as exc:
                last_error = str(exc)
                continue
            except (OSError, http.client.HTTPException) as exc:
                last_error = f"{type(exc).__name__} after {have} bytes"
                continue
            if total is not None and have < total:
                last_error = f"connection closed after {have} of {total} bytes"
                continue
            if bar:
                bar.show(final=True)
        os.replace(part, dest)
        return
    kept = part.stat().st_size if part.exists() else 0
    host = urllib.parse.urlsplit(url).hostname or "?"
    raise Unreachable(
        f"download of {label} from {redact_url(url)} failed after {attempts} attempts (host {host}: {last_error}); "
        f"{kept} bytes kept in {part}; {ways_out()}"
    )


class _Stalled(Exception):
    """An attempt that is too slow or past the deadline (another attempt resumes, if time is left)."""


def _too_large(label: str, url: str, what: str, max_bytes: int) -> TooLarge:
    return TooLarge(
        f"download of {label} refused: {redact_url(url)} {what}, over the lock's bound of {max_bytes / 1e6:.0f} MB "
        f"for it (max_mb); nothing was kept"
    )


def discard(entry: Entry, path: Path, why: str) -> BackendError:
    """Move a cached file that failed a check aside (``.bad``), so the next run downloads it anew."""
    bad = path.with_name(path.name + ".bad")
    try:
        os.replace(path, bad)
        os.chmod(bad, 0o600)  # kept for inspection by its owner only: a file: source may be a private file
    except FileNotFoundError:
        pass
    _marker(path).unlink(missing_ok=True)
    return BackendError(f"source {entry.name} {entry.version}: {why}; moved aside to {bad}: the next run downloads it again")


def trusted(entry: Entry, allow_unverified: Sequence[str]) -> bool:
    allowed = set(allow_unverified)
    return bool(allowed & {entry.name, entry.component, "all"})


def refuse_unverified(entry: Entry, allow_unverified: Sequence[str]) -> None:
    if entry.verified:
        return
    if trusted(entry, allow_unverified):
        print(f"warning: source {entry.name} {entry.version} has no hash in the lock; used because "
              f"allow-unverified names it", file=sys.stderr)
        return
    raise BackendError(
        f"source {entry.name} {entry.version} has no hash in the lock; record one with "
        f"`python -m backend lock` (needs network), or trust it with -C allow-unverified={entry.name}"
    )


def offline_missing(entry: Entry, path: Path) -> BackendError:
    return BackendError(
        f"offline: source {entry.name} {entry.version} is not in the cache; download {redact_url(entry.url)} "
        f"and save it as {path} (or run `python -m backend fetch` on a machine with network and copy "
        f"its cache's downloads/ folder)"
    )


def ensure(
    entry: Entry,
    *,
    cache_dir: Path,
    offline: bool = False,
    allow_unverified: Sequence[str] = (),
    base_url_override: str | None = None,
    verify_tree: bool = True,
    progress: bool = True,
) -> Path:
    """The verified cached file of ``entry``, downloading it first unless offline.

    ``verify_tree``: also check the lock's NAR hash (unpacking into a scratch
    folder once; the result is remembered next to the file).
    """
    import filelock

    refuse_unverified(entry, allow_unverified)
    path = cache_path(entry, cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(path) + ".lock"):
        if not path.exists():
            if offline:
                raise offline_missing(entry, path)
            download(source_url(entry, base_url_override), path, label=f"{entry.name} {entry.version}", progress=progress,
                     max_bytes=entry.max_bytes)
        if path.stat().st_size > entry.max_bytes:
            raise discard(entry, path, f"{path.stat().st_size} bytes, over the lock's bound of "
                                       f"{entry.max_bytes / 1e6:.0f} MB (max_mb)")
        digest = cached_sha256(path)
        if entry.sha256 and digest != entry.sha256:
            raise discard(entry, path, f"sha256 mismatch: the lock says {entry.sha256}, the file is {digest}")
        if verify_tree and entry.nar and read_marker(path).get("nar") != entry.nar:
            try:
                verify_nar_by_unpacking(entry, path, cache_dir)
            except BackendError as error:
                raise discard(entry, path, str(error).removeprefix(f"source {entry.name} {entry.version}: ")) from None
    return path


def nar_verified(entry: Entry, path: Path) -> bool:
    """Whether this exact file was already found to unpack to the lock's NAR hash."""
    return bool(entry.nar) and read_marker(path).get("nar") == entry.nar


def check_nar(entry: Entry, path: Path, tree: Path) -> None:
    """Compare the unpacked ``tree`` of cached file ``path`` with the lock; remember success."""
    if not entry.nar or nar_verified(entry, path):
        return
    got = nar_hash(tree)
    if got != entry.nar:
        raise BackendError(
            f"source {entry.name} {entry.version}: NAR hash mismatch: the lock says {entry.nar}, "
            f"the unpacked tree is {got}"
        )
    write_marker(path, nar=got)


def verify_nar_by_unpacking(entry: Entry, path: Path, cache_dir: Path) -> None:
    scratch_root = Path(cache_dir) / "tmp"
    scratch_root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"verify-{entry.name}-", dir=scratch_root))
    try:
        tree = scratch / "tree"
        extract(path, tree, entry.strip, max_bytes=entry.max_unpacked_bytes)
        check_nar(entry, path, tree)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
