"""Batch scoring in a persistent pool of worker processes with a hard deadline per item.

Hand-written rather than concurrent.futures/multiprocessing.Pool because those cannot stop one
running task: a sympy call stuck in C code, or a worker killed by the OS, must cost that item its
reward (0), not hang the batch or break the pool. Here each worker is a fresh interpreter
(`python -m m2rl.verifiers.worker`, never a fork of a torch process); an item past its deadline
gets its worker killed and replaced. The pool stays alive between calls (GRPO scores every step).
"""

from __future__ import annotations

import atexit
import os
import pickle
import select
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from m2rl.verifiers.config import VerifierConfig
from m2rl.verifiers.frames import encode_frame, read_frames, write_frame
from m2rl.verifiers.registry import check_runnable, check_sample, reward_type, score
from m2rl.verifiers.verdict import Verdict, verdict

START_TIMEOUT_S = 120.0


# Items in flight per worker: the next ones wait in its pipe while it scores the first, so a fast
# verifier (IF, science: ~0.1 ms an item) never idles through a round trip to this process. Items
# go out in one frame per worker per refill and replies are read in bulk: on a VM, each wake-up of
# a sleeping process costs more than scoring an IF item. At most the reward type's queue_depth,
# and a share of what is left (guided scheduling: pending / (2 x workers)) so the workers end a
# batch together; within a byte budget inside the 64 KiB pipe buffer so a send never blocks.
PIPELINE_BYTES = 32 * 1024


@dataclass
class _Job:
    index: int
    budget_s: float
    size: int
    depth: int  # the most jobs its worker may hold while it is queued (its reward type's queue_depth)


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
        self.buffer = bytearray()  # replies read but not yet complete
        self.broken = False  # a send failed: take no more jobs, wait for its end of file
        self.head_since = 0.0  # when the oldest job became the one being scored: its clock starts

    @property
    def deadline(self) -> float:
        if not self.ready:
            return self.started + START_TIMEOUT_S
        return self.head_since + self.jobs[0].budget_s

    def limit(self, depth: int) -> int:
        """How many jobs this worker may hold with one of `depth` added (the least depth queued wins)."""
        return min([depth] + [job.depth for job in self.jobs])

    def accepts(self, size: int, depth: int) -> bool:
        if not self.ready or self.broken or len(self.jobs) >= self.limit(depth):
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
        self, samples: list[dict[str, Any]], payloads: list[bytes], config: VerifierConfig
    ) -> tuple[list[Verdict], list[float]]:
        """Verdicts and per-item scoring seconds, in input order; payloads[i] = pair_key(samples[i], response)."""
        results: list[Verdict | None] = [None] * len(samples)
        seconds = [0.0] * len(samples)
        kinds = [reward_type(s) for s in samples]
        budgets = [kind.budget_s(s, config) for kind, s in zip(kinds, samples, strict=True)]
        depths = [kind.queue_depth for kind in kinds]
        pending = deque(range(len(samples)))
        with self._lock:
            self._ensure()
            while pending or any(w.jobs for w in self._workers):
                self._dispatch(pending, payloads, config, budgets, depths)
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

    def _dispatch(self, pending, payloads, config, budgets, depths) -> None:
        """Send each worker with room its share of the pending items, in one frame."""
        share = max(1, len(pending) // (2 * len(self._workers)))
        for worker in list(self._workers):
            if pending and len(worker.jobs) > worker.limit(min(depths[pending[0]], share)) // 2:
                continue  # refill at half empty, so each send (and wake-up) carries several items
            items = []
            while pending:
                index = pending[0]
                size = len(payloads[index])
                if not worker.accepts(size, min(depths[index], share)):
                    break
                pending.popleft()
                if not worker.jobs:
                    worker.head_since = time.monotonic()
                worker.jobs.append(_Job(index, budgets[index], size, depths[index]))
                items.append((index, payloads[index]))
            if not items:
                continue
            try:
                write_frame(worker.in_fd, encode_frame((config, items)))
            except OSError:  # the worker is gone; its end of file reports the item it was scoring
                worker.broken = True
                if len(worker.jobs) == len(items):  # it holds nothing else: put them all back now
                    worker.jobs.clear()
                    pending.extendleft(reversed([index for index, _ in items]))
                    self._replace(worker, pending)

    def _receive(
        self, worker: _Worker, results: list[Verdict | None], seconds: list[float], pending: deque[int]
    ) -> None:
        try:
            messages = read_frames(worker.out_fd, worker.buffer)
        except (OSError, ValueError, EOFError, pickle.UnpicklingError):
            messages = None
        for message in messages or []:
            if isinstance(message, dict) and "ready" in message:
                worker.ready = True
                continue
            index, reward, reason, elapsed = message  # type: ignore[misc]
            job = worker.jobs.popleft()
            assert job.index == index, f"worker answered item {index}, expected {job.index}"
            results[index] = Verdict(float(reward), str(reason))
            seconds[index] = float(elapsed)
            worker.head_since = time.monotonic()
        if messages is None:  # the worker died (e.g. killed by the OS); the item it was scoring scores 0
            if worker.jobs:
                results[worker.jobs[0].index] = verdict(False, "verifier worker died")
            elif not worker.ready:
                raise RuntimeError(
                    "verifier worker exited at start-up (run `python -m m2rl.verifiers.worker` to see why)"
                )
            self._replace(worker, pending)

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


def pair_key(sample: dict[str, Any], response: str) -> bytes:
    """The pickled (sample, response) pair: what a worker receives, and the pair's identity
    (`score_batch` scores each distinct one once; equal pairs built alike pickle alike)."""
    return pickle.dumps((sample, response), protocol=pickle.HIGHEST_PROTOCOL)


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
    check_runnable(samples, config)  # a refused sandbox stops the batch, not one 0 per code item
    if not samples:
        return [], []
    # A GRPO group often holds the same completion several times (a small model's code answers
    # especially): each distinct (sample, response) pair is scored once and its verdict shared.
    # Copies cost 0 s; a program with random output gets one draw for all its copies.
    first_of: dict[bytes, int] = {}
    unique: list[int] = []  # index of each distinct pair's first occurrence
    slot = []  # for each item, the position of its pair in `unique`
    for i, (sample, response) in enumerate(zip(samples, responses, strict=True)):
        key = pair_key(sample, response)
        if key not in first_of:
            first_of[key] = len(unique)
            unique.append(i)
        slot.append(first_of[key])
    unique_samples = [samples[i] for i in unique]
    if config.worker_count == 0:
        verdicts, seconds = [], []
        for i in unique:
            start = time.perf_counter()
            verdicts.append(score(samples[i], responses[i], config))
            seconds.append(time.perf_counter() - start)
    else:
        payloads = list(first_of)  # in the order of `unique`
        verdicts, seconds = shared_pool(config.worker_count).score(unique_samples, payloads, config)
    return [verdicts[j] for j in slot], [seconds[j] if unique[j] == i else 0.0 for i, j in enumerate(slot)]
