"""``python -m backend lock --from-vllm``: a vLLM release's lock read from vLLM's own files.

The default-suite tests build a small vLLM-shaped tree: its CMakeLists.txt and
cmake/external_projects/*.cmake copy the lines of vLLM 0.14.1's sdist that pin
what its CMake fetches (``set(CUTLASS_REVISION "v4.2.1")``, each file's
``GIT_REPOSITORY`` / ``GIT_TAG``, triton_kernels.cmake's tag through
``DEFAULT_TRITON_KERNELS_TAG``, the ``DEFINED ENV{..._SRC_DIR}`` each reads),
and its requirements/build.txt and cuda.txt the same pins.  FlashMLA's CUTLASS
gitlink is read from a real git repository made here.  The slow tests run the
generator on the real 0.13.0, 0.14.0, 0.14.1 and 0.16.0 sdists (from PyPI, by
the URL and sha256 of each checked-in lock) and compare with the checked-in locks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import types
import urllib.request
from pathlib import Path

import pytest

from backend import toml
from backend.recipes import vllm as vllm_recipe
from backend.sources import lock as lock_mod
from backend.sources import vllm_release
from backend.sources.nar import nar_hash

ROOT = Path(__file__).resolve().parent.parent
FLASHMLA_0141 = "46d64a8ebef03fa50b4ae74937276a5c940e3f95"
FLASHMLA_CUTLASS_0141 = "e94e888df3551224738bfa505787b515eae8352f"


def external(repo: str, tag: str, env: str, tag_var: str | None = None) -> str:
    head = f'set({tag_var} "{tag}")\n' if tag_var else ""
    return (f"{head}if (DEFINED ENV{{{env}}})\n  set({env} $ENV{{{env}}})\nendif()\n"
            f"FetchContent_Declare(\n  x\n  GIT_REPOSITORY {repo}\n  GIT_TAG {'${' + tag_var + '}' if tag_var else tag}\n)\n")


def vllm_tree(root: Path, *, flashmla: str = "c2afa9cb93e674d5a9120a170a6da57b89267208",
              flashmla_env: str = "FLASH_MLA_SRC_DIR", flashinfer: str = "0.6.1") -> Path:
    root.mkdir(parents=True)
    (root / "PKG-INFO").write_text("Metadata-Version: 2.4\nName: vllm\nVersion: 0.99.0\n")
    (root / "CMakeLists.txt").write_text(
        'set(PYTHON_SUPPORTED_VERSIONS "3.10" "3.11" "3.12" "3.13")\n'
        'set(TORCH_SUPPORTED_VERSION_CUDA "2.9.1")\n'
        '  set(CUTLASS_REVISION "v4.2.1")\n'
        "  if (DEFINED ENV{VLLM_CUTLASS_SRC_DIR})\n  endif()\n")
    ext = root / "cmake" / "external_projects"
    ext.mkdir(parents=True)
    (ext / "flashmla.cmake").write_text(external("https://github.com/vllm-project/FlashMLA", flashmla, flashmla_env))
    (ext / "qutlass.cmake").write_text(external("https://github.com/IST-DASLab/qutlass.git",
                                                "830d2c4537c7396e14a02a46fbddd18b5d107c65", "QUTLASS_SRC_DIR"))
    (ext / "triton_kernels.cmake").write_text(external("https://github.com/triton-lang/triton.git", "v3.5.0",
                                                       "TRITON_KERNELS_SRC_DIR", "DEFAULT_TRITON_KERNELS_TAG"))
    (ext / "vllm_flash_attn.cmake").write_text(external("https://github.com/vllm-project/flash-attention.git",
                                                        "188be16520ceefdc625fdf71365585d2ee348fe2",
                                                        "VLLM_FLASH_ATTN_SRC_DIR"))
    (root / "requirements").mkdir()
    (root / "requirements" / "build.txt").write_text("cmake>=3.26.1\ntorch==2.9.1\n")
    (root / "requirements" / "cuda.txt").write_text(
        "-r common.txt\ntorch==2.9.1\ntorchaudio==2.9.1\n"
        "torchvision==0.24.1 # Required for phi3v processor\n"
        f"flashinfer-python=={flashinfer}\n")
    return root


def git_mirror(root: Path, commit_message: str, gitlink: str) -> tuple[Path, str]:
    """A bare-enough git repository whose one commit has ``csrc/cutlass`` as a gitlink to ``gitlink``."""
    repo = root / "vllm-project+FlashMLA" / "repo"
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True)
    git = ["git", "--git-dir", str(repo)]
    index = {**env, "GIT_INDEX_FILE": str(root / "index")}
    subprocess.run([*git, "update-index", "--add", "--cacheinfo", f"160000,{gitlink},csrc/cutlass"], check=True, env=index)
    tree = subprocess.run([*git, "write-tree"], check=True, env=index, capture_output=True, text=True).stdout.strip()
    commit = subprocess.run([*git, "commit-tree", tree, "-m", commit_message], check=True, env=env,
                            capture_output=True, text=True).stdout.strip()
    return root, commit


def test_the_pins_are_read_from_cmake_and_requirements(tmp_path):
    release = vllm_release.read_tree(vllm_tree(tmp_path / "vllm"))
    assert release.version == "0.99.0"
    assert release.pythons == ["3.10", "3.11", "3.12", "3.13"]
    assert {k: (p.repo, p.rev) for k, p in release.side_trees.items()} == {
        "vllm-cutlass": ("https://github.com/NVIDIA/cutlass", "v4.2.1"),
        "flashmla": ("https://github.com/vllm-project/FlashMLA", "c2afa9cb93e674d5a9120a170a6da57b89267208"),
        "qutlass": ("https://github.com/IST-DASLab/qutlass", "830d2c4537c7396e14a02a46fbddd18b5d107c65"),
        "triton-kernels": ("https://github.com/triton-lang/triton", "v3.5.0"),  # through ${DEFAULT_TRITON_KERNELS_TAG}
        "vllm-flash-attn": ("https://github.com/vllm-project/flash-attention", "188be16520ceefdc625fdf71365585d2ee348fe2"),
    }
    assert release.side_trees["triton-kernels"].where == "cmake/external_projects/triton_kernels.cmake:8"
    assert release.requirements == {"torch": "2.9.1", "torchaudio": "2.9.1", "torchvision": "0.24.1",
                                    "flashinfer-python": "0.6.1"}


def test_the_recipe_passes_the_variables_the_generator_knows():
    """KNOWN_SIDE_TREES is the 0.15.1 recipe's shape: the same entries and environment variables."""
    extras = {t.entry: Path("/t") / t.entry for t in vllm_release.KNOWN_SIDE_TREES}
    ctx = types.SimpleNamespace(extras=extras, variant=types.SimpleNamespace(label="cu130.sm90.avx512"),
                                tree_version=None)
    env = vllm_recipe.RECIPE.environment(ctx)
    assert {t.env for t in vllm_release.KNOWN_SIDE_TREES} == {k for k in env if k.endswith("_SRC_DIR")}


def test_a_tree_like_0151_differs_in_nothing_and_reuses_the_locks_hashes(tmp_path):
    base = lock_mod.load()
    generated = vllm_release.generate(vllm_tree(tmp_path / "vllm"), origin="t", main_url=None, main_sha256=None,
                                      base=base, pypi=False)
    assert generated.differences == []
    by_name = {t["name"]: t for t in generated.entries}
    for name in ("vllm-cutlass", "vllm-flash-attn", "vllm-flash-attn-cutlass", "flashmla", "flashmla-cutlass",
                 "qutlass", "triton-kernels"):
        assert (by_name[name]["url"], by_name[name].get("nar")) == (base.entries[name].url, base.entries[name].nar), name
    assert generated.unverified == ["vllm"]  # a tree names no sdist: its own archive is not hashed


def test_a_new_flashmla_gets_its_gitlink_and_hash_from_a_mirror(tmp_path):
    gitlink = "1234567890abcdef1234567890abcdef12345678"  # a CUTLASS commit no known lock hashes
    mirrors, commit = git_mirror(tmp_path / "mirrors", "flashmla", gitlink)
    tree = vllm_tree(tmp_path / "vllm", flashmla=commit)
    generated = vllm_release.generate(tree, origin="t", main_url=None, main_sha256=None, base=lock_mod.load(),
                                      mirrors=[mirrors], pypi=False)
    by_name = {t["name"]: t for t in generated.entries}
    assert by_name["flashmla-cutlass"]["url"] == f"https://github.com/NVIDIA/cutlass/archive/{gitlink}.tar.gz"
    assert by_name["flashmla-cutlass"]["dest"] == "flashmla/csrc/cutlass"
    assert "nar" not in by_name["flashmla-cutlass"] and "UNVERIFIED" in by_name["flashmla-cutlass"]["why"]
    # FlashMLA's own tree: `git archive` of the mirror, a folder holding the empty submodule folder
    expected = tmp_path / "expected"
    (expected / "csrc" / "cutlass").mkdir(parents=True)
    assert by_name["flashmla"]["nar"] == nar_hash(expected)
    assert set(generated.unverified) == {"vllm", "flashmla-cutlass"}
    assert any(d.startswith(f"flashmla-cutlass: 147f5673d0c1c3dcf66f78d677fd647e4a020219 in 0.15.1, {gitlink}")
               for d in generated.differences)
    # without the mirror the gitlink is unknown: said, and not guessed
    blind = vllm_release.generate(tree, origin="t", main_url=None, main_sha256=None, base=lock_mod.load(), pypi=False)
    assert "flashmla-cutlass" not in {t["name"] for t in blind.entries}
    assert "flashmla" in blind.unverified
    assert any("gitlink" in d and "unknown" in d for d in blind.differences)


def test_a_renamed_variable_and_a_new_external_project_are_reported(tmp_path):
    tree = vllm_tree(tmp_path / "vllm", flashmla_env="FLASHMLA_SOURCE_DIR")
    (tree / "cmake/external_projects/deepgemm.cmake").write_text(
        external("https://github.com/deepseek-ai/DeepGEMM.git", "v2.0.0", "DEEPGEMM_SRC_DIR"))
    differences = vllm_release.shape_differences(vllm_release.read_tree(tree))
    assert any(d.startswith("new external project cmake/external_projects/deepgemm.cmake "
                            "(https://github.com/deepseek-ai/DeepGEMM v2.0.0)") for d in differences)
    assert any("no longer reads ENV{FLASH_MLA_SRC_DIR} (it reads: FLASHMLA_SOURCE_DIR)" in d for d in differences)


def test_the_cli_writes_a_valid_lock_offline(tmp_path):
    tree = vllm_tree(tmp_path / "vllm", flashinfer="0.6.1")
    out = tmp_path / "locks" / "vllm-0.99.0.lock"
    result = subprocess.run([sys.executable, "-m", "backend", "lock", "--from-vllm", str(tree), "--output", str(out),
                             "-C", "offline=true", "-C", f"cache-dir={tmp_path / 'cache'}"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lock = lock_mod.load(out)
    assert lock.entries["vllm"].version == "0.99.0" and not lock.entries["vllm"].verified
    assert toml.loads(out.read_text())["release"]["pythons"] == ["3.10", "3.11", "3.12", "3.13"]
    bad = subprocess.run([sys.executable, "-m", "backend", "lock", "--from-vllm", "no-such-thing", "-C", "offline=true"],
                         cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "accepted: a vLLM sdist (.tar.gz), its unpacked tree, or a version such as 0.14.1" in bad.stderr
    not_archive = tmp_path / "vllm-0.99.0.tar.gz"
    not_archive.write_text("not an archive\n")
    unreadable = subprocess.run([sys.executable, "-m", "backend", "lock", "--from-vllm", str(not_archive),
                                 "--output", str(out), "-C", "offline=true"], cwd=ROOT, capture_output=True, text=True)
    assert unreadable.returncode != 0 and "Traceback" not in unreadable.stderr
    assert unreadable.stderr.count("\n") == 1 and "not a readable tar or zip archive" in unreadable.stderr, unreadable.stderr
    missing = tmp_path / "no-mirrors"
    typo = subprocess.run([sys.executable, "-m", "backend", "lock", "--from-vllm", str(tree), "--output", str(out),
                           "--git-mirrors", str(missing), "-C", "offline=true"], cwd=ROOT, capture_output=True, text=True)
    assert typo.returncode != 0 and "Traceback" not in typo.stderr
    assert f"lock --git-mirrors: no folder {missing}; accepted: a folder of git mirrors" in typo.stderr


CHECKED_IN = sorted((ROOT / "third_party" / "locks").glob("vllm-*.lock"))


@pytest.mark.parametrize("path", CHECKED_IN, ids=lambda p: p.stem)
def test_the_checked_in_release_locks_are_valid_locks(path):
    lock = lock_mod.load(path)
    release = toml.loads(path.read_text())["release"]
    assert lock.entries["vllm"].version == release["vllm"] and lock.entries["vllm"].sha256
    assert set(release["unverified"]) == {e.name for e in lock.entries.values() if not e.verified}


@pytest.mark.slow
@pytest.mark.parametrize("path", CHECKED_IN, ids=lambda p: p.stem)
def test_the_real_sdist_regenerates_its_checked_in_lock(tmp_path, path):
    """The real sdist (PyPI, checked by the lock's sha256) gives the checked-in lock's entries and facts."""
    entry = lock_mod.load(path).entries["vllm"]
    sdist = Path("/tmp/vsd") / Path(entry.url).name
    if not sdist.is_file():
        sdist = tmp_path / Path(entry.url).name
        with urllib.request.urlopen(entry.url, timeout=600) as response, sdist.open("wb") as out:
            shutil.copyfileobj(response, out)
    assert hashlib.sha256(sdist.read_bytes()).hexdigest() == entry.sha256
    mirrors = [Path(os.environ.get("VLLM_STACK_GIT_MIRRORS", "/work/.mirror"))]
    if not (mirrors[0] / "vllm-project+FlashMLA").exists():
        pytest.skip("no git mirror of FlashMLA to read its CUTLASS gitlink from (VLLM_STACK_GIT_MIRRORS)")
    out = tmp_path / "locks" / path.name
    shutil.copytree(path.parent, out.parent)
    out.unlink()
    written, generated = vllm_release.lock_from_vllm(str(sdist), cache_dir=tmp_path / "cache", offline=False,
                                                     output=out, mirrors=mirrors)
    assert written.read_text() == path.read_text()
    # where 0.15.1's hand-written facts hold for this release, they are reproduced (hashes included)
    base = lock_mod.load()
    same = [t for t in generated.entries if t["name"] in base.entries and t["version"] == base.entries[t["name"]].version]
    for table in same:
        assert table.get("nar") == base.entries[table["name"]].nar, table["name"]


def test_a_release_line_is_the_hand_written_lock_with_its_entries_replaced():
    line = vllm_release.line_lock("0.14.1")
    base = lock_mod.load()
    assert list(line.entries) == list(base.entries)  # same sources, same build order
    assert line.entries["flashmla"].version == FLASHMLA_0141
    assert line.entries["flashmla-cutlass"].version == FLASHMLA_CUTLASS_0141
    assert line.entries["flashinfer"].version == "0.5.3"
    assert line.entries["torch"] == base.entries["torch"] and line.entries["xformers"] == base.entries["xformers"]
    assert vllm_release.line_lock("0.13.0").entries["torch"].version == "2.9.0"
    assert vllm_release.line_lock("0.15.1") == base
    with pytest.raises(Exception) as error:
        vllm_release.line_lock("0.12.0")
    assert str(error.value) == ("vllm=0.12.0: no lock for this release; accepted: 0.13.0, 0.14.0, 0.14.1, 0.15.1, "
                                "0.16.0, 0.17.0 (python -m backend lock --from-vllm 0.12.0 writes one)")


def test_lock_records_a_release_locks_missing_hash(tmp_path):
    """Step 3 of docs/RELEASES.md: `lock --lock FILE` hashes a release lock's unverified entries (here a file:// sdist)."""
    tree = vllm_tree(tmp_path / "vllm")
    out = tmp_path / "vllm-0.99.0.lock"
    cli = [sys.executable, "-m", "backend", "lock", "-C", f"cache-dir={tmp_path / 'cache'}"]
    assert subprocess.run([*cli, "-C", "offline=true", "--from-vllm", str(tree), "--output", str(out)],
                          cwd=ROOT, capture_output=True).returncode == 0
    sdist = tmp_path / "vllm-0.99.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        tar.add(tree, arcname="vllm-0.99.0")
    text = out.read_text()
    out.write_text(text.replace(lock_mod.load(out).entries["vllm"].url, sdist.as_uri()))
    assert not lock_mod.load(out).entries["vllm"].verified
    result = subprocess.run([*cli, "--lock", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert lock_mod.load(out).entries["vllm"].sha256 == hashlib.sha256(sdist.read_bytes()).hexdigest()


# --- -C vllm=<release>: the seed's lines planned ----------------------------------

from backend import project  # noqa: E402
from backend.errors import BackendError  # noqa: E402
from backend.pipeline import plan as plan_mod  # noqa: E402
from backend.pipeline import run as run_mod  # noqa: E402
from backend.variants import Variant  # noqa: E402


def seed_plan(tmp_path, release: str, python: str):
    settings = project.load_settings_from_cli(["sm=90", "isa=avx512", "cuda=12.9", f"vllm={release}",
                                               f"cache-dir={tmp_path / 'cache'}"])
    variant = Variant(sm="90", isa="avx512", cuda="12.9", python=python.replace(".", ""))
    return plan_mod.make_plan(settings, variant, project_dir=project.PROJECT_DIR, cores=2, memory_bytes=64 << 30)


@pytest.mark.parametrize("release,python", vllm_release.SEED_LINES)
def test_every_seed_row_is_planned_as_a_buildable_line_with_its_own_facts(tmp_path, release, python):
    plan = seed_plan(tmp_path, release, python)
    lock = vllm_release.line_lock(release)
    assert plan.release_problem is None, plan.release_problem
    assert plan.release["vllm"] == release and plan.release["torch"] == lock.entries["torch"].version
    assert plan.variant.name.startswith(f"vllm-python{python.replace('.', '')}-cuda12_9-sm90-avx512")
    assert plan.torch_version == f"{lock.entries['torch'].version}+{plan.variant.label}"
    assert plan.step("torch").env["PYTORCH_BUILD_VERSION"] == plan.torch_version  # the wheel torch's build stamps
    for component in ("vllm", "flashinfer", "torch", "torchvision", "torchaudio", "xformers"):
        assert plan.step(component).version == f"{lock.main_entry(component).version}+{plan.variant.label}", component
    vllm = plan.step("vllm")
    assert vllm.env["VLLM_VERSION_OVERRIDE"] == f"{release}+{plan.variant.label}"
    assert vllm.extras["flashmla"].name == "flashmla"  # the same side-tree folders, filled from the line's lock
    applied = [p.name for p in vllm.patches if p.applied]
    own = {"0.15.1": "0001-unpin-torch.patch", "0.14.1": "0001-unpin-torch-0.14.patch",
           "0.14.0": "0001-unpin-torch-0.14.patch", "0.13.0": "0001-unpin-torch-0.13.patch"}[release]
    assert own in applied and sum(p.startswith("0001-unpin-torch") for p in applied) == 1
    assert sum(p.startswith("vllm-flash-attn/") for p in applied) == 1  # FA3's CUTLASS 4.2 fix for its commit
    text = plan_mod.format_plan(plan)
    assert "NOT BUILT" not in text
    assert f"FlashMLA {lock.entries['flashmla'].version[:8]}" in text  # the line's facts, shown
    grpc = [n for n in vllm.notes if "gRPC stubs" in n]  # 0.13.0's setup.py has no compile_grpc_protos
    assert len(grpc) == 1 and (("has no compile_grpc_protos" in grpc[0]) == (release == "0.13.0"))


def test_a_component_the_plan_does_not_build_is_still_the_lines(tmp_path):
    """The stack wheel's version (vLLM's) and torch=existing's check (torch's) read components that may have no step:
    they are the line's recipes too, not the 0.15.1 registry's."""
    settings = project.load_settings_from_cli(["sm=90", "isa=avx512", "cuda=12.9", "vllm=0.13.0", "components=bitsandbytes",
                                               f"cache-dir={tmp_path / 'cache'}"])
    variant = Variant(sm="90", isa="avx512", cuda="12.9", python="312")
    plan = plan_mod.make_plan(settings, variant, project_dir=project.PROJECT_DIR, cores=2, memory_bytes=64 << 30)
    assert [step.component for step in plan.steps] == ["bitsandbytes"]
    assert (plan.recipe("vllm").version, plan.recipe("torch").version) == ("0.13.0", "2.9.0")


SEED_OTHER_LINES = sorted({release for release, _ in vllm_release.SEED_LINES} - {"0.15.1"})
# What only the 0.15.1 line pins: the vLLM release, its flashinfer, its FlashMLA and FlashMLA's CUTLASS
ONLY_0151 = ("0.15.1", "0.6.1", "c2afa9cb93e6", "147f5673d0c1")


@pytest.mark.parametrize("release", SEED_OTHER_LINES)
@pytest.mark.parametrize("sm", ["90", "100"])
def test_no_0151_fact_is_left_in_another_lines_plan(tmp_path, release, sm):
    """Every string of the plan (environment, commands, notes, versions, patches) of a 0.14.x/0.13.0 row is that
    line's: a 0.15.1 fact (vLLM's version override, flashinfer-cubin==0.6.1, 0.6.1's artifact folders, the
    FlashMLA pin) shows only where the plan says it is 0.15.1's (a patch NOT applied, a difference)."""
    settings = project.load_settings_from_cli([f"sm={sm}", "isa=avx512", "cuda=12.9", f"vllm={release}",
                                               f"cache-dir={tmp_path / 'cache'}"])
    variant = Variant(sm=sm, isa="avx512", cuda="12.9", python="312")
    plan = plan_mod.make_plan(settings, variant, project_dir=project.PROJECT_DIR, cores=2, memory_bytes=64 << 30)
    document = plan.to_json()
    document.pop("release")  # the line's own record: its differences name 0.15.1 on purpose
    for step in document["steps"]:
        step["patches"] = [p for p in step["patches"] if p["applied"]]
    found = [(bad, text[:120]) for text in _strings(document) for bad in ONLY_0151 if bad in text]
    assert found == []
    flashinfer = plan.step("flashinfer")
    if sm == "100":  # the folders checked before the AOT build are 0.5.3's (artifacts.py at v0.5.3)
        assert any("1e49deb33ec20018ae0acf1d956a579578069da1/fmha/trtllm-gen" in c for c in flashinfer.commands[0])
        assert plan.recipe("flashinfer").runtime_requires(variant) == ("flashinfer-cubin==0.5.3",)


def _strings(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


def test_a_line_the_recipes_do_not_know_is_refused_naming_each_difference(tmp_path):
    """0.16.0: flashinfer 0.6.3 (no recipe facts), and no unpin patch nor flashinfer-tag patch for its releases."""
    plan = seed_plan(tmp_path, "0.16.0", "3.12")
    problem = plan.release_problem
    assert problem.startswith("vllm=0.16.0 is planned, not built: ")
    assert "flashinfer 0.6.3: the flashinfer recipe holds the facts of 0.5.3, 0.6.1 only" in problem
    assert "none of the patches for vllm is for this line" in problem
    assert "none of the patches for flashinfer-tag is for this line" in problem
    assert f"NOT BUILT: {problem}" in plan_mod.format_plan(plan)
    with pytest.raises(BackendError) as error:  # refused before anything is fetched or compiled
        run_mod.build(plan)
    assert str(error.value) == problem


def test_a_line_whose_torch_is_not_29_or_whose_cmake_refuses_the_python_says_why():
    line = vllm_release.release_line("0.14.1")
    line = dataclasses.replace(line, versions={**line.versions, "torch": "2.10.0"}, pythons=("3.12",))
    problem = plan_mod.release_problem(line, [], "3.13")
    assert "its torch 2.10.0 is not 2.9.x: a new torch needs its own recipe facts" in problem
    assert "its CMake accepts Python 3.12, not 3.13 (CMakeLists.txt:37)" in problem


def test_an_unknown_line_is_a_one_line_setting_error():
    result = subprocess.run([sys.executable, "-m", "backend", "plan", "-C", "sm=90", "-C", "isa=avx512",
                             "-C", "vllm=0.12.0"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "setting 'vllm': bad value '0.12.0'; accepted: 0.13.0, 0.14.0, 0.14.1, 0.15.1, 0.16.0, 0.17.0" in result.stderr


def test_a_local_checkout_gets_its_own_side_tree_pins(tmp_path):
    """-C source.vllm=DIR: the FlashMLA its flashmla.cmake pins (0.14.1's), not the 0.15.1 lock's; the rest unchanged."""
    tree = vllm_tree(tmp_path / "vllm", flashmla=FLASHMLA_0141)
    settings = project.load_settings_from_cli(["sm=90", "isa=avx512", "cuda=12.9", f"source.vllm={tree}",
                                               f"cache-dir={tmp_path / 'cache'}"])
    variant = Variant(sm="90", isa="avx512", cuda="12.9", python="313")
    plan = plan_mod.make_plan(settings, variant, project_dir=project.PROJECT_DIR, cores=2, memory_bytes=64 << 30)
    base = lock_mod.load()
    assert plan.lock.entries["flashmla"].version == FLASHMLA_0141 and not plan.lock.entries["flashmla"].verified
    assert "flashmla-cutlass" not in plan.lock.entries  # its gitlink is unknown without a mirror: not 0.15.1's
    assert plan.lock.entries["vllm-cutlass"] == base.entries["vllm-cutlass"]
    assert plan.lock.entries["flashinfer"] == base.entries["flashinfer"]
    assert any(d.startswith("source.vllm: flashmla: c2afa9cb93e674d5a9120a170a6da57b89267208 in 0.15.1, "
                            f"{FLASHMLA_0141} here") for d in plan.release["differences"])
    # a checkout pinning what the lock pins changes nothing
    same = vllm_tree(tmp_path / "same")
    assert vllm_release.lock_for("0.15.1", same) == (vllm_release.line_lock("0.15.1"), [])


def test_flashmla_sources_and_the_nvcc_of_flashmla_c_are_read_from_vllms_files(tmp_path):
    """As 0.14.1's flashmla.cmake (FlashMLA_SOURCES, FlashMLA_Extension_SOURCES) and setup.py (the _flashmla_C
    extension inside `if ... get_nvcc_cuda_version() >= Version("12.3")`): a list and a version, each cited."""
    tree = vllm_tree(tmp_path / "vllm")
    cmake = tree / "cmake/external_projects/flashmla.cmake"
    cmake.write_text(cmake.read_text() + "    set(FlashMLA_SOURCES\n"
                     "        ${flashmla_SOURCE_DIR}/csrc/torch_api.cpp\n"
                     "        ${flashmla_SOURCE_DIR}/csrc/sm90/decode/dense/splitkv_mla.cu\n    )\n"
                     "    set(FlashMLA_INCLUDES\n        ${flashmla_SOURCE_DIR}/csrc/cutlass/include\n    )\n")
    (tree / "setup.py").write_text(
        'if _is_cuda():\n    if envs.VLLM_USE_PRECOMPILED or (\n'
        '        CUDA_HOME and get_nvcc_cuda_version() >= Version("12.3")\n    ):\n'
        '        ext_modules.append(CMakeExtension(name="vllm._flashmla_C", optional=True))\n')
    release = vllm_release.read_tree(tree)
    assert release.flashmla_sources == ["csrc/torch_api.cpp", "csrc/sm90/decode/dense/splitkv_mla.cu"]
    assert release.flashmla_min_nvcc == "12.3" and release.where["flashmla_min_nvcc"] == "setup.py:3"
    assert release.where["flashmla_sources"] == "cmake/external_projects/flashmla.cmake:10-11"
    differences = vllm_release.fact_differences(release)
    assert any(d.startswith("flashmla sources: 28 files in 0.15.1, 2 here") for d in differences)
    assert any(d.startswith("_flashmla_C: setup.py adds it from nvcc 12.3 (setup.py:3)") for d in differences)


def test_a_patch_for_another_line_is_left_out_of_the_hand_written_line_and_a_stray_one_is_an_error(tmp_path):
    from backend.sources import patches as patches_mod

    folder = tmp_path / "patches" / "vllm"
    folder.mkdir(parents=True)
    (folder / "0001-x.patch").write_text("x\n\nWhen: >=0.14.0,<0.15\n\nWhy: a line's own patch\n--- a/f\n+++ b/f\n")
    assert patches_mod.decide_locked("vllm", "0.15.1", tmp_path / "patches", other_lines={"0.14.1", "0.13.0"}) == []
    with pytest.raises(BackendError, match="is for vllm >=0.14.0,<0.15, but the lock pins 0.15.1"):
        patches_mod.decide_locked("vllm", "0.15.1", tmp_path / "patches", other_lines={"0.13.0"})
    (applied,) = patches_mod.decide_locked("vllm", "0.14.1", tmp_path / "patches", release_line="0.14.1")
    assert applied.applied
    # the 0.15.1 line knows which versions the other lines pin
    assert "0.14.1" in vllm_release.line_lock("0.15.1").other_lines["vllm"]


def test_a_release_on_torch_210_is_refused_and_gets_no_015_submodule_pin(tmp_path):
    """0.17.0 (its PyPI sdist: requirements/cuda.txt torch==2.10.0, FlashMLA 692917b1 whose CUTLASS gitlink no
    mirror here holds): refused for its torch and for the missing pin, and 0.15.1's FlashMLA CUTLASS is not used."""
    assert "flashmla-cutlass" not in vllm_release.line_lock("0.17.0").entries
    plan = seed_plan(tmp_path, "0.17.0", "3.12")
    assert "its torch 2.10.0 is not 2.9.x" in plan.release_problem
    assert ("flashmla-cutlass: flashmla 692917b1's csrc/cutlass pin is not in its lock" in plan.release_problem)
    assert "(its CUTLASS unknown)" in plan_mod.format_plan(plan)


def test_the_device_check_gets_the_lines_environment(tmp_path):
    """ci/device/vllm_units.py --line 0.14.1 (the 0.14.1 GPU check, docs/RELEASES.md): the vllm recipe's environment
    for that line, with the side trees where the script unpacked them."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("vllm_units", ROOT / "ci" / "device" / "vllm_units.py")
    units = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(units)
    extras = {t.entry: tmp_path / t.entry for t in vllm_release.KNOWN_SIDE_TREES}
    args = types.SimpleNamespace(isa="avx2", memory_gib=120, line="0.14.1")
    env, _ = units.recipe_env(args, tmp_path / "vllm", extras, tmp_path / "build")
    assert env["VLLM_VERSION_OVERRIDE"].startswith("0.14.1+")
    assert env["FLASH_MLA_SRC_DIR"] == str(tmp_path / "flashmla")
