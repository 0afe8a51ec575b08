"""Code reward (unit_test): run the last complete ```python block on sampled stdin/stdout tests.

A test passes iff the program ends normally (exit status 0, `sys.exit(0)` included) within its
limits and its stripped stdout equals the stripped expected output; stderr is ignored. Up to
`max_tests` tests are sampled with an RNG seeded by (seed, sample id), so a sample always meets
the same tests. The reward is 1 iff every sampled test passes (the first failure stops the run).
"""

from __future__ import annotations

import json
import random
import re
import signal
from typing import Any

from m2rl.verifiers.sandbox import Execution, Limits, Sandbox, passed
from m2rl.verifiers.verdict import Verdict, verdict

_OPEN_FENCE = re.compile(r"```[ \t]*(?:python3?|py)[ \t]*\r?\n", re.IGNORECASE)
_CLOSE_FENCE = "```"


def extract_program(text: str) -> str | None:
    """The body of the last complete ```python block (opening and closing fence); None if none."""
    last, pos = None, 0
    while match := _OPEN_FENCE.search(text, pos):
        end = text.find(_CLOSE_FENCE, match.end())
        if end < 0:
            break
        last, pos = text[match.end() : end], end + len(_CLOSE_FENCE)
    return last


def unit_tests_of(sample: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(inputs, outputs) from metadata.unit_tests (a dict or its JSON text); ValueError if malformed."""
    tests = (sample.get("metadata") or {}).get("unit_tests")
    if isinstance(tests, str):
        try:
            tests = json.loads(tests)
        except json.JSONDecodeError as exc:
            raise ValueError(f"metadata.unit_tests is not valid JSON ({exc.msg})") from None
    if not isinstance(tests, dict):
        raise ValueError("metadata.unit_tests must hold {'inputs': [...], 'outputs': [...]}")
    inputs, outputs = tests.get("inputs"), tests.get("outputs")
    if not isinstance(inputs, list) or not isinstance(outputs, list):
        raise ValueError("metadata.unit_tests needs lists 'inputs' and 'outputs'")
    if len(inputs) != len(outputs) or not inputs:
        raise ValueError(
            f"metadata.unit_tests has {len(inputs)} inputs and {len(outputs)} outputs (need equal, >0)"
        )
    if not all(isinstance(x, str) for x in inputs + outputs):
        raise ValueError("metadata.unit_tests inputs and outputs must be strings")
    return inputs, outputs


def sample_tests(
    inputs: list[str], outputs: list[str], max_tests: int, seed: int, sample_id: str
) -> list[tuple[str, str]]:
    """Up to `max_tests` (input, output) pairs, chosen by an RNG seeded with (seed, sample id)."""
    pairs = list(zip(inputs, outputs, strict=True))
    if len(pairs) <= max_tests:
        return pairs
    rng = random.Random(f"{seed}:{sample_id}")
    return [pairs[i] for i in sorted(rng.sample(range(len(pairs)), max_tests))]


def ended(run: Execution) -> str:
    """How a failed program ended, in words: "exited with status N: <its last stderr line>" or
    "killed by SIGSEGV"."""
    if run.exit_code is not None and run.exit_code < 0:
        try:
            name = signal.Signals(-run.exit_code).name
        except ValueError:
            name = f"signal {-run.exit_code}"
        return f"killed by {name}"
    last_line = run.stderr.strip().splitlines()[-1] if run.stderr.strip() else ""
    return f"exited with status {run.exit_code}" + (f": {last_line}" if last_line else "")


def score_program(program: str, tests: list[tuple[str, str]], sandbox: Sandbox, limits: Limits) -> Verdict:
    """Run the program on each test in the sandbox (stopping at the first failure); reward 1 iff all pass."""
    expected = [output for _, output in tests]
    runs = sandbox.run_tests(program, [stdin for stdin, _ in tests], limits, expected)
    for number, run in enumerate(runs, 1):
        where = f"test {number}/{len(tests)}"
        if run.status == "timeout":
            return verdict(False, f"{where}: time limit exceeded")
        if run.status == "output_limit":
            return verdict(False, f"{where}: output limit exceeded")
        if run.status == "memory_limit":
            return verdict(False, f"{where}: memory limit exceeded")
        if run.status == "sandbox_error":
            return verdict(False, f"{where}: sandbox error: {run.stderr}")
        if run.status != "ok":
            return verdict(False, f"{where}: {ended(run)}")
        if not passed(run, expected[number - 1]):
            return verdict(
                False,
                f"{where}: wrong output {run.stdout.strip()[:40]!r}, expected {expected[number - 1].strip()[:40]!r}",
            )
    if len(runs) < len(tests):
        return verdict(False, f"sandbox error: {len(runs)} of {len(tests)} tests ran")
    return verdict(True, f"passed {len(tests)} tests")


def score_code(
    sample: dict[str, Any], text: str, sandbox: Sandbox, limits: Limits, max_tests: int, seed: int
) -> Verdict:
    """Reward 1 iff the last complete ```python block passes every sampled test."""
    program = extract_program(text)
    if program is None:
        return verdict(False, "no complete ```python block")
    inputs, outputs = unit_tests_of(sample)
    tests = sample_tests(inputs, outputs, max_tests, seed, str(sample.get("id")))
    return score_program(program, tests, sandbox, limits)
