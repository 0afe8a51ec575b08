"""The study executor's two speed levers, each against its alternative, side by side in one run.

    .venv/bin/python benchmarks/study.py --runs-dir RUNS --sft SFT_RUN [--steps 8] [--rounds 2]

1. Stages at once: two GRPO experts (science, IF; `--steps` steps each, tiny preset) from the same SFT
   run, one after the other with two torch threads each, against both at once with one thread each.
2. Stage start-up: a stage that only imports the training stack and returns, started as a fresh
   interpreter (what submitit's local executor does) against forked from m2rl's preloaded forkserver.

Rounds alternate which variant goes first because the machine may be shared; the table gives each
variant's median wall seconds and the ratio of medians. Every expert is a real run in a scratch
ledger beside RUNS (deleted afterwards). Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def experts(runs_dir: Path, sft: str, steps: int, parallel: bool) -> float:
    """Wall seconds for two experts through the executor: in turn with 2 threads, or at once with 1."""
    from m2rl.config import compose_config
    from m2rl.jobs.build import rl_job
    from m2rl.ledger import Ledger
    from m2rl.study.backends import LocalBackend
    from m2rl.study.executor import Executor, MachineShare
    from m2rl.study.plan import Stage

    scratch = Path(tempfile.mkdtemp(prefix="bench-study-", dir=runs_dir))
    source = Ledger(runs_dir).get(sft)
    shutil.copytree(source.path, scratch / source.path.name)
    cfg = compose_config([f"rl.steps={steps}", "rl.save_steps=0"])
    stages = [
        Stage(
            f"e-{d}",
            "rl",
            0,
            (),
            lambda runs, d=d: rl_job(cfg, f"e-{d}", [d], source.id),
            domains=(d,),
            steps=steps,
        )
        for d in ("science", "if")
    ]
    share = MachineShare(slots=2, threads=2) if parallel else MachineShare(slots=1, threads=2)
    start = time.perf_counter()
    states = Executor(stages, Ledger(scratch), LocalBackend(), share, poll_s=0.2).run()
    seconds = time.perf_counter() - start
    shutil.rmtree(scratch)
    failed = [s.error for s in states.values() if s.status != "completed"]
    if failed:
        raise SystemExit(f"an expert failed: {failed[0]}")
    return seconds


IMPORT_STACK = "import torch, transformers, trl, datasets, m2rl.jobs.rl, m2rl.jobs.sft, m2rl.engine.grpo"


def _stage() -> None:
    """A stage that does nothing: what is timed is getting it started and finished."""


def start_fresh(count: int) -> float:
    """Wall seconds to run `count` empty stages, each a fresh interpreter importing the stack."""
    start = time.perf_counter()
    for _ in range(count):
        subprocess.run([sys.executable, "-c", IMPORT_STACK], check=True)
    return time.perf_counter() - start


def start_forked(count: int) -> float:
    """Wall seconds to run `count` empty stages forked from a forkserver that preloaded the stack."""
    import multiprocessing

    from m2rl.study.backends import PRELOAD

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    warm = context.Process(target=_stage)  # the server's own start-up is paid once per study
    warm.start()
    warm.join()
    start = time.perf_counter()
    for _ in range(count):
        process = context.Process(target=_stage)
        process.start()
        process.join()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", required=True, type=Path)
    parser.add_argument("--sft", required=True, help="a completed SFT run (id or name) in --runs-dir")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--stages", type=int, default=4, help="empty stages per start-up measurement")
    args = parser.parse_args()

    rows: dict[str, list[float]] = {k: [] for k in ("in turn, 2 threads", "at once, 1 thread each")}
    starts: dict[str, list[float]] = {k: [] for k in ("fresh interpreter", "forked, stack preloaded")}
    for round_index in range(args.rounds):
        order = [False, True] if round_index % 2 == 0 else [True, False]
        for parallel in order:
            rows[list(rows)[parallel]].append(experts(args.runs_dir, args.sft, args.steps, parallel))
        for fresh in order:
            if fresh:
                starts["fresh interpreter"].append(start_fresh(args.stages) / args.stages)
            else:
                starts["forked, stack preloaded"].append(start_forked(args.stages) / args.stages)
    print(f"load at the end {os.getloadavg()[0]:.2f}, {args.rounds} rounds, medians")
    for title, table, unit in (
        (f"two {args.steps}-step experts", rows, "s wall"),
        ("one stage's start-up", starts, "s wall per stage"),
    ):
        base = statistics.median(next(iter(table.values())))
        print(f"\n{title}")
        for name, values in table.items():
            median = statistics.median(values)
            print(f"  {name:<26}{median:>8.2f} {unit}   ratio {base / median:>5.2f}x")


if __name__ == "__main__":
    main()
