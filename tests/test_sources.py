"""Sources: lock, fetch (a real HTTP server on 127.0.0.1), verify, unpack, patch, prepare, offline."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from backend.errors import BackendError
from backend.sources import fetch, lock, patches, prepare, unpack
from backend.sources.nar import nar_hash


# --- fixtures -----------------------------------------------------------------

def make_tar(files: dict[str, object], top: str = "pkg-1.0") -> bytes:
    """A .tar.gz whose members are under ``top/``.  Values: bytes (file), ("x", bytes) executable,
    ("link", target), ("dir",)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo(top)
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tar.addfile(info)
        for name, value in files.items():
            info = tarfile.TarInfo(f"{top}/{name}" if top else name)
            if isinstance(value, bytes):
                info.size = len(value)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(value))
            elif value[0] == "x":
                info.size = len(value[1])
                info.mode = 0o755
                tar.addfile(info, io.BytesIO(value[1]))
            elif value[0] == "link":
                info.type = tarfile.SYMTYPE
                info.linkname = value[1]
                tar.addfile(info)
            elif value[0] == "dir":
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
    return buf.getvalue()


def raw_tar(members: list[tarfile.TarInfo]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info in members:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return buf.getvalue()


class Server:
    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.truncate_once: set[str] = set()
        self.errors: dict[str, int] = {}
        self.requests: list[tuple[str, str | None]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                path = self.path
                outer.requests.append((path, self.headers.get("Range")))
                if path in outer.errors:
                    self.send_response(outer.errors[path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = outer.files.get(path)
                if data is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start = 0
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes=") and rng.endswith("-"):
                    start = int(rng[6:-1])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if path in outer.truncate_once:
                    outer.truncate_once.discard(path)
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = Server()
    yield srv
    srv.stop()


def write_lock(tmp_path: Path, tables: dict[str, dict]) -> lock.Lock:
    lines = ["format = 1", ""]
    for name, table in tables.items():
        lines.append(f"[source.{name}]")
        for key, value in table.items():
            lines.append(f"{key} = {json.dumps(value)}")
        lines.append("")
    path = tmp_path / "sources.lock"
    path.write_text("\n".join(lines))
    return lock.load(path)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


DEMO = {"setup.py": b"print('demo')\n", "bin/run": ("x", b"#!/bin/sh\necho hi\n"), "docs/link": ("link", "../setup.py"),
        "empty": ("dir",)}


def tree_nar(files: dict, tmp_path: Path) -> str:
    """The NAR hash of ``files`` as unpack produces them (strip 1)."""
    archive = tmp_path / "ref.tar.gz"
    archive.write_bytes(make_tar(files))
    unpack.extract(archive, tmp_path / "ref", 1)
    return nar_hash(tmp_path / "ref")


@pytest.fixture
def quiet_patches(tmp_path):
    folder = tmp_path / "no-patches"
    folder.mkdir()
    return folder


# --- the real lock ------------------------------------------------------------

def test_real_lock_covers_the_stack_with_hashes():
    from backend import recipes

    real = lock.load()
    for component in recipes.names():
        entries = real.for_component(component)
        assert entries, component
        assert entries[0].name == component and entries[0].dest is None
    for entry in real.entries.values():
        assert entry.verified, entry.name
        assert entry.why, entry.name
    assert real.entries["torch"].sha256 == "e17504700ebc4c87f9b57059df1c4d790b769458c04db144c7a92aea90f2c92b"
    assert real.entries["vllm"].nar == "sha256-qsAvcOB8ugGlBqBrLfNHqaIUcxLwaXBTg8xWRnGyd94="
    vllm = [e.name for e in real.for_component("vllm")]
    assert vllm[0] == "vllm"
    assert {"vllm-cutlass", "vllm-flash-attn", "flashmla", "flashmla-cutlass", "qutlass", "triton-kernels"} <= set(vllm)
    assert real.entries["flashmla-cutlass"].dest == "flashmla/csrc/cutlass"
    assert real.entries["flashmla-cutlass"].url.endswith("147f5673d0c1c3dcf66f78d677fd647e4a020219.tar.gz")
    assert real.entries["bitsandbytes"].version == "0.49.1"


def test_lock_rejects_bad_entries(tmp_path):
    with pytest.raises(BackendError, match="nar: .*hash"):
        write_lock(tmp_path, {"a": {"component": "a", "version": "1", "url": "http://x/a.tgz", "nar": "sha256-nope"}})
    with pytest.raises(BackendError, match="names no source 'b'"):
        write_lock(tmp_path, {"a": {"component": "a", "version": "1", "url": "http://x/a.tgz", "dest": "b/sub"}})
    with pytest.raises(BackendError, match="unknown key"):
        write_lock(tmp_path, {"a": {"component": "a", "version": "1", "url": "http://x/a.tgz", "sha": "1"}})
    with pytest.raises(BackendError, match="does not exist"):
        lock.load(tmp_path / "missing.lock")


# --- fetch --------------------------------------------------------------------

def test_good_download_prepare_and_reuse(server, tmp_path, quiet_patches, capsys):
    data = make_tar(DEMO)
    server.files["/demo.tar.gz"] = data
    lk = write_lock(tmp_path, {"demo": {"component": "demo", "version": "1.0", "url": server.url("/demo.tar.gz"),
                                        "sha256": sha(data)}})
    cache, work = tmp_path / "cache", tmp_path / "work"
    got = prepare.prepare("demo", cache_dir=cache, workdir=work, lock=lk, patches_dir=quiet_patches)
    assert got.origin == "lock" and got.root == work / "demo"
    assert (got.root / "setup.py").read_bytes() == DEMO["setup.py"]
    assert os.access(got.root / "bin/run", os.X_OK) and not os.access(got.root / "setup.py", os.X_OK)
    assert os.readlink(got.root / "docs/link") == "../setup.py"
    assert (got.root / "empty").is_dir()
    assert got.source_hash == f"sha256:{sha(data)}"
    assert (cache / "downloads" / "demo-1.0.tar.gz").read_bytes() == data
    assert "fetch demo 1.0" in capsys.readouterr().err  # progress on stderr
    # A build leaves files in the tree; preparing again with the same key keeps them.
    (got.root / "build-output").write_text("kept")
    again = prepare.prepare("demo", cache_dir=cache, workdir=work, lock=lk, patches_dir=quiet_patches)
    assert again.reused and again.build_key == got.build_key
    assert (again.root / "build-output").read_text() == "kept"
    assert len(server.requests) == 1  # the cache answered the second time


def test_wrong_hash_is_refused_and_moved_aside(server, tmp_path):
    data = make_tar(DEMO)
    server.files["/demo.tar.gz"] = data
    lk = write_lock(tmp_path, {"demo": {"component": "demo", "version": "1.0", "url": server.url("/demo.tar.gz"),
                                        "sha256": "0" * 64}})
    with pytest.raises(BackendError, match="sha256 mismatch") as err:
        prepare.prepare("demo", cache_dir=tmp_path / "c", workdir=tmp_path / "w", lock=lk)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "c/downloads/demo-1.0.tar.gz").exists()
    assert (tmp_path / "c/downloads/demo-1.0.tar.gz.bad").exists()
    assert not (tmp_path / "w/demo").exists()


def test_wrong_nar_hash_is_refused(server, tmp_path):
    data = make_tar(DEMO)
    server.files["/demo.tar.gz"] = data
    lk = write_lock(tmp_path, {"demo": {"component": "demo", "version": "1.0", "url": server.url("/demo.tar.gz"),
                                        "nar": "sha256-" + "A" * 43 + "="}})
    with pytest.raises(BackendError, match="NAR hash mismatch"):
        prepare.prepare("demo", cache_dir=tmp_path / "c", workdir=tmp_path / "w", lock=lk)
    assert not (tmp_path / "w/demo").exists()


def test_truncated_download_resumes_with_range(server, tmp_path):
    data = os.urandom(3_000_000)
    server.files["/big.bin"] = data
    server.truncate_once.add("/big.bin")
    dest = tmp_path / "big.bin"
    fetch.download(server.url("/big.bin"), dest, label="big", progress=False)
    assert dest.read_bytes() == data
    ranges = [r for _, r in server.requests]
    assert ranges[0] is None and ranges[1] == f"bytes={len(data) // 2}-"


def test_partial_file_from_an_earlier_run_is_resumed(server, tmp_path):
    data = make_tar({"a": os.urandom(100_000)})
    server.files["/demo.tar.gz"] = data
    lk = write_lock(tmp_path, {"demo": {"component": "demo", "version": "1.0", "url": server.url("/demo.tar.gz"),
                                        "sha256": sha(data)}})
    downloads = tmp_path / "c/downloads"
    downloads.mkdir(parents=True)
    (downloads / "demo-1.0.tar.gz.part").write_bytes(data[:1000])
    path = fetch.ensure(lk.entries["demo"], cache_dir=tmp_path / "c", progress=False)
    assert path.read_bytes() == data
    assert server.requests == [("/demo.tar.gz", "bytes=1000-")]


def test_server_error_is_one_line(server, tmp_path):
    server.errors["/demo.tar.gz"] = 500
    lk = write_lock(tmp_path, {"demo": {"component": "demo", "version": "1.0", "url": server.url("/demo.tar.gz"),
                                        "sha256": "0" * 64}})
    with pytest.raises(BackendError, match="HTTP 500") as err:
        prepare.prepare("demo", cache_dir=tmp_path / "c", workdir=tmp_path / "w", lock=lk)
    assert "\n" not in str(err.value) and "demo 1.0" in str(err.value)


def test_unreachable_server_gives_up_keeping_nothing(tmp_path):
    with pytest.raises(BackendError, match="failed after 2 attempts"):
        fetch.download("http://127.0.0.1:9/x.tgz", tmp_path / "x.tgz", label="x", attempts=2, timeout=2)


def test_unverified_source_is_refused_unless_trusted(server, tmp_path, quiet_patches, capsys):
    data = make_tar(DEMO)
    server.files["/demo.tar.gz"] = data
    lk = write_lock(tmp_path, {"demo": {"component": "demo", "version": "1.0", "url": server.url("/demo.tar.gz")}})
    with pytest.raises(BackendError, match="no hash in the lock.*allow-unverified=demo"):
        prepare.prepare("demo", cache_dir=tmp_path / "c", workdir=tmp_path / "w", lock=lk)
    assert server.requests == []  # refused before downloading
    got = prepare.prepare("demo", cache_dir=tmp_path / "c", workdir=tmp_path / "w", lock=lk,
                          allow_unverified=["demo"], patches_dir=quiet_patches)
    assert got.source_hash == f"sha256:{sha(data)}"
    assert "has no hash" in capsys.readouterr().err


# --- offline ------------------------------------------------------------------

def test_offline_cold_cache_names_the_source_and_where_to_put_it(tmp_path):
    lk = write_lock(tmp_path, {"demo": {"component": "demo", "version": "1.0", "url": "http://127.0.0.1:9/demo.tar.gz",
                                        "sha256": "0" * 64}})
    with pytest.raises(BackendError) as err:
        prepare.prepare("demo", cache_dir=tmp_path / "c", workdir=tmp_path / "w", lock=lk, offline=True)
    text = str(err.value)
    assert text.startswith("offline: source demo 1.0 is not in the cache")
    assert str(tmp_path / "c/downloads/demo-1.0.tar.gz") in text and "http://127.0.0.1:9/demo.tar.gz" in text
    with pytest.raises(BackendError, match=r"offline: 1 source\(s\) not in the cache: demo"):
        prepare.fetch_all(["demo"], cache_dir=tmp_path / "c", offline=True, lock=lk)


def test_offline_warm_cache_needs_no_network(server, tmp_path, quiet_patches):
    data = make_tar(DEMO)
    server.files["/demo.tar.gz"] = data
    nar = tree_nar(DEMO, tmp_path)
    lk = write_lock(tmp_path, {"demo": {"component": "demo", "version": "1.0", "url": server.url("/demo.tar.gz"),
                                        "nar": nar}})
    paths = prepare.fetch_all(["demo"], cache_dir=tmp_path / "c", offline=False, lock=lk)
    assert [p.name for p in paths] == ["demo-1.0.tar.gz"]
    assert fetch.read_marker(paths[0])["nar"] == nar  # verified once, remembered
    server.stop()
    server.files.clear()
    assert prepare.fetch_all(["demo"], cache_dir=tmp_path / "c", offline=True, lock=lk) == paths
    got = prepare.prepare("demo", cache_dir=tmp_path / "c", workdir=tmp_path / "w", lock=lk, offline=True,
                          patches_dir=quiet_patches)
    assert got.source_hash == nar and (got.root / "setup.py").exists()


def test_mirror_url_override(server, tmp_path, quiet_patches):
    data = make_tar(DEMO)
    server.files["/mirror/demo-1.0.tar.gz"] = data
    lk = write_lock(tmp_path, {"demo": {"component": "demo", "version": "1.0", "url": "https://example.invalid/demo.tar.gz",
                                        "sha256": sha(data)}})
    got = prepare.prepare("demo", cache_dir=tmp_path / "c", workdir=tmp_path / "w", lock=lk,
                          base_url_override=server.url("/mirror/"), patches_dir=quiet_patches)
    assert (got.root / "setup.py").exists()


# --- unsafe archives ----------------------------------------------------------

def _member(name, kind=tarfile.REGTYPE, linkname="", size=1):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.size = size if kind == tarfile.REGTYPE else 0
    return info


@pytest.mark.parametrize("members, why", [
    ([_member("pkg/ok"), _member("pkg/../../evil")], "'..' in path"),
    ([_member("/etc/evil")], "absolute path"),
    ([_member("pkg/ok"), _member("pkg/link", tarfile.SYMTYPE, "../../outside")], "points outside the tree"),
    ([_member("pkg/link", tarfile.SYMTYPE, "/etc/passwd")], "points outside the tree"),
    ([_member("pkg/dev", tarfile.CHRTYPE)], "device files"),
    ([_member("pkg/fifo", tarfile.FIFOTYPE)], "device files"),
    ([_member("pkg/hard", tarfile.LNKTYPE, "/etc/passwd")], "hard link"),
    ([_member("pkg/d", tarfile.SYMTYPE, "."), _member("pkg/d/x")], "parent folder is a symlink"),
])
def test_unsafe_archives_are_refused(tmp_path, members, why):
    archive = tmp_path / "bad.tar"
    archive.write_bytes(raw_tar(members))
    dest = tmp_path / "out"
    with pytest.raises(BackendError, match="unsafe archive") as err:
        unpack.extract(archive, dest, 1)
    assert why in str(err.value)
    assert not dest.exists()
    assert not (tmp_path / "evil").exists() and not (tmp_path.parent / "evil").exists()


def test_unsafe_archive_from_the_server_is_refused_in_prepare(server, tmp_path):
    data = raw_tar([_member("pkg/link", tarfile.SYMTYPE, "../../../etc")])
    server.files["/bad.tar"] = data
    lk = write_lock(tmp_path, {"bad": {"component": "bad", "version": "1", "url": server.url("/bad.tar"), "sha256": sha(data)}})
    with pytest.raises(BackendError, match="unsafe archive"):
        prepare.prepare("bad", cache_dir=tmp_path / "c", workdir=tmp_path / "w", lock=lk)
    assert not (tmp_path / "w/bad").exists()


def test_zip_archives_and_inside_links(tmp_path):
    import zipfile

    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("top/a.txt", "a")
        info = zipfile.ZipInfo("top/run.sh")
        info.external_attr = 0o100755 << 16
        zf.writestr(info, "#!/bin/sh\n")
    unpack.extract(archive, tmp_path / "out", 1)
    assert (tmp_path / "out/a.txt").read_text() == "a" and os.access(tmp_path / "out/run.sh", os.X_OK)
    bad = tmp_path / "b.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("top/../../x", "a")
    with pytest.raises(BackendError, match="unsafe archive"):
        unpack.extract(bad, tmp_path / "out2", 1)


# --- patches, placement, local trees -------------------------------------------

GOOD_PATCH = """Why: a test patch.

--- a/setup.py
+++ b/setup.py
@@ -1 +1 @@
-print('demo')
+print('patched')
"""

BAD_PATCH = """Why: a patch that no longer fits.

--- a/setup.py
+++ b/setup.py
@@ -1 +1 @@
-print('something else')
+print('other')
"""


def test_patches_apply_in_order_and_change_the_build_key(server, tmp_path, quiet_patches):
    data = make_tar(DEMO)
    server.files["/demo.tar.gz"] = data
    lk = write_lock(tmp_path, {"demo": {"component": "demo", "version": "1.0", "url": server.url("/demo.tar.gz"),
                                        "sha256": sha(data)}})
    plain = prepare.prepare("demo", cache_dir=tmp_path / "c", workdir=tmp_path / "w", lock=lk, patches_dir=quiet_patches)
    pdir = tmp_path / "patches"
    (pdir / "demo").mkdir(parents=True)
    (pdir / "demo/0001-good.patch").write_text(GOOD_PATCH)
    patched = prepare.prepare("demo", cache_dir=tmp_path / "c", workdir=tmp_path / "w", lock=lk, patches_dir=pdir)
    assert not patched.reused and patched.build_key != plain.build_key
    assert patched.patches == [("0001-good.patch", sha(GOOD_PATCH.encode()))]
    assert (patched.root / "setup.py").read_text() == "print('patched')\n"
    assert not list(patched.root.glob("*.orig")) and not list(patched.root.glob("*.rej"))


def test_failing_patch_names_file_and_hunk(server, tmp_path):
    data = make_tar(DEMO)
    server.files["/demo.tar.gz"] = data
    lk = write_lock(tmp_path, {"demo": {"component": "demo", "version": "1.0", "url": server.url("/demo.tar.gz"),
                                        "sha256": sha(data)}})
    pdir = tmp_path / "patches"
    (pdir / "demo").mkdir(parents=True)
    (pdir / "demo/0001-good.patch").write_text(GOOD_PATCH)
    (pdir / "demo/0002-bad.patch").write_text(BAD_PATCH)
    with pytest.raises(BackendError) as err:
        prepare.prepare("demo", cache_dir=tmp_path / "c", workdir=tmp_path / "w", lock=lk, patches_dir=pdir)
    text = str(err.value)
    assert "0002-bad.patch" in text and "hunk #1 of setup.py" in text and "\n" not in text
    assert not (tmp_path / "w" / prepare.STAMP).exists()  # not marked prepared: the next run starts over


def test_dest_entries_are_placed_inside_the_parent_tree(server, tmp_path, quiet_patches):
    main = make_tar({"setup.py": b"x", "csrc/cutlass": ("dir",)})
    sub = make_tar({"include/cutlass.h": b"// cutlass\n"}, top="cutlass-abc")
    server.files["/main.tar.gz"] = main
    server.files["/sub.tar.gz"] = sub
    lk = write_lock(tmp_path, {
        "app": {"component": "app", "version": "1", "url": server.url("/main.tar.gz"), "sha256": sha(main)},
        "mla": {"component": "app", "version": "1", "url": server.url("/main.tar.gz"), "sha256": sha(main),
                "filename": "app-1.tar.gz"},
        "mla-cutlass": {"component": "app", "version": "abc", "url": server.url("/sub.tar.gz"), "sha256": sha(sub),
                        "dest": "mla/csrc/cutlass"},
    })
    got = prepare.prepare("app", cache_dir=tmp_path / "c", workdir=tmp_path / "w", lock=lk, patches_dir=quiet_patches)
    assert got.extras == {"mla": tmp_path / "w/mla", "mla-cutlass": tmp_path / "w/mla/csrc/cutlass"}
    assert (tmp_path / "w/mla/csrc/cutlass/include/cutlass.h").exists()
    assert len([r for r in server.requests if r[0] == "/main.tar.gz"]) == 1  # shared cache file


def test_entry_patches_apply_to_their_own_tree_and_change_the_build_key(server, tmp_path, quiet_patches):
    """patches/<component>/<entry>/ patch a side tree (vLLM's flash-attention stands behind 'side')."""
    main = make_tar({"setup.py": b"x"})
    side = make_tar({"setup.py": b"print('demo')\n"}, top="side-1")
    server.files["/main.tar.gz"] = main
    server.files["/side.tar.gz"] = side
    lk = write_lock(tmp_path, {
        "app": {"component": "app", "version": "1", "url": server.url("/main.tar.gz"), "sha256": sha(main)},
        "side": {"component": "app", "version": "1", "url": server.url("/side.tar.gz"), "sha256": sha(side)},
    })
    plain = prepare.prepare("app", cache_dir=tmp_path / "c", workdir=tmp_path / "w", lock=lk, patches_dir=quiet_patches)
    pdir = tmp_path / "patches"
    (pdir / "app/side").mkdir(parents=True)
    (pdir / "app/side/0001-good.patch").write_text(GOOD_PATCH)
    got = prepare.prepare("app", cache_dir=tmp_path / "c", workdir=tmp_path / "w", lock=lk, patches_dir=pdir)
    assert got.patches == [("side/0001-good.patch", sha(GOOD_PATCH.encode()))]
    assert (got.extras["side"] / "setup.py").read_text() == "print('patched')\n"
    assert (got.root / "setup.py").read_text() == "x"
    assert got.build_key != plain.build_key
    # a local main tree still gets its lock side trees patched
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    local = prepare.prepare("app", cache_dir=tmp_path / "c", workdir=tmp_path / "w2", lock=lk, local=checkout, patches_dir=pdir)
    assert local.patches == got.patches and (local.extras["side"] / "setup.py").read_text() == "print('patched')\n"
    (pdir / "app/nosuch").mkdir()
    (pdir / "app/nosuch/0001.patch").write_text(GOOD_PATCH)
    with pytest.raises(BackendError, match=r"^patches/app/nosuch/ names no lock entry of app \(entries: app, side\)$"):
        prepare.prepare("app", cache_dir=tmp_path / "c", workdir=tmp_path / "w3", lock=lk, patches_dir=pdir)


def test_entries_that_complete_the_lock_tree_are_not_fetched_for_a_local_tree(server, tmp_path, quiet_patches):
    """flashinfer's tag tree only completes the PyPI sdist: a local checkout neither needs nor downloads it."""
    main = make_tar({"setup.py": b"x"})
    tag = make_tar({"packaging/build_backend.py": b"# b\n"}, top="tag-1")
    server.files["/main.tar.gz"] = main
    server.files["/tag.tar.gz"] = tag
    lk = write_lock(tmp_path, {
        "app": {"component": "app", "version": "1", "url": server.url("/main.tar.gz"), "sha256": sha(main)},
        "app-tag": {"component": "app", "version": "1", "url": server.url("/tag.tar.gz"), "sha256": sha(tag),
                    "completes_main": True},
    })
    locked = prepare.prepare("app", cache_dir=tmp_path / "c", workdir=tmp_path / "w", lock=lk, patches_dir=quiet_patches)
    assert (locked.extras["app-tag"] / "packaging/build_backend.py").exists()
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    server.requests.clear()
    local = prepare.prepare("app", cache_dir=tmp_path / "c2", workdir=tmp_path / "w2", lock=lk, local=checkout,
                            patches_dir=quiet_patches)
    assert local.extras == {} and not server.requests


def test_local_tree_is_used_in_place_without_patches(server, tmp_path, capsys):
    extra = make_tar({"include/x.h": b"x"})
    server.files["/extra.tar.gz"] = extra
    lk = write_lock(tmp_path, {
        "app": {"component": "app", "version": "1", "url": "http://127.0.0.1:9/never.tar.gz", "sha256": "0" * 64},
        "app-dep": {"component": "app", "version": "1", "url": server.url("/extra.tar.gz"), "sha256": sha(extra)},
    })
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "setup.py").write_text("print('mine')\n")
    pdir = tmp_path / "patches"
    (pdir / "app").mkdir(parents=True)
    (pdir / "app/0001.patch").write_text(GOOD_PATCH)
    got = prepare.prepare("app", cache_dir=tmp_path / "c", workdir=tmp_path / "w", lock=lk, local=checkout, patches_dir=pdir)
    assert got.origin == "local" and got.root == checkout and got.patches == []
    assert (checkout / "setup.py").read_text() == "print('mine')\n"
    assert (got.extras["app-dep"] / "include/x.h").exists()
    assert "not applied" in capsys.readouterr().err
    (checkout / "setup.py").write_text("print('changed')\n")
    changed = prepare.prepare("app", cache_dir=tmp_path / "c", workdir=tmp_path / "w", lock=lk, local=checkout, patches_dir=pdir)
    assert changed.reused  # the extras were kept
    assert changed.source_hash != got.source_hash and changed.build_key != got.build_key


def test_unknown_component(tmp_path):
    lk = write_lock(tmp_path, {"demo": {"component": "demo", "version": "1", "url": "http://x/a.tgz", "sha256": "0" * 64}})
    with pytest.raises(BackendError, match="no source for component 'vllm'; components in the lock: demo"):
        prepare.prepare("vllm", cache_dir=tmp_path / "c", workdir=tmp_path / "w", lock=lk)


def test_patch_program_failure_message_when_file_missing(tmp_path):
    tree = tmp_path / "t"
    tree.mkdir()
    pdir = tmp_path / "p"
    (pdir / "c").mkdir(parents=True)
    (pdir / "c/0001.patch").write_text(GOOD_PATCH)
    with pytest.raises(BackendError, match="0001.patch does not apply to c"):
        patches.apply(tree, "c", pdir)


# --- commands -----------------------------------------------------------------

def test_lock_command_records_missing_hashes(server, tmp_path):
    from backend.settings import Settings
    from backend.sources import command

    archive = make_tar(DEMO)
    server.files["/owner/repo/archive/v1.tar.gz"] = archive
    server.files["/pkg-1.0.tar.gz"] = archive
    lk = write_lock(tmp_path, {
        "gh": {"component": "gh", "version": "1", "url": server.url("/owner/repo/archive/v1.tar.gz")},
        "pypi": {"component": "pypi", "version": "1.0", "url": server.url("/pkg-1.0.tar.gz"), "why": "kept"},
    })
    settings = Settings(cache_dir=tmp_path / "c")
    assert command.lock_main(settings, lk.path) == 0
    again = lock.load(lk.path)
    assert again.entries["gh"].nar == tree_nar(DEMO, tmp_path) and again.entries["gh"].sha256 is None
    assert again.entries["pypi"].sha256 == sha(archive) and again.entries["pypi"].why == "kept"
    offline = Settings(cache_dir=tmp_path / "c", offline=True)
    assert command.lock_main(offline, lk.path) == 0  # nothing left to record


def test_fetch_command_downloads_what_components_need(server, tmp_path, capsys):
    from backend.settings import Settings
    from backend.sources import command

    data = make_tar(DEMO)
    server.files["/t.tar.gz"] = data
    lk = write_lock(tmp_path, {
        "torch": {"component": "torch", "version": "9", "url": server.url("/t.tar.gz"), "sha256": sha(data)},
        "bitsandbytes": {"component": "bitsandbytes", "version": "9", "url": server.url("/t.tar.gz"), "sha256": sha(data),
                         "filename": "torch-9.tar.gz"},
    })
    # build-requirements=ranges: the build-requirement lock's files are tests/test_buildreqs.py's (no index here)
    settings = Settings(cache_dir=tmp_path / "c", components=("bitsandbytes",), build_requirements="ranges")
    assert command.fetch_main(settings, lock=lk) == 0
    out = capsys.readouterr().out
    assert "bitsandbytes" in out and "sha256" in out
    offline = Settings(cache_dir=tmp_path / "empty", components=("bitsandbytes",), offline=True)
    with pytest.raises(BackendError, match="offline: .*bitsandbytes"):
        command.fetch_main(offline, lock=lk)
    warm = Settings(cache_dir=tmp_path / "c", components=("bitsandbytes",), offline=True)
    assert command.fetch_main(warm, lock=lk) == 0


def test_cli_fetch_offline_cold_cache_is_one_line(run_backend, tmp_path):
    result = run_backend("fetch", "-C", "components=bitsandbytes", "-C", "torch=existing", "-C", "offline=true",
                         "-C", f"cache-dir={tmp_path / 'cold'}")
    assert result.returncode != 0
    assert "offline" in result.stderr and "bitsandbytes" in result.stderr
    assert "Traceback" not in result.stderr


# --- the real lock against the real index (network) ----------------------------

@pytest.mark.slow
def test_real_pypi_sources_fetch_verify_and_prepare(tmp_path):
    """flashinfer and xformers come from PyPI: download, check the lock's sha256, unpack."""
    real = lock.load()
    paths = prepare.fetch_all(["flashinfer", "xformers"], cache_dir=tmp_path / "c", offline=False, lock=real)
    assert sorted(p.name for p in paths) == ["flashinfer-0.6.1.tar.gz", "xformers-0.0.33.post2.tar.gz"]
    got = prepare.prepare("flashinfer", cache_dir=tmp_path / "c", workdir=tmp_path / "w", lock=real, offline=True)
    assert (got.root / "pyproject.toml").exists() and (got.root / "3rdparty/cutlass").is_dir()
    assert got.source_hash == "sha256:" + real.entries["flashinfer"].sha256


BNB_MIRROR = Path("/work/.mirror/bitsandbytes-foundation+bitsandbytes/repo")


@pytest.mark.skipif(not (BNB_MIRROR / "HEAD").exists(), reason="no local git mirror of bitsandbytes")
def test_real_lock_entry_verifies_a_github_style_archive(server, tmp_path, quiet_patches):
    """The lock's bitsandbytes NAR hash, checked through download, safe unpack and placement."""
    import subprocess

    data = subprocess.run(["git", "-c", "core.autocrlf=false", "--git-dir", str(BNB_MIRROR), "archive", "--format=tar.gz",
                           "--prefix=bitsandbytes-0.49.1/", "0.49.1"], check=True, capture_output=True).stdout
    entry = lock.load().entries["bitsandbytes"]
    server.files[f"/mirror/{entry.filename}"] = data
    real = lock.Lock(entries={"bitsandbytes": entry})
    got = prepare.prepare("bitsandbytes", cache_dir=tmp_path / "c", workdir=tmp_path / "w", lock=real,
                          base_url_override=server.url("/mirror"), patches_dir=quiet_patches)
    assert got.source_hash == entry.nar and (got.root / "CMakeLists.txt").exists()
