"""The docs' generated tables: ``python -m backend.doc_tables`` rewrites them, ``--check`` reports drift.

Each table sits between ``<!-- generated: NAME ... -->`` and ``<!-- end: NAME -->``
in its document; tests/test_settings.py and tests/test_recipes.py fail when a
copy differs from what the code (settings.OPTIONS, backend/recipes/, the lock) says.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

from . import recipes
from .needs import install_command
from .project import owned_words
from .settings import markdown_table
from .sources.lock import load

ROOT = Path(__file__).resolve().parent.parent


def settings_table() -> str:
    return markdown_table(owned_words())


def backend_needs() -> str:
    """The indented command that installs what build, fetch, lock and verify import (backend/needs.py)."""
    return "    " + install_command()


def components_table() -> str:
    rows = ["| component | version | built after | sources (lock entries, the built tree first) | wheels |",
            "|---|---|---|---|---|"]
    for recipe in recipes.all_recipes():
        rows.append(f"| {recipe.name} | {recipe.version} | {', '.join(recipe.depends) or '-'} | "
                    f"{', '.join(recipe.lock_entries)} | {', '.join(recipe.distributions)} |")
    return "\n".join(rows)


def _origin(url: str) -> str:
    if "files.pythonhosted.org" in url:
        return "PyPI sdist"
    if "/releases/download/" in url:
        return "release tarball"
    if "/archive/" in url:
        return "GitHub archive"
    return url.split(":", 1)[0]


def recipes_table() -> str:
    """docs/COMPONENTS.md's table: what the engine reads from each recipe."""
    lock = load()
    rows = ["| component | version, sources (lock entries) | depends | pins torch | mem/job | nvcc threads | "
            "a local tree's version |",
            "|---|---|---|---|---|---|---|"]
    for recipe in recipes.all_recipes():
        main, *extras = recipe.lock_entries
        sources = f"`{main}` ({_origin(lock.entries[main].url)})" + "".join(f", `{e}`" for e in extras)
        threads = (f"{recipe.fixed_nvcc_threads}, fixed" if recipe.fixed_nvcc_threads else
                   "`NVCC_THREADS` (MAX_JOBS = jobs x threads)" if recipe.divides_max_jobs_by_nvcc_threads else
                   "engine")
        rows.append(f"| {recipe.name} | {recipe.version}, {sources} | {', '.join(recipe.depends) or '-'} | "
                    f"{'(is torch)' if 'torch' in recipe.distributions else 'yes' if recipe.pins_torch else 'no'} | {recipe.mem_per_job_gb:g} GB | {threads} | "
                    f"{_stated_version(recipe)} |")
    return "\n".join(rows)


def _stated_version(recipe) -> str:
    """Where a source.<component> checkout states its version (backend/sources/checkout_version.py)."""
    file = f"`{recipe.version_file}`" if recipe.version_file else ""
    if recipe.version_from_git_tags:
        return "git tags (setuptools-scm)" + (f", else {file}" if file else "")
    return file or "not read"


# document -> its generated tables: name -> what produces it
DOCUMENTS: dict[str, dict[str, Callable[[], str]]] = {
    "README.md": {"settings": settings_table, "components": components_table, "backend-needs": backend_needs},
    "docs/COMPONENTS.md": {"recipes": recipes_table},
}


def _span(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- generated: {name} [^\n]*-->\n)(.*?)(<!-- end: {name} -->)", re.S)


def rendered(document: str, text: str) -> str:
    """``text`` (the document) with every generated table as the code says it."""
    for name, produce in DOCUMENTS[document].items():
        pattern = _span(name)
        if not pattern.search(text):
            raise ValueError(f"{document} has no '<!-- generated: {name} ... -->' ... '<!-- end: {name} -->' part")
        text = pattern.sub(lambda m: m.group(1) + produce() + "\n" + m.group(3), text)
    return text


def stale_tables(document: str, text: str) -> list[str]:
    """The names of the generated tables whose copy in ``text`` differs from the code's."""
    return [name for name, produce in DOCUMENTS[document].items()
            if (m := _span(name).search(text)) is None or m.group(2) != produce() + "\n"]


def main(argv: list[str]) -> int:
    stale_found = False
    for document in DOCUMENTS:
        path = ROOT / document
        text = path.read_text(encoding="utf-8")
        if "--check" in argv:
            for name in stale_tables(document, text):
                stale_found = True
                print(f"{document}: the '{name}' table differs from the code; run python -m backend.doc_tables",
                      file=sys.stderr)
        else:
            path.write_text(rendered(document, text), encoding="utf-8")
    return 1 if stale_found else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
