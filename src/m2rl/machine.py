"""This machine's cores as work started now may use them: how many, how many other processes keep busy,
and the torch thread plan that follows.

Threads spinning on cores another process keeps busy stall each other (a tiny SFT took 17 min 48 s
beside one busy process with two threads on two cores, 2 min 50 s idle), so work that does not set its
threads gets only the cores that are free when it starts. On CPU the thread count changes time, not
results: the tiny SFT's weights after 30 steps are bit-identical with one thread and with two.
"""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def busy_cores(seconds: float = 0.5) -> float:
    """Cores other processes keep busy right now (CPU use over a short window, this process idle)."""
    # lazy: psutil (~20 ms), only where busy cores are measured; the CLI imports this module
    import psutil

    return psutil.cpu_percent(interval=seconds) / 100 * (psutil.cpu_count() or 1)


def free_cores(cores: int | None = None, load: float | None = None) -> int:
    """The cores no other process keeps busy (at least one)."""
    cores = usable_cores() if cores is None else cores
    load = busy_cores() if load is None else load
    return max(1, cores - int(load + 0.5))


def thread_plan(processes: int = 1) -> tuple[int, str]:
    """Torch threads for each of `processes` CPU processes started now, and the plan in words."""
    cores, load = usable_cores(), busy_cores()
    threads = max(1, free_cores(cores, load) // max(1, processes))
    each = " per process" if processes > 1 else ""
    return (
        threads,
        f"{threads} torch thread{'s' if threads > 1 else ''}{each} ({load:.1f} of {cores} cores busy)",
    )
