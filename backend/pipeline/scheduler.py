"""The build order of a plan: each step after the steps it depends on, independent ones side by side.

Each step's job count already assumes it has the machine to itself, so a
step starts beside others only if the memory all of them plan to use
(``parallelism.memory_need_bytes``) fits in what is free.  What a step does
is the step executor's business (``executor.py``); this module only decides
when it starts and records how it ended.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

from .. import host as host_info
from ..errors import BackendError
from .parallelism import memory_need_bytes
from .plan import Plan, Step
from .runner import CommandFailed, allow_builds, say, stop_all


def step_label(index: int, total: int, step: Step) -> str:
    return f"[{index + 1}/{total} {step.component}]"


def _memory_need(step: Step) -> float:
    return memory_need_bytes(step.recipe, step.jobs)


def run_steps(
    plan: Plan,
    results: list,
    execute: Callable[[Step, str], tuple[list[Path], str]],
    *,
    cache_stats: Mapping[str, object],
    on_built: Callable[[Step, list[Path]], None],
) -> list[tuple[str, Exception]]:
    """Run ``execute(step, label)`` for every step of the plan, filling ``results`` (one per step).

    ``on_built`` runs in this thread for a finished step whose component a
    later step depends on (the engine installs its wheels into the build
    environment).  Returns every failure as (component, error), in the order
    they happened; after the first failure no further step starts.
    """
    steps = list(plan.steps)
    total = len(steps)
    needed_later = {d for s in steps for d in s.depends}
    finished: set[str] = set()
    pending = list(range(total))
    running: dict = {}  # future -> (index, start time)
    budget = host_info.available_memory_bytes()
    failure = None
    failures: list[tuple[str, Exception]] = []
    allow_builds()

    with ThreadPoolExecutor(max_workers=max(1, total)) as pool:
        try:
            while pending or running:
                for index in list(pending):
                    if failure is not None:
                        break
                    step = steps[index]
                    if not all(d in finished for d in step.depends):
                        continue
                    in_use = sum(_memory_need(steps[i]) for i, _ in running.values())
                    if running and in_use + _memory_need(step) > budget:
                        continue
                    pending.remove(index)
                    future = pool.submit(execute, step, step_label(index, total, step))
                    running[future] = (index, time.monotonic())
                if not running:
                    break
                # A timeout, so that Ctrl-C is seen at once even when the kernel hands
                # the signal to a worker thread (Python runs handlers in the main thread only).
                done, _ = wait(list(running), timeout=0.2, return_when=FIRST_COMPLETED)
                for future in done:
                    index, started = running.pop(future)
                    outcome, step = results[index], steps[index]
                    outcome.seconds = time.monotonic() - started
                    outcome.cache = getattr(cache_stats.get(step.component), "stats", None)
                    try:
                        outcome.wheels, outcome.status = future.result()
                    except (CommandFailed, BackendError) as error:
                        outcome.status = "failed"
                        failure = failure or error
                        failures.append((step.component, error))
                        continue
                    say(f"{step_label(index, total, step)} {outcome.status} in {outcome.seconds / 60:.1f} min: "
                        f"{', '.join(w.name for w in outcome.wheels)}")
                    if step.component in needed_later:
                        on_built(step, outcome.wheels)
                    finished.add(step.component)
        except BaseException:
            stop_all()  # Ctrl-C: the builds run in their own sessions
            raise
    return failures
