"""Every setting of the backend: one typed structure, validated in one place.

Settings come from three sources, each winning over the next: ``-C key=value``
(``config_settings`` of a PEP 517 frontend, or ``-C`` of ``python -m backend``),
the environment (``VLLM_STACK_<KEY>``: ``VLLM_STACK_SM=90``,
``VLLM_STACK_CACHE_DIR=/data/cache``; an empty variable counts as unset; the
``source.<component>`` keys have none), and the ``[tool.vllm-stack]`` table of
``pyproject.toml``.  Every error is a :class:`~backend.errors.SettingError`: one
line naming the setting (the variable, for a value from the environment:
``Settings.named``, which the checks made later at plan time use too), the bad
value and the accepted values.

A setting is declared once, as a field of ``Settings``: its annotation is its type, its
name with dashes its key, and the ``setting(...)`` call giving its default is its row of the
table (help, and a parser where its type alone does not say how to read it).  As in
scikit-build-core's settings model, every source's text is converted by the field's type: a
``Literal`` is a choice of words, a ``bool`` is true/false, a ``tuple`` is a list, a ``str``
is stripped.  ``OPTIONS`` is read off the class, and ``--help`` and the README's table are
made from it.  A written class, not one generated from rows, so that a type checker reads the
same declaration (tests/test_settings.py checks every parser returns its field's type).  This
module reads no file but pyproject.toml and imports no domain module: component names, local
trees, flashinfer's AOT config and the vLLM line are checked by their owners (backend/project.py).
"""

# No ``from __future__ import annotations``: dataclasses.fields(Settings) then hold the types, not their text.
import dataclasses
import math
import os
import re
import textwrap
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from . import toml
from .cpu_isa import ISAS
from .errors import BackendError, SettingError, suggest

# The words a setting accepts, as the type of its Settings field (a reader and a type checker see
# them there); as a tuple too where other modules list them.
Sm = Literal["61", "70", "75", "80", "86", "89", "90", "100", "103", "120", "121"]
SMS: tuple[str, ...] = get_args(Sm)
CudaRelease = Literal["12.8", "12.9", "13.0"]
CUDAS: tuple[str, ...] = get_args(CudaRelease)
ToolchainName = Literal["auto", "nix", "system", "pypi"]
TOOLCHAINS: tuple[str, ...] = get_args(ToolchainName)
TorchMode = Literal["source", "existing"]
# torch=existing: stop before compiling when the importable torch does not fit the variant, or go on with a warning
ExistingTorch = Literal["match", "accept"]
VerifyMode = Literal["strict", "warn", "off"]
CompilerCache = Literal["auto", "ccache", "sccache", "none"]
# Remote compiler-cache storage: a URL scheme, or a word for storage without one.
COMPILER_CACHE_URL_FORMS = ("redis://HOST[:PORT][/DB]", "rediss://HOST[:PORT][/DB]", "s3://BUCKET[/PREFIX]", "gha",
                            "none")
RuntimeDeps = Literal["bundle", "none"]
BuildRequirements = Literal["locked", "ranges"]
SmokeMode = Literal["auto", "cpu", "emulate", "off"]
# manylinux_2_X policies of auditwheel's table on both x86_64 and aarch64 (tests/test_manylinux.py checks it).
ManylinuxPolicy = Literal["2_17", "2_24", "2_26", "2_27", "2_28", "2_31", "2_34", "2_35", "2_36", "2_37", "2_38",
                          "2_39", "2_40", "2_41"]
MANYLINUX_POLICIES: tuple[str, ...] = get_args(ManylinuxPolicy)
DEFAULT_NIXPKGS = "github:NixOS/nixpkgs/0182a361324364ae3f436a63005877674cf45efb"

SOURCE_PREFIX = "source."
SOURCE_OPTION_KEY = SOURCE_PREFIX + "<component>"
# Keys frontends add on their own; accepted and ignored.
FOREIGN_KEYS = frozenset({"--build-option", "--global-option", "editable_mode", "editable-mode"})


def normalize_sm(value: str, key: str = "sm") -> str:
    raw = value.strip()
    text = re.sub(r"^(\d+)\.(\d)$", r"\1\2", raw.lower().removeprefix("sm").lstrip("_"))  # 9.0 -> 90
    if text in SMS:
        return text
    digits = text.isascii() and text.isdigit() and len(text) <= 6  # int() refuses over 4,300 digits
    near = min(SMS, key=lambda s: abs(int(s) - int(text))) if digits else None
    hint = f"; did you mean {near!r}?" if near else ""
    raise BackendError(f"setting '{key}': bad value {raw!r}; accepted: {', '.join(SMS)} "
                       f"(also written 9.0, sm90, sm_90){hint}")


def _bool(key: str, value: Any) -> bool:
    text = str(value).strip().lower()  # True and False too
    if text in ("1", "true", "yes", "on", "0", "false", "no", "off", ""):
        return text in ("1", "true", "yes", "on")
    raise SettingError(key, value, ("true", "false"))


def _names(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return tuple(str(i).strip() for i in items if str(i).strip())


def _components(key: str, value: Any, base: Path) -> tuple[str, ...] | None:
    """The names given, or None for ``all``; backend/recipes/ checks them against its registry."""
    names = _names(value)
    return None if names == ("all",) else names


def redact_url(url: str) -> str:
    """The URL with its credentials replaced, for every message and record that shows one.

    By position, never by parsing: everything between ``://`` (or the start) and the last ``@`` is
    the user information, whatever it holds. A URL parser cuts a password holding ``#``, ``/`` or
    ``?`` short (it reads a fragment, a path or a query there) and would show the rest; a URL it
    cannot parse at all would be shown whole. The user name before the first ``:`` stays (it says
    whose), the rest is replaced; user information without ``:`` (a token) is replaced whole.  After
    the user information, a query or fragment is replaced too: it may carry one (``?password=``).
    """
    scheme, sep, rest = url.partition("://") if "://" in url else ("", "", url)
    at = rest.rfind("@")
    shown = ""
    if at >= 0:
        user, colon, _secret = rest[:at].partition(":")
        shown, rest = user + ":***" if colon else "***", rest[at:]
    rest = re.sub(r"([?#]).*", r"\1***", rest, count=1, flags=re.DOTALL)  # from the first ? or #
    return f"{scheme}{sep}{shown}{rest}"


def _compiler_cache_url(key: str, value: Any, base: Path) -> str | None:
    """Only the form is checked here; backend/pipeline/cache_storage.py maps it to the tool's variables.

    The URL as given is checked; every message shows it redacted (``redact_url``), and says why
    without quoting the parser, whose messages quote parts of the URL.
    """
    raw = str(value).strip()
    word = raw.lower()
    if word in ("", "none"):
        return None
    if word == "gha":
        return word
    scheme, sep, rest = raw.partition("://")
    scheme = scheme.lower()
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        parts = None
    encoded = "a password holding / ? # is written %-encoded"
    database = parts and scheme != "s3" and parts.path.strip("/")
    refusals = (  # the first that holds is the message
        (not sep, "not a URL"),
        (scheme not in ("redis", "rediss", "s3"), f"unknown scheme {redact_url(scheme)!r}"),
        (scheme == "s3" and "@" in rest, "credentials in an s3:// URL: sccache reads them from AWS_ACCESS_KEY_ID "
                                         "and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), set them there"),
        (parts is None, "a bad port or host (a password holding / ? # @ or : is written %-encoded)"),
        (parts and (parts.fragment or parts.query), f"a query or fragment ({encoded})"),
        (parts and not parts.hostname, "no bucket" if scheme == "s3" else "no host"),
        (database and not database.isdigit(), f"the path of a Redis URL is the database number ({encoded})"),
    )
    for refused, why in refusals:
        if refused:
            raise SettingError(key, redact_url(raw), COMPILER_CACHE_URL_FORMS, why)
    return raw


# Every path the build is given reaches tools that interpret characters: nvcc runs its steps through
# a shell inside double quotes (`...`, $(...), $VAR, \ and " act there), make and CMake read # as a
# comment and \ as an escape, ninja reads $ as its escape, pip reads "path;x" as a requirement with an
# environment marker, CMake splits lists on ';', nvcc's -Xcompiler splits on ',', PATH-like variables
# split on ':', a line break (or CR) ends a .pth or response-file line.  So a path holds only what
# none of them interprets: letters, digits, spaces and the marks below; anything else is refused
# before anything runs.
_PATH_MARKS = "/._-+@=~ "
# Why the common refused characters are refused (others: "a shell or build tool interprets it").
_UNSAFE_PATH_CHARS = {";": "';' (pip reads it as an environment marker, CMake as a list separator)",
                      ":": "':' (it separates PATH entries)",
                      "`": "'`' (nvcc's shell would run what it encloses)",
                      "$": "'$' (nvcc's shell expands it, ninja reads it as an escape)",
                      "\\": "'\\' (shells, make and CMake read it as an escape)",
                      '"': "'\"' (it ends the quotes nvcc puts around a path)",
                      "'": "a quote (shells read it as one)",
                      "#": "'#' (make and CMake read it as a comment)",
                      ",": "',' (nvcc's -Xcompiler splits on it)",
                      "\n": "a line break", "\r": "a carriage return"}
# Keys whose folder holds what goes on PATH (the build venv's bin): ':' is refused there alone.
_PATH_ON_PATH_KEYS = ("cache-dir", "VLLM_STACK_CACHE_DIR", "CUDA_HOME", "CUDA_PATH")
# Variables naming a path that nvcc puts into the commands its shell runs (TMPDIR: its temporary
# files, /tmp/tmpxft_...), or where the toolkit lies; checked before a build runs anything.
# (VLLM_STACK_CACHE_DIR is a setting: checked as cache-dir, when -C cache-dir does not replace it.)
PATH_VARIABLES = ("TMPDIR", "CUDA_HOME", "CUDA_PATH", "CUDAHOSTCXX")


def check_path_characters(key: str, text: str, shown: str | None = None) -> None:
    """Stop in one line when a path setting (or variable) holds a character a tool of the build interprets."""
    colon = not key.startswith(_PATH_ON_PATH_KEYS)
    refused = next((c for c in text if not (c.isalnum() or c in _PATH_MARKS or (colon and c == ":"))), None)
    if refused is not None:
        why = _UNSAFE_PATH_CHARS.get(refused, f"{refused!r} (a shell or build tool interprets it)")
        marks = " ".join(_PATH_MARKS.strip()) + (" :" if colon else "")
        raise SettingError(key, shown if shown is not None else text,
                           f"a path of letters, digits, spaces and {marks}", why="it holds " + why)


def check_path_variables() -> None:
    """Stop in one line when a path variable holds a character a tool of the build interprets."""
    for name in PATH_VARIABLES:
        if os.environ.get(name):
            check_path_characters(name, os.environ[name])


def check_output_folder(key: str, path: Path, shown: str | None = None) -> Path:
    """A folder the build writes into: no character the tools it drives interpret, not a file."""
    check_path_characters(key, str(path), shown)
    if path.exists() and not path.is_dir():
        raise SettingError(key, shown if shown is not None else str(path), "a folder (or a path to create one at)",
                           why="it is a file")
    return path


def _path(key: str, value: Any, base: Path) -> Path:
    """A path as given, relative to the project folder (``base``)."""
    text = str(value).strip()
    if not text:
        raise SettingError(key, text, "a folder path")
    return base / os.path.expanduser(text)  # an absolute path stands alone (pathlib drops base)


def _output_folder(key: str, value: Any, base: Path) -> Path:
    return check_output_folder(key, _path(key, value, base), str(value))


def _existing_folder(accepted: str, handed_to_tools: bool = True) -> Callable[[str, Any, Path], Path]:
    """A parser of a folder that must be there (``accepted``: what it holds); ``handed_to_tools``: the build
    hands it to its tools, so only characters none of them interprets (``check_path_characters``)."""

    def parse(key: str, value: Any, base: Path) -> Path:
        path = _path(key, value, base)
        if handed_to_tools:
            check_path_characters(key, str(path), str(value))
        if not path.is_dir():
            raise SettingError(key, str(value), accepted)
        return path

    return parse


def _single(key: str, value: Any) -> Any:
    """Frontends turn a repeated -C key into a list; one value is meant here."""
    if not isinstance(value, (list, tuple)):
        return value
    if len(value) == 1:
        return value[0]
    shown = ", ".join(repr(str(v)) for v in value)
    raise BackendError(f"setting '{key}': given {len(value)} times ({shown}); accepted: one value")


def _manylinux(key: str, value: Any, base: Path) -> str | None:
    """2_28, 2.28, manylinux_2_28 or manylinux2014 (the legacy name of 2_17); auto for none."""
    text = str(value).strip()
    if text == "auto":
        return None
    short = text.removeprefix("manylinux_").removeprefix("manylinux").replace(".", "_")
    if short in MANYLINUX_POLICIES or text == "manylinux2014":
        return "2_17" if text == "manylinux2014" else short
    raise SettingError(key, text, MANYLINUX_POLICIES + ("auto",))


def _free_disk_gb(key: str, value: Any, base: Path) -> float | None:
    text = str(value).strip()
    try:
        number = None if text == "auto" else float(text)
    except ValueError:
        number = math.nan
    if number is not None and not 0 <= number < math.inf:  # nan compares false with everything: no check
        raise SettingError(key, text, "a number of GB >= 0 (0: no check), or auto")
    return number


def _whole_number(most: int) -> Callable[[str, Any, Path], int | None]:
    """A parser of 1 to ``most``, or auto: more compile processes or nvcc threads than any machine runs is a
    typo (jobs=10**30), not a wish."""

    def parse(key: str, value: Any, base: Path) -> int | None:
        text = str(value).strip()
        if text in ("", "auto"):
            return None
        # ASCII digits only: str.isdigit() also accepts '²', which int() refuses; a bounded length, because
        # int() refuses strings of over 4,300 digits.
        if re.fullmatch(r"[0-9]{1,9}", text) and 1 <= int(text) <= most:
            return int(text)
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise SettingError(key, shown, f"a whole number from 1 to {most}, or auto")

    return parse


def _flake(key: str, value: Any, base: Path) -> str:
    if not str(value).strip():
        raise SettingError(key, "", "a flake reference such as github:NixOS/nixpkgs/<rev> or path:/dir")
    return str(value).strip()


def _arms(annotation: Any) -> tuple[Any, ...]:
    """The types of ``X | Y``, or the type itself."""
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    return typing.get_args(annotation) if union else (annotation,)


def _written(value: Any) -> str:
    """A value as -C writes it: true/false, a comma list, '' for None."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    return "" if value is None else str(value)


@dataclasses.dataclass(frozen=True)
class Option:
    """One setting: its ``Settings`` field and type, how it is written, parsed and documented."""

    help: str
    # the words it accepts: its Literal type's (a bool's: true false), or given; checked by the default parser,
    # shown by --help and the README.  Words another module owns (the registered components, the release lines)
    # are not here: that module checks them when settings are loaded (backend/project.py) and gives them to docs.
    choices: tuple[str, ...] = ()
    # (key, value, project folder) -> the typed value, raising SettingError; None: converted by its type
    parse: Callable[[str, Any, Path], Any] | None = None
    accepts: str = ""  # what it accepts when that is not a list of words
    shown_default: str | None = None  # the default as people say it, where the value itself says nothing
    secret: bool = False  # it may hold credentials: every message and record shows it through redact_url
    key: str = ""  # as written in -C and [tool.vllm-stack]: the field's name with dashes, unless given
    # filled in from the Settings field (OPTIONS)
    field: str = ""
    type: Any = None  # the field's annotation: what ``value`` returns
    default: Any = None

    @property
    def many(self) -> bool:
        """A list (its type is a tuple): a TOML array, a comma list or -C given again."""
        return any(typing.get_origin(arm) is tuple for arm in _arms(self.type))

    def value(self, value: Any, base: Path, named: str) -> Any:
        """The typed value of ``value`` as given by the user, or a one-line SettingError naming ``named``
        (the key, or the environment variable the value came from)."""
        if self.parse is not None:
            return self.parse(named, value, base)
        if bool in _arms(self.type):
            return _bool(named, value)
        if self.many:
            return _names(value)
        text = str(value).strip()
        if not self.choices:  # text another module checks (vllm, flashinfer-aot-config): '' is None or ''
            return text or (None if self.default is None else "")
        if text not in self.choices:
            raise SettingError(named, text, self.choices)
        return text

    def values_text(self, owned: tuple[str, ...] = ()) -> str:
        """What it accepts and its default, as --help and the README show them (``owned``: its words, where
        another module owns them)."""
        words = " ".join(owned or self.choices)
        text = self.accepts or (f"comma list of {words}" if self.many else words)
        default = self.shown_default if self.shown_default is not None else _written(self.default)
        return f"{text} ({default})" if default else text


def setting(help: str, *, default: Any = None, **row: Any) -> Any:
    """A ``Settings`` field with its row of the table (see ``Option``): the one place a setting is declared."""
    return dataclasses.field(default=default, metadata={"option": Option(help, **row)})


# Every setting, in the order --help and the README list them: its type, default, help and parser.
@dataclasses.dataclass(frozen=True)
class Settings:
    """What to build and how: one field per setting, declared with its row of the settings table."""

    sm: Sm | None = setting("GPU architecture", parse=lambda k, v, b: normalize_sm(str(v), k),
                            accepts=" ".join(SMS) + " (also `9.0`, `sm90`, `sm_90`)")
    isa: str | None = setting("CPU instruction set", choices=ISAS)  # cpu_isa.py's table names them
    cuda: CudaRelease = setting("CUDA toolkit version", default="12.9")
    toolchain: ToolchainName = setting("where CUDA comes from", default="auto")
    # None: every component; backend/recipes/ checks the names and puts them in build order (recipes.chosen)
    components: tuple[str, ...] | None = setting("what to build; dependencies are added", parse=_components,
                                                 shown_default="all")
    torch: TorchMode = setting("`existing`: build the rest against the torch importable in the build environment "
                               "(use `--no-build-isolation`)", default="source")
    existing_torch: ExistingTorch = setting(
        "with `torch=existing`: `match` stops before compiling when that torch's version, "
        "CUDA release or GPU code does not fit the variant; `accept` warns and builds against it", default="match")
    wheelhouse: Path | None = setting("wheels land in `<wheelhouse>/<variant>/`", parse=_output_folder,
                                      accepts="folder", shown_default="`./wheelhouse`")
    cache_dir: Path | None = setting(
        "downloads, build trees, build environments, compiler cache", parse=_output_folder, accepts="folder",
        shown_default="platform cache dir, or `$VLLM_STACK_CACHE_DIR`")
    jobs: int | None = setting("compile processes at once; auto: min(cores, free memory / memory per job)",
                               parse=_whole_number(4096), accepts="number or auto", shown_default="auto")
    nvcc_threads: int | None = setting("threads per nvcc (vLLM divides its jobs by this)",
                                       parse=_whole_number(256), accepts="number", shown_default="1")
    offline: bool = setting("never touch the network; fail naming the missing source instead", default=False)
    # component -> its local tree; each source.<component> key gives one entry, checked by backend/recipes/
    # (``recipes.local_trees``)
    sources: dict[str, Path] = dataclasses.field(default_factory=dict, metadata={"option": Option(
        "build that component from a local tree", key=SOURCE_OPTION_KEY, accepts="folder", shown_default="")})
    verify: VerifyMode = setting("what a failed check does: `strict` fails the component, `warn` reports only",
                                 default="strict")
    nixpkgs: str = setting("where Nix takes CUDA from", default=DEFAULT_NIXPKGS, parse=_flake,
                           accepts="flake reference",
                           shown_default="the seed's revision `" + DEFAULT_NIXPKGS.rsplit("/", 1)[1][:7] + "`")
    compiler_cache: CompilerCache = setting("compiler cache shared across variants", default="auto")
    compiler_cache_url: str | None = setting(
        "storage shared by machines; see [Compiler cache](docs/GUIDE.md#one-compiler-cache-for-many-machines)",
        parse=_compiler_cache_url, secret=True, shown_default="none",
        accepts="`redis://HOST[:PORT][/DB]`, `rediss://...`, `s3://BUCKET[/PREFIX]`, `gha`, none")
    wheel_variants: bool = setting("also write PEP 825 (draft) variant wheels", default=False)
    flashinfer_aot: bool = setting("build `flashinfer-jit-cache`, flashinfer's AOT kernels for the SM (false: JIT "
                                   "at first use, which needs nvcc where vLLM runs)", default=True)
    # as given (None: what vLLM 0.15.1 calls on the variant); loaded settings hold what the recipe made of it
    # (recipes/flashinfer.py aot_config): canonical JSON, or "all" for flashinfer's whole list
    flashinfer_aot_config: str | None = setting(
        "which AOT modules `flashinfer-jit-cache` holds: `vllm`, the kernels vLLM 0.15.1 calls on the SM; `all`, "
        "flashinfer's whole list; or JSON with keys of flashinfer 0.6.1's `aot.py` `get_default_config()` (e.g. "
        "`{\"fa2_head_dim\": [[128, 128]], \"add_moe\": false}`), inline or a file; the rest compile at "
        "first use ([docs/COMPONENTS.md](docs/COMPONENTS.md))",
        accepts="vllm, all, JSON, or a JSON file", shown_default="vllm")
    allow_unverified: tuple[str, ...] = setting("use them although the lock has no hash", default=(),
                                                accepts="comma list of lock entries")
    runtime_deps: RuntimeDeps = setting("`bundle`: the wheelhouse also holds every runtime dependency, resolved "
                                        "by pip and pinned by hash; `none`: the built wheels only",
                                        default="bundle")
    build_requirements: BuildRequirements = setting(
        "`locked`: the build venv installs `third_party/build-requirements.lock`, hash-checked; `ranges`: the "
        "recipes' ranges, unpinned", default="locked")
    free_disk_gb: float | None = setting(
        "free disk the build needs in the cache; auto: the planned components' estimate; 0: no check",
        parse=_free_disk_gb, accepts="number or auto", shown_default="auto")
    runtime_find_links: Path | None = setting(
        "take runtime dependencies from this folder of wheels only (no index, no `pip.conf`)",
        parse=_existing_folder("a folder of wheels"), accepts="folder")
    smoke: SmokeMode = setting(
        "install the wheelhouse with `--no-index` into a fresh venv and run one op per component (and CUDA ops "
        "plus a Triton kernel where a GPU is present; `cpu`: CPU ops only; `emulate`: CPU ops run under QEMU as "
        "the variant's CPU, [docs/VERIFY.md](docs/VERIFY.md))", default="auto")
    emulate_sysroot: Path | None = setting(
        "an aarch64 root filesystem with Python 3 for `verify --emulate` and `smoke=emulate` of ARM variants on "
        "an x86-64 host (`ci/setup/aarch64_sysroot.sh` makes one)",
        # only QEMU reads it, as one argument (its python) and through links (-L, verify/emulate.py): no shell,
        # compiler or build file, so any character a folder name may hold
        parse=_existing_folder("an existing folder", handed_to_tools=False), accepts="folder")
    # the release line the hand-written lock builds by default; backend/sources/vllm_release.py lists and checks
    # the others (checked_line)
    vllm: str = setting("the vLLM release line: its lock, pins and recipe facts "
                        "([docs/RELEASES.md](docs/RELEASES.md)); a line whose facts the recipes do not hold is "
                        "planned with why not", default="0.15.1")
    manylinux: ManylinuxPolicy | None = setting(
        "target policy: refuse a host whose libstdc++/glibc is newer, tag wheels `manylinux_<policy>` "
        "([docs/MANYLINUX.md](docs/MANYLINUX.md))", parse=_manylinux, accepts="2_17 ... 2_41, auto",
        shown_default="auto")
    # setting key -> the environment variable its value came from (not a setting: where one came from)
    variables: dict[str, str] = dataclasses.field(default_factory=dict, compare=False)

    def named(self, key: str) -> str:
        """What a message calls setting ``key``: the key, or the ``VLLM_STACK_<KEY>`` the user set it with."""
        return self.variables.get(key, key)


def _completed(field: dataclasses.Field, annotation: Any) -> Option:
    """The row of ``field``, completed from the field: its key, type, default and a Literal's (a bool's) words."""
    option = field.metadata["option"]
    words = ("true", "false") if annotation is bool else tuple(
        w for arm in _arms(annotation) if typing.get_origin(arm) is Literal for w in get_args(arm))
    default = field.default if field.default_factory is dataclasses.MISSING else field.default_factory()
    return dataclasses.replace(option, key=option.key or field.name.replace("_", "-"), field=field.name,
                               type=annotation, default=default,
                               choices=option.choices or words)


_ANNOTATIONS = typing.get_type_hints(Settings)
OPTIONS: tuple[Option, ...] = tuple(_completed(f, _ANNOTATIONS[f.name]) for f in dataclasses.fields(Settings)
                                    if "option" in f.metadata)
# key as the user writes it -> its option
OPTION_BY_KEY: dict[str, Option] = {o.key: o for o in OPTIONS if o.key != SOURCE_OPTION_KEY}


def from_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """key -> its variable (``cache-dir`` -> ``VLLM_STACK_CACHE_DIR``), for each setting a non-empty one gives.

    Only the settings' own names are read: other ``VLLM_STACK_*`` variables (``VLLM_STACK_SOURCE_MIRROR``,
    ``VLLM_STACK_PREFIX_MAP``, ...) mean other things, and ``source.<component>`` has no variable.
    """
    variables = {key: "VLLM_STACK_" + key.upper().replace("-", "_") for key in OPTION_BY_KEY}
    return {key: variable for key, variable in variables.items() if environ.get(variable, "").strip()}


def resolve(
    config_settings: Mapping[str, Any] | None = None,
    pyproject_table: Mapping[str, Any] | None = None,
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Merge and validate the sources: ``config_settings`` (-C) win over ``environ`` (``VLLM_STACK_<KEY>``),
    which wins over ``pyproject_table`` ([tool.vllm-stack]); each absent source gives nothing."""
    base = Path(base_dir or Path.cwd()).resolve()
    config_settings, environ, table = config_settings or {}, environ or {}, dict(pyproject_table or {})
    if isinstance(table.get("source"), Mapping):  # [tool.vllm-stack.source] vllm = "..." is source.vllm
        table.update((SOURCE_PREFIX + component, path) for component, path in table.pop("source").items())
    variables = {key: name for key, name in from_environment(environ).items() if key not in config_settings}
    merged = {**table, **{key: environ[name] for key, name in variables.items()}, **config_settings}
    values: dict[str, Any] = {"sources": {}, "variables": variables}
    for key, raw in merged.items():
        named = variables.get(key, key)
        if key.startswith(SOURCE_PREFIX):
            values["sources"][key.removeprefix(SOURCE_PREFIX)] = _path(key, _single(key, raw), base)
        elif option := OPTION_BY_KEY.get(key):
            values[option.field] = option.value(raw if option.many else _single(named, raw), base, named)
        elif key not in FOREIGN_KEYS:
            hint = suggest(key, list(OPTION_BY_KEY))
            accepted = ", ".join([*OPTION_BY_KEY, SOURCE_OPTION_KEY])
            raise BackendError(f"unknown setting {key!r}; accepted: {accepted}"
                               + (f"; did you mean {hint!r}?" if hint else ""))
    return Settings(**values)


def as_config(settings: Settings) -> dict[str, str]:
    """``settings`` as the -C pairs that give them again (what a wheelhouse's manifest records for
    ``python -m backend rebuild-check``, which replaces the compiler cache's); settings left at None are left
    out, and a secret one's credentials too."""
    pairs: dict[str, str] = {}
    for option in OPTION_BY_KEY.values():
        if text := _written(getattr(settings, option.field)):
            pairs[option.key] = redact_url(text) if option.secret else text
    pairs.update((SOURCE_PREFIX + component, str(path)) for component, path in sorted(settings.sources.items()))
    return pairs


def _plain(markdown: str) -> str:
    return re.sub(r"\[([^]]+)\]\([^)]+\)", r"\1", markdown).replace("`", "")


def help_text(owned: Mapping[str, tuple[str, ...]], width: int = 100) -> str:
    """Every setting with what it accepts and its default, for ``python -m backend --help``; ``owned``: the
    words of settings whose words another module owns, by key."""
    lines = []
    for option in OPTIONS:
        lines.append(f"  {option.key}: {_plain(option.values_text(owned.get(option.key, ())))}")
        lines += textwrap.wrap(_plain(option.help), width=width, initial_indent="      ",
                               subsequent_indent="      ", break_on_hyphens=False)
    return "\n".join(lines)


def markdown_table(owned: Mapping[str, tuple[str, ...]]) -> str:
    """The README's settings table (backend/doc_tables.py writes it there); ``owned`` as for help_text."""
    rows = ["| key | values (default) | meaning |", "|---|---|---|"]
    rows += [f"| `{o.key}` | {o.values_text(owned.get(o.key, ()))} | {o.help} |" for o in OPTIONS]
    return "\n".join(rows)


def read_pyproject_table(project_dir: Path) -> dict[str, Any]:
    path = Path(project_dir) / "pyproject.toml"
    data = toml.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    return dict(data.get("tool", {}).get("vllm-stack", {}))


def parse_cli_pairs(pairs: list[str]) -> dict[str, Any]:
    """``-C key=value`` items as a config_settings mapping (repeats become lists)."""
    given: dict[str, list[str]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise BackendError(f"-C {pair!r}: expected key=value, for example -C sm=90")
        given.setdefault(key, []).append(value)
    return {key: values[0] if len(values) == 1 else values for key, values in given.items()}
