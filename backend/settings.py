"""Every setting of the backend: one typed structure, validated in one place.

Settings come from three sources, each winning over the next: ``-C key=value``
(``config_settings`` of a PEP 517 frontend, or ``-C`` of ``python -m backend``),
the environment (``VLLM_STACK_<KEY>``: ``VLLM_STACK_SM=90``,
``VLLM_STACK_CACHE_DIR=/data/cache``; an empty variable counts as unset; the
``source.<component>`` keys have none), and the ``[tool.vllm-stack]`` table of
``pyproject.toml``.  Every error is a :class:`~backend.errors.SettingError`: one
line naming the setting (the variable, for a value from the environment), the
bad value and the accepted values.

A setting is declared once, as a field of ``Settings``: its annotation is its type, and
the ``setting(...)`` call giving its default is its row of the table (key, help, parser
where its type alone does not say how to read it: a ``Literal`` is a choice of words, a
``bool`` is true/false, a ``tuple`` is a list).  ``OPTIONS`` is read off the class, and
``--help`` and the README's table are made from it.  A written class, not one generated
from rows, so that a type checker reads the same declaration (tests/test_settings.py
checks every parser returns its field's type).  This module reads no file but
pyproject.toml and imports no domain module: component names, local trees, flashinfer's
AOT config and the vLLM line are checked by their owners (backend/project.py).
"""

# No ``from __future__ import annotations``: dataclasses.fields(Settings) then hold the types, not their text.
import dataclasses
import math
import os
import re
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, get_args

from . import toml
from .cpu_isa import ISAS
from .errors import BackendError, SettingError, suggest

TOOL_TABLE = "vllm-stack"

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
COMPILER_CACHE_URL_FORMS = ("redis://HOST[:PORT][/DB]", "rediss://HOST[:PORT][/DB]", "s3://BUCKET[/PREFIX]", "gha", "none")
RuntimeDeps = Literal["bundle", "none"]
BuildRequirements = Literal["locked", "ranges"]
SmokeMode = Literal["auto", "cpu", "emulate", "off"]
# manylinux_2_X policies of auditwheel's table on both x86_64 and aarch64 (tests/test_manylinux.py checks it).
ManylinuxPolicy = Literal["2_17", "2_24", "2_26", "2_27", "2_28", "2_31", "2_34", "2_35", "2_36", "2_37", "2_38",
                          "2_39", "2_40", "2_41"]
MANYLINUX_POLICIES: tuple[str, ...] = get_args(ManylinuxPolicy)
DEFAULT_NIXPKGS = "github:NixOS/nixpkgs/0182a361324364ae3f436a63005877674cf45efb"


SOURCE_PREFIX = "source."
# Keys frontends add on their own; accepted and ignored.
FOREIGN_KEYS = frozenset({"--build-option", "--global-option", "editable_mode", "editable-mode"})


def normalize_sm(value: str, key: str = "sm") -> str:
    raw = value.strip()
    text = raw.lower().removeprefix("sm").lstrip("_")
    if re.fullmatch(r"\d+\.\d", text):
        major, minor = text.split(".")
        text = f"{major}{minor}"
    if text in SMS:
        return text
    near = None
    if text.isascii() and text.isdigit() and len(text) <= 6:  # int() refuses over 4,300 digits
        near = min(SMS, key=lambda s: abs(int(s) - int(text)))
    message_hint = f"; did you mean {near!r}?" if near else ""
    raise BackendError(
        f"setting '{key}': bad value {raw!r}; accepted: {', '.join(SMS)} "
        f"(also written 9.0, sm90, sm_90){message_hint}"
    )


def _choice(key: str, value: str, accepted: tuple[str, ...]) -> str:
    text = value.strip()
    if text in accepted:
        return text
    raise SettingError(key, text, accepted)


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise SettingError(key, value, ("true", "false"))


def _components(key: str, value: Any) -> tuple[str, ...] | None:
    """The names given, or None for ``all``; backend/recipes/ checks them against its registry."""
    names = _names(key, value)
    return None if names == ("all",) else names


def _names(key: str, value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return tuple(str(i).strip() for i in items if str(i).strip())


def redact_url(url: str) -> str:
    """The URL with its credentials replaced, for every message and record that shows one.

    By position, never by parsing: everything between ``://`` (or the start) and the last ``@`` is
    the user information, whatever it holds. A URL parser cuts a password holding ``#``, ``/`` or
    ``?`` short (it reads a fragment, a path or a query there) and would show the rest; a URL it
    cannot parse at all would be shown whole. The user name before the first ``:`` stays (it says
    whose), the rest is replaced; user information without ``:`` (a token) is replaced whole.  After
    the user information, a query or fragment is replaced too: it may carry one (``?password=``).
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    at = rest.rfind("@")
    shown = ""
    if at >= 0:
        user, colon, _secret = rest[:at].partition(":")
        shown, rest = user + ":***" if colon else "***", rest[at:]
    cut = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=-1)
    if cut >= 0:
        rest = rest[:cut + 1] + "***"
    return f"{scheme}{sep}{shown}{rest}"


def _compiler_cache_url(key: str, value: Any) -> str | None:
    """Only the form is checked here; backend/pipeline/cache_storage.py maps it to the tool's variables.

    The URL as given is checked; every message shows it redacted (``redact_url``), and says why
    without quoting the parser, whose messages quote parts of the URL.
    """
    from urllib.parse import urlsplit

    raw = str(value).strip()
    if raw.lower() in ("", "none"):
        return None
    if raw.lower() == "gha":
        return "gha"
    shown = redact_url(raw)  # what the messages below show
    scheme, sep, rest = raw.partition("://")
    if not sep:
        raise SettingError(key, shown, COMPILER_CACHE_URL_FORMS, "not a URL")
    if scheme.lower() not in ("redis", "rediss", "s3"):
        raise SettingError(key, shown, COMPILER_CACHE_URL_FORMS, f"unknown scheme {redact_url(scheme)!r}")
    if scheme.lower() == "s3" and "@" in rest:
        raise SettingError(key, shown, COMPILER_CACHE_URL_FORMS,
                           "credentials in an s3:// URL: sccache reads them from AWS_ACCESS_KEY_ID and "
                           "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), set them there")
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        raise SettingError(key, shown, COMPILER_CACHE_URL_FORMS,
                           "a bad port or host (a password holding / ? # @ or : is written %-encoded)") from None
    if not parts.hostname or (parts.fragment or parts.query):
        why = "no host" if scheme.lower() != "s3" else "no bucket"
        if parts.fragment or parts.query:
            why = "a query or fragment (a password holding / ? # is written %-encoded)"
        raise SettingError(key, shown, COMPILER_CACHE_URL_FORMS, why)
    if scheme.lower() != "s3" and parts.path.strip("/") and not parts.path.strip("/").isdigit():
        raise SettingError(key, shown, COMPILER_CACHE_URL_FORMS,
                           "the path of a Redis URL is the database number (a password holding / ? # is "
                           "written %-encoded)")
    return raw


def _path(key: str, value: Any, base: Path) -> Path:
    text = str(value).strip()
    if not text:
        raise SettingError(key, text, "a folder path")
    path = Path(os.path.expanduser(text))
    return path if path.is_absolute() else (base / path)


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


def path_characters_refusal(text: str, *, colon: bool = False) -> str | None:
    """Why ``text`` cannot be a path the build hands to its tools, or None when it can."""
    for char in text:
        if char.isalnum() or char in _PATH_MARKS or (colon and char == ":"):
            continue
        return "it holds " + _UNSAFE_PATH_CHARS.get(char, f"{char!r} (a shell or build tool interprets it)")
    return None


def check_path_characters(key: str, text: str, shown: str | None = None) -> None:
    """Stop in one line when a path setting (or variable) holds a character a tool of the build interprets."""
    colon = not key.startswith(_PATH_ON_PATH_KEYS)
    why = path_characters_refusal(text, colon=colon)
    if why:
        marks = " ".join(_PATH_MARKS.strip()) + (" :" if colon else "")
        raise SettingError(key, shown if shown is not None else text,
                           f"a path of letters, digits, spaces and {marks}", why=why)


# Variables naming a path that nvcc puts into the commands its shell runs (TMPDIR: its temporary
# files, /tmp/tmpxft_...), or where the toolkit lies; checked before a build runs anything.
PATH_VARIABLES = ("TMPDIR", "CUDA_HOME", "CUDA_PATH", "CUDAHOSTCXX", "VLLM_STACK_CACHE_DIR")


def check_path_variables(environ: Mapping[str, str] | None = None) -> None:
    """Stop in one line when a path variable holds a character a tool of the build interprets."""
    environ = os.environ if environ is None else environ
    for name in PATH_VARIABLES:
        if environ.get(name):
            check_path_characters(name, environ[name])


def check_output_folder(key: str, path: Path, shown: str | None = None) -> Path:
    """A folder the build writes into: no character the tools it drives interpret, not a file."""
    text = str(path)
    check_path_characters(key, text, shown)
    if path.exists() and not path.is_dir():
        raise SettingError(key, shown if shown is not None else text, "a folder (or a path to create one at)",
                           why="it is a file")
    return path


def _single(key: str, value: Any) -> Any:
    """Frontends turn a repeated -C key into a list; one value is meant here."""
    if isinstance(value, (list, tuple)):
        if len(value) == 1:
            return value[0]
        shown = ", ".join(repr(str(v)) for v in value)
        raise BackendError(f"setting '{key}': given {len(value)} times ({shown}); accepted: one value")
    return value


def _manylinux(key: str, value: Any) -> str | None:
    """2_28, 2.28, manylinux_2_28 or manylinux2014 (the legacy name of 2_17); auto for none."""
    text = str(value).strip()
    legacy = {"manylinux2014": "2_17"}
    short = legacy.get(text, text.removeprefix("manylinux_").removeprefix("manylinux").replace(".", "_"))
    if text == "auto":
        return None
    if short in MANYLINUX_POLICIES:
        return short
    raise SettingError(key, text, MANYLINUX_POLICIES + ("auto",))


# The vLLM release line the hand-written lock builds; backend/sources/vllm_release.py lists and checks the others.
DEFAULT_VLLM_LINE = "0.15.1"


def _free_disk_gb(key: str, value: Any) -> float | None:
    text = str(value).strip()
    if text == "auto":
        return None
    try:
        number = float(text)
    except ValueError:
        number = -1.0
    if not math.isfinite(number) or number < 0:  # nan compares false with everything: it would disable the check
        raise SettingError(key, text, "a number of GB >= 0 (0: no check), or auto")
    return number


def _output_folder(key: str, value: Any, base: Path) -> Path:
    return check_output_folder(key, _path(key, value, base), str(value))


def _folder(key: str, value: Any, base: Path) -> Path:
    path = _path(key, value, base)
    if not path.is_dir():
        raise SettingError(key, str(value), "an existing folder")
    return path


def _wheel_folder(key: str, value: Any, base: Path) -> Path:
    path = _path(key, value, base)
    check_path_characters(key, str(path), str(value))
    if not path.is_dir():
        raise SettingError(key, str(value), "a folder of wheels")
    return path


def _text(value: Any) -> str | None:
    return str(value).strip() or None


def _flake(key: str, value: Any) -> str:
    text = str(value).strip()
    if not text:
        raise SettingError(key, text, "a flake reference such as github:NixOS/nixpkgs/<rev> or path:/dir")
    return text


def _per_component_source(key: str, value: Any, base: Path) -> dict[str, Path]:
    """One ``source.<component>`` key: that component's tree (resolve() gathers them into one mapping); the
    component's name and the folder are checked by backend/recipes/ (``recipes.local_trees``)."""
    return {key[len(SOURCE_PREFIX):]: _path(key, value, base)}


SOURCE_OPTION_KEY = SOURCE_PREFIX + "<component>"


@dataclasses.dataclass(frozen=True)
class Option:
    """One setting: its ``Settings`` field and type, how it is written, parsed and documented."""

    key: str  # as written in -C and [tool.vllm-stack]
    field: str  # the Settings attribute
    type: Any  # the field's annotation: what ``parse`` returns
    help: str
    default: Any = None
    # the words it accepts: its Literal type's, or given; checked by the default parser, shown by --help and the
    # README.  Words another module owns (the registered components, the release lines) are not here: that
    # module checks them when settings are loaded (backend/project.py), and hands them to the docs.
    choices: tuple[str, ...] = ()
    # (key, value, project folder) -> the typed value, raising SettingError; None: one of ``choices``
    parse: Callable[[str, Any, Path], Any] | None = None
    accepts: str = ""  # what it accepts when that is not a list of words
    shown_default: str | None = None  # the default as people say it, where the value itself says nothing
    many: bool = False  # a list (its type is a tuple): a TOML array, a comma list or -C given again
    factory: Callable[[], Any] | None = None  # a default made per Settings (sources: a new dict)
    secret: bool = False  # it may hold credentials: every message and record shows it through redact_url

    def value(self, value: Any, base: Path, named: str | None = None) -> Any:
        """The typed value of ``value`` as given by the user, or a one-line SettingError naming ``named``
        (the key, or the environment variable the value came from)."""
        if self.parse is not None:
            return self.parse(named or self.key, value, base)
        return _choice(named or self.key, str(value), self.choices)

    def values_text(self, owned: tuple[str, ...] = ()) -> str:
        """What it accepts and its default, as --help and the README show them (``owned``: its words, where
        another module owns them)."""
        words = " ".join(owned or self.choices)
        text = self.accepts or (f"comma list of {words}" if self.many else words)
        default = self.shown_default if self.shown_default is not None else (
            None if self.default is None or self.factory else str(self.default).lower()
            if isinstance(self.default, bool) else str(self.default))
        return f"{text} ({default})" if default else text


def setting(key: str, help: str, *, default: Any = None, factory: Callable[[], Any] | None = None,
            choices: tuple[str, ...] = (),
            parse: Callable[[str, Any, Path], Any] | None = None, accepts: str = "",
            shown_default: str | None = None, secret: bool = False) -> Any:
    """A ``Settings`` field with its row of the table (see ``Option``): the one place a setting is declared.

    ``choices`` is needed only where the field's type is not a ``Literal`` of the accepted words.
    """
    row = {"key": key, "help": help, "choices": choices, "parse": parse, "accepts": accepts,
           "shown_default": shown_default, "secret": secret}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={"option": row})
    return dataclasses.field(default=default, metadata={"option": row})


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
        raise SettingError(key, text if len(text) <= 40 else text[:40] + "...", f"a whole number from 1 to {most}, or auto")

    return parse


# Every setting, in the order --help and the README list them: its type, default, key, parser and help.
@dataclasses.dataclass(frozen=True)
class Settings:
    """What to build and how: one field per setting, declared with its row of the settings table."""

    sm: Sm | None = setting(
        "sm", "GPU architecture", parse=lambda k, v, b: normalize_sm(str(v), k),
        accepts=" ".join(SMS) + " (also `9.0`, `sm90`, `sm_90`)")
    isa: str | None = setting("isa", "CPU instruction set", choices=ISAS)  # cpu_isa.py's table names them
    cuda: CudaRelease = setting("cuda", "CUDA toolkit version", default="12.9")
    toolchain: ToolchainName = setting("toolchain", "where CUDA comes from", default="auto")
    # None: every component; backend/recipes/ checks the names and puts them in build order (recipes.chosen)
    components: tuple[str, ...] | None = setting(
        "components", "what to build; dependencies are added", parse=lambda k, v, b: _components(k, v),
        shown_default="all")
    torch: TorchMode = setting(
        "torch", "`existing`: build the rest against the torch importable in the build environment "
        "(use `--no-build-isolation`)", default="source")
    existing_torch: ExistingTorch = setting(
        "existing-torch", "with `torch=existing`: `match` stops before compiling when that torch's version, "
        "CUDA release or GPU code does not fit the variant; `accept` warns and builds against it",
        default="match")
    wheelhouse: Path | None = setting(
        "wheelhouse", "wheels land in `<wheelhouse>/<variant>/`", parse=_output_folder, accepts="folder",
        shown_default="`./wheelhouse`")
    cache_dir: Path | None = setting(
        "cache-dir", "downloads, build trees, build environments, compiler cache", parse=_output_folder,
        accepts="folder", shown_default="platform cache dir, or `$VLLM_STACK_CACHE_DIR`")
    jobs: int | None = setting(
        "jobs", "compile processes at once; auto: min(cores, free memory / memory per job)",
        parse=_whole_number(4096), accepts="number or auto", shown_default="auto")
    nvcc_threads: int | None = setting(
        "nvcc-threads", "threads per nvcc (vLLM divides its jobs by this)", parse=_whole_number(256),
        accepts="number", shown_default="1")
    offline: bool = setting(
        "offline", "never touch the network; fail naming the missing source instead", default=False)
    # component -> its local tree; each source.<component> key parses to one entry
    sources: dict[str, Path] = setting(
        SOURCE_OPTION_KEY, "build that component from a local tree", parse=_per_component_source,
        accepts="folder", factory=dict)
    verify: VerifyMode = setting(
        "verify", "what a failed check does: `strict` fails the component, `warn` reports only",
        default="strict")
    nixpkgs: str = setting(
        "nixpkgs", "where Nix takes CUDA from", default=DEFAULT_NIXPKGS, parse=lambda k, v, b: _flake(k, v),
        accepts="flake reference",
        shown_default="the seed's revision `" + DEFAULT_NIXPKGS.rsplit("/", 1)[1][:7] + "`")
    compiler_cache: CompilerCache = setting(
        "compiler-cache", "compiler cache shared across variants", default="auto")
    compiler_cache_url: str | None = setting(
        "compiler-cache-url", "storage shared by machines; see "
        "[Compiler cache](docs/GUIDE.md#one-compiler-cache-for-many-machines)",
        parse=lambda k, v, b: _compiler_cache_url(k, v), secret=True,
        accepts="`redis://HOST[:PORT][/DB]`, `rediss://...`, `s3://BUCKET[/PREFIX]`, `gha`, none",
        shown_default="none")
    wheel_variants: bool = setting(
        "wheel-variants", "also write PEP 825 (draft) variant wheels", default=False)
    flashinfer_aot: bool = setting(
        "flashinfer-aot", "build `flashinfer-jit-cache`, flashinfer's AOT kernels for the SM "
        "(false: JIT at first use, which needs nvcc where vLLM runs)", default=True)
    # as given (None: what vLLM 0.15.1 calls on the variant); loaded settings hold what the recipe made of it
    # (recipes/flashinfer.py aot_config): canonical JSON, or "all" for flashinfer's whole list
    flashinfer_aot_config: str | None = setting(
        "flashinfer-aot-config", "which AOT modules `flashinfer-jit-cache` holds: `vllm`, the kernels vLLM "
        "0.15.1 calls on the SM; `all`, flashinfer's whole list; or "
        "JSON with keys of flashinfer 0.6.1's `aot.py` `get_default_config()` (e.g. "
        "`{\"fa2_head_dim\": [[128, 128]], \"add_moe\": false}`), inline or a file; the rest compile at "
        "first use ([docs/COMPONENTS.md](docs/COMPONENTS.md))", parse=lambda k, v, b: _text(v),
        accepts="vllm, all, JSON, or a JSON file", shown_default="vllm")
    allow_unverified: tuple[str, ...] = setting(
        "allow-unverified", "use them although the lock has no hash", default=(),
        parse=lambda k, v, b: _names(k, v), accepts="comma list of lock entries", shown_default="")
    runtime_deps: RuntimeDeps = setting(
        "runtime-deps", "`bundle`: the wheelhouse also holds every runtime dependency, "
        "resolved by pip and pinned by hash; `none`: the built wheels only", default="bundle")
    build_requirements: BuildRequirements = setting(
        "build-requirements", "`locked`: the build venv installs "
        "`third_party/build-requirements.lock`, hash-checked; `ranges`: the recipes' ranges, unpinned",
        default="locked")
    free_disk_gb: float | None = setting(
        "free-disk-gb", "free disk the build needs in the cache; auto: the planned "
        "components' estimate; 0: no check", parse=lambda k, v, b: _free_disk_gb(k, v),
        accepts="number or auto", shown_default="auto")
    runtime_find_links: Path | None = setting(
        "runtime-find-links", "take runtime dependencies from this folder of wheels "
        "only (no index, no `pip.conf`)", parse=_wheel_folder, accepts="folder")
    smoke: SmokeMode = setting(
        "smoke", "install the wheelhouse with `--no-index` into a fresh venv and run one op per "
        "component (and CUDA ops plus a Triton kernel where a GPU is present; `cpu`: CPU ops only; "
        "`emulate`: CPU ops run under QEMU as the variant's CPU, [docs/VERIFY.md](docs/VERIFY.md))",
        default="auto")
    emulate_sysroot: Path | None = setting(
        "emulate-sysroot", "an aarch64 root filesystem with Python 3 for `verify --emulate` and "
        "`smoke=emulate` of ARM variants on an x86-64 host (`ci/setup/aarch64_sysroot.sh` makes one)",
        parse=_folder, accepts="folder")
    vllm: str = setting(
        "vllm", "the vLLM release line: its lock, pins and recipe facts ([docs/RELEASES.md](docs/RELEASES.md)); "
        "a line whose facts the recipes do not hold is planned with why not", default=DEFAULT_VLLM_LINE,
        parse=lambda k, v, b: str(v).strip())  # backend/sources/vllm_release.py checks it (checked_line)
    manylinux: ManylinuxPolicy | None = setting(
        "manylinux", "target policy: refuse a host whose libstdc++/glibc is newer, tag wheels "
        "`manylinux_<policy>` ([docs/MANYLINUX.md](docs/MANYLINUX.md))",
        parse=lambda k, v, b: _manylinux(k, v), accepts="2_17 ... 2_41, auto", shown_default="auto")


def literal_words(annotation: Any) -> tuple[str, ...]:
    """The words of a ``Literal[...]`` type, also inside ``... | None``; () for any other type."""
    if typing.get_origin(annotation) is Literal:
        return typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return tuple(word for arm in typing.get_args(annotation) for word in literal_words(arm))
    return ()


def _option(field: dataclasses.Field, annotation: Any) -> Option:
    """The row of ``field``, completed from its type: a Literal's words, a bool's parser, a tuple's many."""
    row = dict(field.metadata["option"])
    row["choices"] = row["choices"] or literal_words(annotation)
    arms = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) else (
        annotation,)
    if bool in arms and row["parse"] is None:
        row["parse"], row["accepts"] = (lambda key, value, base: _bool(key, value)), row["accepts"] or "true false"
    row["many"] = any(typing.get_origin(arm) is tuple for arm in arms)
    factory = None if field.default_factory is dataclasses.MISSING else field.default_factory
    default = None if field.default is dataclasses.MISSING else field.default
    return Option(field=field.name, type=annotation, default=default, factory=factory, **row)


_ANNOTATIONS = typing.get_type_hints(Settings)
OPTIONS: tuple[Option, ...] = tuple(_option(f, _ANNOTATIONS[f.name]) for f in dataclasses.fields(Settings))
OPTION_BY_KEY: dict[str, Option] = {o.key: o for o in OPTIONS if o.key != SOURCE_OPTION_KEY}
# key as the user writes it -> field name
KEYS: dict[str, str] = {key: option.field for key, option in OPTION_BY_KEY.items()}


def unknown_key_error(key: str) -> BackendError:
    accepted = list(KEYS) + [SOURCE_OPTION_KEY]
    hint = suggest(key, list(KEYS))
    text = f"unknown setting {key!r}; accepted: {', '.join(accepted)}"
    if hint:
        text += f"; did you mean {hint!r}?"
    return BackendError(text)


ENVIRONMENT_PREFIX = "VLLM_STACK_"


def environment_variable(key: str) -> str:
    """The variable that gives setting ``key``: ``cache-dir`` -> ``VLLM_STACK_CACHE_DIR``."""
    return ENVIRONMENT_PREFIX + key.upper().replace("-", "_")


def from_environment(environ: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """key -> (value, its variable) for each setting a non-empty ``VLLM_STACK_<KEY>`` gives.

    Only the settings' own names are read: other ``VLLM_STACK_*`` variables (``VLLM_STACK_SOURCE_MIRROR``,
    ``VLLM_STACK_PREFIX_MAP``, ...) mean other things, and ``source.<component>`` has no variable.
    """
    return {key: (environ[variable], variable) for key in KEYS
            if environ.get(variable := environment_variable(key), "").strip()}


def resolve(
    config_settings: Mapping[str, Any] | None = None,
    pyproject_table: Mapping[str, Any] | None = None,
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Merge and validate the sources: ``config_settings`` (-C) win over ``environ`` (``VLLM_STACK_<KEY>``),
    which wins over ``pyproject_table`` ([tool.vllm-stack]); each absent source gives nothing."""
    base = Path(base_dir or Path.cwd()).resolve()
    merged: dict[str, tuple[Any, str]] = {}  # key -> (value, the name a message shows: key or variable)
    merged.update((key, (value, key)) for key, value in _flatten_table(pyproject_table or {}).items())
    merged.update(from_environment(environ or {}))
    merged.update((key, (value, key)) for key, value in (config_settings or {}).items())

    values: dict[str, Any] = {}
    sources: dict[str, Path] = {}
    for key, (raw, named) in merged.items():
        if key in FOREIGN_KEYS:
            continue
        if key.startswith(SOURCE_PREFIX):
            sources.update(_per_component_source(key, _single(key, raw), base))
            continue
        option = OPTION_BY_KEY.get(key)
        if option is None:
            raise unknown_key_error(key)
        values[option.field] = option.value(raw if option.many else _single(named, raw), base, named)
    values["sources"] = sources
    return Settings(**values)


def named(key: str, config_settings: Mapping[str, Any] | None, environ: Mapping[str, str] | None) -> str:
    """What a message calls ``key``'s value: the key, or the variable it came from (as ``resolve`` chose)."""
    variable = environment_variable(key)
    if key in (config_settings or {}) or not (environ or {}).get(variable, "").strip():
        return key
    return variable


def as_config(settings: Settings) -> dict[str, str]:
    """``settings`` as the -C pairs that give them again (what a wheelhouse's manifest records for
    ``python -m backend rebuild-check``, which replaces the compiler cache's); settings left at None are left
    out, and a secret one's credentials too."""
    pairs: dict[str, str] = {}
    for option in OPTION_BY_KEY.values():
        value = getattr(settings, option.field)
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, (tuple, list)):
            if not value:
                continue
            value = ",".join(map(str, value))
        pairs[option.key] = redact_url(str(value)) if option.secret else str(value)
    for component, path in sorted(settings.sources.items()):
        pairs[SOURCE_PREFIX + component] = str(path)
    return pairs


def help_text(owned: Mapping[str, tuple[str, ...]], width: int = 100) -> str:
    """Every setting with what it accepts and its default, for ``python -m backend --help``; ``owned``: the
    words of settings whose words another module owns, by key."""
    import textwrap

    def plain(markdown: str) -> str:
        return re.sub(r"\[([^]]+)\]\([^)]+\)", r"\1", markdown).replace("`", "")

    lines = []
    for option in OPTIONS:
        lines.append(f"  {option.key}: {plain(option.values_text(owned.get(option.key, ())))}")
        lines += textwrap.wrap(plain(option.help), width=width, initial_indent="      ",
                               subsequent_indent="      ", break_on_hyphens=False)
    return "\n".join(lines)


def markdown_table(owned: Mapping[str, tuple[str, ...]]) -> str:
    """The README's settings table (backend/doc_tables.py writes it there); ``owned`` as for help_text."""
    rows = ["| key | values (default) | meaning |", "|---|---|---|"]
    rows += [f"| `{o.key}` | {o.values_text(owned.get(o.key, ()))} | {o.help} |" for o in OPTIONS]
    return "\n".join(rows)


def _flatten_table(table: Mapping[str, Any]) -> dict[str, Any]:
    """``[tool.vllm-stack.source] vllm = "..."`` becomes ``source.vllm``."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if key == "source" and isinstance(value, Mapping):
            for component, path in value.items():
                flat[SOURCE_PREFIX + component] = path
        else:
            flat[key] = value
    return flat


def read_pyproject_table(project_dir: Path) -> dict[str, Any]:
    path = Path(project_dir) / "pyproject.toml"
    if not path.is_file():
        return {}
    with path.open("rb") as handle:
        data = toml.load(handle)
    return dict(data.get("tool", {}).get(TOOL_TABLE, {}))


def parse_cli_pairs(pairs: list[str]) -> dict[str, Any]:
    """``-C key=value`` items as a config_settings mapping (repeats become lists)."""
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise BackendError(f"-C {pair!r}: expected key=value, for example -C sm=90")
        if key in result:
            previous = result[key]
            result[key] = (previous if isinstance(previous, list) else [previous]) + [value]
        else:
            result[key] = value
    return result
