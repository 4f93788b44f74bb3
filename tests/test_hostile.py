"""Hostile input and faults (issue 13): nothing lost, nothing tampered used, one clear line every time.

Each test reproduces one attack with real files, real processes (``python -m
backend``) and, for downloads, a real HTTP server on 127.0.0.1.  The builds
use the stand-in trees of tests/fixtures/standins (they stand for torch and
bitsandbytes: same build drivers, seconds instead of hours).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import resource
import stat as stat_mod
import struct
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from backend import cache_marker, project, recipes
from backend.errors import BackendError
from backend.pipeline import cache_storage, environment, snapshot
from backend.pipeline.executor import process_environment
from backend.project import load_settings
from backend.recipes import BuildContext
from backend.settings import Settings, redact_url
from backend.sources import fetch, lock, patches, prepare, unpack
from backend.variants import Variant
from backend.verify import elf, smoke
from backend.wheels import closure
from backend.wheels.wheelhouse import Wheelhouse
from standin_helpers import find_nvcc, host_isa, standin_tree
from test_sources import Server, make_tar, sha, tree_nar, write_lock
from test_closure import index  # noqa: F401 (the closure's stand-in index, a fixture)
from conftest import make_wheel, record_hash

ROOT = Path(__file__).resolve().parent.parent
NVCC = find_nvcc()
ISA = host_isa()
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="needs a CUDA 13 nvcc (system /usr/local/cuda-13.0 or PyPI)")
VARIANT = f"vllm-python{sys.version_info.major}{sys.version_info.minor}-cuda13_0-sm90-{ISA}"
LABEL = f"cu130.sm90.{ISA}"


def backend_env() -> dict[str, str]:
    env = dict(os.environ)
    if NVCC:
        env["PATH"] = f"{Path(NVCC).parent}{os.pathsep}{env['PATH']}"
    return env


def backend(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "backend", *args], cwd=ROOT, capture_output=True, text=True,
                          env=env or backend_env(), timeout=timeout)


def build_args(tmp: Path, components: str, sources: dict[str, Path] | None = None, **extra: str | None) -> list[str]:
    """-C pairs of a stand-in build; a None value leaves that key out."""
    pairs = {
        "sm": "90", "isa": ISA, "cuda": "13.0", "toolchain": "system", "components": components,
        "cache-dir": str(tmp / "cache"), "wheelhouse": str(tmp / "wheelhouse"), "jobs": "1",
        "compiler-cache": "none", "runtime-deps": "none", "smoke": "off",  # the stack's own wheels only
        **{f"source.{c}": str((sources or {}).get(c, standin_tree(c))) for c in components.split(",")},
        **extra,
    }
    return [arg for key, value in pairs.items() if value is not None for arg in ("-C", f"{key}={value}")]


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The run failed with an `error:` line and no traceback; that line."""
    assert result.returncode != 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [l for l in result.stderr.splitlines() if l.startswith("error: ")]
    assert len(lines) == 1, result.stderr[-3000:]
    return lines[0]


# --- 1. two builds of one variant at once --------------------------------------

@needs_nvcc
def test_two_builds_of_one_variant_take_turns_and_share_one_result(tmp_path):
    args = ["build", *build_args(tmp_path, "bitsandbytes")]
    first_log = tmp_path / "first.log"
    with open(first_log, "w") as log:
        first = subprocess.Popen([sys.executable, "-m", "backend", *args], cwd=ROOT, stdout=log, stderr=log,
                                 env=backend_env())
    try:
        deadline = time.monotonic() + 240
        while "preparing" not in first_log.read_text() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        second = backend(*args)
    finally:
        first.wait(timeout=300)
    first_err = first_log.read_text()
    assert first.returncode == 0, first_err[-3000:]
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"waiting: another build of {VARIANT} is running" in second.stderr
    assert "[1/1 bitsandbytes] preparing" not in second.stderr.split("waiting:")[0]
    row = next(l for l in second.stderr.splitlines() if l.startswith("bitsandbytes "))
    assert " cached " in row, second.stderr[-2000:]
    house = tmp_path / "wheelhouse" / VARIANT
    wheels = sorted(house.glob("bitsandbytes-*.whl"))
    assert len(wheels) == 1
    checked = backend("verify", str(house), "-C", "sm=90", "-C", f"isa={ISA}", "-C", "cuda=13.0")
    assert checked.returncode == 0, checked.stdout[-2000:] + checked.stderr[-2000:]

    # What the unlocked race used to leave: the same wheel name, manifest entry and hash, only .dist-info inside.
    (wheel,) = wheels
    with zipfile.ZipFile(wheel) as archive:
        kept = {n: archive.read(n) for n in archive.namelist() if n.split("/", 1)[0].endswith(".dist-info")}
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in kept.items():
            archive.writestr(name, data)
    manifest = json.loads((house / "manifest.json").read_text())
    manifest["wheels"][wheel.name].update(size=wheel.stat().st_size, sha256=hashlib.sha256(wheel.read_bytes()).hexdigest())
    (house / "manifest.json").write_text(json.dumps(manifest))
    third = backend(*args)
    assert third.returncode == 0, third.stderr[-3000:]
    row = next(l for l in third.stderr.splitlines() if l.startswith("bitsandbytes "))
    assert " built " in row, third.stderr[-2000:]
    with zipfile.ZipFile(wheel) as archive:
        assert any(n.startswith("bitsandbytes/") for n in archive.namelist())


def test_verify_refuses_a_component_wheel_holding_only_its_dist_info(tmp_path):
    wheel = tmp_path / f"torch-2.9.1+{LABEL}-cp311-cp311-linux_x86_64.whl"
    dist = f"torch-2.9.1+{LABEL}.dist-info"
    members = {
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: torch\nVersion: 2.9.1+{LABEL}\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: cp311-cp311-linux_x86_64\n",
    }
    record = "".join(f"{name},{record_hash(data)},{len(data)}\n" for name, data in members.items()) + f"{dist}/RECORD,,\n"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        archive.writestr(f"{dist}/RECORD", record)
    result = backend("verify", str(wheel), "-C", "sm=90", "-C", f"isa={ISA}", "-C", "cuda=13.0", "--json")
    assert result.returncode != 0
    problems = [p["message"] for e in json.loads(result.stdout)["entries"] for p in e["problems"]]
    assert any("holds nothing but" in p for p in problems), problems


# --- 2. the download cache's verified mark ----------------------------------------

def test_replaced_bytes_with_the_old_mtime_are_not_trusted(tmp_path):
    server = Server()
    try:
        good = make_tar({"setup.py": b"print('the reviewed release')\n"})
        server.files["/demo.tar.gz"] = good
        lk = write_lock(tmp_path, {"demo": {"component": "demo", "version": "1", "url": server.url("/demo.tar.gz"),
                                            "sha256": sha(good)}})
        cache = tmp_path / "c"
        (path,) = prepare.fetch_all(["demo"], cache_dir=cache, offline=False, lock=lk)
    finally:
        server.stop()
    before = path.stat()
    evil = make_tar({"setup.py": b"import os; os.system('evil')\n"})
    evil = evil[: len(good)].ljust(len(good), b"\0")
    assert len(evil) == len(good) and evil != good
    path.write_bytes(evil)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_mtime_ns == before.st_mtime_ns and path.stat().st_size == before.st_size
    with pytest.raises(BackendError, match="sha256 mismatch"):
        prepare.fetch_all(["demo"], cache_dir=cache, offline=True, lock=lk)
    assert not path.exists()  # moved aside, never built


# --- 3. verify's memory on a decompression bomb -------------------------------------

def write_metadata_bomb(path: Path, inflated: int) -> None:
    """A wheel whose METADATA is ``inflated`` bytes of one letter (a few hundred kB deflated)."""
    dist = f"demo-1.0+{LABEL}.dist-info"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("demo/__init__.py", "")
        member = zipfile.ZipInfo(f"{dist}/METADATA")
        member.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(member, "w", force_zip64=True) as out:
            block = b"Name: demo\n" + b"A" * ((1 << 20) - 11)
            for _ in range(inflated // len(block)):
                out.write(block)
        archive.writestr(f"{dist}/WHEEL", "Wheel-Version: 1.0\nTag: py3-none-any\n")
        archive.writestr(f"{dist}/RECORD", "")


def child_peak_mb(*args: str) -> tuple[float, subprocess.CompletedProcess]:
    """Run ``python args...`` under a fresh interpreter that reports its child's peak RSS (getrusage)."""
    script = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
              "sys.stderr.write(r.stderr); sys.stdout.write(r.stdout); "
              "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    run = subprocess.run([sys.executable, "-c", script, sys.executable, *args], cwd=ROOT, capture_output=True,
                         text=True, env=backend_env(), timeout=300)
    *out, peak_kb = run.stdout.strip().splitlines()
    return int(peak_kb) / 1024, subprocess.CompletedProcess(args, run.returncode, "\n".join(out), run.stderr)


def test_verify_reads_a_metadata_bomb_in_bounded_memory(tmp_path):
    bomb = tmp_path / f"demo-1.0+{LABEL}-py3-none-any.whl"
    write_metadata_bomb(bomb, 256 << 20)
    assert bomb.stat().st_size < 2 << 20
    plain = make_wheel(tmp_path / "plain", "demo", f"1.0+{LABEL}")
    baseline, _ = child_peak_mb("-m", "backend", "verify", str(plain), "--json")
    peak, run = child_peak_mb("-m", "backend", "verify", str(bomb), "--json")
    assert peak < baseline + 48, (peak, baseline)
    problems = [p["message"] for e in json.loads(run.stdout)["entries"] for p in e["problems"]]
    assert any("METADATA" in p and "bound" in p for p in problems), problems



def test_a_member_that_inflates_past_its_declared_size_is_refused(tmp_path):
    """A member whose headers declare 10 bytes (and the CRC of those 10) while its deflate stream holds 1 MiB:
    zipfile's reader stops at 10 bytes and finds the CRC right, so the wheel would pass as those 10 bytes."""
    from backend.wheels import built

    wheel = tmp_path / "demo-1.0-py3-none-any.whl"
    declared = b"x = 1 #..."
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("demo/__init__.py", declared + b"A" * (1 << 20))
        archive.writestr("demo-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n")
        archive.writestr("demo-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nTag: py3-none-any\n")
        archive.writestr("demo-1.0.dist-info/RECORD", "")
    data = bytearray(wheel.read_bytes())
    central = data.index(b"PK\x01\x02")  # the first member's entry; its local header is at 0
    for crc_at, size_at in ((14, 22), (central + 16, central + 24)):
        struct.pack_into("<I", data, crc_at, zlib.crc32(declared))
        struct.pack_into("<I", data, size_at, len(declared))
    wheel.write_bytes(bytes(data))
    with zipfile.ZipFile(wheel) as archive:  # what zipfile alone makes of it: the 10 bytes, no error
        assert archive.read("demo/__init__.py") == declared
    with pytest.raises(zipfile.BadZipFile, match="'demo/__init__.py' inflates past its declared 10 bytes"):
        built.read(wheel)

# --- 4. bounded downloads and unpacking -------------------------------------------

class StreamingServer:
    """Serves ``size`` bytes of zeros per path, with or without Content-Length; counts what it sent."""

    def __init__(self):
        self.sizes: dict[str, tuple[int, bool]] = {}
        self.sent: dict[str, int] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args):
                pass

            def do_GET(self):
                size, announce = outer.sizes[self.path]
                self.send_response(200)
                if announce:
                    self.send_header("Content-Length", str(size))
                self.end_headers()
                block = b"\0" * (1 << 16)
                outer.sent[self.path] = 0
                try:
                    while outer.sent[self.path] < size:
                        self.wfile.write(block)
                        outer.sent[self.path] += len(block)
                except OSError:
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("announce", [True, False], ids=["content-length", "no-length"])
def test_a_mirror_serving_too_much_is_cut_off_at_the_bound(tmp_path, announce):
    server = StreamingServer()
    try:
        server.sizes["/big.tar.gz"] = (256 << 20, announce)
        lk = write_lock(tmp_path, {"demo": {"component": "demo", "version": "1", "url": server.url("/big.tar.gz"),
                                            "sha256": "0" * 64, "max_mb": 2}})
        cache = tmp_path / "c"
        with pytest.raises(BackendError, match="over the lock's bound of 2 MB"):
            prepare.fetch_all(["demo"], cache_dir=cache, offline=False, lock=lk)
        sent = server.sent.get("/big.tar.gz", 0)
    finally:
        server.stop()
    downloads = cache / "downloads"
    assert [p.name for p in downloads.iterdir() if not p.name.endswith(".lock")] == []
    assert sent < 64 << 20  # the client stopped reading long before the 256 MB were out


def _bomb_tar(size: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("pkg-1.0/zeros.bin")
        info.size = size
        tar.addfile(info, io.BytesIO(b"\0" * size))
    return buf.getvalue()


def _bomb_zip(size: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("pkg-1.0/zeros.bin", b"\0" * size)
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_a_pinned_archive_bomb_is_refused_before_anything_is_written(tmp_path, kind):
    data = _bomb_tar(64 << 20) if kind == "tar.gz" else _bomb_zip(64 << 20)
    assert len(data) < 1 << 20
    server = Server()
    try:
        server.files[f"/bomb.{kind}"] = data
        lk = write_lock(tmp_path, {"bomb": {"component": "bomb", "version": "1", "url": server.url(f"/bomb.{kind}"),
                                            "sha256": sha(data), "max_unpacked_mb": 16}})
        work = tmp_path / "w"
        with pytest.raises(BackendError, match="over the lock's bound of 16 MB"):
            prepare.prepare("bomb", cache_dir=tmp_path / "c", workdir=work, lock=lk)
    finally:
        server.stop()
    written = sum(p.stat().st_size for p in work.rglob("*") if p.is_file())
    assert written == 0 and not (work / "bomb").exists()
    assert not (tmp_path / "c" / "downloads" / f"bomb-1.{kind}").exists()  # moved aside, not reused


# --- 5. a manifest key leaving the wheelhouse --------------------------------------

def test_a_dotdot_manifest_key_never_deletes_outside_the_wheelhouse(tmp_path):
    house_dir = tmp_path / "wheelhouse" / VARIANT
    (house_dir / "torch-0.1-py3-none-any").mkdir(parents=True)
    victim = tmp_path / "victim.whl"
    victim.write_bytes(b"precious")
    key = "torch-0.1-py3-none-any/../../../victim.whl"
    assert (house_dir / key).resolve() == victim.resolve()
    (house_dir / "manifest.json").write_text(json.dumps({"wheels": {key: {"sha256": "0" * 64, "size": 8}}}))
    new = make_wheel(tmp_path / "new", "torch", f"2.9.1+{LABEL}")
    with pytest.raises(BackendError, match=r"wheel key .*victim\.whl.* is not a plain wheel file name"):
        Wheelhouse(house_dir).add(new, {"component": "torch", "build_key": "k"})
    assert victim.read_bytes() == b"precious"
    assert not (house_dir / new.name).exists()


# --- 6. CMAKE_ARGS split on spaces ----------------------------------------------------

def test_no_recipe_passes_a_path_through_cmake_args(tmp_path):
    """vLLM's setup.py does ``cmake_args += os.environ["CMAKE_ARGS"].split()``: a path must never be in it."""
    hostile = tmp_path / "my cache -DVLLM_EVIL=ON"
    variant = Variant(sm="90", isa=ISA, cuda="13.0")
    for name in ("torch", "torchvision", "torchaudio", "xformers", "flashinfer", "bitsandbytes", "vllm"):
        recipe = recipes.get(name)
        work = hostile / name
        ctx = BuildContext(
            variant=variant, settings=Settings(sm="90", isa=ISA, cuda="13.0"), tree=work / recipe.lock_entries[0],
            extras={e: work / e for e in recipe.lock_entries[1:]}, wheel_dir=work / "_wheels", build_dir=work / "_build",
            python=str(hostile / "env" / "bin" / "python"),
        )
        env = recipe.environment(ctx)
        args = env.get("CMAKE_ARGS", "").split()
        assert all(a.startswith("-D") and "=" in a for a in args), (name, args)
        assert not any("EVIL" in a or str(tmp_path) in a for a in args), (name, args)
    env = recipes.get("vllm").environment(ctx)
    assert env["VLLM_CUTLASS_SRC_DIR"] == str(hostile / "vllm" / "vllm-cutlass")


# --- 7. a FIFO in a local source tree ----------------------------------------------------

@needs_nvcc
def test_a_fifo_in_a_local_tree_is_refused_in_one_line(tmp_path):
    tree = tmp_path / "torch-tree"
    shutil.copytree(standin_tree("torch"), tree)
    os.mkfifo(tree / "torch" / "pipe")
    result = backend("build", *build_args(tmp_path, "torch", {"torch": tree}), timeout=240)
    line = one_line_error(result)
    assert "torch/pipe is a FIFO" in line and str(tree) in line


# --- 8. a truncated NAR-pinned download ---------------------------------------------------

def test_a_truncated_nar_pinned_download_is_moved_aside_and_fetched_again(tmp_path):
    files = {"setup.py": b"print('demo')\n" * 2000}
    good = make_tar(files)
    nar = tree_nar(files, tmp_path)
    server = Server()
    try:
        server.files["/demo.tar.gz"] = good
        lk = write_lock(tmp_path, {"demo": {"component": "demo", "version": "1", "url": server.url("/demo.tar.gz"),
                                            "nar": nar}})
        cache = tmp_path / "c"
        cached = fetch.cache_path(lk.entries["demo"], cache)
        cached.parent.mkdir(parents=True)
        cached.write_bytes(good[: len(good) // 2])  # an earlier, cut-off copy
        with pytest.raises(BackendError, match="damaged archive.*moved aside.*downloads it again"):
            prepare.prepare("demo", cache_dir=cache, workdir=tmp_path / "w", lock=lk)
        assert not cached.exists()
        got = prepare.prepare("demo", cache_dir=cache, workdir=tmp_path / "w", lock=lk)
        assert (got.root / "setup.py").read_bytes() == files["setup.py"]
        # The same through `fetch` (which checks the tree's hash): moved aside, then fetched anew.
        cached.write_bytes(good[: len(good) // 3])
        fetch._marker(cached).unlink(missing_ok=True)
        with pytest.raises(BackendError, match="moved aside"):
            prepare.fetch_all(["demo"], cache_dir=cache, offline=False, lock=lk)
        assert prepare.fetch_all(["demo"], cache_dir=cache, offline=False, lock=lk) == [cached]
    finally:
        server.stop()


# --- 9. two side-by-side failures -----------------------------------------------------------

@needs_nvcc
def test_two_failures_side_by_side_each_name_their_own_log(tmp_path):
    torch_tree = tmp_path / "torch-tree"
    shutil.copytree(standin_tree("torch"), torch_tree)
    setup = torch_tree / "setup.py"
    setup.write_text("import time, sys\ntime.sleep(4)\nsys.exit('T0RCH-OWN-ERROR: deliberate')\n" + setup.read_text())
    bnb_tree = tmp_path / "bnb-tree"
    shutil.copytree(standin_tree("bitsandbytes"), bnb_tree)
    cmake = bnb_tree / "CMakeLists.txt"
    cmake.write_text('message(FATAL_ERROR "B1TS-OWN-ERROR: deliberate")\n' + cmake.read_text())
    result = backend("build", *build_args(tmp_path, "torch,bitsandbytes", {"torch": torch_tree, "bitsandbytes": bnb_tree}),
                     timeout=240)
    line = one_line_error(result)
    logs = tmp_path / "cache" / "work" / VARIANT / "logs"
    assert f"torch failed (exit 1); full log: {logs / 'torch.log'}" in line, line
    assert f"bitsandbytes failed (exit 1); full log: {logs / 'bitsandbytes.log'}" in line, line
    # Each component's own log tail is shown under its own name, and comes from that log.
    for component in ("torch", "bitsandbytes"):
        log = logs / f"{component}.log"
        header = f"last lines of {log} ({component}):"
        assert header in result.stderr, result.stderr[-3000:]
        block = result.stderr.split(header, 1)[1].splitlines()[1:]
        shown = [l[4:] for l in block[: next((i for i, l in enumerate(block) if not l.startswith("  | ")), len(block))]]
        content = log.read_text()
        assert shown and all(l.strip() in content for l in shown), (component, shown)
    assert "T0RCH-OWN-ERROR" in (logs / "torch.log").read_text()


# --- 10. tracebacks instead of one line ---------------------------------------------------------

@pytest.mark.parametrize("setting, named", [
    ("jobs=²", "setting 'jobs': bad value '²'"),
    ("nvcc-threads=²", "setting 'nvcc-threads': bad value '²'"),
    ("components=", "setting 'components': bad value ''"),
])
def test_bad_numbers_and_empty_lists_are_one_line(setting, named):
    line = one_line_error(backend("plan", "-C", "sm=90", "-C", f"isa={ISA}", "-C", setting))
    assert named in line


def test_a_file_as_cache_dir_or_wheelhouse_is_one_line_before_any_work(tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    for key in ("cache-dir", "wheelhouse"):
        result = backend("build", *build_args(tmp_path, "bitsandbytes", **{key: str(a_file)}))
        line = one_line_error(result)
        assert f"setting '{key}'" in line and "it is a file" in line and "manifest" not in line
        assert not (tmp_path / "cache" / "envs").exists()  # no build environment was set up
    # A folder under a file cannot be created: also one line, naming the setting.
    result = backend("build", *build_args(tmp_path, "bitsandbytes", **{"cache-dir": str(a_file / "sub")}))
    line = one_line_error(result)
    assert "setting 'cache-dir': cannot write into" in line
    # the same folder from the environment: the line names the variable the user set
    env = {**backend_env(), "VLLM_STACK_CACHE_DIR": str(a_file / "sub")}
    line = one_line_error(backend("build", *build_args(tmp_path, "bitsandbytes", **{"cache-dir": None}), env=env))
    assert "setting 'VLLM_STACK_CACHE_DIR': cannot write into" in line, line


def test_a_non_utf8_lock_is_one_line(tmp_path):
    bad = tmp_path / "sources.lock"
    bad.write_bytes(b'format = 1\n[source.demo]\nwhy = "caf\xe9"\n')
    with pytest.raises(BackendError, match="not UTF-8 text"):
        lock.load(bad)


@pytest.mark.parametrize("text", ["[]", "null", '{"wheels": []}', '{"wheels": {"a.whl": 3}}', '"x"'])
def test_a_malformed_manifest_is_one_line(tmp_path, text):
    house = tmp_path / "wheelhouse" / VARIANT
    house.mkdir(parents=True)
    (house / "manifest.json").write_text(text)
    with pytest.raises(BackendError, match="move it away to start the wheelhouse anew"):
        Wheelhouse(house).manifest()
    result = backend("verify", str(house))
    assert "Traceback" not in result.stderr


def test_a_full_wheelhouse_disk_is_one_line_and_changes_nothing(tmp_path):
    """The file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored) fails writes as a full disk does."""
    house = tmp_path / "wheelhouse" / VARIANT
    old = make_wheel(tmp_path / "old", "torch", f"2.9.1+{LABEL}")
    Wheelhouse(house).add(old, {"component": "torch", "build_key": "k1"})
    manifest_before = (house / "manifest.json").read_bytes()
    new = make_wheel(tmp_path / "new", "torch", f"2.9.2+{LABEL}", files={"torch/blob.bin": os.urandom(3 << 20)})
    script = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))\n"
        "from backend.wheels.wheelhouse import Wheelhouse\n"
        "from backend import _one_line_errors\n"
        "add = _one_line_errors(lambda: Wheelhouse(sys.argv[1]).add(sys.argv[2], {'component': 'torch', 'build_key': 'k2'}))\n"
        "add()\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(house), str(new)], cwd=ROOT, capture_output=True, text=True)
    line = one_line_error(result)
    assert "could not add" in line and "as it was before" in line
    assert (house / "manifest.json").read_bytes() == manifest_before
    assert sorted(p.name for p in house.iterdir() if p.suffix == ".whl") == [old.name]
    assert [p.name for p in house.iterdir() if p.name.startswith(".") and p.name != ".wheelhouse.lock"] == []


# --- 11. a ';' in cache-dir ----------------------------------------------------------------------

def test_a_semicolon_in_cache_dir_is_refused_in_one_line(tmp_path):
    line = one_line_error(backend("build", *build_args(tmp_path, "bitsandbytes", **{"cache-dir": str(tmp_path / "c;x")})))
    assert "setting 'cache-dir'" in line and "';'" in line and "environment marker" in line
    env = backend_env()
    env["VLLM_STACK_CACHE_DIR"] = str(tmp_path / "c;x")
    line = one_line_error(backend("build", *build_args(tmp_path, "bitsandbytes", **{"cache-dir": None}), env=env))
    assert "VLLM_STACK_CACHE_DIR" in line and "';'" in line
    assert not (tmp_path / "c;x").exists()


# --- 12. chained symlinks -----------------------------------------------------------------------

def test_chained_symlinks_that_climb_out_of_the_tree_are_refused(tmp_path):
    members = []
    for i in range(1, 11):
        info = tarfile.TarInfo(f"pkg/l{i}")
        info.type = tarfile.SYMTYPE
        info.linkname = "." if i == 1 else f"l{i - 1}/.."
        members.append(info)
    # Each link alone stays inside (l2 -> l1/.. is "." on paper); l1 -> . makes l2 the tree's parent,
    # l10 nine levels up: the file system's root here.
    info = tarfile.TarInfo("pkg/passwd")
    info.type = tarfile.SYMTYPE
    info.linkname = "l10/etc/passwd"
    members.append(info)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for m in members:
            tar.addfile(m)
    archive = tmp_path / "chain.tar"
    archive.write_bytes(buf.getvalue())
    dest = tmp_path / "out"
    with pytest.raises(BackendError, match="resolves to .* outside the tree"):
        unpack.extract(archive, dest, 1)
    assert not dest.exists()


# ==== Issue 29, defects 1-8 (round 3) ============================================================

# --- 29.2 a path setting that a tool of the build interprets ---------------------------------------

# Each character reaches a tool that acts on it: nvcc runs its steps through a shell in double quotes.
INTERPRETED = ["`", "$", "\\", '"', "'", "#", "\r", ",", "*", "&", "|", "(", "<"]


@pytest.mark.parametrize("char", INTERPRETED, ids=[f"u{ord(c):02x}" for c in INTERPRETED])
def test_every_interpreted_character_in_every_path_setting_is_refused(tmp_path, char):
    folder = tmp_path / f"c{char}x"
    folder.mkdir()
    for key in ("cache-dir", "wheelhouse", "runtime-find-links", "source.bitsandbytes"):
        with pytest.raises(BackendError, match=f"^setting '{key}': bad value .*; accepted: a path of letters") as caught:
            load_settings({key: str(folder)})
        assert "\n" not in str(caught.value)


def test_a_command_in_a_path_setting_or_variable_runs_nothing(tmp_path):
    proof = tmp_path / "ran"
    hostile = f"{tmp_path}/c`touch {proof}`$(touch {proof})"
    line = one_line_error(backend("build", *build_args(tmp_path, "bitsandbytes", **{"cache-dir": hostile})))
    assert line.startswith("error: setting 'cache-dir': bad value") and "'`'" in line
    for variable in ("VLLM_STACK_CACHE_DIR", "CUDA_HOME", "HOME", "TMPDIR", "CUDAHOSTCXX"):
        env = {**backend_env(), variable: hostile}
        env.pop("XDG_CACHE_HOME", None)
        line = one_line_error(backend("build", *build_args(tmp_path, "bitsandbytes", **{"cache-dir": None}), env=env))
        assert variable in line and "nvcc's shell" in line, line
    assert not proof.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) in ([], ["wheelhouse"])  # no cache, no build tree


# --- 29.8 secrets in URLs -----------------------------------------------------------------------------

SECRET = "S3CR#T/PW?Z@x"  # '#', '/', '?' and '@' make a URL parser cut the password short


@pytest.mark.parametrize("url", [
    f"redis://:{SECRET}@127.0.0.1:99999",  # the bad-port error
    f"redis://me:{SECRET}@cache.local:6379/0",  # read as a fragment/path: not a host
    f"rediss://me:{SECRET}@cache.local:x1",
    f"s3://AKIAKEY:{SECRET}@bucket/prefix",  # credentials belong in AWS_* variables
    "redis://cache.local:6379/0?password=S3CRT/PW?Z",  # refused (a query), and a query may hold the password
])
def test_a_password_in_a_url_is_never_printed(url):
    out = subprocess.run([sys.executable, "-m", "backend", "plan", "-C", "sm=90", "-C", "isa=avx2",
                          "-C", "compiler-cache=sccache", "-C", f"compiler-cache-url={url}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    line = one_line_error(out)
    assert "setting 'compiler-cache-url'" in line
    for piece in ("S3CR", "PW?Z", "T/PW"):
        assert piece not in out.stderr + out.stdout, line
    if url.startswith("s3://"):
        assert "AWS_ACCESS_KEY_ID" in line


def test_redaction_is_by_position_whatever_the_url_holds():
    assert redact_url(f"redis://me:{SECRET}@h:1/0") == "redis://me:***@h:1/0"
    assert redact_url(f"https://{SECRET}@mirror.example/p") == "https://***@mirror.example/p"  # a token
    assert redact_url(f"me:{SECRET}@h") == "me:***@h"  # not even a URL
    assert redact_url("https://mirror.example/p") == "https://mirror.example/p"
    assert redact_url("redis://h:1/0?password=pw") == "redis://h:1/0?***"
    assert redact_url(f"redis://me:{SECRET}@h/0?password=pw#x") == "redis://me:***@h/0?***"
    # Written %-encoded, such a password reaches sccache as it is.

    redis = cache_storage.for_sccache("redis://me:S3CR%23T%2FPW%3FZ%40x@cache.local:6379/0", {}, Path("/c"))
    assert redis.variables["SCCACHE_REDIS_PASSWORD"] == SECRET and "S3CR" not in redis.describe()


def test_a_mirror_password_is_refused_before_any_request_and_never_printed(tmp_path):
    entry = lock.Entry(name="x", component="bitsandbytes", version="1", url="https://example.invalid/x.tar.gz",
                       filename="x.tar.gz", sha256="0" * 64)
    server = Server()
    try:
        mirror = server.url("").replace("http://", f"http://me:{SECRET}@")
        with pytest.raises(BackendError) as caught:
            fetch.ensure(entry, cache_dir=tmp_path, base_url_override=mirror, progress=False)
    finally:
        server.stop()
    message = str(caught.value)
    assert message.startswith("VLLM_STACK_SOURCE_MIRROR: bad value 'http://me:***@127.0.0.1:")
    assert "S3CR" not in message and "PW?Z" not in message and server.requests == []


# --- 29.1 clean deletes only a cache the backend created ----------------------------------------------

def _clean_all(cache: Path) -> subprocess.CompletedProcess:
    return backend("clean", "--all", "--downloads", "--toolchains", "-C", "sm=90", "-C", "isa=avx2",
                   "-C", f"cache-dir={cache}", timeout=60)


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_clean_all_refuses_a_folder_that_is_not_a_cache(tmp_path):
    home = tmp_path / "home"  # cache-dir=~ : the user's own work, envs, downloads and toolchains
    for name in ("work/thesis.tex", "envs/py/bin/python", "downloads/photo.jpg", "toolchains/gcc/README", ".bashrc"):
        (home / name).parent.mkdir(parents=True, exist_ok=True)
        (home / name).write_text(name)
    before = _tree(home)
    line = one_line_error(_clean_all(home))
    assert "not a cache the backend created" in line and ".bashrc" in line and "nothing was removed" in line
    assert _tree(home) == before
    # Without a stray file, the user's folders are still not the backend's layout.
    (home / ".bashrc").unlink()
    line = one_line_error(_clean_all(home))
    assert "work/thesis.tex" in line and (home / "work" / "thesis.tex").is_file()
    env = {**backend_env(), "VLLM_STACK_CACHE_DIR": str(home)}
    out = backend("clean", "--all", "--downloads", "-C", "sm=90", "-C", "isa=avx2", env=env, timeout=60)
    assert "not a cache the backend created" in one_line_error(out) and (home / "downloads" / "photo.jpg").is_file()


def test_clean_adopts_an_unmarked_cache_of_the_backends_own_layout(tmp_path):
    cache = tmp_path / "old-cache"  # written by a version before the marker
    for name in (f"work/{VARIANT}/bitsandbytes/x.o", f"work/{VARIANT}.lock", f"envs/{VARIANT}/bin/python",
                 "downloads/torch-2.9.1.tar.gz", "toolchains/pypi-cu130/x", "compiler-cache/ccache/x"):
        (cache / name).parent.mkdir(parents=True, exist_ok=True)
        (cache / name).write_text("x")
    out = _clean_all(cache)
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in cache.iterdir()) == [".vllm-stack-cache", "compiler-cache"]


def test_a_cache_the_backend_created_is_cleaned_and_a_link_in_it_is_never_followed(tmp_path):
    cache = tmp_path / "cache"
    out = backend("toolchain", "-C", "sm=90", "-C", "isa=avx2", "-C", "cuda=13.0", "-C", f"cache-dir={cache}",
                  timeout=120)
    assert (cache / ".vllm-stack-cache").is_file(), out.stderr  # created by the backend: marked
    outside = tmp_path / "precious"
    (outside / "keep").mkdir(parents=True)
    (cache / "work").mkdir(exist_ok=True)
    (cache / "work" / "anything").write_text("the backend's folder: cleaned whatever it holds")
    (cache / "envs").symlink_to(outside)
    out = _clean_all(cache)
    assert out.returncode == 0, out.stderr
    assert not (cache / "work").exists() and not (cache / "envs").is_symlink() and (outside / "keep").is_dir()


# --- 29.5 a hard link to a name that became a symlink --------------------------------------------------

def test_a_hard_link_to_a_symlink_of_a_files_name_never_leaves_the_tree(tmp_path):
    """The file a/b/x, then a/b/x -> ../.. (inside: the tree's top), then y, a hard link to a/b/x.

    Laid out naively, y becomes a copy of the symlink at the top, where ../.. is two folders
    above the tree (Python 3.11.7's ``tarfile`` ``data`` filter lets it through too).
    """
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("pkg/a/b/x")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
        info = tarfile.TarInfo("pkg/a/b/x")
        info.type, info.linkname = tarfile.SYMTYPE, "../.."
        tar.addfile(info)
        info = tarfile.TarInfo("pkg/y")
        info.type, info.linkname = tarfile.LNKTYPE, "pkg/a/b/x"
        tar.addfile(info)
    archive = tmp_path / "hardlink.tar"
    archive.write_bytes(buf.getvalue())
    dest = tmp_path / "deep" / "out"
    with pytest.raises(BackendError, match="^unsafe archive hardlink.tar: .*nothing was extracted$"):
        unpack.extract(archive, dest, 1)
    assert not dest.exists()


# --- 29.7 verify inflates no fatbin payload without a bound -------------------------------------------

def _zstd_bomb(inflated: int) -> bytes:
    """A zstd frame of RLE blocks, no declared content size: 4 bytes per 128 KiB of zeros."""
    block = 128 << 10
    frame = bytearray(struct.pack("<I", 0xFD2FB528) + bytes([0x00, (17 - 10) << 3]))  # window 128 KiB
    count = inflated // block
    for n in range(count):
        frame += ((block << 3) | (1 << 1) | (n == count - 1)).to_bytes(3, "little") + b"\0"  # RLE block
    return bytes(frame)


def _fatbin_with_zstd_cubin(payload: bytes) -> bytes:
    """One fatbin, one cubin entry for sm_90 flagged zstd (layout: backend/verify/fatbin.py's docstring)."""
    entry = bytearray(0x40)
    struct.pack_into("<HHIQ", entry, 0, 2, 0x101, 0x40, len(payload))
    struct.pack_into("<I", entry, 0x10, len(payload))
    struct.pack_into("<HHI", entry, 0x18, 8, 1, 90)
    struct.pack_into("<Q", entry, 0x28, 0x8000)  # zstd
    struct.pack_into("<Q", entry, 0x38, 1 << 62)  # the declared size: the file's word
    body = bytes(entry) + payload
    return struct.pack("<IHHQ", 0xBA55ED50, 1, 0x10, len(body)) + body


def _demo_library(folder: Path) -> Path:
    """A one-function shared library from gcc, for objcopy to add a hostile section to."""
    (folder / "x.c").write_text("int demo_x(void) { return 1; }\n")
    library = folder / "libdemo.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(library), str(folder / "x.c")], check=True, timeout=60)
    return library


@pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("objcopy") is None, reason="needs gcc and objcopy")
def test_verify_inflates_a_fatbin_bomb_in_bounded_memory(tmp_path):
    library = _demo_library(tmp_path)
    section = tmp_path / "fatbin.bin"
    section.write_bytes(_fatbin_with_zstd_cubin(_zstd_bomb(4 << 30)))  # 4 GiB of zeros in 128 KiB
    subprocess.run(["objcopy", "--add-section", f".nv_fatbin={section}", str(library)], check=True, timeout=60)
    wheel = make_wheel(tmp_path / "w", "demo", f"1.0+{LABEL}", {"demo/__init__.py": b"", "demo/libdemo.so": library})
    assert wheel.stat().st_size < 64 << 10
    # The child runs under an address-space limit: before the bound it could not exhaust the machine.
    script = ("import resource, subprocess, sys; "
              "limit = lambda: resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30)); "
              "r = subprocess.run(sys.argv[1:], capture_output=True, text=True, preexec_fn=limit, timeout=120); "
              "sys.stderr.write(r.stderr); sys.stdout.write(r.stdout); "
              "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-c", script, sys.executable, "-m", "backend", "verify", str(wheel),
                          "--json"], cwd=ROOT, capture_output=True, text=True, env=backend_env(), timeout=180)
    seconds = time.monotonic() - started
    *out, peak_kb = run.stdout.strip().splitlines()
    assert "Traceback" not in run.stderr and "MemoryError" not in run.stderr, run.stderr[-2000:]
    report = json.loads("\n".join(out))
    [gpu] = [o["gpu"][".nv_fatbin"] for entry in report["entries"] for o in entry["objects"] if o["gpu"]]
    assert gpu["cubins"] == {"sm_90": 1} and gpu["compressed"] == ["zstd"]  # listed; its release stays unknown
    assert int(peak_kb) < 400 << 10, f"verify peaked at {int(peak_kb) >> 10} MB"
    assert seconds < 60, seconds


@pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("objcopy") is None, reason="needs gcc and objcopy")
def test_verify_refuses_a_compressed_elf_section_declaring_too_much(tmp_path):
    """The compile record (.GCC.command.line) as an SHF_COMPRESSED section declaring 2**62 bytes."""
    library = _demo_library(tmp_path)
    section = tmp_path / "record.bin"
    section.write_bytes(struct.pack("<IIQQ", 1, 0, 1 << 62, 1) + zlib.compress(b"\0" * (1 << 20)))  # Elf64_Chdr
    subprocess.run(["objcopy", "--add-section", f".GCC.command.line={section}", str(library)], check=True, timeout=60)
    with open(library, "r+b") as handle:
        elf = ELFFile(handle)
        index = next(n for n, s in enumerate(elf.iter_sections()) if s.name == ".GCC.command.line")
        flags_at = elf["e_shoff"] + index * elf["e_shentsize"] + 8  # Elf64_Shdr.sh_flags
        handle.seek(flags_at)
        flags = struct.unpack("<Q", handle.read(8))[0]
        handle.seek(flags_at)
        handle.write(struct.pack("<Q", flags | 0x800))  # SHF_COMPRESSED
    wheel = make_wheel(tmp_path / "w", "demo", f"1.0+{LABEL}", {"demo/__init__.py": b"", "demo/libdemo.so": library})
    run = subprocess.run([sys.executable, "-m", "backend", "verify", str(wheel), "--json"], cwd=ROOT,
                         capture_output=True, text=True, env=backend_env(), timeout=120,
                         preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30)))
    assert "Traceback" not in run.stderr, run.stderr[-2000:]
    problems = [p["message"] for e in json.loads(run.stdout)["entries"] for o in e["objects"] for p in o["problems"]]
    problems += [p["message"] for e in json.loads(run.stdout)["entries"] for p in e["problems"]]
    assert any("compressed and declares" in p and "bound" in p for p in problems), problems


# --- 29.3 / 29.6 the runtime closure adopts nothing foreign, trusts no size and mtime ------------------

def _close(house, built, lines=None):
    return closure.close(house, [built], python=Path(sys.executable), offline=False,
                         say=(lines.append if lines is not None else lambda _: None))


def test_a_wheel_dropped_into_the_wheelhouse_is_never_adopted(index):
    """links/ (standing in for the index) serves depb 2.0; a hand-placed depb 99.0 lies in the wheelhouse."""
    _links, house, built = index
    make_wheel(house.root, "depb", "99.0", {"depb/__init__.py": b"raise SystemExit('foreign code ran')\n"})
    runtime = _close(house, built)
    assert sorted(p.name for p in runtime) == ["depa-1.0-py3-none-any.whl", "depb-2.0-py3-none-any.whl"]
    listed = house.manifest()["wheels"]
    assert "depb-99.0-py3-none-any.whl" not in listed
    assert "depb==99.0" not in (house.root / closure.LOCK_FILE).read_text()
    # A build after it resolves the same: the loose file is still not a source.
    again = _close(house, built)
    assert sorted(p.name for p in again) == sorted(p.name for p in runtime)


def test_the_smoke_check_never_installs_a_wheel_dropped_into_the_wheelhouse(index, tmp_path):
    """Without bundled dependencies (runtime-deps=none) the smoke venv installs the listed wheels only."""
    links, house, built = index
    make_wheel(house.root, "depa", "99.0", {"depa/__init__.py": b"raise SystemExit('foreign code ran')\n"})
    result = smoke.run(house.root, [built], [], [("stack (CPU)", "import stackpkg; assert stackpkg.VALUE == 'depa'")],
                       work=tmp_path / "smoke", no_index=True, links=[links])
    assert result.ok, result.problems


def _tamper_keeping_size_and_mtime(wheel: Path) -> None:
    stat = wheel.stat()
    data = bytearray(wheel.read_bytes())
    data[len(data) // 3] ^= 0xFF  # one byte of a member's contents
    wheel.write_bytes(bytes(data))
    os.utime(wheel, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert wheel.stat().st_size == stat.st_size and wheel.stat().st_mtime_ns == stat.st_mtime_ns


def test_a_tampered_runtime_wheel_of_the_same_size_and_mtime_is_not_unchanged(index):
    _links, house, built = index
    runtime = _close(house, built)
    depa = next(p for p in runtime if p.name.startswith("depa-"))
    pinned = house.manifest()["wheels"][depa.name]["sha256"]
    smoke_key = smoke._key([built], runtime, [("depa", "import depa")], True)
    _tamper_keeping_size_and_mtime(depa)
    assert smoke._key([built], runtime, [("depa", "import depa")], True) != smoke_key  # no "passed before"
    lines: list[str] = []
    again = _close(house, built, lines)
    assert not any("unchanged" in line for line in lines), lines
    # The pinned bytes are back (downloaded again), and what is listed is what lies there.
    assert hashlib.sha256(depa.read_bytes()).hexdigest() == pinned and depa in again
    _tamper_keeping_size_and_mtime(built)  # a built wheel: not the manifest's bytes, so not a source either
    lines.clear()
    with pytest.raises(BackendError, match="cannot be resolved"):
        _close(house, built, lines)
    assert not any("unchanged" in line for line in lines), lines


# --- 29.4 the snapshot record writes and deletes nothing outside the copy --------------------------------

def test_the_snapshot_record_never_writes_or_deletes_through_a_link(tmp_path):
    checkout = tmp_path / "checkout"
    (checkout / "pkg").mkdir(parents=True)
    (checkout / "setup.py").write_text("# the user's file\n")
    (checkout / "pkg" / "__init__.py").write_text("")
    victim = tmp_path / "victim.txt"  # anywhere the user can write: another project, their checkout
    victim.write_text("precious\n")
    outside = tmp_path / "outside.txt"
    outside.write_text("also precious\n")
    (checkout / snapshot.MANIFEST).symlink_to(victim)
    copy = tmp_path / "cache" / "work" / "local-tree"
    snapshot.sync(checkout, copy)
    assert victim.read_text() == "precious\n"  # the record was not written through the link
    # The link now says the last copy held a file two folders above the copy: a later sync must not delete it.
    victim.write_text(json.dumps({"checkout": str(checkout), "files": ["../../../outside.txt", str(outside)]}))
    snapshot.sync(checkout, copy)
    assert outside.read_text() == "also precious\n" and (checkout / "setup.py").is_file()
    assert (copy / "setup.py").read_text() == "# the user's file\n"
    # The checkout's link leaves the tree: the copy holds what it names (29.11), never the record.
    assert (copy / snapshot.MANIFEST).read_text() == victim.read_text()
    record = snapshot.record_path(copy)
    assert record.parent == copy.parent and json.loads(record.read_text())["checkout"] == str(checkout)
    # A record cut short (power loss in an older version's write) reads as none: the copy is made anew.
    record.write_text('{"checkout": "')
    snapshot.sync(checkout, copy)
    assert json.loads(record.read_text())["files"] == sorted([snapshot.MANIFEST, "pkg/__init__.py", "setup.py"])


def test_a_link_left_in_the_copy_is_never_written_through(tmp_path):
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    elsewhere = tmp_path / "elsewhere"
    (checkout / "sub").symlink_to(elsewhere)  # a dangling link (copied as a link) in one state of the checkout ...
    copy = tmp_path / "copy"
    snapshot.sync(checkout, copy)
    elsewhere.mkdir()  # ... whose target appears
    (checkout / "sub").unlink()
    (checkout / "sub").mkdir()  # ... a real folder in the next
    (checkout / "sub" / "f.py").write_text("x = 1\n")
    snapshot.sync(checkout, copy)
    assert list(elsewhere.iterdir()) == [] and (copy / "sub" / "f.py").is_file() and not (copy / "sub").is_symlink()


# === issue 29, defects 9 to 16 (helper hostB) ==========================================================

def _git(tree: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    subprocess.run(["git", "-C", str(tree), *args], check=True, capture_output=True, env=env)


def _tagged_checkout(tree: Path, tag: str) -> None:
    tree.mkdir(parents=True)
    (tree / "f.txt").write_text(tag)
    _git(tree, "init", "-q")
    _git(tree, "add", ".")
    _git(tree, "commit", "-q", "-m", "1")
    _git(tree, "tag", tag)


# --- 29.10: plan reads a checkout's version without running code of the tree ----------------------------

def test_plan_runs_no_code_of_the_tree_and_reads_only_its_own_git(tmp_path):
    tree, ran = tmp_path / "vllm", tmp_path / "ran"
    _tagged_checkout(tree, "v0.15.1")
    (tree / ".gitattributes").write_text("*.txt filter=evil\n")
    _git(tree, "add", ".gitattributes")
    _git(tree, "commit", "-q", "-m", "2")
    _git(tree, "tag", "-f", "v0.15.1")
    # Code the tree's own config names: an fsmonitor hook and a clean filter (both run on an index refresh).
    _git(tree, "config", "core.fsmonitor", f"touch {ran}-fsmonitor; echo")
    _git(tree, "config", "filter.evil.clean", f"touch {ran}-filter; cat")
    _git(tree, "config", "trace2.eventTarget", str(tmp_path / "written-by-trace2"))
    os.utime(tree / "f.txt", (1, 1))  # a changed stat makes describe --dirty re-read (and filter) the file

    def planned_version(checkout: Path) -> str:
        done = backend("plan", "-C", "sm=90", "-C", "isa=avx512", "-C", "cuda=13.0", "-C", "components=vllm",
                       "-C", f"source.vllm={checkout}", "-C", f"cache-dir={tmp_path / 'cache'}", "--json", timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return next(s for s in json.loads(done.stdout)["steps"] if s["component"] == "vllm")["version"]

    assert planned_version(tree).startswith("0.15.1+")
    assert not list(tmp_path.glob("ran-*")) and not (tmp_path / "written-by-trace2").exists()

    # A .git file pointing at another repository: that repository's tags do not decide the version.
    other, fake = tmp_path / "other", tmp_path / "fake"
    _tagged_checkout(other, "v9.9.9")
    shutil.copytree(tree, fake, ignore=shutil.ignore_patterns(".git"))
    (fake / ".git").write_text(f"gitdir: {other / '.git'}\n")
    assert not planned_version(fake).startswith("9.9.9")


# --- 29.9: the caller's environment: an allow-list, keyed; verify refuses a RUNPATH outside -------------

def _runpaths(wheel: Path, tmp: Path) -> list[str]:
    found = []
    with zipfile.ZipFile(wheel) as archive:
        for item in archive.infolist():
            if ".so" in item.filename:
                target = tmp / "so" / item.filename
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.read(item))
                found += elf.read_object(target).runpath
    return found


def test_a_steps_process_environment_keeps_only_the_allowed_caller_variables(tmp_path, monkeypatch):
    """Fast: the real plan step of a stand-in and the environment its commands run in (process_environment)."""
    for key, value in {"LDFLAGS": "-Wl,-rpath,/tmp/evil", "NVCC_APPEND_FLAGS": "-include evil.h",
                       "CPPFLAGS": "-DEVIL", "LD_LIBRARY_PATH": "/tmp/evil", "CMAKE_ARGS": "-DEVIL=1",
                       "PYTORCH_NVCC": "/tmp/evil/nvcc", "HTTPS_PROXY": "http://proxy:3128",
                       "PIP_INDEX_URL": "https://mirror/simple", "CC": "gcc", "LC_ALL": "C.UTF-8"}.items():
        monkeypatch.setenv(key, value)
    pairs = build_args(tmp_path, "bitsandbytes")[1::2]
    plan = project.make_plan(project.load_settings_from_cli(pairs))
    step = plan.step("bitsandbytes")
    env = process_environment(step, None, plan.compiler_cache, tmp_path)
    for dropped in ("LDFLAGS", "NVCC_APPEND_FLAGS", "CPPFLAGS", "LD_LIBRARY_PATH", "CMAKE_ARGS", "PYTORCH_NVCC"):
        assert "evil" not in env.get(dropped, "").lower(), dropped
    assert env["HTTPS_PROXY"] == "http://proxy:3128" and env["PIP_INDEX_URL"] == "https://mirror/simple"
    assert env["CC"] == "gcc" and env["LC_ALL"] == "C.UTF-8"
    assert environment.keyed_caller_variables() == {"CC": "gcc"}  # what the executor adds to the build key


@pytest.mark.slow
@needs_nvcc
def test_the_callers_flags_never_reach_a_build_and_kept_compiler_variables_are_keyed(tmp_path):
    """The same as a real build (slow: two compiles), and the kept CC as part of the build key."""
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "evil.h").write_text('#error "the caller\'s NVCC_APPEND_FLAGS reached nvcc"\n')
    env = {**backend_env(), "LDFLAGS": f"-Wl,-rpath,{evil}", "NVCC_APPEND_FLAGS": f"-include {evil / 'evil.h'}",
           "NVCC_PREPEND_FLAGS": f"-I{evil}", "CPPFLAGS": "-DEVIL=1", "LD_LIBRARY_PATH": str(evil)}
    args = ["build", *build_args(tmp_path, "bitsandbytes")]
    first = backend(*args, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    (wheel,) = (tmp_path / "wheelhouse" / VARIANT).glob("bitsandbytes-*.whl")
    assert not [p for p in _runpaths(wheel, tmp_path) if str(evil) in p]
    # A kept variable that changes what is built (the C compiler) is part of the key: not "cached".
    os.symlink(shutil.which("gcc"), tmp_path / "gcc-alias")
    second = backend(*args, env={**env, "CC": str(tmp_path / "gcc-alias")})
    assert second.returncode == 0, second.stderr[-3000:]
    row = next(l for l in second.stderr.splitlines() if l.startswith("bitsandbytes "))
    assert " built " in row, second.stderr[-2000:]


def test_verify_refuses_a_runpath_outside_the_wheel_and_the_toolchain(tmp_path):
    source = tmp_path / "m.c"
    source.write_text("int f(void) { return 1; }\n")
    built = {}
    for name, rpath in (("outside", "/tmp/evil"), ("climbs", "$ORIGIN/../../../../tmp"), ("inside", "$ORIGIN/../libs")):
        so = tmp_path / f"{name}.so"
        subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(so), str(source), f"-Wl,-rpath,{rpath}",
                        "-Wl,--enable-new-dtags"], check=True)
        built[name] = make_wheel(tmp_path / name, "plainlib", "1.0", {"plainlib/__init__.py": b"", "plainlib/m.so": so},
                                 tag="py3-none-linux_x86_64")
    for name, ok in (("outside", False), ("climbs", False), ("inside", True)):
        done = backend("verify", str(built[name]), "--json", timeout=120)
        problems = [p["message"] for e in json.loads(done.stdout)["entries"] for o in e["objects"]
                    for p in o["problems"] if "RUNPATH" in p["message"]]
        assert bool(problems) is not ok, (name, problems)
        assert (done.returncode == 0) is ok, (name, done.stdout[-2000:])


# --- 29.13: a listed wheel changed after the build wrote it is never used ---------------------------------

@needs_nvcc
def test_a_tampered_listed_torch_stops_the_build_naming_it_before_anything_runs(tmp_path):
    house = Wheelhouse(tmp_path / "wheelhouse" / VARIANT, variant=VARIANT)
    made = make_wheel(tmp_path / "made", "torch", f"2.9.1+{LABEL}", tag="cp311-cp311-linux_x86_64")
    listed = house.add(made, {"component": "torch", "origin": "lock", "build_key": "k"})
    tampered = make_wheel(tmp_path / "evil", "torch", f"2.9.1+{LABEL}", {"torch/__init__.py": b"import os  # evil\n"},
                          tag="cp311-cp311-linux_x86_64")
    shutil.copyfile(tampered, listed)  # the same name, another content (smoke=off: nothing would import it)
    line = one_line_error(backend("build", *build_args(tmp_path, "bitsandbytes")))
    assert listed.name in line and "changed after the build wrote it" in line, line
    assert not (tmp_path / "cache" / "work" / VARIANT / "bitsandbytes").exists() or not list(
        (tmp_path / "wheelhouse" / VARIANT).glob("bitsandbytes-*.whl"))


# --- 29.15: no hang: a dripping server, a FIFO as a file: URL or as a patch -------------------------------

class DripServer:
    """Announces 1 MB, then sends one byte every ``interval`` seconds (each read returns before any timeout)."""

    def __init__(self, interval: float = 0.2):
        outer = self
        self.stop_event = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", str(1 << 20))
                self.end_headers()
                while not outer.stop_event.is_set():
                    try:
                        self.wfile.write(b"x")
                        self.wfile.flush()
                    except OSError:
                        return
                    time.sleep(interval)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def stop(self):
        self.stop_event.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_dripping_server_is_given_up_at_the_deadline(tmp_path):
    server = DripServer()
    try:
        started = time.monotonic()
        with pytest.raises(BackendError, match="over the 3 s deadline") as error:
            # a per-read timeout of 60 s never trips: a byte comes every 0.2 s
            fetch.download(server.url("/slow.tar.gz"), tmp_path / "slow.tar.gz", label="slow 1", timeout=60,
                           progress=False, deadline_s=3, rate_window_s=600)
        assert time.monotonic() - started < 15
        # the rate floor alone (no deadline reached): under 1 kB/s over a 1 s window is stalled
        with pytest.raises(BackendError, match="under 1024 bytes/s"):
            fetch.download(server.url("/slow2.tar.gz"), tmp_path / "slow2.tar.gz", label="slow 2", attempts=1,
                           progress=False, rate_window_s=1)
        assert time.monotonic() - started < 20
    finally:
        server.stop()


def test_a_fifo_as_a_file_url_or_a_patch_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "src.tar.gz"
    os.mkfifo(fifo)
    lk = write_lock(tmp_path, {"demo": {"component": "demo", "version": "1", "url": fifo.as_uri(),
                                        "sha256": "0" * 64}})
    script = ("import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[1] + '/tests')\n"
              "from backend.sources import prepare, lock\n"
              "prepare.fetch_all(['demo'], cache_dir=Path(sys.argv[2]), offline=False, lock=lock.load(Path(sys.argv[3])))\n")
    done = subprocess.run([sys.executable, "-c", script, str(ROOT), str(tmp_path / "c"), str(lk.path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "is not a regular file" in done.stderr, done.stderr[-2000:]

    patches = tmp_path / "patches" / "bitsandbytes"
    patches.mkdir(parents=True)
    os.mkfifo(patches / "0001-hang.patch")
    script = ("import sys; sys.path.insert(0, sys.argv[1]); from pathlib import Path\n"
              "from backend.sources import patches\n"
              "patches.collect('bitsandbytes', Path(sys.argv[2]))\n")
    done = subprocess.run([sys.executable, "-c", script, str(ROOT), str(tmp_path / "patches")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "is not a regular file" in done.stderr, done.stderr[-2000:]


# --- 29.16: the minor list ---------------------------------------------------------------------------------

def test_a_file_source_with_a_wrong_hash_is_kept_aside_for_its_owner_only(tmp_path):
    secret = tmp_path / "private.tar.gz"
    secret.write_bytes(b"not public")
    secret.chmod(0o600)
    lk = write_lock(tmp_path, {"demo": {"component": "demo", "version": "1", "url": secret.as_uri(), "sha256": "0" * 64}})
    with pytest.raises(BackendError, match="sha256 mismatch"):
        prepare.fetch_all(["demo"], cache_dir=tmp_path / "c", offline=False, lock=lk)
    (bad,) = (tmp_path / "c" / "downloads").glob("*.bad")
    assert bad.stat().st_mode & 0o077 == 0, oct(bad.stat().st_mode)


def test_a_patch_creating_a_symlink_is_refused(tmp_path):
    folder = tmp_path / "patches" / "bitsandbytes"
    folder.mkdir(parents=True)
    (folder / "0001-link.patch").write_text(
        "diff --git a/escape b/escape\nnew file mode 120000\nindex 0000000..1111111\n--- /dev/null\n+++ b/escape\n"
        "@@ -0,0 +1 @@\n+/etc\n\\ No newline at end of file\n")
    with pytest.raises(BackendError, match="creates a symbolic link"):
        patches.collect("bitsandbytes", tmp_path / "patches")


# --- 29.14: one line (or one report entry), never a traceback -------------------------------------------

def _damaged_wheel(folder: Path, how: str) -> Path:
    """A real wheel with its members flagged encrypted, or stored with a compression method zipfile lacks."""
    wheel = make_wheel(folder, f"{how}lib", "1.0")
    data = bytearray(wheel.read_bytes())
    for signature, flags, method in ((b"PK\x03\x04", 6, 8), (b"PK\x01\x02", 8, 10)):
        at = 0
        while (at := data.find(signature, at)) >= 0:
            if how == "encrypted":
                data[at + flags] |= 1
            else:
                struct.pack_into("<H", data, at + method, 99)  # AES, which zipfile cannot read
            at += 4
    wheel.write_bytes(bytes(data))
    return wheel


def test_verify_reports_unreadable_wheels_and_goes_on_with_the_rest(tmp_path):
    house = tmp_path / "house"
    _damaged_wheel(house, "encrypted")
    _damaged_wheel(house, "method")
    make_wheel(house, "goodlib", "1.0")
    done = backend("verify", str(house), "--json", timeout=120)
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.returncode == 1
    entries = {Path(e["path"]).name.split("-")[0]: e for e in json.loads(done.stdout)["entries"]}
    assert set(entries) == {"encryptedlib", "methodlib", "goodlib"}
    assert not entries["goodlib"]["problems"]
    for name in ("encryptedlib", "methodlib"):
        assert any("cannot read the wheel" in p["message"] for p in entries[name]["problems"]), entries[name]


def test_damaged_state_files_of_the_cache_are_not_tracebacks(tmp_path):
    # A manifest nested 100,000 deep: one line.
    house = tmp_path / "wheelhouse" / VARIANT
    house.mkdir(parents=True)
    (house / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(BackendError, match="nested too deep"):
        Wheelhouse(house).manifest()
    # A prepare stamp with "trees": null, a closure state that is a list: read as "no state".
    files = {"setup.py": b"print('demo')\n"}
    archive = tmp_path / "demo.tar.gz"
    archive.write_bytes(make_tar(files))
    lk = write_lock(tmp_path, {"demo": {"component": "demo", "version": "1", "url": archive.as_uri(),
                                        "sha256": sha(archive.read_bytes())}})
    workdir = tmp_path / "w"
    prepare.prepare("demo", cache_dir=tmp_path / "c", workdir=workdir, lock=lk)
    (stamp,) = [p for p in workdir.iterdir() if p.is_file() and p.suffix == ".json"]
    stamp.write_text(json.dumps({**json.loads(stamp.read_text()), "key": "other", "trees": None}))
    got = prepare.prepare("demo", cache_dir=tmp_path / "c", workdir=workdir, lock=lk)
    assert (got.root / "setup.py").read_bytes() == files["setup.py"]

    (house / "manifest.json").write_text('{"wheels": {}}')
    (house / closure.STATE_FILE).write_text("[]")
    assert closure._still_closed(Wheelhouse(house), house / closure.STATE_FILE, "key") is None
    # A snapshot record cut short by a crash while it was written: the next copy starts anew.

    checkout, copy = tmp_path / "checkout", tmp_path / "copy"
    checkout.mkdir()
    (checkout / "a.py").write_text("a = 1\n")
    snapshot.sync(checkout, copy)
    records = [p for p in [copy / snapshot.MANIFEST, *copy.parent.glob("*.json")] if p.is_file()]
    for record in records:
        record.write_text(record.read_text()[:10])
    snapshot.sync(checkout, copy)
    assert (copy / "a.py").read_text() == "a = 1\n"


@pytest.mark.parametrize("setting", ["sm", "jobs", "nvcc-threads"])
def test_numbers_of_thousands_of_digits_are_one_line(setting):
    pairs = {"sm": "90", "isa": ISA, setting: "9" * 5000}
    line = one_line_error(backend("plan", *[a for k, v in pairs.items() for a in ("-C", f"{k}={v}")]))
    assert f"setting '{setting}'" in line


def test_nul_in_flashinfer_aot_config_and_deep_or_nul_locks_are_one_line(tmp_path):
    with pytest.raises(BackendError, match="flashinfer-aot-config"):
        project.load_settings({"sm": "90", "isa": ISA, "flashinfer-aot-config": "conf\0ig.json"})
    deep = tmp_path / "deep.lock"
    deep.write_text("format = 1\nx = " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(BackendError, match="nested too deep"):
        lock.load(deep)
    for key, value in (("filename", '"x\\u0000y.tar.gz"'), ("version", '"1\\nevil"'), ("main", '"false"')):
        bad = tmp_path / f"{key}.lock"
        extra = f"{key} = {value}\n" if key != "version" else ""
        version = value if key == "version" else '"1"'
        bad.write_text(f'format = 1\n[source.demo]\ncomponent = "demo"\nversion = {version}\n'
                       f'url = "https://example.invalid/demo.tar.gz"\n{extra}')
        with pytest.raises(BackendError, match=key):
            lock.load(bad)


@pytest.mark.parametrize("setting, value", [("jobs", str(10 ** 30)), ("free-disk-gb", "nan"), ("free-disk-gb", "inf")])
def test_absurd_numbers_are_refused_not_warned_about_or_ignored(setting, value):
    line = one_line_error(backend("plan", "-C", "sm=90", "-C", f"isa={ISA}", "-C", f"{setting}={value}"))
    assert f"setting '{setting}': bad value '{value}'" in line


# --- 29.11: links in a local tree, and a tree edited while it is copied ----------------------------------

def test_links_in_a_local_tree_are_copied_and_hashed_as_what_is_built(tmp_path, monkeypatch):
    checkout, outside = tmp_path / "checkout", tmp_path / "outside"
    (checkout / "pkg" / "real").mkdir(parents=True)
    (checkout / "pkg" / "real" / "mod.py").write_text("A = 1\n")
    os.symlink("real", checkout / "pkg" / "linked")  # a folder link inside the tree: pip's build includes it
    outside.mkdir()
    (outside / "conf.py").write_text("B = 1\n")
    os.symlink(outside / "conf.py", checkout / "pkg" / "conf.py")  # an absolute link leaving the tree

    def prepared(workdir: Path):
        return prepare.prepare_for_build("bitsandbytes", cache_dir=tmp_path / "c", workdir=workdir, patches=[],
                                      local=checkout)

    first = prepared(tmp_path / "w")
    assert (first.root / "pkg" / "linked" / "mod.py").read_text() == "A = 1\n"
    assert (first.root / "pkg" / "conf.py").read_text() == "B = 1\n"
    # The target of the absolute link changes, its text does not: the tree is not "the same".
    (outside / "conf.py").write_text("B = 2\n")
    second = prepared(tmp_path / "w")
    assert second.source_hash != first.source_hash and second.build_key != first.build_key
    assert (second.root / "pkg" / "conf.py").read_text() == "B = 2\n"
    # A file edited after the checkout was hashed, before it was copied (the edit lands in between):
    # the recorded hash is that of the copy, the state that is built.

    hashed = prepare.prepare

    def edited_meanwhile(*args, **kwargs):
        done = hashed(*args, **kwargs)
        (checkout / "pkg" / "real" / "mod.py").write_text("A = 2\n")
        return done

    monkeypatch.setattr(prepare, "prepare", edited_meanwhile)
    third = prepared(tmp_path / "w2")
    assert (third.root / "pkg" / "real" / "mod.py").read_text() == "A = 2\n"
    assert third.source_hash == snapshot.tree_digest(checkout) != second.source_hash


# --- 29.12: a full disk during configure: named, and the next run is not poisoned ----------------------------

def _can_mount_tmpfs(tmp: Path) -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            f"mount -t tmpfs -o size=1m tmpfs {tmp}"], capture_output=True)
    if probe.returncode != 0:
        probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                                f"mount -t tmpfs -o size=1m tmpfs {tmp}"], capture_output=True)
    return probe.returncode == 0


@needs_nvcc
def test_a_disk_full_during_configure_is_named_and_does_not_poison_the_next_run(tmp_path):
    """A small tmpfs over the component's build folder (a private mount namespace) fills during CMake's configure."""
    probe = tmp_path / "probe"
    probe.mkdir()
    if not _can_mount_tmpfs(probe):
        pytest.skip("cannot mount a tmpfs in a private mount namespace here")
    build_dir = tmp_path / "cache" / "work" / VARIANT / "bitsandbytes" / "_build"
    build_dir.mkdir(parents=True)
    args = [sys.executable, "-m", "backend", "build", *build_args(tmp_path, "bitsandbytes")]
    script = ('mount -t tmpfs -o size=160k tmpfs "$1" || exit 90; shift\n'
              '"$@" 2>"$OUT1"; echo "first=$?" >> "$OUT1"\n'
              'mount -o remount,size=512m "$BD"\n'
              '"$@" 2>"$OUT2"; echo "second=$?" >> "$OUT2"\n')
    out1, out2 = tmp_path / "first.txt", tmp_path / "second.txt"
    env = {**backend_env(), "OUT1": str(out1), "OUT2": str(out2), "BD": str(build_dir)}
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                           str(build_dir), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode != 90, done.stderr
    first, second = out1.read_text(), out2.read_text()
    assert "first=0" not in first, first[-3000:]
    assert "Traceback" not in first, first[-3000:]
    error = [l for l in first.splitlines() if l.startswith("error: ")]
    assert error and "is full" in error[-1] and str(build_dir) in error[-1], first[-3000:]
    assert "second=0" in second, second[-3000:]


def test_a_failed_step_discards_only_unfinished_cmake_configures(tmp_path, capsys):
    """Fast, no mount: which binary folders a failed step leaves for the next run (the disk is not full here)."""
    from types import SimpleNamespace

    from backend.pipeline import executor

    build_dir, tree = tmp_path / "_build", tmp_path / "tree"
    finished, unfinished, no_generator = build_dir / "a", build_dir / "b" / "c", tree / "build" / "d"
    for folder in (finished, unfinished, no_generator):
        (folder / "CMakeFiles").mkdir(parents=True)
    (finished / "CMakeCache.txt").write_text("")
    (finished / "build.ninja").write_text("")
    (finished / "sub" / "CMakeFiles").mkdir(parents=True)  # inside a finished binary folder: its own
    (no_generator / "CMakeCache.txt").write_text("")  # a cache but no build.ninja/Makefile: cut short
    too_deep = build_dir / "1" / "2" / "3" / "4"
    (too_deep / "CMakeFiles").mkdir(parents=True)
    outside = tmp_path / "outside"
    (outside / "CMakeFiles").mkdir(parents=True)
    (build_dir / "link").symlink_to(outside)  # a link is not followed
    step = SimpleNamespace(component="bitsandbytes", tree=tree)
    failure = SimpleNamespace(tail=["error: something else"], returncode=1, log=tmp_path / "x.log")
    executor._after_failure(step, build_dir, failure, "[1/1]")
    assert finished.is_dir() and (finished / "sub" / "CMakeFiles").is_dir()
    assert not unfinished.exists() and not no_generator.exists()
    assert too_deep.is_dir() and (outside / "CMakeFiles").is_dir()
    assert "discarded 2 folder(s) of an unfinished CMake configure" in capsys.readouterr().err


def test_verify_refuses_libraries_that_are_empty_links_or_bombs(tmp_path):
    real = tmp_path / "m.so"
    (tmp_path / "m.c").write_text("int f(void) { return 1; }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(real), str(tmp_path / "m.c")], check=True)
    wheels = {
        "empty": make_wheel(tmp_path / "e", "emptylib", "1.0", {"emptylib/_C.so": b""}, tag="py3-none-linux_x86_64"),
        "bomb": make_wheel(tmp_path / "b", "bomblib", "1.0",
                           {"bomblib/_C.so": real.read_bytes() + b"\0" * (64 << 20)}, tag="py3-none-linux_x86_64"),
        "good": make_wheel(tmp_path / "g", "goodlib", "1.0", {"goodlib/_C.so": real}, tag="py3-none-linux_x86_64"),
    }
    # a zip symlink: mode 0o120777 in the member's attributes, the target's path as its bytes (RECORD kept right)
    linked = make_wheel(tmp_path / "l", "linklib", "1.0", {"linklib/_C.so": b"../../../tmp/evil.so"},
                        tag="py3-none-linux_x86_64")
    rewritten = tmp_path / "l2" / linked.name
    rewritten.parent.mkdir()
    with zipfile.ZipFile(linked) as source, zipfile.ZipFile(rewritten, "w", zipfile.ZIP_DEFLATED) as out:
        for item in source.infolist():
            if item.filename.endswith("_C.so"):
                item.external_attr = (stat_mod.S_IFLNK | 0o777) << 16
            out.writestr(item, source.read(item))
    wheels["link"] = rewritten
    assert wheels["bomb"].stat().st_size < 1 << 20
    started = time.monotonic()
    for name, wheel in wheels.items():
        done = backend("verify", str(wheel), "--json", timeout=120)
        assert "Traceback" not in done.stderr, done.stderr[-2000:]
        assert (done.returncode == 0) is (name == "good"), (name, done.stdout[-2000:])
    assert time.monotonic() - started < 60


def test_a_killed_wheelhouse_add_leaves_nothing_the_next_add_keeps(tmp_path):
    house = tmp_path / "house"
    first = make_wheel(tmp_path / "a", "alib", "1.0", big=4 << 20)
    script = ("import os, sys, time\n"
              "os.fsync = lambda fd: time.sleep(600)  # stop right after the staged copy is written\n"
              "from backend.wheels.wheelhouse import Wheelhouse\n"
              "Wheelhouse(sys.argv[1]).add(sys.argv[2], {'component': 'alib', 'build_key': 'k'})\n")
    adder = subprocess.Popen([sys.executable, "-c", script, str(house), str(first)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while not list(house.glob(".*.part")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list(house.glob(".*.part"))
        time.sleep(0.3)
    finally:
        adder.kill()
        adder.wait(timeout=30)
    (house / ".old-version.whl.abc123.part").write_bytes(b"x" * 1000)  # an earlier version's name, no pid
    Wheelhouse(house).add(make_wheel(tmp_path / "b", "blib", "1.0"), {"component": "blib", "build_key": "k"})
    assert not list(house.glob(".*.part"))


def test_a_cache_inside_the_local_tree_is_not_copied_into_it(tmp_path):
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "setup.py").write_text("# x\n")
    cache = checkout / "cache"  # -C cache-dir=./cache with -C source.x=.
    copy = cache / "work" / VARIANT / "torch" / "local-tree"
    other = checkout / "other-cache"
    other.mkdir()
    (other / cache_marker.MARKER).write_text("{}")
    (other / "big.bin").write_bytes(b"x")
    for _ in range(3):
        snapshot.sync(checkout, copy)
    assert sorted(p.name for p in copy.iterdir()) == ["setup.py"]
    assert snapshot.tree_digest(checkout, exclude=copy) == snapshot.tree_digest(copy)


@pytest.mark.parametrize("key", ["source.bitsandbytes", "cache-dir", "wheelhouse"])
def test_a_nul_in_a_path_setting_is_one_line(key):
    with pytest.raises(BackendError, match=f"setting '{key}'"):
        project.load_settings({"sm": "90", "isa": ISA, key: "/tmp/a\0b"})
