"""The training entry every rank runs under `accelerate launch` (see engine/launch.py)."""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    """Rebuild the job from the run directory's job.json and train on this rank."""
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
    spec = jobs.read_spec(run)
    train_on_this_rank(spec, run, jobs.module(spec.kind).train, args.resume_from)


if __name__ == "__main__":
    main()
