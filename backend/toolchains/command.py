"""``python -m backend toolchain``: which CUDA toolkit a build would use."""

from __future__ import annotations

import json

from .. import cache_marker
from .. import settings as settings_mod
from ..settings import Settings
from . import resolve


def main(settings: Settings, as_json: bool) -> int:
    cache_marker.claim(settings_mod.cache_dir(settings))  # the farms go there; clean checks the marker
    toolchain = resolve(
        settings.cuda, settings.toolchain,
        cache_dir=settings_mod.cache_dir(settings), nixpkgs=settings.nixpkgs, offline=settings.offline,
    )
    if as_json:
        print(json.dumps(toolchain.to_json(), indent=2))
        return 0
    rows = [
        ("provider", toolchain.provider + (" (chosen by toolchain=auto)" if settings.toolchain == "auto" else "")),
        ("cuda", toolchain.cuda),
        ("nvcc version", toolchain.version),
        ("CUDA_HOME", str(toolchain.cuda_home)),
        ("nvcc", str(toolchain.nvcc)),
        ("runtime libraries", ", ".join(toolchain.runtime_libraries) or "(none found)"),
        ("runtime requirements", ", ".join(toolchain.requirements)
         or "(none: the host provides the CUDA libraries)"),
    ]
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0
