"""Every setting of the backend: one typed structure, validated in one place.

Settings come from the ``[tool.vllm-stack]`` table of ``pyproject.toml``
(defaults) and from ``-C key=value`` (``config_settings`` of a PEP 517
frontend, or ``-C`` of ``python -m backend``), the latter winning.  Every
error is a :class:`~backend.errors.SettingError`: one line naming the
setting, the bad value and the accepted values.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import BackendError, SettingError, suggest

TOOL_TABLE = "vllm-stack"

SMS = ("61", "75", "80", "86", "89", "90", "100", "103", "120")
X86_ISAS = ("avx", "avx2", "avx512", "avx512bf16", "avx512vnni")
ARM_ISAS = ("armv8_2", "armv9")
ISAS = X86_ISAS + ARM_ISAS
CUDAS = ("12.8", "12.9", "13.0")
TOOLCHAINS = ("auto", "nix", "system", "pypi")
COMPONENTS = ("torch", "torchvision", "torchaudio", "xformers", "flashinfer", "bitsandbytes", "vllm")
TORCH_MODES = ("source", "existing")
VERIFY_MODES = ("strict", "warn", "off")
COMPILER_CACHES = ("auto", "ccache", "sccache", "none")
# Remote compiler-cache storage: a URL scheme, or a word for storage without one.
COMPILER_CACHE_URL_FORMS = ("redis://HOST[:PORT][/DB]", "rediss://HOST[:PORT][/DB]", "s3://BUCKET[/PREFIX]", "gha", "none")
RUNTIME_DEPS = ("bundle", "none")
BUILD_REQUIREMENTS = ("locked", "ranges")
SMOKE_MODES = ("auto", "cpu", "off")
# manylinux_2_X policies of auditwheel's table on both x86_64 and aarch64 (tests/test_manylinux.py checks it).
MANYLINUX_POLICIES = ("2_17", "2_24", "2_26", "2_27", "2_28", "2_31", "2_34", "2_35", "2_36", "2_37", "2_38",
                      "2_39", "2_40", "2_41")
DEFAULT_NIXPKGS = "github:NixOS/nixpkgs/0182a361324364ae3f436a63005877674cf45efb"


@dataclasses.dataclass(frozen=True)
class Settings:
    """What to build and how.  Field docs are the README's settings table."""

    sm: str | None = None
    """GPU architecture: 61, 75, 80, 86, 89, 90, 100, 103, 120 (also 9.0, sm90, sm_90)."""
    isa: str | None = None
    """CPU instruction set: avx, avx2, avx512, avx512bf16, avx512vnni, armv8_2, armv9."""
    cuda: str = "12.9"
    """CUDA toolkit version: 12.8, 12.9 or 13.0."""
    toolchain: str = "auto"
    """Where the CUDA toolkit comes from: auto, nix, system, pypi."""
    components: tuple[str, ...] = COMPONENTS
    """Comma-separated subset of the stack to build (dependencies are added)."""
    torch: str = "source"
    """source: build torch; existing: build the rest against the importable torch."""
    wheelhouse: Path | None = None
    """Output folder; wheels land in <wheelhouse>/<variant>/. Default: ./wheelhouse."""
    cache_dir: Path | None = None
    """Downloads, build trees, build environments and the compiler cache."""
    jobs: int | None = None
    """Parallel compile jobs; default: min(cores, free memory / memory per job)."""
    nvcc_threads: int | None = None
    """Threads per nvcc process (vLLM divides its jobs by this)."""
    offline: bool = False
    """Never touch the network; fail naming the missing source instead."""
    sources: Mapping[str, Path] = dataclasses.field(default_factory=dict)
    """source.<component>=PATH: build that component from a local tree."""
    verify: str = "strict"
    """strict: a failed check fails the component; warn: report only; off."""
    nixpkgs: str = DEFAULT_NIXPKGS
    """The flake reference Nix realises CUDA from (the seed's pinned revision)."""
    compiler_cache: str = "auto"
    """auto, ccache, sccache or none; shared across variants."""
    compiler_cache_url: str | None = None
    """Remote storage shared by machines: redis://, rediss://, s3://bucket/prefix or gha."""
    wheel_variants: bool = False
    """Also write PEP 825 (draft) variant-labelled wheels."""
    flashinfer_aot: bool = True
    """Build flashinfer-jit-cache, flashinfer's AOT kernels for the variant's SM (false: JIT only)."""
    allow_unverified: tuple[str, ...] = ()
    """Lock entries to use even though the lock has no hash for them."""
    runtime_deps: str = "bundle"
    """bundle: the wheelhouse also holds every runtime dependency (resolved, hash-pinned); none: built wheels only."""
    build_requirements: str = "locked"
    """locked: the build venv installs third_party/build-requirements.lock (hash-checked); ranges: the recipes' ranges, unpinned."""
    free_disk_gb: float | None = None
    """Free disk the build needs in the cache (GB); default: the planned components' estimate; 0: no check."""
    runtime_find_links: Path | None = None
    """A folder of wheels: runtime dependencies come from it and the wheelhouse only (no index, no pip.conf)."""
    smoke: str = "auto"
    """auto: install the wheelhouse with --no-index into a fresh venv and run one op per component (CUDA ops and a Triton kernel too when a GPU is present); cpu: CPU ops only; off."""
    manylinux: str | None = None
    """Target manylinux policy (2_28 for manylinux_2_28); None: the best policy the wheels satisfy."""

    @property
    def selected_components(self) -> tuple[str, ...]:
        return tuple(c for c in COMPONENTS if c in self.components)


# key as the user writes it -> field name
KEYS: dict[str, str] = {
    "sm": "sm",
    "isa": "isa",
    "cuda": "cuda",
    "toolchain": "toolchain",
    "components": "components",
    "torch": "torch",
    "wheelhouse": "wheelhouse",
    "cache-dir": "cache_dir",
    "jobs": "jobs",
    "nvcc-threads": "nvcc_threads",
    "offline": "offline",
    "verify": "verify",
    "nixpkgs": "nixpkgs",
    "compiler-cache": "compiler_cache",
    "compiler-cache-url": "compiler_cache_url",
    "wheel-variants": "wheel_variants",
    "flashinfer-aot": "flashinfer_aot",
    "allow-unverified": "allow_unverified",
    "runtime-deps": "runtime_deps",
    "build-requirements": "build_requirements",
    "free-disk-gb": "free_disk_gb",
    "runtime-find-links": "runtime_find_links",
    "smoke": "smoke",
    "manylinux": "manylinux",
}
SOURCE_PREFIX = "source."
# Keys frontends add on their own; accepted and ignored.
FOREIGN_KEYS = frozenset({"--build-option", "--global-option", "editable_mode", "editable-mode"})


def normalize_sm(value: str) -> str:
    raw = value.strip()
    text = raw.lower().removeprefix("sm").lstrip("_")
    if re.fullmatch(r"\d+\.\d", text):
        major, minor = text.split(".")
        text = f"{major}{minor}"
    if text in SMS:
        return text
    near = None
    if text.isdigit():
        near = min(SMS, key=lambda s: abs(int(s) - int(text)))
    message_hint = f"; did you mean {near!r}?" if near else ""
    raise BackendError(
        f"setting 'sm': bad value {raw!r}; accepted: {', '.join(SMS)} "
        f"(also written 9.0, sm90, sm_90){message_hint}"
    )


def _choice(key: str, value: str, accepted: tuple[str, ...]) -> str:
    text = value.strip()
    if text in accepted:
        return text
    raise SettingError(key, text, accepted)


def _positive_int(key: str, value: str) -> int | None:
    text = str(value).strip()
    if text in ("", "auto"):
        return None
    # ASCII digits only: str.isdigit() also accepts '²', which int() refuses.
    if re.fullmatch(r"[0-9]+", text) and int(text) >= 1:
        return int(text)
    raise SettingError(key, text, "a whole number >= 1, or auto")


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise SettingError(key, value, ("true", "false"))


def _components(key: str, value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    names = [str(i).strip() for i in items if str(i).strip()]
    if not names:
        raise SettingError(key, str(value) if not isinstance(value, (list, tuple)) else ",".join(map(str, value)),
                           ("a comma list of " + " ".join(COMPONENTS), "all"), why="names no component")
    if names == ["all"]:
        return COMPONENTS
    for name in names:
        if name not in COMPONENTS:
            raise SettingError(key, name, COMPONENTS + ("all",))
    return tuple(c for c in COMPONENTS if c in names)


def _names(key: str, value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return tuple(str(i).strip() for i in items if str(i).strip())


def redact_url(url: str) -> str:
    """The URL with its password replaced, for messages and logs."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _compiler_cache_url(key: str, value: Any) -> str | None:
    """Only the form is checked here; backend/pipeline/cache_storage.py maps it to the tool's variables."""
    from urllib.parse import urlsplit

    raw = str(value).strip()
    text = raw
    if text.lower() in ("", "none"):
        return None
    if text.lower() == "gha":
        return "gha"
    text = redact_url(raw)  # what the messages below show
    scheme, sep, _ = text.partition("://")
    if not sep:
        raise SettingError(key, text, COMPILER_CACHE_URL_FORMS, "not a URL")
    if scheme.lower() not in ("redis", "rediss", "s3"):
        raise SettingError(key, text, COMPILER_CACHE_URL_FORMS, f"unknown scheme {scheme!r}")
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError as error:
        raise SettingError(key, text, COMPILER_CACHE_URL_FORMS, str(error)) from None
    if not parts.hostname:
        raise SettingError(key, text, COMPILER_CACHE_URL_FORMS, "no host" if scheme != "s3" else "no bucket")
    if scheme.lower() != "s3" and parts.path.strip("/") and not parts.path.strip("/").isdigit():
        raise SettingError(key, text, COMPILER_CACHE_URL_FORMS, "the path of a Redis URL is the database number")
    return raw


def _path(key: str, value: Any, base: Path) -> Path:
    text = str(value).strip()
    if not text:
        raise SettingError(key, text, "a folder path")
    path = Path(os.path.expanduser(text))
    return path if path.is_absolute() else (base / path)


# pip reads "path;x" as a requirement with an environment marker and CMake
# splits lists on ';'; PATH-like variables split on ':'; a newline ends a .pth line.
_UNSAFE_PATH_CHARS = {";": "';' (pip reads it as an environment marker, CMake as a list separator)",
                      ":": "':' (it separates PATH entries)",
                      "\n": "a line break"}


def check_output_folder(key: str, path: Path, shown: str | None = None) -> Path:
    """A folder the build writes into: no character the tools it drives split on, not a file."""
    text = str(path)
    # Only the cache holds what goes on PATH (the build venv's bin): ':' matters there alone.
    unsafe = {c: w for c, w in _UNSAFE_PATH_CHARS.items() if c != ":" or key in ("cache-dir", "VLLM_STACK_CACHE_DIR")}
    for char, why in unsafe.items():
        if char in text:
            shown_chars = ", ".join(repr(c) for c in unsafe if c != "\n") + " or line breaks"
            raise SettingError(key, shown if shown is not None else text, f"a folder path without {shown_chars}",
                               why=f"it holds {why}")
    if path.exists() and not path.is_dir():
        raise SettingError(key, shown if shown is not None else text, "a folder (or a path to create one at)",
                           why="it is a file")
    return path


def _source_path(component: str, value: Any, base: Path) -> Path:
    key = SOURCE_PREFIX + component
    if component not in COMPONENTS:
        raise SettingError("source.<component>", component, COMPONENTS)
    path = _path(key, value, base).resolve()
    if not path.is_dir():
        raise BackendError(
            f"setting '{key}': path {str(value)!r} does not exist or is not a folder; "
            f"accepted: a local source tree of {component}"
        )
    return path


def _single(key: str, value: Any) -> Any:
    """Frontends turn a repeated -C key into a list; one value is meant here."""
    if isinstance(value, (list, tuple)):
        if len(value) == 1:
            return value[0]
        shown = ", ".join(repr(str(v)) for v in value)
        raise BackendError(f"setting '{key}': given {len(value)} times ({shown}); accepted: one value")
    return value


def unknown_key_error(key: str) -> BackendError:
    accepted = list(KEYS) + [SOURCE_PREFIX + "<component>"]
    hint = suggest(key, list(KEYS))
    text = f"unknown setting {key!r}; accepted: {', '.join(accepted)}"
    if hint:
        text += f"; did you mean {hint!r}?"
    return BackendError(text)


def resolve(
    config_settings: Mapping[str, Any] | None = None,
    pyproject_table: Mapping[str, Any] | None = None,
    base_dir: Path | None = None,
) -> Settings:
    """Merge the pyproject table (defaults) with config settings (winning) and validate."""
    base = Path(base_dir or Path.cwd()).resolve()
    merged: dict[str, Any] = {}
    for layer in (_flatten_table(pyproject_table or {}), dict(config_settings or {})):
        for key, value in layer.items():
            if key in FOREIGN_KEYS:
                continue
            merged[key] = value

    values: dict[str, Any] = {}
    sources: dict[str, Path] = {}
    for key, raw in merged.items():
        if key.startswith(SOURCE_PREFIX):
            component = key[len(SOURCE_PREFIX):]
            sources[component] = _source_path(component, _single(key, raw), base)
            continue
        if key not in KEYS:
            raise unknown_key_error(key)
        field = KEYS[key]
        value = raw if field in ("components", "allow_unverified") else _single(key, raw)
        values[field] = _parse(key, field, value, base)
    values["sources"] = sources
    return Settings(**values)


def _parse(key: str, field: str, value: Any, base: Path) -> Any:
    if field == "sm":
        return normalize_sm(str(value))
    if field == "isa":
        return _choice(key, str(value), ISAS)
    if field == "cuda":
        return _choice(key, str(value), CUDAS)
    if field == "toolchain":
        return _choice(key, str(value), TOOLCHAINS)
    if field == "torch":
        return _choice(key, str(value), TORCH_MODES)
    if field == "verify":
        return _choice(key, str(value), VERIFY_MODES)
    if field == "compiler_cache":
        return _choice(key, str(value), COMPILER_CACHES)
    if field == "compiler_cache_url":
        return _compiler_cache_url(key, value)
    if field == "runtime_deps":
        return _choice(key, str(value), RUNTIME_DEPS)
    if field == "build_requirements":
        return _choice(key, str(value), BUILD_REQUIREMENTS)
    if field == "free_disk_gb":
        text = str(value).strip()
        if text == "auto":
            return None
        try:
            number = float(text)
        except ValueError:
            number = -1.0
        if number < 0:
            raise SettingError(key, text, "a number of GB >= 0 (0: no check), or auto")
        return number
    if field == "smoke":
        return _choice(key, str(value), SMOKE_MODES)
    if field == "components":
        return _components(key, value)
    if field == "allow_unverified":
        return _names(key, value)
    if field in ("jobs", "nvcc_threads"):
        return _positive_int(key, value)
    if field in ("offline", "wheel_variants", "flashinfer_aot"):
        return _bool(key, value)
    if field in ("wheelhouse", "cache_dir"):
        return check_output_folder(key, _path(key, value, base), str(value))
    if field == "runtime_find_links":
        path = _path(key, value, base)
        if not path.is_dir():
            raise SettingError(key, str(value), "a folder of wheels")
        return path
    if field == "manylinux":
        return _manylinux(key, value)
    if field == "nixpkgs":
        text = str(value).strip()
        if not text:
            raise SettingError(key, text, "a flake reference such as github:NixOS/nixpkgs/<rev> or path:/dir")
        return text
    raise AssertionError(field)


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
    from . import toml

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


def default_cache_dir() -> Path:
    env = os.environ.get("VLLM_STACK_CACHE_DIR")
    if env:
        return check_output_folder("VLLM_STACK_CACHE_DIR", Path(env))
    try:
        import platformdirs
    except ImportError:  # pragma: no cover - platformdirs is a build requirement
        return Path.home() / ".cache" / "vllm-stack"
    return Path(platformdirs.user_cache_dir("vllm-stack"))


def cache_dir(settings: Settings) -> Path:
    return settings.cache_dir or default_cache_dir()


def writable_folder(key: str, path: Path) -> Path:
    """Create ``path`` when missing and prove a file can be written there, or stop in one line."""
    import tempfile

    check_output_folder(key, Path(path))
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise BackendError(
            f"setting '{key}': cannot write into {path} ({error.strerror or error}); "
            "accepted: a folder you can write to"
        ) from None
    return Path(path)


def wheelhouse_root(settings: Settings, project_dir: Path) -> Path:
    return settings.wheelhouse or (Path(project_dir) / "wheelhouse")
