"""tomllib on Python 3.11+, its backport tomli on 3.10 (vLLM 0.15.1 supports 3.10 to 3.13)."""

try:
    import tomllib as _toml
except ModuleNotFoundError:  # Python 3.10
    import tomli as _toml  # type: ignore[no-redef]

load = _toml.load
loads = _toml.loads
TOMLDecodeError = _toml.TOMLDecodeError
