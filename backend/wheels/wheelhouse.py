"""``wheelhouse/<variant>/``: wheels that appear only complete, a manifest, SHA256SUMS.

Rules (the pipeline issue, point 5):

* a wheel is copied (or moved) under a temporary name in the same folder,
  fsynced, then renamed; a wheel of the same distribution already there is
  removed only after the new one, the manifest and SHA256SUMS are in place;
* ``manifest.json`` and ``SHA256SUMS`` are rewritten atomically after each
  change; ``sha256sum -c SHA256SUMS`` checks the folder;
* every update holds a cross-process lock (``.wheelhouse.lock``), so two
  builds writing one variant never interleave;
* nothing already there is deleted when anything fails.

Wheels lying in the folder that the manifest does not list are ignored.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from filelock import FileLock
from packaging.utils import canonicalize_name

from ..errors import BackendError
from ..verify.metadata import read_wheel
from . import names
from .files import CHUNK, fsync_dir, sha256_file, write_atomic

MANIFEST = "manifest.json"
SUMS = "SHA256SUMS"
LOCK = ".wheelhouse.lock"
MANIFEST_VERSION = 1
# Keys of a record the caller gives; others are kept as given.
RECORD_KEYS = ("component", "source", "source_hash", "build_key", "seconds")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


class Wheelhouse:
    """The wheels of one variant, in ``root`` (``wheelhouse/<variant>/``)."""

    def __init__(
        self,
        root: Path,
        *,
        variant: str | None = None,
        toolchain: str | None = None,
        toolchain_version: str | None = None,
        flags: Sequence[str] | Mapping[str, Any] | None = None,
        lock_timeout: float = -1,
    ):
        self.root = Path(root)
        self.variant = variant or self.root.name
        self._header = {"toolchain": toolchain, "toolchain_version": toolchain_version, "flags": flags}
        self.lock_timeout = lock_timeout

    # -- reading ---------------------------------------------------------

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    @property
    def sums_path(self) -> Path:
        return self.root / SUMS

    def manifest(self) -> dict[str, Any]:
        """The manifest as stored (an empty one when there is none yet)."""
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"wheels": {}}
        except (OSError, ValueError, RecursionError) as error:
            why = "nested too deep" if isinstance(error, RecursionError) else str(error)
            raise BackendError(
                f"{self.manifest_path}: unreadable ({why}); move it away to start the wheelhouse anew"
            ) from None
        return _checked(self.manifest_path, data)

    def wheels(self) -> list[Path]:
        """The wheels the manifest lists that exist, sorted by file name."""
        listed = sorted(self.manifest()["wheels"])
        return [self.root / name for name in listed if (self.root / name).is_file()]

    def lookup(self, component: str, build_key: str) -> list[Path]:
        """Every wheel of ``component`` built with ``build_key``, all present and intact; else [] (rebuild)."""

        found = []
        for name, entry in sorted(self.manifest()["wheels"].items()):
            if entry.get("component") != component or entry.get("build_key") != build_key:
                continue
            path = self.root / name
            if not path.is_file() or path.stat().st_size != entry.get("size") or _content_hash(path) != entry.get("sha256"):
                return []
            if read_wheel(path, check_record=False).holds_only_metadata():
                return []  # an empty wheel an older, unlocked race left behind: rebuild it
            found.append(path)
        return found

    def changed(self, *, skip_components: Sequence[str] = ()) -> list[str]:
        """Listed wheels whose file is not the one the manifest describes (size, sha256): "name (why)".

        A wheel changed after the backend wrote it must not be installed, pinned
        or checked against (issue 29): the build stops naming it.  Wheels of
        ``skip_components`` (this build's own, which ``lookup`` rebuilds) and
        listed wheels whose file is gone are not reported.
        """
        found = []
        for name, entry in sorted(self.manifest()["wheels"].items()):
            path = self.root / name
            if entry.get("component") in skip_components and entry.get("origin") != "runtime":
                continue
            if not path.is_file():
                continue
            size = path.stat().st_size
            if size != entry.get("size"):
                found.append(f"{name} ({size} bytes, the manifest says {entry.get('size')})")
            elif _content_hash(path) != entry.get("sha256"):
                found.append(f"{name} (its sha256 is not the manifest's)")
        return found

    def refuse_changed(self, *, skip_components: Sequence[str] = ()) -> None:
        """A one-line error naming every listed wheel changed since the backend wrote it."""
        changed = self.changed(skip_components=skip_components)
        if changed:
            raise BackendError(
                f"wheelhouse {self.root}: {'; '.join(changed)}: changed after the build wrote it, so it is "
                "not used; delete it (the build of its component writes it anew) or restore it"
            )

    # -- writing ---------------------------------------------------------

    def record_driver(self, driver: Mapping[str, Any]) -> None:
        """Store the oldest NVIDIA driver the wheelhouse runs on, and why (``backend/cuda_driver.py``)."""
        with self.lock():
            manifest = self.manifest()
            if manifest.get("driver") == _jsonable(driver):
                return  # a rebuild that changed nothing leaves the wheelhouse's files as they are
            manifest["driver"] = _jsonable(driver)
            self._write(manifest)

    def lock(self) -> FileLock:
        self.root.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.root / LOCK), timeout=self.lock_timeout)

    def add(self, wheel: Path, record: Mapping[str, Any], *, move: bool = False, sha256: str | None = None) -> Path:
        """Put ``wheel`` into the wheelhouse (complete or not at all); return its new path.

        ``record``: component, source, source_hash, build_key, seconds (any
        other keys are stored too).  An older wheel of the same distribution
        is removed once the new one is listed.  ``move=True`` renames the file
        when it lies on the same file system (else copies, then removes it);
        ``sha256``: its hash, taken as it was written (a renamed file is then not read again).
        """
        wheel = Path(wheel)
        parsed = names.parse(wheel.name)
        distribution, version = parsed.project, parsed.version
        self.root.mkdir(parents=True, exist_ok=True)
        target = self.root / wheel.name
        if wheel.resolve() == target.resolve():
            raise BackendError(f"{wheel}: already in the wheelhouse; give a wheel from outside it")
        try:
            return self._add(wheel, distribution, version, target, record, move, sha256)
        except OSError as error:
            raise BackendError(
                f"wheelhouse {self.root}: could not add {wheel.name} ({error.strerror or error}); "
                "the wheelhouse is as it was before"
            ) from None

    def _add(self, wheel: Path, distribution, version, target: Path, record: Mapping[str, Any], move: bool,
             sha256: str | None) -> Path:
        temp, digest, size = self._stage(wheel, move, sha256)
        try:
            with self.lock():
                _remove_orphans(self.root, keep=temp)
                manifest = self.manifest()
                previous = _keep_previous(target)
                try:
                    self._place(temp, target, manifest, wheel, distribution, version, size, digest, record)
                except BaseException:
                    # Put back what was there: a failed add (disk full...) changes nothing.
                    if previous is not None:
                        os.replace(previous, target)
                    else:
                        with contextlib.suppress(FileNotFoundError):
                            target.unlink()
                    raise
                finally:
                    if previous is not None:
                        with contextlib.suppress(FileNotFoundError):
                            previous.unlink()
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
        if move:
            with contextlib.suppress(FileNotFoundError):
                wheel.unlink()
        return target

    def remove(self, names: Sequence[str]) -> None:
        """Drop these wheels from the manifest, then delete their files."""
        with self.lock():
            manifest = self.manifest()
            for name in names:
                manifest["wheels"].pop(name, None)
            self._write(manifest)
            for name in names:
                if _plain_wheel_name(name):  # never a path outside the wheelhouse
                    with contextlib.suppress(FileNotFoundError):
                        (self.root / name).unlink()

    def _place(self, temp, target, manifest, wheel, distribution, version, size, digest, record) -> None:
        os.replace(temp, target)
        fsync_dir(self.root)
        _content_hash(target, digest)  # hashed as it was staged: the checks after the steps need not read it
        replaced = [
            name
            for name in manifest["wheels"]
            if name != wheel.name and _distribution(name) == canonicalize_name(distribution)
        ]
        for name in replaced:
            del manifest["wheels"][name]
        entry = {
            "distribution": str(distribution),
            "version": str(version),
            "size": size,
            "sha256": digest,
        }
        entry.update({key: record.get(key) for key in RECORD_KEYS})
        entry.update({key: value for key, value in record.items() if key not in entry})
        entry["added"] = _now()
        manifest["wheels"][wheel.name] = entry
        self._write(manifest)
        for name in replaced:
            with contextlib.suppress(OSError):
                (self.root / name).unlink()

    def _stage(self, wheel: Path, move: bool, sha256: str | None = None) -> tuple[Path, str, int]:
        """The wheel under a temporary name in the wheelhouse, fsynced; its sha256 and size."""
        # The pid in the name: a later add removes what a killed one left (``_remove_orphans``).
        fd, temp_name = tempfile.mkstemp(prefix=f".{wheel.name}.{os.getpid()}-", suffix=".part", dir=self.root)
        temp = Path(temp_name)
        try:
            digest = hashlib.sha256()
            size = 0
            if move:
                os.close(fd)
                fd = -1
                try:
                    os.replace(wheel, temp)
                    moved = True
                except OSError:
                    moved = False
                if moved and sha256 is not None:  # renamed in, hashed (and fsynced) when it was written
                    os.chmod(temp, 0o644)
                    return temp, sha256, temp.stat().st_size
                if moved:
                    # Renamed in: nothing to copy; hash it where it now lies.
                    with open(temp, "r+b") as handle:
                        for chunk in iter(lambda: handle.read(CHUNK), b""):
                            digest.update(chunk)
                            size += len(chunk)
                        os.fsync(handle.fileno())
                    os.chmod(temp, 0o644)
                    return temp, digest.hexdigest(), size
                fd = os.open(temp, os.O_WRONLY | os.O_TRUNC)
            with os.fdopen(fd, "wb") as out, open(wheel, "rb") as source:
                fd = -1
                for chunk in iter(lambda: source.read(CHUNK), b""):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temp, 0o644)
            return temp, digest.hexdigest(), size
        except BaseException:
            if fd >= 0:
                os.close(fd)
            if move and not wheel.exists() and temp.exists():
                # Renamed in but failed after: give the file back rather than lose it.
                with contextlib.suppress(OSError):
                    os.replace(temp, wheel)
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
            raise

    def _write(self, manifest: dict[str, Any]) -> None:
        """manifest.json then SHA256SUMS, each atomically (caller holds the lock)."""
        top = {
            "manifest_version": MANIFEST_VERSION,
            "variant": self.variant,
            "toolchain": self._header["toolchain"] if self._header["toolchain"] is not None else manifest.get("toolchain"),
            "toolchain_version": self._header["toolchain_version"]
            if self._header["toolchain_version"] is not None
            else manifest.get("toolchain_version"),
            "flags": _jsonable(self._header["flags"]) if self._header["flags"] is not None else manifest.get("flags"),
            **({"driver": manifest["driver"]} if "driver" in manifest else {}),
            "created": manifest.get("created") or _now(),
            "updated": _now(),
            "wheels": {name: manifest["wheels"][name] for name in sorted(manifest["wheels"])},
        }
        text = json.dumps(top, indent=2, sort_keys=False) + "\n"
        write_atomic(self.manifest_path, text.encode("utf-8"))
        sums = "".join(f"{entry['sha256']}  {name}\n" for name, entry in top["wheels"].items())
        write_atomic(self.sums_path, sums.encode("utf-8"))


def _checked(path: Path, data: Any) -> dict[str, Any]:
    """The manifest, refused in one line unless every key names a wheel file lying in this folder."""
    def refuse(why: str) -> BackendError:
        return BackendError(f"{path}: {why}; it was not written by this backend: move it away to start the wheelhouse anew")

    if not isinstance(data, dict):
        raise refuse(f"holds {type(data).__name__} {json.dumps(data)[:40]}, not an object")
    wheels = data.setdefault("wheels", {})
    if not isinstance(wheels, dict):
        raise refuse(f"'wheels' is {type(wheels).__name__}, not an object of file name -> entry")
    for name, entry in wheels.items():
        # A key is joined to the wheelhouse folder and may be deleted: only a plain file name is safe.
        if not _plain_wheel_name(name):
            raise refuse(f"wheel key {name!r} is not a plain wheel file name")
        if not isinstance(entry, dict):
            raise refuse(f"the entry of {name!r} is {type(entry).__name__}, not an object")
    return data


def _plain_wheel_name(name: Any) -> bool:
    """A valid wheel file name and nothing else: no folder part, no '..', not hidden."""
    return (isinstance(name, str) and name.endswith(".whl") and name == os.path.basename(name)
            and "\\" not in name and not name.startswith(".") and _distribution(name) is not None)


# One build hashes a wheel once (lookup, then the checks before and after the steps): the memo is per
# process and keyed on the file's whole identity.  Other bytes put in its place cannot keep it: writing
# changes the ctime (os.utime restores an mtime, never a ctime), a rename the inode.
_HASHED: dict[tuple, str] = {}


def _content_hash(path: Path, known: str | None = None) -> str:
    info = path.stat()
    identity = (str(path), info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
    if known is not None:
        _HASHED[identity] = known
    if identity not in _HASHED:
        _HASHED[identity] = sha256_file(path)
    return _HASHED[identity]


def _remove_orphans(root: Path, keep: Path) -> None:
    """Staged ``.part`` files of adds whose process is gone (SIGKILL, power loss): hundreds of MB each."""
    for part in root.glob(".*.part"):
        if part == keep:
            continue
        owner = part.name[: -len(".part")].rsplit(".", 1)[-1].split("-", 1)[0]
        if owner.isdigit() and _alive(int(owner)):
            continue  # an add staging beside this one (it takes the lock after staging)
        with contextlib.suppress(FileNotFoundError):
            part.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _keep_previous(target: Path) -> Path | None:
    """A second name for the wheel ``target`` replaces, so that a failed add can put it back."""
    if not target.exists():
        return None
    keep = target.with_name(f".{target.name}.previous")
    with contextlib.suppress(FileNotFoundError):
        keep.unlink()
    try:
        os.link(target, keep)
    except OSError:
        return None
    return keep


def _distribution(file_name: str) -> str | None:
    try:
        return names.project(file_name)
    except BackendError:
        return None


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
