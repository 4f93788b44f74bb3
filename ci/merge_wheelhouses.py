#!/usr/bin/env python3
"""Merge the wheelhouses of many variants into one index.

    python ci/merge_wheelhouses.py artifacts/ --out index/

Every ``*.whl`` under the inputs (searched recursively: one folder per
downloaded artifact, each holding ``<variant>/``) is copied into ``--out``.
The result serves both ways pip reads an index:

- ``pip install --find-links index/ ...`` (the flat folder; ``index.html``
  lists every file for when the folder is served over HTTP), and
- ``pip install --index-url file:///.../index/simple/ ...``: a PEP 503
  simple index, ``simple/<project>/index.html`` per project with
  ``#sha256=`` fragments.

Also written: ``SHA256SUMS`` of all files and ``manifests/<variant>.json``
(each wheelhouse's manifest).  A wheelhouse whose ``SHA256SUMS`` disagrees
with its files, or two different files with the same name, stop the merge;
the same file twice (same name, same hash) is kept once.
"""

from __future__ import annotations

import argparse
import html
import os
import shutil
import sys
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from backend.errors import BackendError  # noqa: E402
from backend.hashing import sha256_file as sha256  # noqa: E402  (one helper for the repo)
from backend.wheels import names as wheel_names  # noqa: E402


class MergeError(Exception):
    pass


def project_of(filename: str) -> str:
    """The project a wheel belongs to: its PEP 503 name."""
    try:
        return wheel_names.project(filename)
    except BackendError as error:
        raise MergeError(str(error)) from None


def read_sums(folder: Path) -> dict[str, str]:
    sums = folder / "SHA256SUMS"
    if not sums.is_file():
        return {}
    listed = {}
    for line in sums.read_text().splitlines():
        if line.strip():
            digest, _, name = line.strip().partition(" ")
            listed[name.strip().lstrip("*")] = digest.lower()
    return listed


def collect(inputs: list[Path]) -> tuple[dict[str, tuple[Path, str]], dict[str, Path]]:
    """{file name: (path, sha256)} of every wheel, and {variant: manifest path}."""
    files: dict[str, tuple[Path, str]] = {}
    manifests: dict[str, Path] = {}
    for root in inputs:
        if not root.is_dir():
            raise MergeError(f"{root}: not a folder")
        for wheel in sorted(root.rglob("*.whl")):
            listed = read_sums(wheel.parent)
            digest = sha256(wheel)
            if listed and listed.get(wheel.name) not in (None, digest):
                raise MergeError(f"{wheel}: sha256 {digest} differs from its SHA256SUMS ({listed[wheel.name]})")
            project_of(wheel.name)
            seen = files.get(wheel.name)
            if seen and seen[1] != digest:
                raise MergeError(
                    f"two different files named {wheel.name}: {seen[0]} (sha256 {seen[1][:16]}...) "
                    f"and {wheel} (sha256 {digest[:16]}...)"
                )
            files.setdefault(wheel.name, (wheel, digest))
        for manifest in sorted(root.rglob("manifest.json")):
            variant = manifest.parent.name
            if variant in manifests and manifests[variant].read_bytes() != manifest.read_bytes():
                raise MergeError(f"two different manifests for {variant}: {manifests[variant]} and {manifest}")
            manifests.setdefault(variant, manifest)
    if not files:
        raise MergeError(f"no wheel found under {', '.join(str(i) for i in inputs)}")
    return files, manifests


def _page(title: str, links: list[tuple[str, str]]) -> str:
    body = "\n".join(f'    <a href="{html.escape(href)}">{html.escape(text)}</a><br/>' for href, text in links)
    return (
        "<!DOCTYPE html>\n<html>\n  <head>\n    <meta name=\"pypi:repository-version\" content=\"1.0\">\n"
        f"    <title>{html.escape(title)}</title>\n  </head>\n  <body>\n    <h1>{html.escape(title)}</h1>\n"
        f"{body}\n  </body>\n</html>\n"
    )


def write_index(out: Path, files: dict[str, tuple[Path, str]], manifests: dict[str, Path]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, (path, digest) in sorted(files.items()):
        target = out / name
        if target.exists() and sha256(target) != digest:
            raise MergeError(f"{target} already exists with other contents")
        if not target.exists():
            shutil.copy2(path, target)
    by_project: dict[str, list[tuple[str, str]]] = {}
    for name, (_, digest) in sorted(files.items()):
        by_project.setdefault(project_of(name), []).append((name, digest))
    simple = out / "simple"
    if simple.exists():
        shutil.rmtree(simple)
    simple.mkdir()
    for project, entries in sorted(by_project.items()):
        folder = simple / project
        folder.mkdir()
        links = [(f"../../{urllib.parse.quote(name)}#sha256={digest}", name) for name, digest in entries]
        (folder / "index.html").write_text(_page(f"Links for {project}", links))
    (simple / "index.html").write_text(_page("Simple index", [(f"{p}/", p) for p in sorted(by_project)]))
    (out / "index.html").write_text(_page(
        "Wheels", [(f"{urllib.parse.quote(n)}#sha256={d}", n) for n, (_, d) in sorted(files.items())]))
    (out / "SHA256SUMS").write_text("".join(f"{d}  {n}\n" for n, (_, d) in sorted(files.items())))
    if manifests:
        folder = out / "manifests"
        folder.mkdir(exist_ok=True)
        for variant, manifest in sorted(manifests.items()):
            shutil.copy2(manifest, folder / f"{variant}.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", type=Path, help="folders holding downloaded wheelhouses")
    parser.add_argument("--out", type=Path, required=True, help="the merged index folder")
    args = parser.parse_args(argv)
    try:
        out = args.out.resolve()
        if any(out == p.resolve() or p.resolve() in out.parents for p in args.inputs):
            raise MergeError(f"--out {args.out} lies inside an input folder")
        files, manifests = collect(args.inputs)
        write_index(out, files, manifests)
    except MergeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    projects = {project_of(n) for n in files}
    print(f"{len(files)} wheels of {len(projects)} projects from {len(manifests)} wheelhouses in {args.out}")
    print(f"  pip install --find-links {args.out} ...")
    print(f"  pip install --index-url {Path(args.out).resolve().as_uri()}/simple/ ...")
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(f"### Merged index\n\n{len(files)} wheels, {len(projects)} projects, "
                         f"{len(manifests)} wheelhouses: {', '.join(sorted(manifests))}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
