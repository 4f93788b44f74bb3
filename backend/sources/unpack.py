"""Safe extraction of a source archive into a fresh folder.

Refused (the whole archive, with a one-line BackendError): absolute member
names, ``..`` components, symlinks whose target is absolute or leaves the
tree (also through a chain of links, or as a hard link's copy of a symlink:
every link in the laid-out tree is resolved once all are in place), hard
links to anything but an earlier regular member (the latest of its name), device files,
FIFOs, writing through a symlink, and more than ``max_bytes`` of file
contents or ``MAX_MEMBERS`` members (checked from the archive's own listing
before anything is written).  Owners, times and permission bits
other than "executable" are not restored: a source tree needs none of them
and the NAR hash counts only the owner's execute bit.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path

from ..errors import BackendError

_BLOCK = 1 << 20
MAX_MEMBERS = 2_000_000  # torch 2.9.1 with its submodules has about a tenth of that


def _strip(name: str, strip: int) -> str | None:
    """The member's path after dropping ``strip`` leading components; None when nothing is left."""
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise ValueError("absolute path")
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError("'..' in path")
    if len(parts) <= strip:
        return None
    return "/".join(parts[strip:])


def _inside(rel_link: str, target: str) -> bool:
    """Whether a symlink at ``rel_link`` (relative to the tree) pointing to ``target`` stays in the tree."""
    if target.startswith("/") or not target:
        return False
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(rel_link), target))
    return not (joined == ".." or joined.startswith("../") or joined.startswith("/"))


class _Extractor:
    def __init__(self, archive: Path, dest: Path):
        self.archive = archive
        self.dest = dest
        self.real_dest = os.path.realpath(dest)

    def fail(self, member: str, why: str) -> BackendError:
        return BackendError(f"unsafe archive {self.archive.name}: member {member!r}: {why}; nothing was extracted")

    def target(self, rel: str, member: str) -> Path:
        path = self.dest / rel
        parent = os.path.dirname(os.path.join(self.real_dest, rel))
        # No writing through a symlink, even one that points inside the tree.
        if os.path.realpath(parent) != os.path.normpath(parent):
            raise self.fail(member, "a parent folder is a symlink")
        return path

    @staticmethod
    def clear(path: Path) -> None:
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)


def extract(archive: Path, dest: Path, strip: int = 1, max_bytes: int | None = None) -> None:
    """Unpack ``archive`` (tar, tar.gz/xz/bz2 or zip) into the new folder ``dest``.

    ``max_bytes``: refuse, before writing anything, an archive whose files add up to more.
    """
    archive = Path(archive)
    dest = Path(dest)
    if dest.exists():
        raise BackendError(f"unpack {archive.name}: {dest} already exists")
    dest.mkdir(parents=True)
    try:
        if zipfile.is_zipfile(archive):
            links = _extract_zip(archive, dest, strip, max_bytes)
        else:
            links = _extract_tar(archive, dest, strip, max_bytes)
        _check_links_resolve_inside(archive, dest, links)
        _check_every_link_in_the_tree(archive, dest)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def _check_links_resolve_inside(archive: Path, dest: Path, links: list[tuple[str, str]]) -> None:
    """Every symlink, followed through every other link of the tree, ends inside it.

    Each link alone was checked lexically; a chain (``l2 -> l1/..`` with
    ``l1 -> .``) can still climb out, which only resolving the placed links shows.
    """
    root = os.path.realpath(dest)
    for rel, member in links:
        resolved = os.path.realpath(os.path.join(root, rel))
        if resolved != root and not resolved.startswith(root + os.sep):
            raise BackendError(
                f"unsafe archive {archive.name}: member {member!r}: symlink resolves to {resolved}, "
                "outside the tree (through other links); nothing was extracted"
            )


def _check_every_link_in_the_tree(archive: Path, dest: Path) -> None:
    """Every link lying in the tree once the whole archive is laid out resolves inside it.

    The members' own checks cannot see every link that ends up in the tree: a hard link
    to a name that a later member turned into a symlink is copied as that symlink, at
    another depth (``a/x -> ..`` is inside; its copy at the top, ``y -> ..``, is not).
    So the laid-out tree itself is walked, whatever made each link.
    """
    root = os.path.realpath(dest)
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                continue
            resolved = os.path.realpath(path)
            if resolved != root and not resolved.startswith(root + os.sep):
                rel = os.path.relpath(path, root)
                raise BackendError(
                    f"unsafe archive {archive.name}: {rel!r} is a link resolving to {resolved}, outside the "
                    "tree (made by a hard link or through other links); nothing was extracted"
                )


def _check_size(ex: "_Extractor", total: int, count: int, max_bytes: int | None) -> None:
    if count > MAX_MEMBERS:
        raise BackendError(f"unsafe archive {ex.archive.name}: {count} members, over the bound of {MAX_MEMBERS}; "
                           "nothing was extracted")
    if max_bytes is not None and total > max_bytes:
        raise BackendError(
            f"unsafe archive {ex.archive.name}: its files add up to {total / 1e6:.0f} MB, over the lock's bound of "
            f"{max_bytes / 1e6:.0f} MB (max_unpacked_mb); nothing was extracted"
        )


def _open_tar(archive: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        # tarfile lists each method it tried on a line of its own: the error stays one line
        raise BackendError(f"unpack {archive.name}: not a readable tar or zip archive ({' '.join(str(exc).split())})"
                           ) from None


def _plan_tar(tar: tarfile.TarFile, strip: int, ex: _Extractor, max_bytes: int | None):
    """Check every member before writing anything."""
    plan = []
    regular: dict[str, int] = {}
    total = 0
    for member in tar.getmembers():
        try:
            rel = _strip(member.name, strip)
        except ValueError as exc:
            raise ex.fail(member.name, str(exc)) from None
        if member.isdev() or member.isfifo():
            raise ex.fail(member.name, "device files and FIFOs are not allowed")
        if rel is None:
            if member.isdir():
                continue
            raise ex.fail(member.name, f"lies above the {strip} stripped folder level(s)")
        if member.issym():
            if not _inside(rel, member.linkname):
                raise ex.fail(member.name, f"symlink to {member.linkname!r} points outside the tree")
        elif member.islnk():
            try:
                link_rel = _strip(member.linkname, strip)
            except ValueError as exc:
                raise ex.fail(member.name, f"hard link: {exc}") from None
            if link_rel is None or link_rel not in regular:
                raise ex.fail(member.name, f"hard link to {member.linkname!r}, not an earlier file of the tree")
            total += regular[link_rel]  # written as a copy
        elif not (member.isfile() or member.isdir()):
            raise ex.fail(member.name, "unsupported member type")
        if member.isfile():
            regular[rel] = member.size
            total += member.size
        else:
            regular.pop(rel, None)  # a later member of the same name replaces the file: no hard link to it
        plan.append((member, rel))
    _check_size(ex, total, len(plan), max_bytes)
    return plan


def _extract_tar(archive: Path, dest: Path, strip: int, max_bytes: int | None) -> list[tuple[str, str]]:
    ex = _Extractor(archive, dest)
    with _open_tar(archive) as tar:
        try:
            plan = _plan_tar(tar, strip, ex, max_bytes)
            for member, rel in plan:
                path = ex.target(rel, member.name)
                if member.isdir():
                    if path.is_symlink() or (path.exists() and not path.is_dir()):
                        ex.clear(path)
                    path.mkdir(parents=True, exist_ok=True)
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                ex.clear(path)
                if member.issym():
                    os.symlink(member.linkname, path)
                elif member.islnk():
                    source = dest / _strip(member.linkname, strip)
                    shutil.copy2(source, path, follow_symlinks=False)
                else:
                    handle = tar.extractfile(member)
                    assert handle is not None
                    with handle, open(path, "xb") as out:
                        shutil.copyfileobj(handle, out, _BLOCK)
                    os.chmod(path, 0o755 if member.mode & stat.S_IXUSR else 0o644)
        except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
            raise BackendError(f"unpack {archive.name}: damaged archive ({exc})") from None
    return [(rel, member.name) for member, rel in plan if member.issym()]


def _extract_zip(archive: Path, dest: Path, strip: int, max_bytes: int | None) -> list[tuple[str, str]]:
    ex = _Extractor(archive, dest)
    with zipfile.ZipFile(archive) as zf:
        plan = []
        infos = zf.infolist()
        # zipfile never reads past a member's declared size, so the listing bounds what is written.
        _check_size(ex, sum(i.file_size for i in infos), len(infos), max_bytes)
        for info in infos:
            try:
                rel = _strip(info.filename, strip)
            except ValueError as exc:
                raise ex.fail(info.filename, str(exc)) from None
            mode = info.external_attr >> 16
            if rel is None:
                if info.is_dir():
                    continue
                raise ex.fail(info.filename, f"lies above the {strip} stripped folder level(s)")
            if stat.S_ISLNK(mode):
                if info.file_size > 4096:
                    raise ex.fail(info.filename, f"symlink target of {info.file_size} bytes")
                target = zf.read(info).decode("utf-8", "surrogateescape")
                if not _inside(rel, target):
                    raise ex.fail(info.filename, f"symlink to {target!r} points outside the tree")
                plan.append((info, rel, "link", target))
            elif mode and (stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
                raise ex.fail(info.filename, "device files and FIFOs are not allowed")
            elif info.is_dir():
                plan.append((info, rel, "dir", None))
            else:
                plan.append((info, rel, "file", bool(mode & stat.S_IXUSR)))
        try:
            for info, rel, kind, extra in plan:
                path = ex.target(rel, info.filename)
                if kind == "dir":
                    path.mkdir(parents=True, exist_ok=True)
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                ex.clear(path)
                if kind == "link":
                    os.symlink(extra, path)
                else:
                    with zf.open(info) as handle, open(path, "xb") as out:
                        shutil.copyfileobj(handle, out, _BLOCK)
                    os.chmod(path, 0o755 if extra else 0o644)
        except (zipfile.BadZipFile, OSError, zlib.error) as exc:
            raise BackendError(f"unpack {archive.name}: damaged archive ({exc})") from None
    return [(rel, info.filename) for info, rel, kind, _extra in plan if kind == "link"]
