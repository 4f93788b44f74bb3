"""flashinfer's AOT module set (its own flashinfer/aot.py), counted, and a subset built and timed.

    python3 flashinfer_aot_modules.py count  TREE OUT.json [CONFIG.json]  # the set for FLASHINFER_CUDA_ARCH_LIST
    python3 flashinfer_aot_modules.py build  TREE BUILD_DIR CONFIG.json  # compile_and_package_modules with that config
    python3 flashinfer_aot_modules.py report NINJA_DIR OUT.json        # per-module compile seconds from .ninja_log

TREE is a flashinfer source tree (the 0.6.1 sdist completed with the tag's
flashinfer-jit-cache/), imported from there as flashinfer-jit-cache's own
build backend does. CONFIG.json holds aot.py's get_default_config() keys
(dtypes by name, head dims as pairs), and may hold vllm-stack's own keys
"modules" (names to keep) and "drop" (fnmatch patterns to leave out), applied
as the tag patch applies them; without CONFIG.json: upstream's whole default.
"""

import collections
import fnmatch
import json
import os
import sys
import time
from pathlib import Path


def _flashinfer(tree: Path):
    os.environ.setdefault("FLASHINFER_CUDA_ARCH_LIST", "9.0a")
    os.environ["FLASHINFER_DISABLE_VERSION_CHECK"] = "1"
    sys.path.insert(0, str(tree))
    from flashinfer import aot
    from flashinfer.jit import env as jit_env

    return aot, jit_env


def _config(aot, overrides: dict) -> dict:
    import torch

    config = aot.get_default_config()
    for key, value in overrides.items():
        if key not in config:
            raise SystemExit(f"unknown aot config key {key!r}; known: {', '.join(config)}")
        if key in ("f16_dtype", "f8_dtype"):
            value = [getattr(torch, name) for name in value]
        elif key.endswith("head_dim"):
            value = [tuple(pair) for pair in value]
        config[key] = value
    return config


def _specs(aot, config, caps):
    return aot.gen_all_modules(
        config["f16_dtype"], config["f8_dtype"], config["fa2_head_dim"], config["fa3_head_dim"],
        config["use_sliding_window"], config["use_logits_soft_cap"], caps,
        config["add_comm"], config["add_gemma"], config["add_oai_oss"], config["add_moe"],
        config["add_act"], config["add_misc"], config["add_xqa"],
    )


def count(tree: Path, out: Path, config_file: Path | None = None) -> None:
    aot, jit_env = _flashinfer(tree)
    scratch = Path("/tmp/fi-aot-count")
    jit_env.FLASHINFER_CSRC_DIR = tree / "csrc"
    jit_env.FLASHINFER_INCLUDE_DIR = tree / "include"
    jit_env.FLASHINFER_WORKSPACE_DIR = scratch
    jit_env.FLASHINFER_JIT_DIR = scratch / "cached_ops"
    jit_env.FLASHINFER_GEN_SRC_DIR = scratch / "generated"
    caps = aot.detect_sm_capabilities()
    overrides = json.loads(config_file.read_text()) if config_file else {}
    keep, drop = overrides.pop("modules", None), overrides.pop("drop", [])
    specs = _specs(aot, _config(aot, overrides), caps)
    if keep is not None:
        specs = [spec for spec in specs if spec.name in keep]
    specs = [spec for spec in specs if not any(fnmatch.fnmatchcase(spec.name, p) for p in drop)]
    sources = {spec.name: len(spec.sources) for spec in specs}
    kinds = collections.Counter(name.split("_dtype")[0].split("_head")[0] for name in sources)
    data = {"arch_list": os.environ["FLASHINFER_CUDA_ARCH_LIST"], "capabilities": caps, "modules": len(specs),
            "cuda_sources": sum(sources.values()), "by_kind": dict(kinds.most_common()), "sources_per_module": sources,
            "config": str(config_file) if config_file else "upstream default"}
    out.write_text(json.dumps(data, indent=1))
    print(f"AOT set ({data['config']}) for {data['arch_list']}: {len(specs)} modules, {data['cuda_sources']} source files")
    for kind, n in kinds.most_common(12):
        print(f"  {n:4d}  {kind}")


def build(tree: Path, build_dir: Path, config_file: Path) -> None:
    aot, _ = _flashinfer(tree)
    config = _config(aot, json.loads(config_file.read_text()))
    start = time.monotonic()
    aot.compile_and_package_modules(out_dir=build_dir / "jit_cache", build_dir=build_dir, project_root=tree,
                                    config=config, verbose=True, skip_prebuilt=False)
    print(f"AOT-BUILD-SECONDS {time.monotonic() - start:.1f}")


def report(ninja_dir: Path, out: Path) -> None:
    """Per module: summed compile seconds of its objects and its link, and the wall span, from ninja's log."""
    per = collections.defaultdict(lambda: {"cpu_s": 0.0, "steps": 0, "start": None, "end": 0.0})
    for log in ninja_dir.rglob(".ninja_log"):
        for line in log.read_text().splitlines():
            if line.startswith("#"):
                continue
            fields = line.split("\t")
            if len(fields) < 4:
                continue
            begin, end, target = int(fields[0]) / 1000, int(fields[1]) / 1000, fields[3]
            parts = Path(target).parts
            name = parts[parts.index("cached_ops") + 1] if "cached_ops" in parts else Path(target).parent.name
            entry = per[name]
            entry["cpu_s"] += end - begin
            entry["steps"] += 1
            entry["start"] = begin if entry["start"] is None else min(entry["start"], begin)
            entry["end"] = max(entry["end"], end)
    rows = {name: {"compile_s": round(e["cpu_s"], 1), "steps": e["steps"], "wall_s": round(e["end"] - e["start"], 1)}
            for name, e in sorted(per.items(), key=lambda kv: -kv[1]["cpu_s"])}
    total = sum(r["compile_s"] for r in rows.values())
    span = (max(e["end"] for e in per.values()) - min(e["start"] for e in per.values())) if per else 0.0
    out.write_text(json.dumps({"modules": rows, "compile_s_total": round(total, 1), "wall_s": round(span, 1)}, indent=1))
    print(f"{len(rows)} module(s): {total:.0f} s of compile steps, {span:.0f} s wall")
    for name, row in rows.items():
        print(f"  {row['compile_s']:7.1f} s  {row['steps']:3d} steps  {name}")


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    {"count": count, "build": build, "report": report}[mode](*map(Path, args))
