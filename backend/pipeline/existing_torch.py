"""``torch=existing``: does the importable torch fit the variant?  Judged before anything compiles.

Read without importing torch (seconds, and a CUDA torch may not load on a
build host): its version from its metadata, its CUDA release from the
``cuda = ...`` line of ``torch/version.py`` (written by torch's setup.py;
``None`` for a CPU build), its GPU code from the fatbin of
``torch/lib/libtorch_cuda.so`` when there is one.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.metadata
import importlib.util
from collections.abc import Callable
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from packaging.version import InvalidVersion, Version

from ..errors import BackendError
from ..verify import fatbin


def _cuda_release(version_py: Path) -> tuple[bool, str | None]:
    """(found, release) from torch/version.py's ``cuda`` line: torch's tools/generate_torch_version.py writes it
    annotated (``cuda: Optional[str] = '12.8'``); a plain ``cuda = ...`` is read too."""
    # ValueError: also a value that is no literal, or none at all
    with contextlib.suppress(OSError, SyntaxError, ValueError):
        for node in ast.parse(version_py.read_text(encoding="utf-8")).body:
            named = [getattr(t, "id", None) for t in getattr(node, "targets", [getattr(node, "target", None)])]
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and "cuda" in named:
                value = ast.literal_eval(node.value)
                return True, value if isinstance(value, str) else None
    return False, None


def _gpu_targets(library: Path) -> tuple[set[str], set[str]] | None:
    """(cubin SMs, PTX SMs) in a CUDA library's fatbin, e.g. ({"90", "100a"}, {"90"}); None: absent or unreadable.

    Only the fatbin headers are read (no cubin is decompressed): torch's library holds thousands of them.
    """
    try:
        with open(library, "rb") as handle:
            elf = ELFFile(handle)
            fat = {section.name: section.data() for section in elf.iter_sections()
                   if section.name in fatbin.SECTIONS and section["sh_type"] != "SHT_NOBITS"}
    except (OSError, ELFError):
        return None
    sections = fatbin.parse_elf_sections(fat, read_release=False)
    return ({f"{e.sm}{e.suffix}" for section in sections for e in section.cubins},
            {f"{e.sm}{e.suffix}" for section in sections for e in section.ptx})


def _torch_folder() -> Path | None:
    """The importable torch's package folder, found without importing it; None: no torch is importable."""
    spec = importlib.util.find_spec("torch")
    return Path(next(iter(spec.submodule_search_locations))) if spec and spec.submodule_search_locations else None


def libraries() -> tuple[str, ...]:
    """Sonames of the importable torch (torch=existing): verification takes them for torch's DT_NEEDED."""
    return tuple(sorted(p.name for p in (folder / "lib").glob("*.so*"))) if (folder := _torch_folder()) else ()


def problems(variant, stack_torch: str) -> tuple[str, list[str]]:
    """(what the importable torch is, why it does not fit ``variant``); no problems: it fits."""
    if (folder := _torch_folder()) is None:
        return "no torch", ["no torch is importable"]
    version = importlib.metadata.version("torch")
    found: list[str] = []
    try:
        if Version(version).base_version != Version(stack_torch).base_version:
            found.append(f"it is torch {Version(version).base_version}, the stack's torch is {stack_torch}")
    except InvalidVersion:
        found.append(f"its version {version!r} is not a version")
    known, cuda = _cuda_release(folder / "version.py")
    if known and cuda is None:
        found.append(f"it is a CPU build (the variant is CUDA {variant.cuda})")
    elif known and ".".join(cuda.split(".")[:2]) != variant.cuda:
        found.append(f"it is built for CUDA {cuda}, the variant for CUDA {variant.cuda}")
    targets = _gpu_targets(folder / "lib" / "libtorch_cuda.so")  # None: a CPU torch's folder has none
    if targets is not None and not variant.target.runs(*targets):
        shown = ", ".join(f"sm_{c}" for c in sorted(targets[0])) or "none"
        found.append(f"its libtorch_cuda.so has no code for {variant.target.cubin} (cubins: {shown})")
    return f"torch {version} ({folder})", found


def check(plan, say: Callable[[str], None]) -> None:
    """Stop (``existing-torch=match``) or warn (``accept``) when the existing torch does not fit."""
    # (nothing to judge where nothing planned builds against torch: components=bitsandbytes)
    if plan.settings.torch != "existing" or not any("torch" in step.recipe.depends for step in plan.steps):
        return

    what, found = problems(plan.variant, plan.recipe("torch").version)  # the vLLM line's torch
    if not found:
        say(f"   torch=existing: {what} fits {plan.variant.name}")
        return
    why = "; ".join(found)
    if plan.settings.existing_torch == "accept":
        say(f"   warning: torch=existing: {what} does not fit {plan.variant.name}: {why} "
            "(existing-torch=accept: building against it anyway)")
        return
    raise BackendError(
        f"torch=existing: {what} does not fit {plan.variant.name}: {why}; install a torch that fits, "
        "build torch from source (-C torch=source), or -C existing-torch=accept to build against it anyway"
    )
