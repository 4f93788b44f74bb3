import contextlib
import os
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from backend.wheels import built, manylinux  # noqa: E402  (the project root is on sys.path from here)


@pytest.fixture
def run_backend(tmp_path):
    """Run `python -m backend ...` as a user would, from the project root."""
    import subprocess

    def run(*args, cwd=ROOT, env=None):
        full_env = dict(os.environ)
        full_env.setdefault("VLLM_STACK_CACHE_DIR", str(tmp_path / "cache"))
        full_env.update(env or {})
        return subprocess.run([sys.executable, "-m", "backend", *args], cwd=cwd, capture_output=True, text=True, env=full_env)

    return run


def _tree_state(folder: Path, ignore: tuple[str, ...]) -> dict[str, tuple]:
    """Every entry under ``folder``: its kind, and for a file its size and modification time.

    Bytecode caches (``__pycache__``), which running Python writes beside what it imports, and names
    matching ``ignore`` are left out; a folder counts by its entries, not by its own time.
    """
    import fnmatch
    import stat

    state: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if d != "__pycache__" and not any(fnmatch.fnmatch(d, p) for p in ignore)]
        for name in dirnames + [f for f in filenames if not any(fnmatch.fnmatch(f, p) for p in ignore)]:
            path = Path(dirpath) / name
            info = path.lstat()
            kind = stat.S_IFMT(info.st_mode)
            state[str(path.relative_to(folder))] = (kind,) if stat.S_ISDIR(info.st_mode) else (
                kind, info.st_size, info.st_mtime_ns)
    return state


@contextlib.contextmanager
def kept_unchanged(*folders: Path, ignore: tuple[str, ...] = ()):
    """Around the ``yield`` of a fixture that several tests share: its teardown fails, naming the paths,
    when a test added, removed or rewrote anything under ``folders`` (a test that changes them must work on
    a copy).  Read-only permissions would not catch it: the suite runs as root on CI."""
    before = [(folder, _tree_state(folder, ignore)) for folder in folders]
    yield
    for folder, old in before:
        new = _tree_state(folder, ignore)
        changed = sorted(path for path in old.keys() | new.keys() if old.get(path) != new.get(path))
        assert not changed, (f"a test changed the shared fixture tree {folder} ({len(changed)} paths, e.g. "
                             f"{', '.join(changed[:5])}): work on a copy")


def bare_env(home: Path) -> dict[str, str]:
    """A user's environment for a bare interpreter: the system PATH, HOME and the backend's cache under ``home``."""
    return {"PATH": "/usr/bin:/bin", "VLLM_STACK_CACHE_DIR": str(home / "cache"), "HOME": str(home)}


@pytest.fixture(scope="session")
def bare_python(tmp_path_factory):
    """An interpreter with nothing installed: a venv without pip, not seeing the system site-packages."""
    path = tmp_path_factory.mktemp("bare") / "venv"
    venv.EnvBuilder(with_pip=False, system_site_packages=False).create(path)
    with kept_unchanged(path):
        yield path / "bin" / "python"


@pytest.fixture(scope="session", autouse=True)
def standin_trees_kept_unchanged():
    """The stand-ins' trees (standin_helpers.standin_tree) are shared by every test of the session: its end
    fails, naming the paths, when a test changed them."""
    from standin_helpers import standin_trees

    with kept_unchanged(standin_trees()):
        yield


def record_hash(data: bytes) -> str:
    """A RECORD line's hash: sha256=<urlsafe base64, no padding>."""
    import base64
    import hashlib

    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_wheel(
    directory: Path,
    name: str,
    version: str,
    files: dict | None = None,
    *,
    requires=(),
    data_files: dict | None = None,
    tag: str = "py3-none-any",
    description: str = "A tiny test wheel.\n\nWith a body line: Version: not-a-header\n",
    big: int = 0,
    corrupt: str | None = None,
    metadata_version: str | None = None,
) -> Path:
    """A tiny but real wheel, members deflated, RECORD complete (as bdist_wheel makes it): the tests' one maker.

    ``files`` (member -> bytes, or a Path to read) are its contents; without them it holds the package
    ``<name>/__init__.py`` (``VERSION``, ``NAME``).  ``data_files`` go under ``<name>-<version>.data/``;
    ``big`` adds that many bytes of compressible text; ``corrupt`` names a member whose RECORD hash is
    written wrong; ``metadata_version`` is a METADATA Version other than the file name's.
    """
    import csv
    import io
    import zipfile

    norm = name.replace("-", "_").lower()
    dist_info = f"{norm}-{version}.dist-info"
    members: dict[str, bytes] = {}
    if files is None:
        members[f"{norm}/__init__.py"] = f"VERSION = {version!r}\nNAME = {name!r}\n".encode()
    for path, data in (files or {}).items():
        members[path] = data.read_bytes() if isinstance(data, Path) else data
    if big:
        import random

        rng = random.Random(1)
        words = [bytes(rng.choices(b"abcdefghij", k=8)) for _ in range(1000)]
        members[f"{norm}/blob.txt"] = b" ".join(rng.choices(words, k=big // 9))
    for path, data in (data_files or {}).items():
        members[f"{norm}-{version}.data/{path}"] = data
    metadata = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {metadata_version or version}", "Summary: tiny"]
    metadata += [f"Requires-Dist: {r}" for r in requires]
    metadata += ["Description-Content-Type: text/plain", "", description]
    members[f"{dist_info}/METADATA"] = "\n".join(metadata).encode()
    purelib = "true" if tag.endswith("-any") else "false"
    members[f"{dist_info}/WHEEL"] = f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: {purelib}\nTag: {tag}\n".encode()
    record_rows = [[path, record_hash(data + (b"tampered" if path == corrupt else b"")), str(len(data))]
                   for path, data in members.items()]
    record_rows.append([f"{dist_info}/RECORD", "", ""])
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(record_rows)
    members[f"{dist_info}/RECORD"] = buffer.getvalue().encode()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{norm}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for member, data in members.items():
            archive.writestr(member, data)
    return path


def tag_wheels(wheels, platform: str, target, exclude: frozenset, say=None) -> list[Path]:
    """Each wheel with the tag auditwheel's policies give it (backend.wheels.manylinux.tagged), read and written
    once, as the executor tags a built wheel: the tests' way to tag a wheel on its own."""
    out = []
    for wheel in map(Path, wheels):
        copy = built.read(wheel, into=wheel.parent, scan_code=False)
        files, tags = manylinux.tagged(copy, platform, exclude, target, say)
        if tags is None:
            copy.discard()
            out.append(wheel)
        else:
            out.append(copy.write(files, platform_tags=tags))
            wheel.unlink()
    return out
