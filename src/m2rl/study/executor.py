"""Runs the study graph: ready stages start as separate jobs, up to what the machine or cluster allows.

A stage is ready when its dependencies completed. Before starting one, the executor builds its job
spec from the finished runs and looks in the ledger: a completed run of the same name and identity is
reused; a failed or queued one of the same identity is resumed (from its last complete checkpoint);
one that another command's attempt is running is followed until it ends (then reused, or resumed
here if it failed); otherwise a new run is created (`queued`) and submitted. A failed stage stops its
dependents, never its siblings. Ctrl-C or SIGTERM cancels every running stage, waits for them to
close their runs as failed, and raises `Interrupted`.

Two commands on one runs root serialise on a stage rather than both doing it: the executor takes a
lock per stage name and identity (`<runs>/.locks/`) before it looks in the ledger, and holds it until
the stage's attempt holds its run's own lock (eval stages, which have none: until the stage ends).
A command that finds the stage lock taken tries again at its next poll.

Sharing a machine (local executor): on CPU, every stage gets `threads` torch threads so that all
stages together never use more than the cores this process may use (a stage that runs alone gets
them all); two single-thread stages use two cores better than one two-thread stage (the tiny
model's matmuls are too small to split), and threads never spin against each other. When other
processes already keep cores busy when the study starts (CPU use over half a second, not the lagging
load average), the executor starts fewer stages. On a GPU node each stage gets
its own `devices_per_job` GPUs (a CUDA_VISIBLE_DEVICES slice).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from m2rl import jobs
from m2rl.errors import Interrupted, UserError
from m2rl.evaluate.runner import eval_plan
from m2rl.jobs.eval import eval_settings
from m2rl.ledger import LOCK, Ledger, Run, lock_held, try_lock, unlock
from m2rl.machine import free_cores, usable_cores
from m2rl.signals import raise_lost_signal, sigterm_raises
from m2rl.specs import JobSpec, StudySettings
from m2rl.study.backends import Backend, Handle, LocalBackend, Resources, SlurmBackend
from m2rl.study.plan import Stage, priorities

POLL_S = 0.5
CANCEL_GRACE_S = 20.0
LOCKS_DIR = ".locks"


@dataclass(frozen=True)
class MachineShare:
    """How stages share this machine (local executor) or what each gets (Slurm)."""

    slots: int  # stages at once
    threads: int  # total torch threads across stages (CPU)
    devices: tuple[int, ...] = ()  # GPUs to hand out
    per_stage_threads: int | None = None  # Slurm: each job has its own CPUs

    def threads_for(self, running_after: int) -> int:
        """Threads for a stage that will run beside `running_after - 1` others."""
        if self.per_stage_threads is not None:
            return self.per_stage_threads
        return max(1, self.threads // max(1, min(running_after, self.slots)))


def machine_share(
    settings: StudySettings, cores: int | None = None, load: float | None = None
) -> MachineShare:
    """Slots and threads from the settings, the cores, GPUs and current load (local), or Slurm's."""
    if settings.executor == "slurm":
        slots = 10_000 if settings.max_parallel == "auto" else int(settings.max_parallel)
        cpus = settings.slurm.cpus_per_job
        return MachineShare(slots=slots, threads=cpus, per_stage_threads=cpus)
    cores = usable_cores() if cores is None else cores
    devices: tuple[int, ...] = ()
    try:
        # lazy: torch (optional), only where a local study counts its GPUs
        import torch

        if torch.cuda.is_available():
            devices = tuple(range(torch.cuda.device_count()))
    except ImportError:
        pass
    # Cores other processes keep busy are not ours to fill (threads spinning on shared cores stall).
    free = free_cores(cores, load)
    threads = free if settings.cpu_threads == "auto" else int(settings.cpu_threads)
    if devices:
        auto_slots = max(1, len(devices) // settings.devices_per_job)
    else:
        auto_slots = max(1, threads)
    slots = auto_slots if settings.max_parallel == "auto" else int(settings.max_parallel)
    return MachineShare(slots=max(1, slots), threads=max(1, threads), devices=devices)


@dataclass
class StageState:
    """A stage's progress through the executor."""

    stage: Stage
    status: str = "pending"  # pending | running | completed | reused | failed | skipped
    run: Run | None = None
    handle: Handle | None = None
    started: float = 0.0
    seconds: float = 0.0
    error: str = ""
    devices: tuple[int, ...] = ()
    lock: Path | None = None  # the stage lock, while this executor holds it


@dataclass
class RunElsewhere:
    """A stage's run that another command's attempt is running, followed until its lock is free."""

    path: Path

    def finished(self) -> bool:
        return not lock_held(self.path / LOCK)

    def error(self) -> str | None:
        return None  # the run's own status says how it ended

    def cancel(self) -> None:
        """Not this command's to stop."""


@dataclass
class Executor:
    """Runs stages of a study against a ledger with a backend."""

    stages: list[Stage]
    ledger: Ledger
    backend: Backend
    share: MachineShare
    config: dict | None = None
    on_event: Callable[[StageState], None] = lambda state: None
    on_tick: Callable[[], None] = lambda: None
    poll_s: float = POLL_S
    states: dict[str, StageState] = field(init=False)
    priority: dict[str, float] = field(init=False)

    def __post_init__(self) -> None:
        self.states = {stage.name: StageState(stage) for stage in self.stages}
        self.priority = priorities(self.stages)
        self.free_devices = list(self.share.devices)

    # -- queries ---------------------------------------------------------------------------
    def finished_runs(self) -> dict[str, Run]:
        return {n: s.run for n, s in self.states.items() if s.status in ("completed", "reused") and s.run}

    def running(self) -> list[StageState]:
        return [s for s in self.states.values() if s.status == "running"]

    def ready(self) -> list[StageState]:
        """Pending stages whose dependencies all finished, the longest chain of work first (priorities)."""
        done = self.finished_runs()
        ready = [
            s for s in self.states.values() if s.status == "pending" and all(d in done for d in s.stage.deps)
        ]
        return sorted(ready, key=lambda s: -self.priority[s.stage.name])

    def skip_dependents(self) -> None:
        """Pending stages that depend on a failed or skipped stage will not run."""
        changed = True
        while changed:
            changed = False
            for state in self.states.values():
                if state.status != "pending":
                    continue
                blocked = [d for d in state.stage.deps if self.states[d].status in ("failed", "skipped")]
                if blocked:
                    state.status, state.error = "skipped", f"not run: {blocked[0]} failed"
                    self.on_event(state)
                    changed = True

    # -- starting a stage ------------------------------------------------------------------
    def _previous_attempt(self, spec: JobSpec) -> Run | None:
        """An unfinished run of this stage (same name and identity): to resume, or to follow while it runs."""
        for run in reversed(self.ledger.runs()):
            if (
                run.name == spec.name
                and run.kind == spec.kind
                and run.status in ("failed", "queued", "running")
                and run.manifest.get("config_hash") == spec.identity()
            ):
                return run
        return None

    def _start(self, state: StageState, threads: int) -> None:
        """Start a stage under its stage lock (left pending while another command holds that lock)."""
        stage = state.stage
        spec = jobs.resolve(stage.build(self.finished_runs()), self.ledger)
        spec = spec.model_copy(update={"torch_threads": spec.torch_threads or threads})
        lock = self.ledger.root / LOCKS_DIR / f"{stage.name}.{spec.identity()}.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        if not try_lock(lock):
            return
        state.lock = lock
        try:
            self._start_locked(state, spec, threads)
        finally:
            self._hand_over(state)

    def _start_locked(self, state: StageState, spec: JobSpec, threads: int) -> None:
        stage = state.stage
        if stage.kind == "eval":
            run = jobs.create(spec, self.ledger)
            if _eval_saved(run, spec):
                state.status, state.run = "reused", run
                self.on_event(state)
                return
            resume, logs = False, run.path / "logs" / "eval"
        else:
            reused = jobs.find_reusable(spec, self.ledger)
            if reused is not None:
                state.status, state.run = "reused", reused
                self.on_event(state)
                return
            run = self._previous_attempt(spec)
            if run is not None and run.status == "running":
                state.run, state.status, state.handle = run, "running", RunElsewhere(run.path)
                state.started = time.monotonic()
                self.on_event(state)
                return
            resume = run is not None
            if run is None:
                run = jobs.create(spec, self.ledger, config=self.config, queued=True)
            logs = run.path / "logs"
        devices = tuple(self.free_devices[: self._devices_per_stage()])
        del self.free_devices[: len(devices)]
        state.devices, state.run, state.status = devices, run, "running"
        state.started = time.monotonic()
        state.handle = self.backend.submit(
            spec.to_json(), run.path, resume, Resources(threads, devices), logs
        )
        self.on_event(state)

    def _devices_per_stage(self) -> int:
        if not self.share.devices:
            return 0
        return max(1, len(self.share.devices) // max(1, self.share.slots))

    def _hand_over(self, state: StageState, ended: bool = False) -> None:
        """Give up the stage lock once the stage did not start, ended, or its run is owned by an attempt."""
        if state.lock is None:
            return
        owned = (
            state.run is not None
            and state.stage.kind != "eval"
            and (isinstance(state.handle, RunElsewhere) or lock_held(state.run.path / LOCK))
        )
        if ended or state.status != "running" or owned:
            unlock(state.lock)
            state.lock = None

    def _finish(self, state: StageState) -> None:
        assert state.handle is not None and state.run is not None
        self._hand_over(state, ended=True)
        error = state.handle.error()
        state.seconds = time.monotonic() - state.started
        self.free_devices.extend(state.devices)
        run = Run.load(state.run.path)
        if isinstance(state.handle, RunElsewhere) and run.status != "completed":
            state.status, state.run, state.handle = "pending", None, None  # its owner failed: go on here
            self.on_event(state)
            return
        state.run = run
        if error is None and (state.stage.kind == "eval" or run.status == "completed"):
            state.status = "completed"
        else:
            state.status = "failed"
            state.error = run.manifest.get("error") or error or f"run {run.id} ended {run.status}"
            where = getattr(state.handle, "where", None)  # a Slurm job: its id, state and log
            if where is not None:
                state.error = f"{state.error} ({where()})"
        self.on_event(state)

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> dict[str, StageState]:
        """Run every stage; return their final states (failed ones included)."""
        with sigterm_raises(lambda signum: Interrupted(signum, [])):  # as Ctrl-C raises KeyboardInterrupt
            try:
                while True:
                    for state in self.running():
                        if state.handle is not None and state.handle.finished():
                            self._finish(state)
                        else:
                            self._hand_over(state)
                    self.skip_dependents()
                    self._launch_ready()
                    if not self.running() and not self.ready():
                        break
                    self.on_tick()
                    time.sleep(self.poll_s)
                    raise_lost_signal()
            except (KeyboardInterrupt, Interrupted) as exc:
                stopped = [s.stage.name for s in self.running()]
                self.cancel()
                raise Interrupted(getattr(exc, "signum", signal.SIGINT), stopped) from None
            except BaseException:
                self.cancel()
                raise
        return self.states

    def _launch_ready(self) -> None:
        ready = self.ready()
        while ready and len(self.running()) < self.share.slots:
            state = ready.pop(0)
            running_after = len(self.running()) + 1 + len(ready)
            try:
                self._start(state, self.share.threads_for(running_after))
            except UserError as exc:
                state.status, state.error = "failed", str(exc)
                self.on_event(state)
            if state.status == "reused":
                ready = self.ready()

    def cancel(self) -> None:
        """Stop every running stage and close its run as failed (runs other commands run go on)."""
        running = self.running()
        own = [s for s in running if not isinstance(s.handle, RunElsewhere)]
        for state in own:
            assert state.handle is not None
            state.handle.cancel()
        deadline = time.monotonic() + CANCEL_GRACE_S
        while time.monotonic() < deadline and any(not s.handle.finished() for s in own if s.handle):
            time.sleep(0.2)
        for state in running:
            state.status, state.error = "failed", "interrupted"
            self._hand_over(state, ended=True)
            followed = isinstance(state.handle, RunElsewhere)
            if state.run is not None and state.stage.kind != "eval" and not followed:
                run = Run.load(state.run.path)
                if run.status in ("running", "queued"):
                    run.update(status="failed", error="interrupted (the study was stopped)")


def _eval_saved(run: Run, spec: JobSpec) -> bool:
    """Whether every benchmark of this eval already has saved results of the same config."""
    return all(saved is not None for _, _, saved in eval_plan(run, eval_settings(spec)))


def make_backend(settings: StudySettings) -> Backend:
    """The backend `study.executor` names."""
    return SlurmBackend(settings.slurm) if settings.executor == "slurm" else LocalBackend()
