"""`attempt`: one attempt of a run, owning it (its lock) throughout; `completed` on success, `failed` on
any exception or signal, with the attempt's wall time, device-hours and CPU time added to the run's."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator

from m2rl.errors import Interrupted
from m2rl.ledger.costs import process_tree_cpu_seconds
from m2rl.ledger.locks import unlock
from m2rl.ledger.manifest import LOCK, now
from m2rl.ledger.owner import owner
from m2rl.ledger.run import Run
from m2rl.signals import Terminated, signal_behind, sigterm_raises


@contextlib.contextmanager
def attempt(run: Run) -> Iterator[Run]:
    """Run one attempt of `run`, owning it (its lock) throughout: on success `completed`, on any
    exception or signal `failed`. Wall time and device-hours of every attempt (a resumed run has
    several) are summed."""
    run.claim()
    try:
        entry = {"started": now(), "wall_seconds": 0.0, "device_hours": 0.0, "status": "running"}
        if os.environ.get("SLURM_JOB_ID"):  # the Slurm job this attempt runs in
            entry["slurm_job"] = os.environ["SLURM_JOB_ID"]
        run.manifest.setdefault("attempts", []).append(entry)
        run._attempt_started = time.perf_counter()
        run._cpu_started = process_tree_cpu_seconds()
        run.update(status="running", **owner(), error=None, finished=None)
        status, error = "failed", None
        try:
            with sigterm_raises(lambda signum: Terminated(f"terminated by signal {signum}")):
                yield run
            status = "completed"
        except BaseException as exc:
            signum = signal_behind(exc)
            if signum is None:
                error = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
                raise
            error = f"interrupted ({'Ctrl-C' if signum == signal.SIGINT else 'SIGTERM'})"
            resume, why = run.resume_advice()
            raise Interrupted(signum, [run.id], resume, why) from None
        finally:
            run._account(time.perf_counter() - run._attempt_started)
            run._attempt_started = None
            run.manifest["attempts"][-1]["status"] = status
            run.update(status=status, error=error, finished=now())
    finally:
        unlock(run.path / LOCK)
