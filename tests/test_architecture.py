"""The house: backend/'s import graph, drawn from the source with ``ast``, against the floors docs/ARCHITECTURE.md declares.

What it holds (issue 26): settings at the bottom, hooks at the top; no import cycle, counting the imports
inside functions; at most three arrows back up, each named below with its reason; every import inside a
function named below with a reason that is not dodging a cycle (with no cycle in the whole graph, none can
be).  ``python3 tests/test_architecture.py`` prints the numbers.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BACKEND = ROOT / "backend"
ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"

# Why an import sits inside a function, checked: the importing module loads on a bare interpreter (none of
# needs.RUNTIME at load: matrix, plan, detect, the hooks' one-line check) and the imported one does not; the
# function calls needs.require first (or runs only after a caller has), so a missing one is one line.
AFTER_NEEDS = "after needs.require: it loads a third-party requirement; the importer loads on a bare interpreter"


# Every import of a backend module inside a function: (importer, imported) -> why it is there.
IN_FUNCTION: dict[tuple[str, str], str] = {
    # The hook module loads without the needs, so that a missing one is one line (test_new_user).
    ("backend", "backend.pep517"): AFTER_NEEDS,
    ("backend.cli", "backend.wheels.rebuild_check"): AFTER_NEEDS,
    ("backend.cli", "backend.pipeline.run"): AFTER_NEEDS,
    ("backend.cli", "backend.sources.command"): AFTER_NEEDS,
    ("backend.cli", "backend.verify.command"): AFTER_NEEDS,
    ("backend.cli", "backend.sources.buildreqs"): AFTER_NEEDS,
    ("backend.pipeline.disk", "backend.wheels.wheelhouse"): AFTER_NEEDS,  # disk loads with clean, for cli
}

# Arrows from a lower floor to a higher one (at most three), each with its reason.
UP: dict[tuple[str, str], str] = {
}
MAX_UP = 3


@dataclasses.dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int
    in_function: bool


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(BACKEND.rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        found[name] = path
    return found


def _targets(importer: str, path: Path, node: ast.AST, known: dict[str, Path]) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "backend"]
    assert isinstance(node, ast.ImportFrom)
    if node.level:
        package = importer.split(".")
        if path.name != "__init__.py":
            package = package[:-1]
        base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
    elif (node.module or "").split(".")[0] == "backend":
        base = node.module
    else:
        return []
    # ``from . import elf`` names a module; ``from .errors import BackendError`` a name in one
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]


def _walk(tree: ast.AST) -> Iterable[tuple[ast.AST, bool]]:
    """Every node with whether it sits inside a function (a def, an async def or a lambda)."""
    stack = [(tree, False)]
    while stack:
        node, inside = stack.pop()
        yield node, inside
        nested = inside or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        stack.extend((child, nested) for child in ast.iter_child_nodes(node))


def imports(known: dict[str, Path] | None = None) -> list[Import]:
    """Every import of one backend module by another, with its line and whether it sits in a function."""
    known = known or modules()
    found = []
    for name, path in known.items():
        for node, inside in _walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _targets(name, path, node, known):
                    if target in known and target != name:
                        found.append(Import(name, target, node.lineno, inside))
    return sorted(found, key=lambda i: (i.importer, i.line, i.imported))


def third_party_at_load(known: dict[str, Path]) -> dict[str, set[str]]:
    """Per module, the top-level packages outside the standard library its own top-level code imports."""
    out: dict[str, set[str]] = {}
    for name, path in known.items():
        out[name] = set()
        for node, inside in _walk(ast.parse(path.read_text(), str(path))):
            if inside or not isinstance(node, (ast.Import, ast.ImportFrom)) or getattr(node, "level", 0):
                continue
            for top in ([a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]):
                first = top.split(".")[0]
                if first and first != "backend" and first not in sys.stdlib_module_names and first != "__future__":
                    out[name].add(first)
    return out


def floors(known: dict[str, Path]) -> tuple[dict[str, int], dict[int, str]]:
    """Each module's floor from docs/ARCHITECTURE.md's table (a file's own row wins over its folder's)."""
    text = ARCHITECTURE.read_text()
    section = text.split("## The floors of the house", 1)[1]
    rows = re.findall(r"^\| (\d+) \| ([^|]+) \| ([^|]+) \|", section, re.M)
    assert rows, "docs/ARCHITECTURE.md: no floors table under '## The floors of the house'"
    names = {int(number): title.strip() for number, title, _ in rows}
    by_file: dict[str, int] = {}
    by_folder: dict[str, int] = {}
    for number, _, cell in rows:
        for entry in re.findall(r"`([^`]+)`", cell):
            (by_folder if entry.endswith("/") else by_file)[entry] = int(number)
    placed = {}
    for name, path in known.items():
        relative = str(path.relative_to(ROOT))
        if relative in by_file:
            placed[name] = by_file[relative]
        else:
            folder = relative.rsplit("/", 1)[0] + "/"
            assert folder in by_folder, f"{relative} is on no floor: add it (or its folder) to docs/ARCHITECTURE.md"
            placed[name] = by_folder[folder]
    return placed, names


def cycles(edges: Iterable[tuple[str, str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


@dataclasses.dataclass
class House:
    modules: int
    arrows: set[tuple[str, str]]              # importer -> imported, top-level or in a function
    up: set[tuple[str, str]]                  # arrows to a higher floor
    cycles: list[list[str]]                   # counting every arrow
    in_function: set[tuple[str, str]]
    in_function_lines: dict[tuple[str, str], list[int]]
    floor_of: dict[str, int]

    def summary(self) -> str:
        return (f"{self.modules} modules, {len(self.arrows)} arrows, {len(self.up)} arrows up (at most {MAX_UP}), "
                f"{len(self.cycles)} cycles, {len(self.in_function)} in-function imports")


def draw() -> House:
    known = modules()
    found = imports(known)
    floor_of, _ = floors(known)
    arrows = {(i.importer, i.imported) for i in found}
    inner = {(i.importer, i.imported) for i in found if i.in_function}
    lines: dict[tuple[str, str], list[int]] = {}
    for i in found:
        if i.in_function:
            lines.setdefault((i.importer, i.imported), []).append(i.line)
    up = {(a, b) for a, b in arrows if floor_of[b] > floor_of[a]}
    return House(len(known), arrows, up, cycles(arrows), inner, lines, floor_of)


def test_the_drawing_reads_every_kind_of_import():
    """``from . import elf`` (a module), ``from ..errors import X`` (a name in one), a parent package, and an
    import inside a function, from the source as it is."""
    found = {(i.importer, i.imported): i.in_function for i in imports()}
    assert found[("backend.verify.checks", "backend.verify.elf")] is False
    assert found[("backend.verify.checks", "backend.errors")] is False
    assert found[("backend.toolchains", "backend.toolchains.select")] is False
    assert found[("backend.cli", "backend.pipeline.run")] is True
    assert ("backend.verify.checks", "backend.verify") not in found  # the package of ``from . import elf``


def test_every_module_is_on_a_floor_and_settings_and_hooks_are_at_the_ends():
    known = modules()
    floor_of, names = floors(known)
    assert set(floor_of) == set(known)
    ground = min(names)
    assert floor_of["backend.settings"] == min(f for f in floor_of.values() if f > ground), (
        "settings: not the first floor above the ground (errors, toml, the host ...)")
    top = max(names)
    assert floor_of["backend"] == top and floor_of["backend.__main__"] == top, "the hooks are not at the top"


def test_no_cycle():
    house = draw()
    found = house.cycles
    assert not found, f"{house.summary()}\nimport cycles (counting imports inside functions): {found}"


def test_few_arrows_up_each_with_its_reason():
    house = draw()
    unexplained = sorted(house.up - set(UP))
    assert not unexplained, (
        f"{house.summary()}\narrows to a higher floor (docs/ARCHITECTURE.md) not in UP: "
        + ", ".join(f"{a} (floor {house.floor_of[a]}) -> {b} (floor {house.floor_of[b]})" for a, b in unexplained))
    assert len(UP) <= MAX_UP, f"{house.summary()}\nmore than {MAX_UP} arrows up: {sorted(UP)}"
    gone = sorted(k for k in UP if k not in house.up)
    assert not gone, f"UP names arrows that are gone (remove them): {gone}"


def test_every_import_inside_a_function_has_its_reason():
    house = draw()
    unexplained = sorted(house.in_function - set(IN_FUNCTION))
    assert not unexplained, (
        f"{house.summary()}\nimports inside functions not in IN_FUNCTION (move them to the top of the module; "
        "an import cycle is no reason): "
        + ", ".join(f"{a}:{house.in_function_lines[(a, b)]} -> {b}" for a, b in unexplained))
    gone = sorted(k for k in IN_FUNCTION if k not in house.in_function)
    assert not gone, f"IN_FUNCTION names imports that are gone (remove them): {gone}"


def test_deferred_imports_do_defer_a_requirement():
    """AFTER_NEEDS is true of its import: the importer loads on a bare interpreter, the imported module does not."""
    known = modules()
    found = imports(known)
    own = third_party_at_load(known)
    needs_names = {name for name, _ in __import__("backend.needs", fromlist=["RUNTIME"]).RUNTIME}
    top_level: dict[str, set[str]] = {}
    for i in found:
        if not i.in_function:
            top_level.setdefault(i.importer, set()).add(i.imported)

    def loads(module: str) -> set[str]:
        seen, todo, packages = set(), [module], set()
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            packages |= own.get(current, set())
            todo.extend(top_level.get(current, ()))
            # importing backend.a.b runs backend/a/__init__.py first
            todo.extend(p for p in (current.rsplit(".", n)[0] for n in range(1, current.count(".") + 1)) if p in known)
        return packages

    wrong = []
    for (importer, imported), reason in IN_FUNCTION.items():
        if reason != AFTER_NEEDS:
            continue
        if loads(importer) & needs_names:
            wrong.append(f"{importer} -> {imported}: {importer} itself loads {sorted(loads(importer) & needs_names)}")
        elif not loads(imported) & needs_names:
            wrong.append(f"{importer} -> {imported}: {imported} loads nothing of needs.RUNTIME")
    assert not wrong, f"deferred 'after needs.require' for nothing (move them to the top): {wrong}"


if __name__ == "__main__":
    house = draw()
    print(house.summary())
    for a, b in sorted(house.up):
        print(f"  up: {a} (floor {house.floor_of[a]}) -> {b} (floor {house.floor_of[b]}): {UP.get((a, b), 'NOT LISTED')}")
    for component in house.cycles:
        print("  cycle:", " ".join(component))
