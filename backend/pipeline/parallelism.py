"""How many compile jobs a component gets: never more than memory allows."""

from __future__ import annotations

import dataclasses

from ..recipes import Recipe
from ..settings import Settings

GIB = 1 << 30


@dataclasses.dataclass(frozen=True)
class JobChoice:
    processes: int  # compile processes running at once
    nvcc_threads: int  # threads inside each nvcc
    max_jobs_env: int  # what MAX_JOBS must say so the build runs `processes` at once
    reason: str

    def to_json(self) -> dict:
        return {"processes": self.processes, "nvcc_threads": self.nvcc_threads, "MAX_JOBS": self.max_jobs_env, "reason": self.reason}


def memory_per_job_gb(recipe: Recipe, nvcc_threads: int) -> float:
    """Peak memory of one compile job: each further nvcc thread adds a quarter of a single job's."""
    return recipe.mem_per_job_gb * (1 + 0.25 * (nvcc_threads - 1))


def memory_need_bytes(recipe: Recipe, jobs: JobChoice) -> float:
    """What a build running ``jobs`` plans to use at its peak (the scheduler adds these up)."""
    return jobs.processes * memory_per_job_gb(recipe, jobs.nvcc_threads) * GIB


def choose_jobs(recipe: Recipe, settings: Settings, *, cores: int, memory_bytes: int) -> JobChoice:
    """jobs = min(cores / threads, memory / memory-per-job), unless -C jobs says otherwise.

    A build that divides MAX_JOBS by NVCC_THREADS (vLLM's) gets processes x
    threads there; one that always runs nvcc with N threads (xformers: 4)
    weighs on cores and memory alike.  Both are recipe fields.
    """
    threads = recipe.fixed_nvcc_threads or settings.nvcc_threads or 1
    per_job = memory_per_job_gb(recipe, threads)
    by_cores = max(1, cores // threads)
    by_memory = max(1, int(memory_bytes / GIB // per_job))
    if settings.jobs:
        processes = settings.jobs
        reason = f"{processes} from -C jobs"
        if processes > by_memory:
            reason += f" (warning: memory allows only {by_memory} at {per_job:.1f} GiB each)"
    else:
        processes = min(by_cores, by_memory)
        limit = "cores" if by_cores <= by_memory else "memory"
        reason = (
            f"{processes} = min({cores} cores / {threads} nvcc threads = {by_cores}, "
            f"{memory_bytes / GIB:.1f} GiB free / {per_job:.1f} GiB per job = {by_memory}); limited by {limit}"
        )
    divides = recipe.divides_max_jobs_by_nvcc_threads
    max_jobs = processes * threads if divides else processes
    if divides and threads > 1:
        reason += f"; MAX_JOBS={max_jobs} because {recipe.name} divides it by NVCC_THREADS={threads}"
    return JobChoice(processes=processes, nvcc_threads=threads, max_jobs_env=max_jobs, reason=reason)
