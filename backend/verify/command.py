"""``python -m backend verify PATH... [-C sm=..] [-C isa=..] [-C cuda=..] [--emulate] [--json]``."""

from __future__ import annotations

import json
from pathlib import Path

from .. import host as host_info
from ..cuda_driver import check_driver
from ..wheels.files import read_manifest
from ..errors import BackendError
from ..settings import Settings
from ..variants import Variant
from . import Expectation, emulate as emulation, verify_paths


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


def main(paths: list[str], settings: Settings, as_json: bool, emulate: bool = False) -> int:
    if emulate and not settings.isa:
        raise BackendError("--emulate needs the variant's CPU: pass -C isa=...")
    host = host_info.current()
    if host.gpus:  # a wheelhouse this host's driver cannot run stops here, in one line
        for path in map(Path, paths):
            if path.is_dir():
                check_driver(read_manifest(path), host.driver, f"verify {path}")
    report = verify_paths([Path(p) for p in paths], expectation(settings))
    executed = (emulation.verify([Path(p) for p in paths], settings.isa, sysroot=settings.emulate_sysroot)
                if emulate else None)
    if as_json:
        data = report.to_json()
        if executed is not None:
            data["emulate"] = executed.to_json()
            data["ok"] = data["ok"] and executed.ok
        print(json.dumps(data, indent=2))
    else:
        print(report.format_table())
        if executed is not None:
            print("\n".join(executed.lines()))
    return 0 if report.ok and (executed is None or executed.ok) else 1
