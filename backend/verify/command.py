"""``python -m backend verify PATH... [-C sm=..] [-C isa=..] [-C cuda=..] [--json]``."""

from __future__ import annotations

import json
from pathlib import Path

from .. import host as host_info
from ..cuda_driver import check_driver, read_manifest
from ..settings import Settings
from ..variants import Variant
from . import Expectation, verify_paths


def expectation(settings: Settings) -> Expectation:
    """What the settings ask for: GPU checks with sm, CPU checks with isa; the label with both."""
    label = None
    if settings.sm and settings.isa:
        label = Variant(sm=settings.sm, isa=settings.isa, cuda=settings.cuda).label
    return Expectation(
        sm=settings.sm,
        isa=settings.isa,
        cuda=settings.cuda if (settings.sm or settings.isa) else None,
        ptx=False,
        label=label,
        torch_version=None,  # taken from the torch wheel of each wheelhouse
        manylinux=settings.manylinux,
    )


def main(paths: list[str], settings: Settings, as_json: bool) -> int:
    host = host_info.current()
    if host.gpus:  # a wheelhouse this host's driver cannot run stops here, in one line
        for path in map(Path, paths):
            if path.is_dir():
                check_driver(read_manifest(path), host.driver, f"verify {path}")
    report = verify_paths([Path(p) for p in paths], expectation(settings))
    if as_json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(report.format_table())
    return 0 if report.ok else 1
