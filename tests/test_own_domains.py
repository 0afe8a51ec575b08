"""Your own domains end to end: the examples/sort_domain fifth domain (its reward in the example's own
file, its data from the example's script) joins the four built-in ones, and a reduced study on all
five writes a comparison with five domain columns."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from m2rl.ledger import Ledger

from cli_helpers import SMALL_STUDY, m2rl

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sort_domain"
DOMAINS = ["math", "code", "science", "if", "sort"]


def make_data(out: Path, sft: int, train: int, test: int) -> list[str]:
    """The example's data, written by its script; the overrides that add the domain."""
    command = [sys.executable, str(EXAMPLE / "make_data.py"), "--out", str(out), "--sft", str(sft)]
    subprocess.run([*command, "--train", str(train), "--test", str(test)], check=True, capture_output=True)
    return [
        f"data.domains=[{','.join(DOMAINS)}]",
        *(f"data.files.sort.{split}={out / f'{split}.jsonl'}" for split in ("train", "test", "sft")),
        f"verifiers.custom.sort={EXAMPLE / 'reward.py'}:score_sort",
    ]


def test_the_example_reward_scores_its_own_solutions(tmp_path):
    overrides = make_data(tmp_path, sft=4, train=4, test=4)
    rows = [json.loads(line) for line in (tmp_path / "sft.jsonl").read_text().splitlines()]
    records = tmp_path / "records.jsonl"
    answers = [r["metadata"]["solution"] for r in rows[:2]] + ["<think>t</think>\nAnswer: 9 1", "no think"]
    records.write_text(
        "".join(json.dumps({"sample": r, "response": a}) + "\n" for r, a in zip(rows, answers, strict=True))
    )
    done = m2rl("verify", str(records), "-o", str(tmp_path / "out.jsonl"), *overrides)
    assert done.returncode == 0, done.stderr
    scored = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["reward"] for r in scored] == [1.0, 1.0, 0.0, 0.0]
    assert scored[2]["reason"].startswith("expected [") and scored[3]["reason"] == "no </think>"
    plan = m2rl("pipeline", "--dry-run", "--name", "five", *overrides, runs_dir=tmp_path / "runs")
    assert plan.returncode == 0, plan.stderr
    assert "five-s0-rl-sort" in plan.stdout


@pytest.mark.slow
def test_a_reduced_five_domain_study_compares_five_domains(tmp_path):
    overrides = make_data(tmp_path / "data", sft=32, train=16, test=4)
    small = [o for o in SMALL_STUDY if not o.startswith("study.domains=")]
    done = m2rl("pipeline", "--name", "five", *small, *overrides, runs_dir=tmp_path / "runs", timeout=1800)
    assert done.returncode == 0, done.stderr
    runs = Ledger(tmp_path / "runs").runs()
    assert {f"five-s0-rl-{d}" for d in [*DOMAINS, "mixed"]} <= {r.name for r in runs}
    assert all(r.status == "completed" for r in runs)
    with open(tmp_path / "runs" / "five-compare" / "compare.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert all(set(DOMAINS) <= set(row) and all(row[d] != "" for d in DOMAINS) for row in rows)
    table = (tmp_path / "runs" / "five-compare" / "compare.md").read_text()
    assert "RL-sort" in table and "| if | sort | mean |" in table
    assert (tmp_path / "runs" / "five-compare" / "transfer_heatmap.png").is_file()
