"""Benchmarks still run end to end against the current engine (slow: each spawns training processes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cli_helpers import FAST_RL

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_rl_step_benchmark_times_both_variants_on_identical_work(tmp_path):
    command = [sys.executable, str(REPO / "benchmarks" / "rl_step.py"), "--steps", "2", "--warmup", "1"]
    command += ["--rounds", "1", "--runs-dir", str(tmp_path)] + [f"--override={o}" for o in FAST_RL]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {line.split("│")[1].strip() for line in done.stdout.splitlines() if line.startswith("│")}
    assert rows == {"bare TRL", "m2rl"}
    text = " ".join(done.stdout.split())  # the caption wraps at any width
    assert "m2rl overhead" in text and "tokens/step identical" in text


@pytest.mark.slow
def test_contention_benchmark_runs_both_plans_idle_and_busy():
    command = [sys.executable, str(REPO / "benchmarks" / "contention.py"), "--steps", "2", "--rounds", "1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "m2rl's thread plan" in done.stdout and "busy / idle" in done.stdout
