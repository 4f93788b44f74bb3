"""Where a compiler cache keeps its objects: this machine's disk, or storage shared by machines.

``-C compiler-cache-url`` names the shared storage; it becomes the tool's own
variables (sccache: ``SCCACHE_REDIS_ENDPOINT``, ``SCCACHE_BUCKET`` and
``SCCACHE_S3_KEY_PREFIX``, ``SCCACHE_GHA_ENABLED``; ccache:
``CCACHE_REMOTE_STORAGE``).  Without the setting, storage the user configured
with sccache's own ``SCCACHE_*`` variables is used exactly as given; with it,
such a variable that selects other storage is a conflict, never a silent choice.
Secrets (passwords, keys) go into the build's environment only, never into a
message.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..errors import BackendError
from ..settings import redact_url

# The variables that select sccache's storage, and what each selects (sccache's docs).
SCCACHE_STORAGE = (
    ("SCCACHE_BUCKET", "S3"),
    ("SCCACHE_GCS_BUCKET", "GCS"),
    ("SCCACHE_AZURE_CONNECTION_STRING", "Azure Blob"),
    ("SCCACHE_GHA_ENABLED", "GitHub Actions cache"),
    ("SCCACHE_REDIS_ENDPOINT", "Redis"),
    ("SCCACHE_REDIS_CLUSTER_ENDPOINTS", "Redis cluster"),
    ("SCCACHE_REDIS", "Redis"),
    ("SCCACHE_MEMCACHED_ENDPOINT", "Memcached"),
    ("SCCACHE_MEMCACHED", "Memcached"),
    ("SCCACHE_WEBDAV_ENDPOINT", "WebDAV"),
    ("SCCACHE_OSS_BUCKET", "Alibaba OSS"),
    ("SCCACHE_COS_BUCKET", "Tencent COS"),
)
_TRUE = ("on", "true", "1", "yes")
KEY = "compiler-cache-url"


@dataclasses.dataclass(frozen=True)
class Storage:
    kind: str  # "local disk", "Redis", "S3", ...
    where: str  # shown to the user: a folder, a URL without its password, a bucket/prefix
    origin: str  # where the choice came from
    variables: Mapping[str, str] = dataclasses.field(default_factory=dict)  # for the build's environment

    def describe(self) -> str:
        return " ".join(part for part in (self.kind, self.where, f"({self.origin})") if part)


def selected_storage(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """The user's storage-selecting sccache variables that are set (an empty one counts as unset)."""
    found = []
    for name, kind in SCCACHE_STORAGE:
        value = environ.get(name, "").strip()
        if not value or (name == "SCCACHE_GHA_ENABLED" and value.lower() not in _TRUE):
            continue
        found.append((name, kind))
    return found


_KEY_PREFIXES = {
    "SCCACHE_BUCKET": "SCCACHE_S3_KEY_PREFIX", "SCCACHE_GCS_BUCKET": "SCCACHE_GCS_KEY_PREFIX",
    "SCCACHE_OSS_BUCKET": "SCCACHE_OSS_KEY_PREFIX", "SCCACHE_COS_BUCKET": "SCCACHE_COS_KEY_PREFIX",
}


def _where_from_environment(name: str, environ: Mapping[str, str]) -> str:
    value = environ[name].strip()
    if name in _KEY_PREFIXES:
        return f"{value}/{environ.get(_KEY_PREFIXES[name], '').strip('/')}".rstrip("/")
    if name in ("SCCACHE_GHA_ENABLED", "SCCACHE_AZURE_CONNECTION_STRING"):
        return ""  # a switch, or a secret
    return redact_url(value)


def for_sccache(url: str | None, environ: Mapping[str, str], local_dir: Path, named: str = KEY) -> Storage:
    selected = selected_storage(environ)
    if url is None:
        if selected:
            name, kind = selected[0]
            where = _where_from_environment(name, environ)
            return Storage(kind, where, f"{name} from the environment")
        folder = environ.get("SCCACHE_DIR", "").strip()
        if folder:
            return Storage("local disk", folder, "SCCACHE_DIR from the environment")
        return Storage("local disk", str(local_dir), "the backend's cache folder", {"SCCACHE_DIR": str(local_dir)})

    storage = _sccache_remote(url)
    ours = set(storage.variables)
    clashes = [name for name, _ in selected if name not in ours or environ[name].strip() != storage.variables[name]]
    if clashes:
        raise BackendError(
            f"setting '{named}': {redact_url(url)!r} conflicts with {', '.join(clashes)} set in the environment "
            "(sccache would use only one storage); unset one of them"
        )
    local = environ.get("SCCACHE_DIR", "").strip() or str(local_dir)
    return dataclasses.replace(storage, variables={"SCCACHE_DIR": local, **storage.variables})


def _sccache_remote(url: str) -> Storage:
    origin = f"-C {KEY}"
    if url == "gha":
        return Storage("GitHub Actions cache", "", origin, {"SCCACHE_GHA_ENABLED": "on"})
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "s3":
        prefix = parts.path.strip("/")
        variables = {"SCCACHE_BUCKET": parts.netloc}
        if prefix:
            variables["SCCACHE_S3_KEY_PREFIX"] = prefix
        return Storage("S3", f"s3://{parts.netloc}/{prefix}".rstrip("/"), origin, variables)
    # Redis: sccache takes the endpoint, and the credentials and database apart.
    endpoint = f"{scheme}://{parts.hostname}:{parts.port or 6379}"
    variables = {"SCCACHE_REDIS_ENDPOINT": endpoint}
    # A password holding / ? # @ : is written %-encoded in the URL; the tool gets it as it is.
    if parts.username:
        variables["SCCACHE_REDIS_USERNAME"] = unquote(parts.username)
    if parts.password:
        variables["SCCACHE_REDIS_PASSWORD"] = unquote(parts.password)
    if parts.path.strip("/"):
        variables["SCCACHE_REDIS_DB"] = parts.path.strip("/")
    return Storage("Redis", redact_url(url), origin, variables)


def ccache_reaches(url: str) -> bool:
    return urlsplit(url).scheme.lower() == "redis"


def for_ccache(url: str | None, environ: Mapping[str, str], local_dir: Path,
               named: str = KEY) -> Storage:  # named: what a message calls the setting (Settings.named)
    folder = {"CCACHE_DIR": str(local_dir)}
    if url is None:
        remote = environ.get("CCACHE_REMOTE_STORAGE", "").strip()
        if remote:
            return Storage("remote storage", redact_url(remote), "CCACHE_REMOTE_STORAGE from the environment", folder)
        return Storage("local disk", str(local_dir), "the backend's cache folder", folder)
    if not ccache_reaches(url):
        raise BackendError(
            f"setting '{named}': {redact_url(url)!r} needs sccache (ccache reaches only redis:// storage); "
            "accepted with ccache: redis://HOST[:PORT][/DB]; or use -C compiler-cache=sccache"
        )
    return Storage("Redis", redact_url(url), f"-C {KEY}", {**folder, "CCACHE_REMOTE_STORAGE": url})
