"""docs/ARCHITECTURE.md keeps one line per module of backend/, and its walk of `sm` names real code."""

from __future__ import annotations

import re
from pathlib import Path

from backend import settings, variants
from backend.pipeline import executor, plan, scheduler
from backend.variants import select

ROOT = Path(__file__).resolve().parent.parent
ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"


def _listed() -> list[str]:
    return re.findall(r"^\| `(backend/[^`]+\.py)` \|", ARCHITECTURE.read_text(), re.M)


def test_every_module_has_exactly_one_line():
    modules = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "backend").rglob("*.py"))
    listed = _listed()
    assert sorted(set(listed)) == sorted(listed), "a module listed twice"
    assert sorted(listed) == modules, (
        f"not in docs/ARCHITECTURE.md: {sorted(set(modules) - set(listed))}; "
        f"listed but gone: {sorted(set(listed) - set(modules))}"
    )


def test_the_sm_walk_matches_the_code():
    """The spellings and values the walk-through quotes are what the code does."""
    text = ARCHITECTURE.read_text()
    for spelling in ("9.0", "sm90", "sm_90"):
        assert settings.normalize_sm(spelling) == "90"
    chosen = settings.resolve({"sm": "9.0", "isa": "avx2", "cuda": "13.0"}, {}, base_dir=ROOT)
    variant = select(chosen, host=_any_host())
    assert variant.target.capability == "9.0" and variant.label == "cu130.sm90.avx2"
    assert "`TORCH_CUDA_ARCH_LIST=9.0`" in text
    named = {"run_steps": scheduler, "StepExecutor": executor, "common_env": plan, "normalize_sm": settings}
    for name, module in named.items():
        assert f"{name}" in text, name
        assert hasattr(module, name), f"{module.__name__}.{name} is gone: docs/ARCHITECTURE.md still names it"
    assert plan.common_env(variant, _one_job())["TORCH_CUDA_ARCH_LIST"] == "9.0"
    # "How `sm` travels" quotes the target's spellings by name: each is what Variant.target gives
    for spelling in ("capability", "arch_specific", "cmake", "cmake_real", "cubin", "ptx", "sm_arch"):
        assert f"`{spelling}` `{getattr(variant.target, spelling)}`" in text, spelling
    assert "variants.CONFLICTS" in text and variants.CONFLICTS


def _any_host():
    from backend import cpu_isa, host

    return host.Host(machine="x86_64", cpu_features=frozenset(cpu_isa.get("avx2").host_features))


def _one_job():
    from backend.pipeline.parallelism import JobChoice

    return JobChoice(processes=1, nvcc_threads=1, max_jobs_env=1, reason="test")
