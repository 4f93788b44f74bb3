"""Settings: one structure, read from pyproject and -C, validated in one place."""

import dataclasses
import importlib.util
import os
import platform
import subprocess
import sys
import types
import typing
from pathlib import Path

import pytest

from backend import project, recipes, settings
from backend.errors import BackendError
from backend.sources import vllm_release

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("text", ["90", "9.0", "sm90", "sm_90", "SM_90", " 90 "])
def test_sm_spellings(text):
    assert settings.resolve({"sm": text}).sm == "90"


def test_sm_103_spellings():
    assert settings.resolve({"sm": "10.3"}).sm == "103"
    assert settings.resolve({"sm": "sm_120"}).sm == "120"


def test_defaults():
    s = settings.resolve({})
    assert (s.cuda, s.toolchain, s.torch, s.verify, s.compiler_cache) == ("12.9", "auto", "source", "strict", "auto")
    assert s.components is None  # every component: backend/recipes/ names them when settings are loaded
    assert project.load_settings({}).components == recipes.names()
    assert s.jobs is None and s.offline is False


def test_pyproject_gives_defaults_and_config_settings_win(tmp_path):
    table = {"cuda": "12.8", "jobs": "4", "source": {"vllm": str(tmp_path)}}
    s = settings.resolve({"cuda": "13.0"}, table, base_dir=tmp_path)
    assert s.cuda == "13.0"
    assert s.jobs == 4
    assert s.sources == {"vllm": tmp_path.resolve()}


def test_read_pyproject_table(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.vllm-stack]\nisa = "avx2"\noffline = true\n')
    table = settings.read_pyproject_table(tmp_path)
    s = settings.resolve({}, table)
    assert s.isa == "avx2" and s.offline is True


def test_components_subset_keeps_build_order():
    assert project.load_settings({"components": "vllm,torch"}).components == ("torch", "vllm")


def test_relative_paths_resolve_against_base(tmp_path):
    s = settings.resolve({"wheelhouse": "out", "cache-dir": "c"}, base_dir=tmp_path)
    assert s.wheelhouse == tmp_path.resolve() / "out"
    assert s.cache_dir == tmp_path.resolve() / "c"


@pytest.mark.parametrize(
    "config, must_contain",
    [
        ({"sm": "91"}, ["'sm'", "'91'", "61, 70, 75, 80", "did you mean '90'"]),
        ({"isa": "avx-512"}, ["'isa'", "'avx-512'", "avx512bf16", "did you mean 'avx512'"]),
        ({"sm": ["90", "80"]}, ["'sm'", "given 2 times", "'90'", "'80'"]),
        ({"smm": "90"}, ["unknown setting 'smm'", "did you mean 'sm'"]),
        ({"jobs": "0"}, ["'jobs'", "'0'", "whole number"]),
        ({"jobs": "abc"}, ["'jobs'", "'abc'", "whole number"]),
        ({"components": "foo"}, ["'components'", "'foo'", "bitsandbytes"]),
        ({"source.torch": "/does/not/exist"}, ["'source.torch'", "/does/not/exist", "does not exist"]),
        ({"source.tourch": "/tmp"}, ["source.<component>", "'tourch'", "did you mean 'torch'"]),
        ({"cuda": "12.7"}, ["'cuda'", "'12.7'", "12.8, 12.9, 13.0"]),
        ({"toolchain": "conda"}, ["'toolchain'", "auto, nix, system, pypi"]),
        ({"verify": "strictly"}, ["'verify'", "did you mean 'strict'"]),
        ({"offline": "maybe"}, ["'offline'", "true, false"]),
        ({"vllm": "0.12.0"}, ["'vllm'", "'0.12.0'", "0.13.0, 0.14.0"]),
    ],
)
def test_bad_values_are_one_clear_line(config, must_contain):
    with pytest.raises(BackendError) as info:
        project.load_settings(config)
    message = str(info.value)
    assert "\n" not in message
    for part in must_contain:
        assert part in message, (part, message)


def test_cli_pairs_turn_repeats_into_lists():
    assert settings.parse_cli_pairs(["sm=90", "isa=avx2", "sm=80"]) == {"sm": ["90", "80"], "isa": "avx2"}
    with pytest.raises(BackendError, match="key=value"):
        settings.parse_cli_pairs(["sm90"])


def test_frontend_keys_are_ignored():
    assert settings.resolve({"--build-option": ["x"]}).sm is None


def test_closure_and_smoke_settings(tmp_path):
    from backend.errors import BackendError
    from backend.settings import resolve

    chosen = resolve({"runtime-deps": "none", "smoke": "cpu", "runtime-find-links": str(tmp_path)})
    assert (chosen.runtime_deps, chosen.smoke, chosen.runtime_find_links) == ("none", "cpu", tmp_path)
    assert (resolve({}).runtime_deps, resolve({}).smoke) == ("bundle", "auto")
    for key, value, accepted in (("runtime-deps", "bundel", "bundle, none; did you mean 'bundle'?"),
                                 ("smoke", "of", "auto, cpu, emulate, off")):
        try:
            resolve({key: value})
        except BackendError as error:
            assert str(error).startswith(f"setting '{key}': bad value {value!r}; accepted: {accepted}"), str(error)
        else:
            raise AssertionError(key)
    try:
        resolve({"runtime-find-links": str(tmp_path / "nope")})
    except BackendError as error:
        assert "setting 'runtime-find-links'" in str(error) and "a folder of wheels" in str(error)
    else:
        raise AssertionError("runtime-find-links")


def test_settings_fields_and_defaults_come_from_the_table():
    # every field is a setting but the record of which came from the environment (Settings.named reads it)
    fields = {f.name: f for f in dataclasses.fields(settings.Settings) if f.name != "variables"}
    assert list(fields) == [o.field for o in settings.OPTIONS]
    # every field has its real type, for run time and for a type checker alike (no Any, no text)
    hints = typing.get_type_hints(settings.Settings)
    hints.pop("variables")
    assert hints == {o.field: o.type for o in settings.OPTIONS}
    assert all(f.type == hints[name] and f.type is not typing.Any for name, f in fields.items())
    assert hints["sm"] == typing.Optional[typing.Literal["61", "70", "75", "80", "86", "89", "90", "100", "103", "120", "121"]]
    assert (hints["jobs"], hints["offline"], hints["cache_dir"]) == (int | None, bool, Path | None)
    defaults = settings.resolve({})
    for option in settings.OPTIONS:
        assert getattr(defaults, option.field) == option.default, option.key
    assert list(settings.OPTION_BY_KEY) == [o.key for o in settings.OPTIONS if o.key != "source.<component>"]


@pytest.mark.parametrize("key, accepted", [(o.key, o.choices) for o in settings.OPTIONS if o.choices] +
                         list(project.owned_words().items()), ids=lambda x: x if isinstance(x, str) else "")
def test_every_choice_setting_refuses_a_near_miss_in_one_line(key, accepted):
    near_miss = accepted[0] + "x" if key != "sm" else "91"
    with pytest.raises(BackendError) as info:
        project.load_settings({key: near_miss})
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"setting {key!r}: bad value {near_miss!r}"), message
    assert "accepted: " + ", ".join(accepted) in message, message
    assert "did you mean" in message, message


def test_every_setting_is_in_help_and_the_readme_table_is_the_generated_one():
    import subprocess
    import sys

    from backend import doc_tables

    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-m", "backend", "build", "--help"], cwd=root, capture_output=True,
                         text=True, check=True).stdout
    for option in settings.OPTIONS:
        assert f"  {option.key}: " in out, option.key
    assert "comma list of " + " ".join(recipes.names()) in out
    assert "vllm: " + " ".join(vllm_release.lines()) in out
    text = (root / "README.md").read_text()
    assert "settings" not in doc_tables.stale_tables("README.md", text), "run python -m backend.doc_tables"
    # the check can fail: a README with one value changed is stale
    assert "settings" in doc_tables.stale_tables(
        "README.md", text.replace("| `cuda` | 12.8 12.9 13.0 (12.9) |", "| `cuda` | 12.8 (12.8) |"))


def _conforms(value, annotation) -> bool:
    """Whether ``value`` is of ``annotation``, for the kinds of type a setting has."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        return value is None
    if origin is typing.Literal:
        return any(type(value) is type(word) and value == word for word in args)
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, arm) for arm in args)
    if origin is tuple:  # tuple[X, ...]
        return type(value) is tuple and all(_conforms(item, args[0]) for item in value)
    if origin is dict:
        return type(value) is dict and all(_conforms(k, args[0]) and _conforms(v, args[1]) for k, v in value.items())
    if annotation in (int, float, str, bool):  # exactly: True is no int here, 1 no float
        return type(value) is annotation
    return isinstance(value, annotation)


def test_the_type_check_of_these_tests_refuses_what_a_drifted_parser_would_return():
    cuda = settings.OPTION_BY_KEY["cuda"].type
    assert _conforms("12.9", cuda) and not _conforms("12.7", cuda) and not _conforms(None, cuda)
    assert _conforms(None, int | None) and not _conforms("4", int | None) and not _conforms(True, int | None)
    assert not _conforms(4, float | None) and not _conforms(["a"], tuple[str, ...])
    assert not _conforms(("a", 1), tuple[str, ...]) and not _conforms({"vllm": "/x"}, dict[str, Path])
    assert not _conforms("/x", Path | None) and _conforms(Path("/x"), Path | None)


def _written(default) -> str:
    """A default as a user would write it in -C."""
    if isinstance(default, bool):
        return str(default).lower()
    return ",".join(default) if isinstance(default, tuple) else str(default)


@pytest.mark.parametrize("option", settings.OPTIONS, ids=lambda o: o.key)
def test_a_default_is_of_its_field_type_and_is_what_its_text_parses_to(option):
    default = getattr(settings.Settings(), option.field)
    assert _conforms(default, option.type), (option.key, default, option.type)
    if default is None or option.key == settings.SOURCE_OPTION_KEY:  # not set; sources: no text of its own
        return
    text = "all" if option.key == "components" else _written(default)
    assert getattr(settings.resolve({option.key: text}), option.field) == default, option.key


def _valid_samples(tmp_path) -> dict[str, list[str]]:
    """Values each setting accepts, as written in -C: besides every word of a choice setting."""
    (tmp_path / "wheels").mkdir()
    (tmp_path / "tree").mkdir()
    return {
        "sm": ["9.0", "sm_120"],
        "components": ["all", "vllm,torch"],
        "wheelhouse": ["out", str(tmp_path / "abs")],
        "cache-dir": ["~/cache"],
        "jobs": ["4", "auto"],
        "nvcc-threads": ["2", ""],
        "offline": ["yes", "0"],
        "source.vllm": [str(tmp_path / "tree")],
        "nixpkgs": ["path:/srv/nixpkgs"],
        "compiler-cache-url": ["redis://127.0.0.1:6379/0", "s3://bucket/prefix", "gha", "none"],
        "wheel-variants": ["on"],
        "flashinfer-aot": ["false"],
        "flashinfer-aot-config": ['{"add_moe": false}', "all"],
        "allow-unverified": ["cutlass,flash-attention", ""],
        "free-disk-gb": ["12.5", "0", "auto"],
        "runtime-find-links": [str(tmp_path / "wheels")],
        "emulate-sysroot": [str(tmp_path / "tree"), "tree"],
        "manylinux": ["2_28", "manylinux2014", "2.34", "auto"],
        "vllm": ["0.15.1", "v0.14.1"],
    }


def test_every_parser_returns_its_field_type_for_valid_values(tmp_path):
    samples = _valid_samples(tmp_path)
    keyed = {("source.vllm" if o.key == settings.SOURCE_OPTION_KEY else o.key): o for o in settings.OPTIONS}
    # a setting added without sample values, unless its choices list them, fails here
    assert {k for k, o in keyed.items() if not o.choices} <= set(samples)
    checked = 0
    for key, option in keyed.items():
        for text in samples.get(key, []) + list(option.choices):
            value = getattr(settings.resolve({key: text}, base_dir=tmp_path), option.field)
            assert _conforms(value, option.type), (key, text, value, option.type)
            checked += 1
    assert checked > 60



def test_an_emulation_sysroot_may_hold_any_character_a_folder_name_may(tmp_path):
    """emulate-sysroot reaches QEMU alone, as an argument and through links, never a shell or a build file: a
    folder with a comma or a ';' is taken as it is (as before de3f3ba); a path the build hands its tools is not."""
    for name in ("sys,root", "a;b", "it's"):
        folder = tmp_path / name
        folder.mkdir()
        assert settings.resolve({"emulate-sysroot": str(folder)}).emulate_sysroot == folder
    with pytest.raises(BackendError, match="it holds ','"):
        settings.resolve({"runtime-find-links": str(tmp_path / "sys,root")})

def test_the_environment_wins_over_pyproject_and_loses_to_config_settings(tmp_path):
    table = {"sm": "70", "cuda": "12.8", "jobs": "2", "offline": True}
    environ = {"VLLM_STACK_SM": "9.0", "VLLM_STACK_CUDA": "13.0", "VLLM_STACK_JOBS": "",  # empty: unset
               "VLLM_STACK_CACHE_DIR": "cache", "VLLM_STACK_COMPONENTS": "vllm,torch",
               "VLLM_STACK_SOURCE_MIRROR": "http://127.0.0.1:1", "VLLM_STACK_SOURCE_VLLM": "/nowhere"}  # not settings
    chosen = settings.resolve({"sm": "80"}, table, base_dir=tmp_path, environ=environ)
    assert (chosen.sm, chosen.cuda, chosen.jobs, chosen.offline) == ("80", "13.0", 2, True)
    assert chosen.cache_dir == tmp_path.resolve() / "cache" and chosen.components == ("vllm", "torch")
    assert chosen.sources == {}
    assert settings.resolve({}, table).sm == "70"  # no environment given: none read
    given = {"VLLM_STACK_FLASHINFER_AOT_CONFIG": "all"}
    assert settings.from_environment(given) == {"flashinfer-aot-config": "VLLM_STACK_FLASHINFER_AOT_CONFIG"}


@pytest.mark.parametrize("variable, value, must_contain", [
    ("VLLM_STACK_SM", "91", "setting 'VLLM_STACK_SM': bad value '91'; accepted: 61, 70"),
    ("VLLM_STACK_JOBS", "0", "setting 'VLLM_STACK_JOBS': bad value '0'; accepted: a whole number from 1 to 4096"),
    ("VLLM_STACK_NVCC_THREADS", "999", "setting 'VLLM_STACK_NVCC_THREADS': bad value '999'; accepted: a whole "
                                       "number from 1 to 256"),
    ("VLLM_STACK_OFFLINE", "maybe", "setting 'VLLM_STACK_OFFLINE': bad value 'maybe'; accepted: true, false"),
    ("VLLM_STACK_VERIFY", "strictly", "setting 'VLLM_STACK_VERIFY': bad value 'strictly'; accepted: strict, warn"),
    # checked by the modules that know the words, when settings are loaded
    ("VLLM_STACK_COMPONENTS", "torch,vlm", "setting 'VLLM_STACK_COMPONENTS': bad value 'vlm'; accepted: torch,"),
    ("VLLM_STACK_VLLM", "0.12.0", "setting 'VLLM_STACK_VLLM': bad value '0.12.0'; accepted: 0.13.0"),
    ("VLLM_STACK_FLASHINFER_AOT_CONFIG", "[1]", "setting 'VLLM_STACK_FLASHINFER_AOT_CONFIG': bad value '[1]'"),
])
def test_a_bad_value_from_the_environment_names_the_variable(variable, value, must_contain, monkeypatch):
    monkeypatch.setenv(variable, value)
    with pytest.raises(BackendError) as info:
        project.load_settings({})
    assert "\n" not in str(info.value) and str(info.value).startswith(must_contain), str(info.value)


def test_the_environment_reaches_the_command_line_and_never_shows_a_secret(tmp_path):
    import json
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent

    def plan(*pairs: str, **variables: str) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VLLM_STACK_")}
        env.update(variables, VLLM_STACK_CACHE_DIR=str(tmp_path / "cache"))
        return subprocess.run([sys.executable, "-m", "backend", "plan", "--json", *pairs], cwd=root,
                              capture_output=True, text=True, env=env, timeout=120)

    def document(made: subprocess.CompletedProcess) -> dict:
        assert made.returncode == 0, made.stderr
        planned = json.loads(made.stdout)
        for step in planned["steps"]:
            step["jobs"].pop("reason")  # it quotes the free memory of the moment
        return planned

    given = document(plan("-C", "sm=90", "-C", "isa=avx2", "-C", "components=bitsandbytes"))
    assert given["variant"].endswith("-sm90-avx2")
    assert document(plan(VLLM_STACK_SM="sm_90", VLLM_STACK_ISA="avx2", VLLM_STACK_COMPONENTS="bitsandbytes")) == given
    assert document(plan("-C", "sm=90", VLLM_STACK_SM="91", VLLM_STACK_ISA="avx2",
                         VLLM_STACK_COMPONENTS="bitsandbytes")) == given  # -C wins: 91 is never read
    secret = "hunter2/#x"
    refused = plan("-C", "sm=90", "-C", "isa=avx2", VLLM_STACK_COMPILER_CACHE="sccache",
                   VLLM_STACK_COMPILER_CACHE_URL=f"redis://me:{secret}@cache.local:6379/0")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines() == [refused.stderr.strip()], refused.stderr
    assert "setting 'VLLM_STACK_COMPILER_CACHE_URL': bad value 'redis://me:***@" in refused.stderr
    assert "hunter2" not in refused.stderr + refused.stdout


def test_the_manifests_record_of_the_settings_never_holds_a_password():
    """as_config is what pipeline/run.py writes into a wheelhouse's manifest (flags.settings); rebuild-check
    replaces the compiler cache's URL, so its credentials are not needed there."""
    given = settings.resolve({"sm": "90", "compiler-cache": "sccache",
                              "compiler-cache-url": "redis://me:hunter2@cache.local:6379/0"})
    assert given.compiler_cache_url == "redis://me:hunter2@cache.local:6379/0"  # the build itself still gets it
    recorded = settings.as_config(given)
    assert recorded["compiler-cache-url"] == "redis://me:***@cache.local:6379/0" and recorded["sm"] == "90"
    assert "hunter2" not in repr(recorded)
    assert [o.key for o in settings.OPTIONS if o.secret] == ["compiler-cache-url"]


def _cli_plan(*pairs: str, **variables: str) -> subprocess.CompletedProcess:
    """``python -m backend plan --json`` with only the given VLLM_STACK_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLLM_STACK_")}
    env.update(variables)
    return subprocess.run([sys.executable, "-m", "backend", "plan", "--json", *pairs], cwd=ROOT,
                          capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("pairs, variables, line", [
    (("-C", "sm=90"), {"VLLM_STACK_ISA": "armv9"},
     "error: setting 'VLLM_STACK_ISA': bad value 'armv9': it is an aarch64 ISA and this host is x86_64; accepted"),
    (("-C", "sm=103", "-C", "isa=avx2"), {"VLLM_STACK_CUDA": "12.8"},
     "error: setting 'VLLM_STACK_CUDA': bad value '12.8' for sm=103 (nvcc 12.8 cannot compile sm_103); accepted"),
    (("-C", "isa=avx512"), {"VLLM_STACK_SM": "61"},
     "error: setting 'isa': bad value 'avx512' for sm=61"),  # the bad value is isa's, given by -C
    (("-C", "sm=90", "-C", "isa=avx2"), {"VLLM_STACK_TORCH": "existing"},
     "error: setting 'VLLM_STACK_TORCH': bad value 'existing': no torch is importable in the build environment"),
])
def test_a_plan_time_check_of_a_setting_from_the_environment_names_the_variable(pairs, variables, line, tmp_path):
    """The checks made after settings are loaded (the variant's rules, the host, torch=existing) name the
    variable the user set, as the settings' own checks do."""
    if "armv9" in line and platform.machine() != "x86_64":
        pytest.skip("the armv9 case assumes an x86_64 host")
    if "VLLM_STACK_TORCH" in variables and importlib.util.find_spec("torch") is not None:
        pytest.skip("torch is importable here")
    made = _cli_plan(*pairs, "-C", f"cache-dir={tmp_path}", **variables)
    assert made.returncode != 0 and "Traceback" not in made.stderr
    assert made.stderr.strip().splitlines() == [made.stderr.strip()], made.stderr
    assert made.stderr.startswith(line), made.stderr
    # the same value given by -C names the key
    key, value = next(iter(variables.items()))
    key = key.removeprefix("VLLM_STACK_").lower()
    given = _cli_plan(*pairs, "-C", f"{key}={value}", "-C", f"cache-dir={tmp_path}")
    assert given.stderr.startswith(line.replace(f"'VLLM_STACK_{key.upper()}'", f"'{key}'")), given.stderr


def test_the_cache_folder_variable_is_read_once_as_the_setting_it_gives(tmp_path):
    """VLLM_STACK_CACHE_DIR is cache-dir's environment source, nothing else: -C cache-dir replaces it unread
    (a variable that would be refused is never checked), and without -C it is the cache."""
    refused = str(tmp_path / "c;x")
    chosen = _cli_plan("-C", "sm=90", "-C", "isa=avx2", "-C", "components=bitsandbytes",
                       "-C", f"cache-dir={tmp_path / 'given'}", VLLM_STACK_CACHE_DIR=refused)
    assert chosen.returncode == 0, chosen.stderr
    assert f'"{tmp_path / "given"}/envs/' in chosen.stdout and "c;x" not in chosen.stdout
    from_variable = _cli_plan("-C", "sm=90", "-C", "isa=avx2", "-C", "components=bitsandbytes",
                              VLLM_STACK_CACHE_DIR=str(tmp_path / "variable"))
    assert from_variable.returncode == 0, from_variable.stderr
    assert f'"{tmp_path / "variable"}/envs/' in from_variable.stdout
    line = _cli_plan("-C", "sm=90", "-C", "isa=avx2", VLLM_STACK_CACHE_DIR=refused).stderr
    assert line.startswith("error: setting 'VLLM_STACK_CACHE_DIR': bad value") and "';'" in line, line


def test_a_compiler_cache_clash_names_each_setting_as_the_user_gave_it(tmp_path):
    pairs = ("-C", "sm=90", "-C", "isa=avx2", "-C", f"cache-dir={tmp_path}")
    both = _cli_plan(*pairs, VLLM_STACK_COMPILER_CACHE="none", VLLM_STACK_COMPILER_CACHE_URL="gha")
    assert both.returncode != 0 and both.stderr.strip().splitlines() == [both.stderr.strip()], both.stderr
    assert both.stderr.startswith("error: setting 'VLLM_STACK_COMPILER_CACHE_URL': 'gha' given with "
                                  "VLLM_STACK_COMPILER_CACHE=none; accepted: "), both.stderr
    mixed = _cli_plan(*pairs, "-C", "compiler-cache=none", VLLM_STACK_COMPILER_CACHE_URL="gha")
    assert mixed.stderr.startswith("error: setting 'VLLM_STACK_COMPILER_CACHE_URL': 'gha' given with "
                                   "compiler-cache=none; accepted: "), mixed.stderr
