"""The size of the code issue 26's redesign rewrites, before and after (the issue asks for 20% smaller).

    python3 ci/code_size.py [--base REV] [--head REV]

Counts, for each module of `REWRITTEN` at both revisions, its code lines: lines that hold a Python
token other than a comment or a docstring (blank lines, comments and docstrings are not code, and the
house wants comments that say why, so they are not what shrinks).  Physical lines are printed beside.
A module absent at a revision counts 0 there (editable.py went, built.py and cuda_target.py came).

The base is 2d2a7fa, main just before the first redesign commit.  `REWRITTEN` is every module a
redesign commit changed, grouped by the issue's five problems; a module a later redesign commit
changes (or into which it moves code) is added here in that commit, so that moving code out of the
list cannot pass for making it smaller.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tokenize

BASE = "2d2a7fa"

REWRITTEN: dict[str, tuple[str, ...]] = {
    "1 one pass per wheel": (
        "backend/wheels/built.py", "backend/wheels/relabel.py", "backend/wheels/manylinux.py",
        "backend/wheels/rawzip.py", "backend/wheels/reproducible.py", "backend/wheels/variant.py",
        "backend/wheels/requires.py", "backend/verify/features.py", "backend/verify/checks.py",
        "backend/verify/elf.py", "backend/verify/isa.py", "backend/verify/isa_arm.py",
        "backend/verify/cubins.py",
    ),
    "2 one CUDA target": (
        "backend/cuda_target.py", "backend/pipeline/plan.py", "backend/variants.py",
        "backend/pipeline/environment.py", "backend/cuda_driver.py", "backend/toolchains/runtime.py",
        "backend/pipeline/clean.py",
    ),
    "3 recipes as objects": (
        "backend/recipes/base.py", "backend/recipes/__init__.py", "backend/recipes/torch.py",
        "backend/recipes/xformers.py", "backend/recipes/flashinfer.py", "backend/recipes/bitsandbytes.py",
        "backend/recipes/vllm.py", "backend/recipes/torchvision.py", "backend/recipes/torchaudio.py",
        "backend/sources/buildreqs.py", "backend/pipeline/layout.py",
    ),
    "4 editable as a step": (
        "backend/pipeline/editable.py", "backend/pipeline/executor.py", "backend/pipeline/run.py",
        "backend/project.py", "backend/pep517.py", "backend/pipeline/existing_torch.py",
    ),
    "5 settings at the bottom": ("backend/settings.py",),
}


def code_lines(text: str) -> int:
    """Lines holding a token other than a comment, a docstring, an indent or a line end."""
    tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    skipped = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
               tokenize.ENDMARKER}
    statement_start = {tokenize.NEWLINE, tokenize.NL, tokenize.INDENT, tokenize.DEDENT}
    lines: set[int] = set()
    for index, token in enumerate(tokens):
        if token.type in skipped:
            continue
        if token.type == tokenize.STRING:
            before = tokens[index - 1].type if index else tokenize.NEWLINE
            after = tokens[index + 1].type if index + 1 < len(tokens) else tokenize.NEWLINE
            if before in statement_start and after in (tokenize.NEWLINE, tokenize.ENDMARKER):
                continue  # a string that is a statement of its own: a docstring
        lines.update(range(token.start[0], token.end[0] + 1))
    return len(lines)


def text_at(revision: str, path: str) -> str:
    shown = subprocess.run(["git", "show", f"{revision}:{path}"], capture_output=True, text=True)
    return shown.stdout if shown.returncode == 0 else ""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=BASE)
    parser.add_argument("--head", default="HEAD")
    parser.add_argument("--modules", action="store_true", help="print every module, not only the groups")
    options = parser.parse_args(argv)
    totals = [0, 0, 0, 0]
    print(f"{'code before':>11} {'after':>6} {'change':>7}   {'lines before':>12} {'after':>6}   group / module")
    for group, modules in REWRITTEN.items():
        sums = [0, 0, 0, 0]
        for module in modules:
            before, after = text_at(options.base, module), text_at(options.head, module)
            row = [code_lines(before), code_lines(after), len(before.splitlines()), len(after.splitlines())]
            sums = [a + b for a, b in zip(sums, row)]
            if options.modules:
                print(f"{row[0]:>11} {row[1]:>6} {row[1] - row[0]:>+7}   {row[2]:>12} {row[3]:>6}     {module}")
        totals = [a + b for a, b in zip(totals, sums)]
        print(f"{sums[0]:>11} {sums[1]:>6} {sums[1] - sums[0]:>+7}   {sums[2]:>12} {sums[3]:>6}   {group}")
    change = (totals[1] - totals[0]) / totals[0]
    physical = (totals[3] - totals[2]) / totals[2]
    print(f"{totals[0]:>11} {totals[1]:>6} {change:>+7.1%}   {totals[2]:>12} {totals[3]:>6} {physical:+.1%}  "
          f"all {sum(map(len, REWRITTEN.values()))} modules ({options.base} -> {options.head})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
