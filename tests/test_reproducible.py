"""Byte-identical rebuilds (docs/WHEELS.md, "Reproducible wheels"): real nvcc 13, real g++, real builds.

The pieces first, each against the failure it removes (nvcc's path-derived
symbol names, nvcc's process-id temporary names, a wheel writer's order,
times and modes), then the pipeline: the stand-in torch built in one folder
with the compiler cache, ``python -m backend rebuild-check`` building it again
in another folder without it; and a deliberately non-deterministic xformers
stand-in (``__DATE__ " " __TIME__`` in its extension, and a setup.py that
drops ``SOURCE_DATE_EPOCH``, as a build that scrubs its environment does)
that rebuild-check reports with its member named.  The whole stand-in stack
built twice in two folders is ``slow``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shlex
import shutil
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from backend.pipeline import nvcc_launcher, reproducible
from backend.wheels import built, rebuild_check
from backend.wheels import reproducible as reproducible_wheel
from standin_helpers import find_nvcc, gcc_command_line, host_isa, standin_tree
from backend.verify.metadata import read_wheel

ROOT = Path(__file__).resolve().parent.parent
NVCC = find_nvcc()
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="needs a CUDA 13 nvcc (system /usr/local/cuda-13.0 or PyPI)")
ISA = host_isa()
INTERNAL_NAME = re.compile(rb"_GLOBAL__N__([0-9a-f]{8})_")

KERNEL = """\
namespace { __global__ void twice(float *x) { x[threadIdx.x] *= 2; } }
__global__ void add_one(float *x) { x[threadIdx.x] += 1; }
void launch(float *x) { add_one<<<1, 1>>>(x); twice<<<1, 1>>>(x); }
"""


def _nvcc_compile(folder: Path, *, launcher: bool) -> bytes:
    """Compile src/kernel.cu in ``folder`` as a build of that folder does (relative source, prefix map)."""
    (folder / "src").mkdir(parents=True, exist_ok=True)
    (folder / "src" / "kernel.cu").write_text(KERNEL)
    maps = reproducible.prefix_maps([folder])
    env = {**os.environ, **reproducible.compile_env({"CUDACXX": NVCC}, maps)}
    # a host without user namespaces: nvcc's process ids stay in its names, for the normaliser to remove
    env[nvcc_launcher.NAMESPACE_VARIABLE] = ""
    command = [NVCC, "-c", "src/kernel.cu", "-o", "kernel.o", "-O2", "-Xcompiler", "-fPIC",
               "-gencode", "arch=compute_90,code=sm_90"]
    if launcher:
        command = [*__import__("shlex").split(env["PYTORCH_NVCC"]), *command[1:]]
    subprocess.run(command, cwd=folder, env=env, check=True, capture_output=True)
    return (folder / "kernel.o").read_bytes()


@needs_nvcc
def test_nvcc_names_internal_symbols_after_the_mapped_path_through_the_launcher(tmp_path):
    """cudafe++ hashes the source's absolute real path into every internal-linkage device symbol; no prefix map
    reaches it.  Through the launcher the hash is the mapped path's: equal in two folders, and host stubs and
    cubin agree (one hash in the whole object)."""
    plain = [set(INTERNAL_NAME.findall(_nvcc_compile(tmp_path / f"plain{n}" / "tree", launcher=False))) for n in (1, 22)]
    assert plain[0] != plain[1], "nvcc no longer hashes the folder into the names: the launcher may be unneeded"
    objects = [_nvcc_compile(tmp_path / f"launched{n}" / "tree", launcher=True) for n in (1, 22)]
    hashes = [set(INTERNAL_NAME.findall(data)) for data in objects]
    assert hashes[0] == hashes[1] and len(hashes[0]) == 1, hashes
    # what is left between the two objects is nvcc's temporary file name only
    assert reproducible_wheel.TMPXFT.search(objects[0])
    assert [reproducible_wheel.TMPXFT.sub(reproducible_wheel.TMPXFT_FIXED, o) for o in objects[0:1]] == \
           [reproducible_wheel.TMPXFT.sub(reproducible_wheel.TMPXFT_FIXED, o) for o in objects[1:2]]
    assert str(tmp_path).encode() not in objects[0]


TEMPLATES_ONLY = """\
template <typename T> __global__ void scale(T *x, T by) { x[threadIdx.x] *= by; }
template <typename T> void launch(T *x, T by) { scale<T><<<1, 1>>>(x, by); }
template void launch<float>(float *, float);
"""
MODULE_ID = re.compile(rb"_[0-9a-f]{8}_[0-9]+_kernel_cu_[0-9a-f]{8}_[0-9]+")


def _nvcc_templates(folder: Path, namespace: str) -> bytes:
    """bitsandbytes' case: a unit whose kernels are all templates, relocatable (-rdc), through the launcher."""
    (folder / "src").mkdir(parents=True, exist_ok=True)
    source = folder / "src" / "kernel.cu"
    source.write_text(TEMPLATES_ONLY)
    os.utime(source, (reproducible.DEFAULT_SOURCE_DATE_EPOCH,) * 2)  # unpacked from one archive: one time
    env = {**os.environ, **reproducible.compile_env({"CUDACXX": NVCC}, reproducible.prefix_maps([folder]))}
    env[nvcc_launcher.NAMESPACE_VARIABLE] = namespace
    command = [*__import__("shlex").split(env["PYTORCH_NVCC"]), "-c", "src/kernel.cu", "-o", "kernel.o",
               "-rdc=true", "-Xcompiler", "-fPIC", "-gencode", "arch=compute_90,code=sm_90"]
    subprocess.run(command, cwd=folder, env=env, check=True, capture_output=True)
    return (folder / "kernel.o").read_bytes()


@needs_nvcc
@pytest.mark.skipif(not reproducible.nvcc_namespace(), reason="unprivileged user namespaces are not allowed here")
def test_a_module_named_after_no_kernel_gets_one_id_in_two_folders_in_nvcc_namespace(tmp_path):
    """cudafe++ names such a module after its working folder and its own process id; in the launcher's
    namespace both are fixed, and the two objects are byte-identical (nvcc's temporary names included)."""
    plain = [_nvcc_templates(tmp_path / f"plain{n}" / "tree", "") for n in (1, 22)]
    ids = [MODULE_ID.findall(data) for data in plain]
    assert ids[0] and ids[0] != ids[1], ids  # the defect: without the namespace the ids differ
    fixed = [_nvcc_templates(tmp_path / f"fixed{n}" / "tree", reproducible.nvcc_namespace()) for n in (1, 22)]
    assert MODULE_ID.findall(fixed[0])
    assert fixed[0] == fixed[1]


@needs_nvcc
@pytest.mark.skipif(not reproducible.nvcc_namespace() or not shutil.which("sccache"),
                    reason="needs user namespaces and sccache")
def test_nvcc_behind_sccache_compiles_outside_the_namespace(tmp_path):
    """sccache's server (started before the build, as SccacheServer does) runs the compile in the working
    folder its client names; in the namespace that is the fixed folder, empty outside it, and the compile
    failed ('while hashing the input file'). Behind sccache nvcc runs outside the namespace."""
    folder = tmp_path / "tree"
    (folder / "src").mkdir(parents=True)
    (folder / "src" / "kernel.cu").write_text(KERNEL)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "SCCACHE_DIR": str(tmp_path / "cache"), "SCCACHE_SERVER_PORT": str(port),
           "SCCACHE_IDLE_TIMEOUT": "0", **reproducible.compile_env({"CUDACXX": f"{shutil.which('sccache')} {NVCC}"},
                                                                  reproducible.prefix_maps([folder]))}
    assert env[nvcc_launcher.NAMESPACE_VARIABLE]
    subprocess.run(["sccache", "--start-server"], env=env, check=True, capture_output=True)
    try:
        command = [*shlex.split(env["PYTORCH_NVCC"]), "-c", "src/kernel.cu", "-o", "kernel.o", "-Xcompiler", "-fPIC",
                   "-gencode", "arch=compute_90,code=sm_90"]
        done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    finally:
        subprocess.run(["sccache", "--stop-server"], env=env, capture_output=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (folder / "kernel.o").stat().st_size > 0


@needs_nvcc
def test_rebuild_check_names_nvcc_module_ids_as_the_cause(tmp_path):
    """What the H100 showed for bitsandbytes: nvcc outside its namespace gives the unit another module id in
    each folder; the libraries differ first in their headers and hashes, and rebuild-check names the id."""
    libraries = []
    for n in (1, 22):
        folder = tmp_path / f"b{n}" / "tree"
        _nvcc_templates(folder, "")
        subprocess.run(["g++", "-shared", "-o", "libk.so", "kernel.o", "-Wl,--build-id=sha1"], cwd=folder, check=True)
        libraries.append((folder / "libk.so").read_bytes())
    found = rebuild_check._first_difference("k.whl", "k/libk.so", *libraries, folders=(str(tmp_path),))
    assert found.reason == rebuild_check.MODULE_ID_REASON + " (ELF section __nv_module_id)", found.describe()
    assert b"_kernel_cu_" in found.original and found.original != found.rebuilt


def test_the_launcher_maps_the_real_path_and_leaves_other_sources_alone(tmp_path):
    tree = tmp_path / "cache" / "work" / "v" / "torch"
    (tree / "csrc").mkdir(parents=True)
    link = tmp_path / "link"
    link.symlink_to(tree)
    environ = {nvcc_launcher.PREFIX_MAP_VARIABLE: f"{tmp_path / 'cache'}=/vllm-stack/cache\n{tree.parent}=/vllm-stack/work"}
    command = nvcc_launcher.with_source_name(["nvcc", "-c", "csrc/k.cu", "-o", "k.o"], environ, str(link))
    assert command[-2:] == ["-Xcudafe", "--orig_src_path_name=/vllm-stack/work/torch/csrc/k.cu"]
    outside = nvcc_launcher.with_source_name(["nvcc", "-c", "/elsewhere/k.cu"], environ, str(link))
    assert outside == ["nvcc", "-c", "/elsewhere/k.cu"]
    two = nvcc_launcher.with_source_name(["nvcc", "-c", "a.cu", "b.cu"], environ, str(tree))
    assert two == ["nvcc", "-c", "a.cu", "b.cu"]


@needs_nvcc
def test_nvcc_temporary_names_and_build_id_are_normalised_in_linked_libraries(tmp_path):
    """Two links of the same source differ by nvcc's process id (tmpxft_<pid>_...) and the build id over it;
    normalize_elf zeroes the ids and computes the build id again: equal, and still a valid GNU note."""
    libraries = []
    for n in (1, 2):
        folder = tmp_path / f"b{n}"
        _nvcc_compile(folder, launcher=True)
        subprocess.run(["g++", "-shared", "-o", "libk.so", "kernel.o", "-Wl,--build-id=sha1"], cwd=folder, check=True)
        libraries.append((folder / "libk.so").read_bytes())
    assert libraries[0] != libraries[1]
    fixed = [reproducible_wheel.normalize_elf(data) for data in libraries]
    assert fixed[0] == fixed[1]
    start, end = reproducible_wheel.build_id_span(fixed[0])
    assert end - start == 20 and fixed[0][start:end] != bytes(20) and fixed[0][start:end] != libraries[0][start:end]
    (tmp_path / "fixed.so").write_bytes(fixed[0])
    notes = subprocess.run(["readelf", "-n", str(tmp_path / "fixed.so")], capture_output=True, text=True, check=True).stdout
    assert fixed[0][start:end].hex() in notes


def _wheel(path: Path, files: dict[str, tuple[bytes, int]], order: list[str], when: tuple) -> Path:
    record = "".join(f"{name},,\n" for name in order) + "demo-1.0.dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in order + ["demo-1.0.dist-info/RECORD"]:
            data, mode = files.get(name, (record.encode(), 0o600))
            info = zipfile.ZipInfo(name, when)
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return path


def test_a_wheel_writers_order_times_and_modes_are_normalised(tmp_path):
    files = {
        "demo/__init__.py": (b"x = 1\n", 0o664),
        "demo/tool": (b"#!/bin/sh\n", 0o775),
        "demo/z.txt": (b"z\n", 0o600),
        "demo-1.0.dist-info/METADATA": (b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n", 0o644),
        "demo-1.0.dist-info/WHEEL": (b"Wheel-Version: 1.0\n", 0o644),
    }
    names = list(files)
    shuffled = names[:]
    random.Random(1).shuffle(shuffled)
    a = _wheel((tmp_path / "a").mkdir() or tmp_path / "a" / "demo-1.0-py3-none-any.whl", files, names, (2026, 12, 6, 21, 0, 0))
    b = _wheel((tmp_path / "b").mkdir() or tmp_path / "b" / "demo-1.0-py3-none-any.whl", files, shuffled, (2031, 1, 2, 3, 4, 6))
    assert a.read_bytes() != b.read_bytes()
    for wheel in (a, b):  # in place, as the executor's one pass writes a built wheel (read with an epoch)
        built.read(wheel, into=wheel.parent, epoch=1700000000, inspect=False).write()
    assert a.read_bytes() == b.read_bytes()
    with zipfile.ZipFile(a) as archive:
        infos = archive.infolist()
        assert [i.filename for i in infos] == ["demo/__init__.py", "demo/tool", "demo/z.txt", "demo-1.0.dist-info/METADATA",
                                               "demo-1.0.dist-info/WHEEL", "demo-1.0.dist-info/RECORD"]
        assert {i.date_time for i in infos} == {(2023, 11, 14, 22, 13, 20)}
        assert [(i.external_attr >> 16) & 0o777 for i in infos] == [0o644, 0o755, 0o644, 0o644, 0o644, 0o644]
        record = archive.read("demo-1.0.dist-info/RECORD").decode()
        assert [line.split(",")[0] for line in record.splitlines()] == [i.filename for i in infos]

    assert read_wheel(a, check_record=True)


def test_a_source_date_epoch_past_zips_last_date_gives_its_last_year(tmp_path):
    """Zip's DOS times end in 2107: a later SOURCE_DATE_EPOCH (2128 here) writes 2107, never a struct error."""
    files = {"demo/__init__.py": (b"x = 1\n", 0o644),
             "demo-1.0.dist-info/METADATA": (b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n", 0o644)}
    (tmp_path / "a").mkdir()
    wheel = _wheel(tmp_path / "a" / "demo-1.0-py3-none-any.whl", files, list(files), (2026, 12, 6, 21, 0, 0))
    built.read(wheel, into=wheel.parent, epoch=5_000_000_000, inspect=False).write()
    with zipfile.ZipFile(wheel) as archive:
        assert {i.date_time[0] for i in archive.infolist()} == {2107}
    assert read_wheel(wheel, check_record=True)


def test_a_bad_source_date_epoch_is_one_line(tmp_path):
    env = {**os.environ, "SOURCE_DATE_EPOCH": "yesterday"}
    result = subprocess.run([sys.executable, "-m", "backend", "plan", "-C", "sm=90", "-C", f"isa={ISA}", "-C", "cuda=13.0",
                             "-C", "components=bitsandbytes", "-C", f"cache-dir={tmp_path}"],
                            cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "error: environment variable 'SOURCE_DATE_EPOCH': bad value 'yesterday'; accepted: whole seconds since 1970 "
        "from 315532800 (1980-01-01, the earliest zip time) on"]


# ------------------------------------------------------------------ the pipeline

def _settings(tmp: Path, components: str, sources: dict[str, Path], **extra: str) -> list[str]:
    pairs = {
        "sm": "90", "isa": ISA, "cuda": "13.0", "components": components, "jobs": "2",
        "cache-dir": str(tmp / "cache"), "wheelhouse": str(tmp / "wheelhouse"),
        "runtime-deps": "none", "smoke": "off", "build-requirements": "ranges", "free-disk-gb": "1",
        **{f"source.{c}": str(p) for c, p in sources.items()}, **extra,
    }
    return [arg for key, value in pairs.items() for arg in ("-C", f"{key}={value}")]


def _backend(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(NVCC).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("SOURCE_DATE_EPOCH", None)
    return subprocess.run([sys.executable, "-m", "backend", *args], cwd=ROOT, capture_output=True, text=True, env=env)


def _house(tmp: Path) -> Path:
    return next((tmp / "wheelhouse").iterdir())


def dated_xformers(folder: Path) -> Path:
    """The xformers stand-in made non-deterministic on purpose: its extension keeps ``__DATE__ " " __TIME__``
    and its setup.py drops SOURCE_DATE_EPOCH before compiling (GCC would otherwise take the date from it)."""
    tree = folder / "xformers"
    shutil.copytree(standin_tree("xformers"), tree)
    ops = tree / "csrc" / "ops.cpp"
    ops.write_text(ops.read_text() + '\nextern "C" const char* standin_built_at = "built " __DATE__ " " __TIME__;\n')
    setup = tree / "setup.py"
    setup.write_text(setup.read_text().replace("import os\n", "import os\n\nos.environ.pop('SOURCE_DATE_EPOCH', None)\n", 1))
    return tree


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    """torch (stand-in) and the dated xformers built with the compiler cache, then rebuild-check in another folder."""
    if NVCC is None:
        pytest.skip("needs a CUDA 13 nvcc")
    tmp = tmp_path_factory.mktemp("repro")
    torch_tree = tmp / "trees" / "torch"
    shutil.copytree(standin_tree("torch"), torch_tree)  # the rebuild reads the tree again: it must outlive the build
    sources = {"torch": torch_tree, "xformers": dated_xformers(tmp / "trees")}
    build = _backend("build", *_settings(tmp / "first", "torch,xformers", sources))
    assert build.returncode == 0, build.stderr[-3000:]
    house = _house(tmp / "first")
    check = _backend("rebuild-check", str(house), "--scratch", str(tmp / "second"))
    return tmp, house, check


def _status(check, prefix: str) -> str:
    return next(line.split(None, 1)[1] for line in check.stdout.splitlines() if line.startswith(prefix))


def test_rebuild_check_rebuilds_elsewhere_without_the_cache_and_finds_torch_identical(checked):
    tmp, house, check = checked
    assert _status(check, "torch-") == "identical", check.stdout + check.stderr[-2000:]
    manifest = json.loads((house / "manifest.json").read_text())
    assert manifest["flags"]["settings"]["cache-dir"] == str(tmp / "first" / "cache")
    assert "compiler cache: no compiler cache" in (tmp / "second" / "rebuild.log").read_text()
    [torch_wheel] = [name for name in manifest["wheels"] if name.startswith("torch-")]
    rebuilt = tmp / "second" / "wheelhouse" / house.name / torch_wheel
    assert hashlib.sha256(rebuilt.read_bytes()).hexdigest() == manifest["wheels"][torch_wheel]["sha256"]


def test_the_rebuild_takes_no_setting_from_the_environment():
    """The manifest's settings are the build's: a VLLM_STACK_<KEY> in the checker's environment (which
    `python -m backend build` would read for a setting the manifest left at its default) does not reach the
    rebuild; other VLLM_STACK_ variables and the recorded SOURCE_DATE_EPOCH do."""
    manifest = {"flags": {"SOURCE_DATE_EPOCH": 315532800, "settings": {"sm": "90"}}}
    environ = {"VLLM_STACK_VLLM": "0.14.1", "VLLM_STACK_SM": "80", "VLLM_STACK_SOURCE_MIRROR": "/mirror",
               "PATH": "/usr/bin", "SOURCE_DATE_EPOCH": "1700000000"}
    assert rebuild_check.rebuild_environment(manifest, environ) == {
        "VLLM_STACK_SOURCE_MIRROR": "/mirror", "PATH": "/usr/bin", "SOURCE_DATE_EPOCH": "315532800"}


def test_rebuild_check_names_the_member_a_date_made_different(checked):
    tmp, house, check = checked
    assert check.returncode == 1, check.stdout + check.stderr[-2000:]
    assert _status(check, "xformers-") == "DIFFERENT (2)"
    lines = check.stdout.splitlines()
    so = next(i for i, line in enumerate(lines) if " member xformers/_C.abi3.so: bytes at byte " in line)
    assert re.search(r"as text: '.*\d\d:\d\d:\d\d.*' \| '.*\d\d:\d\d:\d\d.*'", lines[so + 1]), lines[so:so + 3]
    assert lines[so + 2].startswith("    reason: a date or time: 'built ") and "(ELF section .rodata)" in lines[so + 2]
    record = next(i for i, line in enumerate(lines) if ".dist-info/RECORD: bytes at byte" in line)
    assert "RECORD holds every member's sha256" in lines[record + 2]
    assert "rebuild-check: 1 of 2 wheel(s) identical" in check.stdout


def test_the_wheels_hold_no_build_folder_and_no_path_in_the_compiler_record(checked, tmp_path):
    tmp, house, _ = checked
    records = 0
    for wheel in house.glob("*.whl"):
        with zipfile.ZipFile(wheel) as archive:
            for info in archive.infolist():
                data = archive.read(info)
                assert str(tmp).encode() not in data, (wheel.name, info.filename)
                if data.startswith(b"\x7fELF"):
                    target = tmp_path / Path(info.filename).name
                    target.write_bytes(data)
                    record = gcc_command_line(target)  # none where nvcc's host compile made the only object
                    assert not re.search(r"\s/", record), (info.filename, record)
                    records += "GNU C++" in record
    assert records >= 3  # libc10, libtorch_cpu, xformers' _C: GCC's record, options only


@pytest.mark.slow
@needs_nvcc
def test_the_stand_in_stack_built_twice_in_two_folders_is_identical(tmp_path):
    """Every stand-in component (CUDA code included) in two cache folders, the second without the compiler cache."""
    components = "torch,torchvision,torchaudio,xformers,flashinfer,bitsandbytes"
    sources = {}
    for component in components.split(","):
        sources[component] = tmp_path / "trees" / component
        shutil.copytree(standin_tree(component), sources[component])
    sums = []
    for folder, cache in (("one", "auto"), ("second-folder", "none")):
        result = _backend("build", *_settings(tmp_path / folder, components, sources, **{"compiler-cache": cache}))
        assert result.returncode == 0, result.stderr[-3000:]
        sums.append({w.name: hashlib.sha256(w.read_bytes()).hexdigest() for w in _house(tmp_path / folder).glob("*.whl")})
    assert len(sums[0]) == 7 and sums[0] == sums[1]


@pytest.mark.skipif(shutil.which("diffoscope") is None, reason="needs diffoscope (apt-get install diffoscope-minimal)")
def test_each_difference_is_named_with_diffoscopes_report(tmp_path):
    """compare_wheels on two wheels that differ in one member's text and one member's time: both named, the
    text with its bytes and diffoscope's lines; the build id alone would not be called the cause."""
    files = {"demo/__init__.py": (b"built = 'Dec  6 2026 21:41:35'\n", 0o644),
             "demo-1.0.dist-info/METADATA": (b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n", 0o644)}
    a = _wheel((tmp_path / "a").mkdir() or tmp_path / "a" / "demo-1.0-py3-none-any.whl", files, list(files), (2026, 1, 1, 0, 0, 0))
    files["demo/__init__.py"] = (b"built = 'Dec  6 2026 21:42:13'\n", 0o644)
    b = _wheel((tmp_path / "b").mkdir() or tmp_path / "b" / "demo-1.0-py3-none-any.whl", files, list(files), (2026, 1, 1, 0, 0, 2))
    found = rebuild_check.compare_wheels(a, b, diffoscope=shutil.which("diffoscope"), scratch=tmp_path)
    by_member = {(d.member, d.what): d for d in found}
    text = by_member[("demo/__init__.py", "bytes")]
    assert text.offset == 25 and text.reason.startswith("a date or time: \"built = 'Dec  6 2026 21:41:35'\"")
    assert "-built = 'Dec  6 2026 21:41:35'" in text.diffoscope and "+built = 'Dec  6 2026 21:42:13'" in text.diffoscope
    assert ("demo/__init__.py", "time") in by_member and ("demo-1.0.dist-info/METADATA", "time") in by_member


@pytest.mark.skipif(not reproducible.nvcc_namespace(), reason="unprivileged user namespaces are not allowed here")
def test_a_folder_the_namespace_cannot_bind_is_compiled_in_as_it_is(tmp_path):
    """A file system that refuses the bind mount must not stop the compile: the command runs in its own folder."""
    fixed = tmp_path / "fixed"
    fixed.mkdir()
    unbindable = tmp_path / "gone"  # a bind of a folder that is not there fails, as a refusing file system does
    done = subprocess.run(nvcc_launcher.in_namespace(["pwd"], str(unbindable), str(fixed)), cwd=tmp_path,
                          capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == str(tmp_path), (done.returncode, done.stdout, done.stderr)
    bound = subprocess.run(nvcc_launcher.in_namespace(["pwd"], str(tmp_path), str(fixed)), cwd=tmp_path,
                           capture_output=True, text=True)
    assert bound.stdout.strip() == str(fixed)


@needs_nvcc
@pytest.mark.skipif(not reproducible.nvcc_namespace(), reason="unprivileged user namespaces are not allowed here")
def test_nvccs_side_by_side_in_their_namespaces_keep_their_own_temporary_files(tmp_path):
    """Every nvcc has the same process id in its namespace, so in one shared /tmp two compiles at once would
    name the same tmpxft_ files (nvcc 13 was seen to step around that by itself, which nothing documents); each
    gets a folder of its own at one fixed path: each object is its own, and nothing is left there."""
    env = {**os.environ, **reproducible.compile_env({"CUDACXX": NVCC}, reproducible.prefix_maps([tmp_path]))}
    assert env[nvcc_launcher.NAMESPACE_VARIABLE]
    launched = []
    for n in range(4):
        folder = tmp_path / f"unit{n}"
        folder.mkdir()
        body = "".join(f"__global__ void kernel_{n}_{i}(float *x) {{ x[threadIdx.x] += {i}; }}\n" for i in range(300))
        (folder / "k.cu").write_text(body)
        command = [*__import__("shlex").split(env["PYTORCH_NVCC"]), "-c", "k.cu", "-o", "k.o",
                   "-gencode", "arch=compute_90,code=sm_90"]
        launched.append(subprocess.Popen(command, cwd=folder, env=env, stderr=subprocess.PIPE))
    for n, process in enumerate(launched):
        assert process.wait() == 0, process.stderr.read()
        data = (tmp_path / f"unit{n}" / "k.o").read_bytes()
        others = [m for m in range(4) if m != n and f"kernel_{m}_".encode() in data]
        assert f"kernel_{n}_299".encode() in data and not others
    assert not list(Path(reproducible.nvcc_launcher.temporary_folder(reproducible.NVCC_FOLDER)).iterdir())
