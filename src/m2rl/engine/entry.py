"""The training entry every rank runs under `accelerate launch` (see engine/launch.py).

torchrun starts each rank in a session of its own, so a signal to the launcher's process group never
reaches it: a rank asks the kernel for SIGKILL when its launcher dies instead, and a launcher killed
outright (SIGKILL, OOM killer) leaves no rank holding the devices or writing into the run.
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    """Rebuild the job from the run directory's job.json and train on this rank."""
    from m2rl.engine.launch import parent_death_signal

    parent_death_signal(signal.SIGKILL)()
    parser = argparse.ArgumentParser(prog="m2rl.engine.entry")
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--resume-from", default=None)
    args = parser.parse_args(argv)

    from m2rl import jobs
    from m2rl.console import quiet_libraries
    from m2rl.jobs.training import train_on_this_rank
    from m2rl.ledger import Run

    quiet_libraries()
    run = Run.load(args.run_dir)
    run.writes_manifest = os.environ.get("RANK", "0") == "0"  # rank 0 alone writes run.json
    spec = jobs.read_spec(run)
    train_on_this_rank(spec, run, jobs.module(spec.kind).train, args.resume_from)


if __name__ == "__main__":
    main()
