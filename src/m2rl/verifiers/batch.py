"""Batch scoring in a persistent pool of worker processes with a hard deadline per item.

Hand-written rather than concurrent.futures/multiprocessing.Pool because those cannot stop one
running task: a sympy call stuck in C code, or a worker killed by the OS, must cost that item its
reward (0), not hang the batch or break the pool. Here each worker is a fresh interpreter
(`python -m m2rl.verifiers.worker`, never a fork of a torch process); an item past its deadline
gets its worker killed and replaced. The pool stays alive between calls (GRPO scores every step).
"""

from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from m2rl.verifiers.config import VerifierConfig
from m2rl.verifiers.forkserver import recv_frame, send_frame
from m2rl.verifiers.registry import check_sample, reward_type, score
from m2rl.verifiers.verdict import Verdict, verdict

START_TIMEOUT_S = 120.0


@dataclass
class _Job:
    index: int
    deadline: float
    budget_s: float


class _Worker:
    """One worker process and the job it is running, if any."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "m2rl.verifiers.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self.out_fd = self.proc.stdout.fileno()
        self.in_fd = self.proc.stdin.fileno()
        self.ready = False
        self.started = time.monotonic()
        self.job: _Job | None = None

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


class VerifierPool:
    """A fixed number of scoring workers, started lazily and kept until `close()`."""

    def __init__(self, workers: int) -> None:
        self.size = max(1, workers)
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()

    def _ensure(self) -> None:
        self._workers = [w for w in self._workers if w.proc.poll() is None]
        while len(self._workers) < self.size:
            self._workers.append(_Worker())

    def _replace(self, worker: _Worker) -> None:
        worker.kill()
        self._workers[self._workers.index(worker)] = _Worker()

    def score(
        self, samples: list[dict[str, Any]], responses: list[str], config: VerifierConfig
    ) -> tuple[list[Verdict], list[float]]:
        """Verdicts and per-item scoring seconds, in input order."""
        results: list[Verdict | None] = [None] * len(samples)
        seconds = [0.0] * len(samples)
        budgets = [reward_type(s).budget_s(s, config) for s in samples]
        pending = deque(range(len(samples)))
        with self._lock:
            self._ensure()
            while pending or any(w.job for w in self._workers):
                now = time.monotonic()
                for worker in self._workers:
                    if worker.ready and worker.job is None and pending:
                        index = pending.popleft()
                        try:
                            send_frame(worker.in_fd, (index, samples[index], responses[index], config))
                            worker.job = _Job(index, now + budgets[index], budgets[index])
                        except OSError:
                            pending.appendleft(index)
                            self._replace(worker)
                waiting = [w for w in self._workers if w.job or not w.ready]
                deadlines = [w.job.deadline if w.job else w.started + START_TIMEOUT_S for w in waiting]
                timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else 0.0
                readable = select.select([w.out_fd for w in waiting], [], [], timeout)[0]
                for worker in list(waiting):
                    if worker.out_fd in readable:
                        self._receive(worker, results, seconds)
                now = time.monotonic()
                for worker in list(self._workers):
                    if worker.job and now > worker.job.deadline:
                        job = worker.job
                        results[job.index] = verdict(False, f"timeout: no verdict within {job.budget_s:g}s")
                        seconds[job.index] = job.budget_s
                        self._replace(worker)
                    elif not worker.ready and now > worker.started + START_TIMEOUT_S:
                        raise RuntimeError(f"verifier worker did not start within {START_TIMEOUT_S:g}s")
        return [r if r is not None else verdict(False, "not scored") for r in results], seconds

    def _receive(self, worker: _Worker, results: list[Verdict | None], seconds: list[float]) -> None:
        try:
            message = recv_frame(worker.out_fd)
        except (OSError, ValueError, EOFError):
            message = None
        if message is None:  # the worker died (e.g. killed by the OS); its item scores 0
            if worker.job is not None:
                results[worker.job.index] = verdict(False, "verifier worker died")
            elif not worker.ready:
                raise RuntimeError(
                    "verifier worker exited at start-up (run `python -m m2rl.verifiers.worker` to see why)"
                )
            self._replace(worker)
            return
        if isinstance(message, dict) and "ready" in message:
            worker.ready = True
            return
        index, reward, reason, elapsed = message  # type: ignore[misc]
        results[index] = Verdict(float(reward), str(reason))
        seconds[index] = float(elapsed)
        worker.job = None

    def close(self) -> None:
        """Stop every worker (and with them their sandboxes)."""
        with self._lock:
            for worker in self._workers:
                worker.kill()
            self._workers = []


_POOL: VerifierPool | None = None
_POOL_LOCK = threading.Lock()


def shared_pool(workers: int) -> VerifierPool:
    """The process-wide pool with `workers` workers (re-created if the size or the pid changed)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL.size != workers or getattr(_POOL, "_pid", None) != os.getpid():
            if _POOL is not None and getattr(_POOL, "_pid", None) == os.getpid():
                _POOL.close()
            _POOL = VerifierPool(workers)
            _POOL._pid = os.getpid()  # type: ignore[attr-defined]
        return _POOL


def close_pool() -> None:
    """Stop the shared pool's workers (also done at interpreter exit)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is not None and getattr(_POOL, "_pid", None) == os.getpid():
            _POOL.close()
        _POOL = None


atexit.register(close_pool)


def validate_batch(samples: list[dict[str, Any]], responses: list[str]) -> None:
    """UserError for a bad sample (naming its index) before any work starts."""
    if len(samples) != len(responses):
        raise ValueError(f"score_batch: {len(samples)} samples but {len(responses)} responses")
    for i, sample in enumerate(samples):
        check_sample(sample, f"batch item {i}")


def pair_key(sample: dict[str, Any], response: str) -> str:
    """Identity of a (sample, response) pair: `score_batch` scores each distinct one once."""
    return json.dumps([sample, response], sort_keys=True, default=str)


def score_batch(
    samples: list[dict[str, Any]], responses: list[str], config: VerifierConfig | None = None
) -> list[Verdict]:
    """Score many (sample, response) pairs in the shared worker pool, each under its deadline."""
    return score_batch_timed(samples, responses, config)[0]


def score_batch_timed(
    samples: list[dict[str, Any]], responses: list[str], config: VerifierConfig | None = None
) -> tuple[list[Verdict], list[float]]:
    """`score_batch` plus the scoring seconds of each item (for throughput reports)."""
    config = config or VerifierConfig()
    samples, responses = list(samples), [r if isinstance(r, str) else "" for r in responses]
    validate_batch(samples, responses)
    if not samples:
        return [], []
    # A GRPO group often holds the same completion several times (a small model's code answers
    # especially): each distinct (sample, response) pair is scored once and its verdict shared.
    # Copies cost 0 s; a program with random output gets one draw for all its copies.
    first_of: dict[str, int] = {}
    unique: list[int] = []  # index of each distinct pair's first occurrence
    slot = []  # for each item, the position of its pair in `unique`
    for i, (sample, response) in enumerate(zip(samples, responses, strict=True)):
        key = pair_key(sample, response)
        if key not in first_of:
            first_of[key] = len(unique)
            unique.append(i)
        slot.append(first_of[key])
    unique_samples, unique_responses = [samples[i] for i in unique], [responses[i] for i in unique]
    if config.worker_count == 0:
        verdicts, seconds = [], []
        for sample, response in zip(unique_samples, unique_responses, strict=True):
            start = time.perf_counter()
            verdicts.append(score(sample, response, config))
            seconds.append(time.perf_counter() - start)
    else:
        verdicts, seconds = shared_pool(config.worker_count).score(unique_samples, unique_responses, config)
    return [verdicts[j] for j in slot], [seconds[j] if unique[j] == i else 0.0 for i, j in enumerate(slot)]
