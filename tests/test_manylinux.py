"""manylinux tags decided by auditwheel, the -C manylinux target and the host check, on libraries gcc builds here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import pytest

from backend.errors import BackendError
from backend.settings import MANYLINUX_POLICIES, resolve
from backend.verify import Expectation, verify_wheel
from backend.wheels import manylinux

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
from conftest import kept_unchanged, make_wheel, tag_wheels  # noqa: E402
from standin_helpers import standin_tree  # noqa: E402

GCC, GXX = shutil.which("gcc"), shutil.which("g++")
AUDITWHEEL = [sys.executable, "-m", "auditwheel"]
pytestmark = pytest.mark.skipif(
    GCC is None or GXX is None or __import__("platform").machine() != "x86_64", reason="needs gcc and g++ on x86_64")


@pytest.fixture(scope="module")
def libs(tmp_path_factory) -> Mapping[str, Path]:
    out = tmp_path_factory.mktemp("manylinux")
    src = FIXTURES / "manylinux"
    built = {"newcxx": out / "libnewcxx.so", "plain": out / "libplain.so", "user": out / "libuser.so",
             "user_foo": out / "libuser_foo.so"}
    subprocess.run([GXX, "-O2", "-fPIC", "-shared", "-o", str(built["newcxx"]), str(src / "newcxx.cpp")], check=True)
    subprocess.run([GCC, "-O2", "-fPIC", "-shared", "-o", str(built["plain"]), str(src / "plain.c")], check=True)
    deps = out / "deps"
    deps.mkdir()
    for soname, link in (("libcudart.so.13", "libcudart.so"), ("libtorch.so", "libtorch.so"), ("libfoo.so.1", "libfoo.so")):
        subprocess.run([GCC, "-fPIC", "-shared", f"-Wl,-soname,{soname}", "-o", str(deps / link), str(src / "provider.c")],
                       check=True)
    subprocess.run([GCC, "-fPIC", "-shared", "-o", str(built["user"]), str(src / "user.c"), f"-L{deps}",
                    "-Wl,--no-as-needed", "-lcudart", "-ltorch"], check=True)
    subprocess.run([GCC, "-fPIC", "-shared", "-o", str(built["user_foo"]), str(src / "user.c"), f"-L{deps}",
                    "-Wl,--no-as-needed", "-lfoo"], check=True)
    with kept_unchanged(out):
        yield MappingProxyType(built)


def wheel_of(tmp: Path, lib: Path, tag: str = "cp311-cp311-linux_x86_64", name: str = "demo") -> Path:
    return make_wheel(tmp, name, "1.0+cu130.sm90.avx512", {f"{name}/{lib.name}": lib, f"{name}/__init__.py": b""}, tag=tag)


def show(wheel: Path) -> dict:
    result = subprocess.run([*AUDITWHEEL, "show", "--json", "--disable-isa-ext-check", str(wheel)],
                            capture_output=True, text=True)
    return json.loads(result.stdout)


def wheel_tags(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/WHEEL"))
        return [line.split(": ", 1)[1] for line in archive.read(name).decode().splitlines() if line.startswith("Tag: ")]


def test_the_settings_list_is_auditwheels():
    assert set(MANYLINUX_POLICIES) == set(manylinux.policy_names("aarch64"))
    assert set(MANYLINUX_POLICIES) <= set(manylinux.policy_names("x86_64"))


@pytest.mark.parametrize("given, meant", [("2_28", "2_28"), ("2.28", "2_28"), ("manylinux_2_28", "2_28"),
                                          ("manylinux2014", "2_17"), ("auto", None)])
def test_setting_forms(given, meant):
    assert resolve({"manylinux": given}).manylinux == meant


def test_bad_setting_is_one_line_with_accepted_values():
    with pytest.raises(BackendError) as error:
        resolve({"manylinux": "2_29"})
    message = str(error.value)
    assert message.startswith("setting 'manylinux': bad value '2_29'") and "2_28" in message and "\n" not in message


def test_tag_is_the_one_auditwheel_show_finds(libs, tmp_path):
    wheel = wheel_of(tmp_path, libs["newcxx"])
    [tagged] = tag_wheels([wheel], "x86_64", None, manylinux.external_patterns())
    assert tagged.name.endswith("-cp311-cp311-manylinux_2_34_x86_64.whl") and not wheel.exists()
    assert wheel_tags(tagged) == ["cp311-cp311-manylinux_2_34_x86_64"]
    shown = show(tagged)
    assert shown["overall_tag"] == shown["sym_tag"] == "manylinux_2_34_x86_64"
    assert verify_wheel(tagged, None).ok  # RECORD still matches


def test_oldest_policy_with_its_legacy_alias_and_a_target(libs, tmp_path):
    [best] = tag_wheels([wheel_of(tmp_path, libs["plain"])], "x86_64", None, frozenset())
    assert best.name.endswith("-manylinux_2_5_x86_64.manylinux1_x86_64.whl")
    assert show(best)["overall_tag"] == "manylinux_2_5_x86_64"
    (tmp_path / "again").mkdir()
    [targeted] = tag_wheels([wheel_of(tmp_path / "again", libs["plain"])], "x86_64", "2_28", frozenset())
    assert targeted.name.endswith("-manylinux_2_28_x86_64.whl")


def test_a_newer_libstdcxx_symbol_than_the_tag_allows_is_refused(libs, tmp_path):
    lying = wheel_of(tmp_path, libs["newcxx"], tag="cp311-cp311-manylinux_2_28_x86_64")
    report = verify_wheel(lying, None)
    [problem] = [p for p in report.errors if p.check == "manylinux"]
    assert "GLIBCXX_3.4.29" in problem.message and "manylinux_2_28_x86_64" in problem.message
    assert problem.object == "demo/libnewcxx.so"
    cli = subprocess.run([sys.executable, "-m", "backend", "verify", str(lying)], cwd=ROOT, capture_output=True, text=True)
    assert cli.returncode == 1 and "GLIBCXX_3.4.29" in cli.stdout


def test_a_target_the_libraries_do_not_meet_is_refused(libs, tmp_path):
    [tagged] = tag_wheels([wheel_of(tmp_path, libs["newcxx"])], "x86_64", "2_28", frozenset())
    assert "manylinux_2_34_x86_64" in tagged.name  # the truth, not the target
    assert verify_wheel(tagged, None).ok
    report = verify_wheel(tagged, Expectation(manylinux="2_28"))
    assert any("GLIBCXX_3.4.29" in p.message and "-C manylinux=2_28" in p.message for p in report.errors)
    cli = subprocess.run([sys.executable, "-m", "backend", "verify", str(tagged), "-C", "manylinux=2_28"],
                         cwd=ROOT, capture_output=True, text=True)
    assert cli.returncode == 1


def test_cuda_and_torch_libraries_stay_external(libs, tmp_path):
    wheel = wheel_of(tmp_path, libs["user"])
    unexcluded = manylinux.decide(wheel, "x86_64", frozenset())
    assert unexcluded.tags == ("linux_x86_64",)
    assert "libcudart.so.13" in unexcluded.reason and "libtorch.so" in unexcluded.reason
    [tagged] = tag_wheels([wheel], "x86_64", None, manylinux.external_patterns())
    assert "-manylinux_" in tagged.name
    with zipfile.ZipFile(tagged) as archive:
        assert not [n for n in archive.namelist() if "cudart" in n or "libtorch" in n]  # nothing grafted


def test_a_library_nobody_provides_keeps_linux(libs, tmp_path):
    decision = manylinux.decide(wheel_of(tmp_path, libs["user_foo"]), "x86_64", manylinux.external_patterns())
    assert decision.tags == ("linux_x86_64",) and "libfoo.so.1" in decision.reason


@pytest.mark.parametrize("lib, tag", [("newcxx", "manylinux_2_34_x86_64"), ("plain", "manylinux_2_5_x86_64"),
                                      ("user", "manylinux_2_5_x86_64"), ("user_foo", "linux_x86_64")])
def test_libraries_under_data_purelib_get_the_tag_auditwheel_gives_them_elsewhere(libs, tmp_path, lib, tag):
    """flashinfer-jit-cache's setuptools layout (its .so files under <name>.data/purelib), whose analysis
    auditwheel refuses: the same tag as the same library in the usual layout, which auditwheel show gives."""
    library = libs[lib]
    usual = wheel_of(tmp_path / "usual", library)
    data = make_wheel(tmp_path / "data", "demo", "1.0", {f"demo-1.0.data/purelib/demo/{library.name}": library},
                      tag="cp311-cp311-linux_x86_64")
    refused = subprocess.run([*AUDITWHEEL, "show", str(data)], capture_output=True, text=True)
    assert refused.returncode != 0 and "platlib" in refused.stdout + refused.stderr
    decision = manylinux.decide(data, "x86_64", manylinux.external_patterns())
    assert decision.tags[0] == tag, decision
    assert tag == manylinux.decide(usual, "x86_64", manylinux.external_patterns()).tags[0]


def test_pure_python_wheels_keep_their_tag(tmp_path):
    wheel = make_wheel(tmp_path, "pure", "1.0", {"pure/__init__.py": b""}, tag="py3-none-any")
    assert tag_wheels([wheel], "x86_64", "2_28", frozenset()) == [wheel]


def test_manifest_records_each_librarys_highest_versions(libs, tmp_path):
    record = manylinux.manifest_record(wheel_of(tmp_path, libs["newcxx"]))
    assert record["platform"] == ["linux_x86_64"]
    assert record["symbol_versions"]["demo/libnewcxx.so"] == {"GLIBCXX": "3.4.29", "CXXABI": "1.3.9"}


def test_the_host_check_refuses_a_newer_libstdcxx_than_the_target():
    runtime = manylinux.host_runtime(GXX)
    assert runtime.libstdcxx is not None and runtime.libc is not None
    newer = manylinux._version_key(runtime.versions["GLIBCXX"]) > (3, 4, 24)
    if not newer:
        pytest.skip("this host's libstdc++ fits manylinux_2_28")
    with pytest.raises(BackendError) as error:
        manylinux.check_host("2_28", "x86_64", GXX)
    message = str(error.value)
    assert message.startswith("setting 'manylinux': bad value '2_28' for this host")
    assert f"GLIBCXX_{runtime.versions['GLIBCXX']}" in message and "manylinux_2_28 image" in message and "\n" not in message
    accepted = message.rsplit("accepted on this host: ", 1)[1].split(", ")
    manylinux.check_host(accepted[-1], "x86_64", GXX)  # the most compatible one this host can meet


@pytest.mark.skipif(not Path("/usr/local/cuda-13.0/bin/nvcc").is_file() and shutil.which("nvcc") is None,
                    reason="needs a CUDA 13 nvcc")
@pytest.mark.parametrize("given_by", ["-C", "environment"])
def test_the_build_refuses_the_target_before_compiling(given_by, tmp_path):
    if manylinux._version_key(manylinux.host_runtime(GXX).versions["GLIBCXX"]) <= (3, 4, 24):
        pytest.skip("this host's libstdc++ fits manylinux_2_28")
    env = dict(os.environ, PATH=f"/usr/local/cuda-13.0/bin{os.pathsep}{os.environ['PATH']}")
    target = ["-C", "manylinux=2_28"] if given_by == "-C" else []
    if given_by == "environment":
        env["VLLM_STACK_MANYLINUX"] = "2_28"
    result = subprocess.run(
        [sys.executable, "-m", "backend", "build", "-C", "sm=90", "-C", "isa=avx2", "-C", "cuda=13.0",
         "-C", "components=bitsandbytes", *target,
         "-C", f"source.torch={standin_tree('torch')}",
         "-C", f"cache-dir={tmp_path / 'cache'}", "-C", f"wheelhouse={tmp_path / 'wh'}",
         "-C", f"source.bitsandbytes={standin_tree('bitsandbytes')}"],
        cwd=ROOT, capture_output=True, text=True, env=env)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    named = "manylinux" if given_by == "-C" else "VLLM_STACK_MANYLINUX"  # the name the user gave it by
    assert f"setting '{named}': bad value '2_28' for this host" in last and "Traceback" not in result.stderr
    assert not list((tmp_path / "cache").rglob("*.log"))  # nothing compiled


def test_a_gcc_toolset_libstdcxx_is_judged_by_its_glibc_only(tmp_path):
    """RHEL's gcc-toolset (PyPA's images) links libstdc++ through a script adding libstdc++_nonshared.a;
    here g++ is given such a script (-B puts it first), as /opt/rh/gcc-toolset-N ships it."""
    system = manylinux.host_runtime(GXX).libstdcxx
    script_dir = tmp_path / "toolset"
    script_dir.mkdir()
    (script_dir / "libstdc++.so").write_text(f"/* GNU ld script */\nINPUT ( {system} -lstdc++_nonshared )\n")
    wrapper = tmp_path / "g++"
    wrapper.write_text(f"#!/bin/sh\nexec {GXX} -B{script_dir}/ \"$@\"\n")
    wrapper.chmod(0o755)
    runtime = manylinux.host_runtime(str(wrapper))
    assert runtime.libstdcxx_nonshared and runtime.libstdcxx == system
    host_glibc = manylinux._version_key(runtime.versions["GLIBC"])
    if host_glibc <= (2, 28):
        manylinux.check_host("2_28", "x86_64", str(wrapper))
        return
    with pytest.raises(BackendError) as error:
        manylinux.check_host("2_28", "x86_64", str(wrapper))
    assert "GLIBC_" in str(error.value) and "GLIBCXX_" not in str(error.value).split("allows")[0]


def test_the_target_and_the_host_compiler_are_part_of_the_build_key():
    from backend.toolchains.base import Toolchain

    nvcc = Path("/usr/local/cuda-13.0/bin/nvcc")
    toolchain = Toolchain("system", "13.0", "13.0.88", nvcc.parent.parent, nvcc, host_compiler=GXX)
    parts = {manylinux.key_part(toolchain, "2_28"), manylinux.key_part(toolchain, None),
             manylinux.key_part(None, None), manylinux.key_part(toolchain, "2_34")}
    assert len(parts) == 4
    assert os.path.realpath(GXX) in manylinux.key_part(toolchain, None)


@pytest.mark.skipif(not Path("/usr/local/cuda-13.0/bin/nvcc").is_file(), reason="needs the CUDA 13.0 toolkit")
def test_a_build_with_a_target_this_host_meets_is_tagged_with_it(tmp_path):
    """The bitsandbytes stand-in through the pipeline: auto first, then the oldest target this host's g++ meets."""
    runtime = manylinux.host_runtime(GXX)
    target = manylinux.host_policies(runtime, "x86_64")[-1]
    env = dict(os.environ, PATH=f"/usr/local/cuda-13.0/bin{os.pathsep}{os.environ['PATH']}")
    common = ["-C", "sm=90", "-C", "isa=avx2", "-C", "cuda=13.0", "-C", "components=bitsandbytes", "-C", "jobs=2",
              "-C", "runtime-deps=none", "-C", "smoke=off",
              "-C", f"cache-dir={tmp_path / 'cache'}", "-C", f"wheelhouse={tmp_path / 'wh'}",
              "-C", f"source.bitsandbytes={standin_tree('bitsandbytes')}"]
    houses = []
    for extra in ([], ["-C", f"manylinux={target}"]):
        result = subprocess.run([sys.executable, "-m", "backend", "build", *common, *extra], cwd=ROOT, env=env,
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-3000:]
        [house] = (tmp_path / "wh").iterdir()
        houses.append(json.loads((house / "manifest.json").read_text()))
    [(auto_name, auto)] = houses[0]["wheels"].items()
    [(name, entry)] = houses[1]["wheels"].items()
    assert entry["build_key"] != auto["build_key"]  # the target is part of the key: rebuilt, not reused
    assert name.endswith(f"-manylinux_{target}_x86_64.whl") and entry["platform"] == [f"manylinux_{target}_x86_64"]
    assert auto_name.endswith(f"-{auto['platform'][0]}.whl") and auto["platform"][0].startswith("manylinux_")
