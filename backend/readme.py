"""The README's generated parts: ``python -m backend.readme`` rewrites them, ``--check`` reports drift.

Each part sits between ``<!-- generated: NAME -->`` and ``<!-- end: NAME -->``;
tests/test_settings.py fails when the README's copy differs from what the code says.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def _settings_table() -> str:
    from .settings import markdown_table

    return markdown_table()


# part name -> what produces it
PARTS: dict[str, Callable[[], str]] = {"settings": _settings_table}


def _span(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- generated: {name} [^\n]*-->\n)(.*?)(<!-- end: {name} -->)", re.S)


def rendered(text: str) -> str:
    """``text`` (the README) with every generated part as the code says it."""
    for name, produce in PARTS.items():
        pattern = _span(name)
        if not pattern.search(text):
            raise ValueError(f"README has no '<!-- generated: {name} ... -->' ... '<!-- end: {name} -->' part")
        text = pattern.sub(lambda m: m.group(1) + produce() + "\n" + m.group(3), text)
    return text


def stale_parts(text: str) -> list[str]:
    """The names of the generated parts whose README copy differs from the code's."""
    return [name for name, produce in PARTS.items()
            if (m := _span(name).search(text)) is None or m.group(2) != produce() + "\n"]


def main(argv: list[str]) -> int:
    text = README.read_text(encoding="utf-8")
    if "--check" in argv:
        stale = stale_parts(text)
        for name in stale:
            print(f"{README.name}: the '{name}' table differs from the code; run python -m backend.readme",
                  file=sys.stderr)
        return 1 if stale else 0
    README.write_text(rendered(text), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
