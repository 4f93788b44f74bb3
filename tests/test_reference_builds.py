"""docs/REFERENCE_BUILDS.md: every row's "this project" column says what the recipes really do.

The referee table compares upstream's builds (PyTorch's release scripts,
conda-forge, nixpkgs, Spack, vLLM's Dockerfile) with this project's choice per
option.  The project's column is made of backticked items (the file's own
legend): this test plans the seed's default row (sm=90, isa=avx512, CUDA 12.9),
or the variant an item names, and checks each item against that plan's step,
the recipe's build requirements and the build-requirements lock.  So a recipe
change the table does not follow fails here.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from backend import recipes
from backend.pipeline.plan import make_plan
from backend.settings import resolve
from backend.variants import Variant

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "REFERENCE_BUILDS.md"
LOCK = ROOT / "third_party" / "build-requirements.lock"
SEED = {"sm": "90", "isa": "avx512"}
GIB = 1 << 30
# What the issue asks the torch table to cover (a row whose first cell names each).
TORCH_OPTIONS = ("BLAS", "MAGMA", "NNPACK", "XNNPACK", "NVSHMEM", "cuDNN", "NCCL", "CMake", "six", "CPU capability")
COMPONENT_OF_SECTION = {"torch": "torch", "vllm": "vllm", "torchvision": "torchvision", "flashinfer": "flashinfer"}


def project_rows(text: str) -> list[tuple[str, str, str]]:
    """(component, option, "this project" cell) of every table row that has that column."""
    rows, component, header = [], None, None
    for line in text.splitlines():
        if line.startswith("## "):
            component = COMPONENT_OF_SECTION.get(line[3:].split()[0].lower())
            header = None
            continue
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = [c.lower() for c in cells]
            continue
        if set(line) <= set("|-: "):
            continue
        if "this project" in header and component:
            rows.append((component, cells[0], cells[header.index("this project")]))
    return rows


@lru_cache(maxsize=None)
def _plan(cache: str, settings_items: tuple[tuple[str, str], ...]):
    config = dict(SEED, **dict(settings_items))
    settings = resolve({"cache-dir": cache, **config})
    variant = Variant(sm=settings.sm, isa=settings.isa, cuda=settings.cuda)
    return make_plan(settings, variant, project_dir=ROOT, cores=16, memory_bytes=64 * GIB)


def _lock() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        found = re.match(r"^([A-Za-z0-9_.-]+)==([^\s\\;]+)", line)
        if found:
            pins[canonicalize_name(found.group(1))] = found.group(2)
    return pins


def check_item(component: str, item: str, cache: str) -> str | None:
    """Why ``item`` (one backticked entry of the project column) is false for ``component``, or None."""
    prefix, body = None, item
    found = re.match(r"^((?:[a-z]+=[^:,\s]+,?)+):\s*(.+)$", item)
    if found:
        prefix, body = found.groups()
    settings = tuple(sorted(tuple(p.split("=", 1)) for p in prefix.split(","))) if prefix else ()
    plan = _plan(cache, settings)
    step = plan.step(component)
    env = step.env
    recipe = recipes.get(component)
    where = f"{component} ({plan.variant.name})"
    if m := re.fullmatch(r"cmake-file ([\w{}]+)(?:=(\S+)| set)", body):
        name, value = m.groups()
        path = env.get("CMAKE_PROJECT_INCLUDE_BEFORE")
        # the command that writes it: its code and arguments hold every line the file gets
        script = next(("\n".join(c) for c in step.commands if path and path in c), None)
        if script is None:
            return f"{where}: no CMake file is written for CMAKE_PROJECT_INCLUDE_BEFORE"
        pattern = rf"set\({re.escape(name)}\s+" + (rf'"?{re.escape(value)}(?=[\s")])' if value else "")
        return None if re.search(pattern, script) else f"{where}: the CMake file does not set {name}" + (
            f" to {value}" if value else "")
    if m := re.fullmatch(r"depends (\S+)", body):
        return None if m.group(1) in recipe.depends else f"{where}: it does not depend on {m.group(1)}"
    if m := re.fullmatch(r"requires (\S+)", body):
        names = {canonicalize_name(Requirement(r).name) for r in recipe.build_requirements(plan.variant)}
        return None if canonicalize_name(m.group(1)) in names else f"{where}: {m.group(1)} is not a build requirement"
    if m := re.fullmatch(r"grafts (\S+)", body):
        return None if m.group(1) in recipe.graft_libraries(plan.variant) else f"{where}: it does not graft {m.group(1)}"
    if m := re.fullmatch(r"lock (\S+)==(\S+)", body):
        pinned = _lock().get(canonicalize_name(m.group(1)))
        return None if pinned == m.group(2) else f"the build-requirements lock pins {m.group(1)}=={pinned}"
    if m := re.fullmatch(r"(\w+) has (\S+)", body):
        name, word = m.groups()
        return None if word in env.get(name, "").split() else f"{where}: {name}={env.get(name)!r} lacks {word}"
    if m := re.fullmatch(r"(\w+) (set|unset)", body):
        name, state = m.groups()
        return None if (name in env) == (state == "set") else f"{where}: {name} is {'set' if name in env else 'unset'}"
    if m := re.fullmatch(r"(\w+)=(.*)", body):
        name, value = m.groups()
        return None if env.get(name) == value else f"{where}: {name}={env.get(name)!r}, the table says {value!r}"
    return f"{component}: {item!r} is not an item the legend defines"


def check_table(text: str, cache: str) -> list[str]:
    problems = []
    for component, option, cell in project_rows(text):
        items = re.findall(r"`([^`]+)`", cell)
        if not items:
            problems.append(f"{component} / {option}: the project column names nothing to check")
        for item in items:
            if why := check_item(component, item, cache):
                problems.append(f"{component} / {option}: `{item}`: {why}")
    return problems


def test_the_table_says_what_the_recipes_do(tmp_path):
    problems = check_table(DOC.read_text(), str(tmp_path))
    assert not problems, "docs/REFERENCE_BUILDS.md disagrees with the recipes:\n" + "\n".join(problems)


def test_the_torch_table_covers_every_option_the_issue_names():
    options = [option for component, option, _ in project_rows(DOC.read_text()) if component == "torch"]
    missing = [name for name in TORCH_OPTIONS if not any(name.lower() in o.lower() for o in options)]
    assert not missing, f"no torch row for {missing}"
    assert {c for c, _, _ in project_rows(DOC.read_text())} >= {"torch", "vllm", "torchvision"}


@pytest.mark.parametrize("row, wrong", [
    ("| NNPACK | on | `USE_NNPACK=0` | x |", "USE_NNPACK=None"),  # the seed row leaves NNPACK on
    ("| cuDNN | on | `USE_CUDNN=0` | x |", "USE_CUDNN='1'"),
    ("| CMake | x | `lock cmake==3.31.6` | x |", "pins cmake=="),
    ("| avx | x | `isa=avx: USE_MKLDNN=1` | x |", "USE_MKLDNN='0'"),
    ("| flags | x | `CFLAGS has -mavx2` | x |", "lacks -mavx2"),
    ("| six | x | `cmake-file PYTHON_SIX_SOURCE_DIR=/nowhere` | x |", "CMake file"),
    ("| prose | x | MKL, statically | x |", "names nothing to check"),
    ("| typo | x | `USE_NNPACK is on` | x |", "not an item the legend defines"),
    ("| order | x | `depends vllm` | x |", "does not depend on vllm"),
])
def test_a_row_that_drifted_from_the_recipe_fails(tmp_path, row, wrong):
    """A stand-in table whose project column disagrees with the recipe, one way per item kind."""
    text = "## torch 2.9.1\n\n| option | upstream | this project | why |\n|---|---|---|---|\n" + row + "\n"
    problems = check_table(text, str(tmp_path))
    assert problems and wrong in problems[0], problems
