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
from m2rl.verifiers.forkserver import encode_frame, recv_frame, write_frame
from m2rl.verifiers.registry import check_sample, reward_type, score
from m2rl.verifiers.verdict import Verdict, verdict

START_TIMEOUT_S = 120.0


# Items in flight per worker: the next ones wait in its pipe while it scores the first, so a fast
# verifier (IF, science: ~0.1 ms an item) never idles through a round trip to this process. Kept to
# one near the end of a batch so a slow item (code) cannot leave the other workers idle behind it,
# and to a byte budget inside the 64 KiB pipe buffer so a send never blocks on a busy worker.
PIPELINE_DEPTH = 4
PIPELINE_BYTES = 32 * 1024


@dataclass
class _Job:
    index: int
    budget_s: float
    size: int


class _Worker:
    """One worker process and the jobs sent to it, oldest (the one being scored) first."""

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
        self.jobs: deque[_Job] = deque()
        self.broken = False  # a send failed: take no more jobs, wait for its end of file
        self.head_since = 0.0  # when the oldest job became the one being scored: its clock starts

    @property
    def deadline(self) -> float:
        if not self.ready:
            return self.started + START_TIMEOUT_S
        return self.head_since + self.jobs[0].budget_s

    def accepts(self, size: int, depth: int) -> bool:
        if not self.ready or self.broken or len(self.jobs) >= depth:
            return False
        return not self.jobs or sum(job.size for job in self.jobs) + size <= PIPELINE_BYTES

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

    def _replace(self, worker: _Worker, pending: deque[int]) -> None:
        """Kill a worker, start a new one, and queue again the jobs it had not started."""
        worker.kill()
        pending.extendleft(reversed([job.index for job in list(worker.jobs)[1:]]))
        self._workers[self._workers.index(worker)] = _Worker()

    def score(
        self, samples: list[dict[str, Any]], responses: list[str], config: VerifierConfig
    ) -> tuple[list[Verdict], list[float]]:
        """Verdicts and per-item scoring seconds, in input order."""
        results: list[Verdict | None] = [None] * len(samples)
        seconds = [0.0] * len(samples)
        budgets = [reward_type(s).budget_s(s, config) for s in samples]
        pending = deque(range(len(samples)))
        frames: dict[int, bytes] = {}  # encoded once, even when no worker has room for it yet
        with self._lock:
            self._ensure()
            while pending or any(w.jobs for w in self._workers):
                self._dispatch(pending, samples, responses, config, budgets, frames)
                waiting = [w for w in self._workers if w.jobs or not w.ready]
                timeout = max(0.0, min(w.deadline for w in waiting) - time.monotonic()) if waiting else 0.0
                readable = select.select([w.out_fd for w in waiting], [], [], timeout)[0]
                for worker in list(waiting):
                    if worker.out_fd in readable:
                        self._receive(worker, results, seconds, pending)
                now = time.monotonic()
                for worker in list(self._workers):
                    if worker.jobs and now > worker.deadline:
                        job = worker.jobs[0]
                        results[job.index] = verdict(False, f"timeout: no verdict within {job.budget_s:g}s")
                        seconds[job.index] = job.budget_s
                        self._replace(worker, pending)
                    elif not worker.ready and now > worker.deadline:
                        raise RuntimeError(f"verifier worker did not start within {START_TIMEOUT_S:g}s")
        return [r if r is not None else verdict(False, "not scored") for r in results], seconds

    def _dispatch(self, pending, samples, responses, config, budgets, frames: dict[int, bytes]) -> None:
        """Send pending items to workers with room, one per worker per round (balanced)."""
        sent = True
        while pending and sent:
            sent = False
            depth = PIPELINE_DEPTH if len(pending) >= PIPELINE_DEPTH * len(self._workers) else 1
            for worker in list(self._workers):
                if not pending:
                    break
                index = pending[0]
                if index not in frames:
                    frames[index] = encode_frame((index, samples[index], responses[index], config))
                if not worker.accepts(len(frames[index]), depth):
                    continue
                try:
                    write_frame(worker.in_fd, frames[index])
                except OSError:  # the worker is gone; its end of file reports the item it was scoring
                    worker.broken = True
                    if not worker.jobs:
                        self._replace(worker, pending)
                    continue
                pending.popleft()
                if not worker.jobs:
                    worker.head_since = time.monotonic()
                worker.jobs.append(_Job(index, budgets[index], len(frames.pop(index))))
                sent = True

    def _receive(
        self, worker: _Worker, results: list[Verdict | None], seconds: list[float], pending: deque[int]
    ) -> None:
        try:
            message = recv_frame(worker.out_fd)
        except (OSError, ValueError, EOFError):
            message = None
        if message is None:  # the worker died (e.g. killed by the OS); the item it was scoring scores 0
            if worker.jobs:
                results[worker.jobs[0].index] = verdict(False, "verifier worker died")
            elif not worker.ready:
                raise RuntimeError(
                    "verifier worker exited at start-up (run `python -m m2rl.verifiers.worker` to see why)"
                )
            self._replace(worker, pending)
            return
        if isinstance(message, dict) and "ready" in message:
            worker.ready = True
            return
        index, reward, reason, elapsed = message  # type: ignore[misc]
        job = worker.jobs.popleft()
        assert job.index == index, f"worker answered item {index}, expected {job.index}"
        results[index] = Verdict(float(reward), str(reason))
        seconds[index] = float(elapsed)
        worker.head_since = time.monotonic()

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
