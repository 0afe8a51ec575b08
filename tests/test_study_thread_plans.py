"""A study's results depend on its config and seed, never on how the machine's cores were shared: the
same small study run one stage at a time with two threads (an idle machine's plan) and two stages at
once with one thread each (a busy machine's plan) writes the same eval samples, token for token."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from m2rl.ledger import Ledger

from cli_helpers import SMALL_STUDY, m2rl

# SFT, two experts, the mixed run, a merge and MT-OPD: every kind of model a study evaluates.
STUDY = [
    *SMALL_STUDY,
    "study.distill=true",
    "distill.steps=2",
    "distill.prompts_per_step=4",
    "distill.num_generations=2",
    "distill.per_device_batch_size=8",
    "distill.max_completion_length=16",
    "distill.save_steps=0",
]
PLANS = {
    "idle": ["study.max_parallel=1", "study.cpu_threads=2"],
    "busy": ["study.max_parallel=2", "study.cpu_threads=1"],
}


def _eval_samples(runs: Path) -> dict[str, list[dict]]:
    """Every evaluated model's eval rows (responses and rewards), by run name and benchmark."""
    samples = {}
    for run in Ledger(runs, report=None).runs():
        for path in sorted((run.path / "eval").glob("*.jsonl")):
            samples[f"{run.name}/{path.stem}"] = [json.loads(line) for line in path.read_text().splitlines()]
    return samples


@pytest.mark.slow
def test_a_study_writes_the_same_eval_samples_whatever_its_thread_plan(tmp_path):
    results = {}
    for plan, overrides in PLANS.items():
        runs = tmp_path / plan
        done = m2rl("pipeline", "--name", "t", *STUDY, *overrides, runs_dir=runs, timeout=1800)
        assert done.returncode == 0, done.stderr[-3000:]
        results[plan] = _eval_samples(runs)
    idle, busy = results["idle"], results["busy"]
    models = {key.split("/")[0] for key in idle}
    assert models == {
        "t-s0-sft",
        "t-s0-rl-math",
        "t-s0-rl-code",
        "t-s0-rl-mixed",
        "t-s0-merge-paper_ties",
        "t-s0-distill",
    }
    assert idle.keys() == busy.keys()
    for key in idle:
        for a, b in zip(idle[key], busy[key], strict=True):
            assert (a["id"], a["responses"], a["rewards"]) == (b["id"], b["responses"], b["rewards"]), key
