"""A tiny SFT idle and beside one busy process, side by side: what another process's load costs.

    .venv/bin/python benchmarks/contention.py [--steps 40] [--rounds 3]

Each round runs four SFTs of `--steps` steps in turn: with every core's thread (`torch_threads` =
the usable cores, what torch takes when nothing sets its threads) and with the thread plan m2rl
makes from the cores free at start, each idle and beside one busy process (a pure-Python loop that
keeps one core busy). It prints the median wall time of each over the rounds and the ratio
busy / idle; the target is at most 1.5x. The rounds interleave the four, so a drift of the machine's
speed reaches all of them alike. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from m2rl.machine import usable_cores

M2RL = str(Path(sys.executable).with_name("m2rl"))
BUSY_LOOP = "while True:\n    pass\n"


def sft_seconds(steps: int, threads: str | None, runs: Path) -> float:
    """Wall seconds of one `m2rl sft` of `steps` steps (threads: an explicit count, or m2rl's plan)."""
    command = [M2RL, "sft", f"sft.max_steps={steps}", "sft.save_steps=0", "--runs-dir", str(runs)]
    if threads is not None:
        command.append(f"torch_threads={threads}")
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="SFT steps per run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the four runs; medians are shown")
    args = parser.parse_args()
    cores = usable_cores()
    plans = {f"every core's thread (torch_threads={cores})": str(cores), "m2rl's thread plan": None}
    times: dict[tuple[str, str], list[float]] = {(p, load): [] for p in plans for load in ("idle", "busy")}
    console = Console(width=120)
    with tempfile.TemporaryDirectory(prefix="m2rl-contention-") as folder:
        for round_number in range(args.rounds):
            for plan, threads in plans.items():
                for load in ("idle", "busy"):
                    busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) if load == "busy" else None
                    try:
                        if busy is not None:
                            time.sleep(1.0)  # let it take its core before the plan is made
                        seconds = sft_seconds(args.steps, threads, Path(folder) / "runs")
                    finally:
                        if busy is not None:
                            busy.kill()
                            busy.wait()
                    times[plan, load].append(seconds)
                    console.print(f"round {round_number + 1}: {plan}, {load}: {seconds:.1f} s", style="dim")
    table = Table(title=f"tiny SFT, {args.steps} steps: idle and beside one busy process ({cores} cores)")
    for column in ("threads", "idle s (median)", "busy s (median)", "busy / idle"):
        table.add_column(column, justify="left" if column == "threads" else "right")
    for plan in plans:
        idle, busy = statistics.median(times[plan, "idle"]), statistics.median(times[plan, "busy"])
        table.add_row(plan, f"{idle:.1f}", f"{busy:.1f}", f"{busy / idle:.2f}x")
    console.print(table)
    console.print(f"{args.rounds} rounds; each figure the median of its runs; target: busy / idle <= 1.5x")


if __name__ == "__main__":
    main()
