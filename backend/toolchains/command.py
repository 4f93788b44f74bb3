"""``python -m backend toolchain``: which CUDA toolkit a build would use."""

from __future__ import annotations

import json

from .. import cache_marker
from ..errors import BackendError
from ..pipeline.layout import cache_dir
from ..settings import Settings
from . import nix, pypi, resolve, system
from .select import incomplete_note


def main(settings: Settings, as_json: bool, install: bool = False) -> int:
    cache_marker.claim(cache_dir(settings))  # the farms go there; clean checks the marker
    pending = None if install or settings.offline else _pending(settings)
    if pending is not None:
        if as_json:
            print(json.dumps({"installed": False, **pending}, indent=2))
            return 0
        print(f"provider  {pending['provider']}" + (" (chosen by toolchain=auto)" if settings.toolchain == "auto" else ""))
        print(f"cuda      {settings.cuda}")
        print(f"not yet   {pending['what']}")
        print(f"into      {pending['into']}")
        print("install   a build does it first; --install does it now")
        return 0
    toolchain = resolve(
        settings.cuda, settings.toolchain,
        cache_dir=cache_dir(settings), nixpkgs=settings.nixpkgs, offline=settings.offline,
    )
    note = incomplete_note(toolchain)
    if as_json:
        print(json.dumps({**toolchain.to_json(), "note": note}, indent=2))
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
    if note:
        rows.append(("note", note))  # the same judgement detect and the build show
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


def _pending(settings: Settings) -> dict | None:
    """What resolving would download or realise, when it would (None: nothing, or it would fail anyway).

    The same order as ``toolchain=auto``: an installed toolkit, else Nix, else PyPI for 13.x.
    """
    cuda, provider = settings.cuda, settings.toolchain
    if provider in ("auto", "system"):
        try:
            system.resolve(cuda)
            return None
        except BackendError:
            if provider == "system":
                return None  # resolve says why, in one line
    found = nix.find_nix() if provider in ("nix", "auto") else None
    if provider == "nix" and found is None:
        return None  # resolve says why, in one line
    unreachable = nix.nixpkgs_unreachable(found, settings.nixpkgs) if found else None
    if unreachable and (provider == "nix" or cuda.startswith("12.")):
        # The judgement detect shows: this Nix cannot give CUDA here, and a build would stop on it.
        raise BackendError(f"toolchain '{provider}': CUDA {cuda} cannot come from Nix here: {unreachable}; "
                           f"{nix.ways_out(cuda)}")
    if found and not unreachable:
        return {"provider": "nix", "what": f"{nix.attribute_set(cuda)} from {settings.nixpkgs}, realised into the "
                                           "Nix store (several GB from cache.nixos.org unless the store has it)",
                "into": "/nix/store", "requirements": []}
    if cuda.startswith("12."):
        return None  # resolve refuses, in one line
    missing = pypi.missing(cuda, cache_dir(settings))
    if not missing:
        return None
    return {"provider": "pypi", "what": f"{len(missing)} CUDA {cuda} wheels from PyPI (about 3 GB for the full "
                                        f"set: cuDNN alone is 700 MB): {', '.join(missing)}",
            "into": str(pypi.root_for(cache_dir(settings), cuda)), "requirements": missing}
