"""The training entry every rank runs under `accelerate launch` (see engine/launch.py).

torchrun starts each rank in a session of its own, so a signal to the launcher's process group never
reaches it: a rank asks the kernel for SIGKILL when its launcher dies instead, and a launcher killed
outright (SIGKILL, OOM killer) leaves no rank holding the devices or writing into the run.

A rank that trained to the end tears its process group down itself (`close_process_group`) and then
leaves without finalizing the interpreter (`exit_rank`).
"""

from __future__ import annotations

import argparse
import atexit
import os
import signal
import sys
from pathlib import Path
from typing import NoReturn


def main(argv: list[str] | None = None) -> None:
    """Rebuild the job from the run directory's job.json and train on this rank."""
    # lazy, here and below: the rank asks for the parent-death signal before it imports the job's modules
    from m2rl.engine.launch import parent_death_signal

    parent_death_signal(signal.SIGKILL)()
    parser = argparse.ArgumentParser(prog="m2rl.jobs.entry")
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--resume-from", default=None)
    args = parser.parse_args(argv)

    # lazy: imported once the parent-death signal is set (see above)
    from m2rl import jobs
    from m2rl.console import quiet_libraries
    from m2rl.jobs.training import train_on_this_rank
    from m2rl.ledger import Run

    quiet_libraries()
    run = Run.load(args.run_dir)
    run.writes_manifest = os.environ.get("RANK", "0") == "0"  # rank 0 alone writes run.json
    spec = jobs.read_spec(run)
    train_on_this_rank(spec, run, jobs.module(spec.kind).train, args.resume_from)
    close_process_group()


def close_process_group() -> None:
    """Wait for every rank, then destroy the process group while the interpreter is still whole.

    Left to interpreter exit, gloo's worker threads may still hold finished work whose tensors refer
    to Python objects, and destroying them during finalization can abort the rank ("terminate called
    without an active exception", SIGABRT); `exit_rank` then leaves without finalization at all. The
    barrier keeps a rank from tearing down while another still saves (rank 0 writes the model and
    metrics).
    """
    # lazy: torch, only once the rank has trained (main sets the parent-death signal before anything heavy)
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def exit_rank() -> NoReturn:
    """Leave a rank whose work is done without finalizing the interpreter.

    Under DeepSpeed on CPU a rank can abort after `close_process_group`, within a second of its last
    step ("terminate called without an active exception": a C++ thread object destroyed while
    joinable, which happens while the interpreter tears down its objects; about 1 in 10 ZeRO-3
    launches here), and a run that trained to the end would be marked failed. By then the rank's work
    is on disk (rank 0 wrote the model and the manifest before the final barrier), so its exit status
    must not depend on finalization. What a normal exit does before finalization still happens: the
    non-daemon threads are joined (with their executors' callbacks), the exit handlers run (logging's
    shutdown, loggers such as wandb finish there) and the streams are flushed.
    """
    if "threading" in sys.modules:
        sys.modules["threading"]._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
    exit_rank()
