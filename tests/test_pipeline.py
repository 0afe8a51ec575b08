"""The study pipeline end to end: a reduced study on CPU, consistent and idempotent (plan and executor
tests are in test_study.py)."""

from __future__ import annotations

import csv
import json

import pytest

from m2rl.ledger import Ledger

from cli_helpers import FAST_RL, ONE_SEED, m2rl

REDUCED = [
    *ONE_SEED,
    "data.sizes.sft=48",
    "sft.max_steps=10",
    *FAST_RL,
    "rl.steps=2",
    "rl.mixed_steps=2",
    "rl.save_steps=0",
    "data.sizes.test=6",
    "eval.k=2",
    "eval.max_new_tokens=24",
    "study.merge_methods=[paper_ties,ties]",
    "study.analyze=true",  # off on tiny by default
]


@pytest.mark.slow
def test_reduced_pipeline_end_to_end_is_consistent_and_idempotent(tmp_path):
    result = m2rl("pipeline", "--name", "mini", *REDUCED, runs_dir=tmp_path, timeout=1800)
    assert result.returncode == 0, result.stderr
    runs = Ledger(tmp_path).runs()
    assert sorted(r.name for r in runs) == sorted(
        [
            "mini-s0-sft",
            "mini-s0-rl-math",
            "mini-s0-rl-code",
            "mini-s0-rl-science",
            "mini-s0-rl-if",
            "mini-s0-rl-mixed",
            "mini-s0-merge-paper_ties",
            "mini-s0-merge-ties",
            "mini-s0-analyze",
        ]
    )
    assert all(r.status == "completed" for r in runs)
    out = tmp_path / "mini-compare"
    for name in ("compare.md", "compare.csv", "score_vs_hours.png", "transfer_heatmap.png"):
        assert (out / name).is_file(), name
    by_id = {r.id: r for r in runs}
    with open(out / "compare.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(runs) - 1  # every model; the analyze run has its report in mini-analysis/
    assert (tmp_path / "mini-analysis" / "analysis.md").is_file()
    assert "(../mini-analysis/analysis.md)" in (out / "compare.md").read_text()
    for row in rows:
        run = by_id[row["run_id"]]
        # on CPU a run's cost is its process CPU time (compare.costs), not wall x processes
        assert float(row["own_hours"]) == pytest.approx(
            run.manifest["cpu_seconds"] / 3600, rel=1e-3, abs=1e-6
        )
        for bench, metrics in run.manifest["metrics"]["eval"].items():
            assert float(row[bench]) == pytest.approx(metrics["avg_at_k"], abs=1e-6)
    mixed = next(r for r in runs if r.name == "mini-s0-rl-mixed")
    sft = next(r for r in runs if r.name == "mini-s0-sft")
    assert mixed.manifest["parents"] == [sft.id]
    merge = next(r for r in runs if r.name == "mini-s0-merge-paper_ties")
    assert set(merge.manifest["parents"]) >= {
        r.id for r in runs if r.name.startswith("mini-s0-rl-") and r.name != "mini-s0-rl-mixed"
    }

    again = m2rl("pipeline", "--name", "mini", *REDUCED, runs_dir=tmp_path, timeout=1800)
    assert again.returncode == 0, again.stderr
    assert len(Ledger(tmp_path).runs()) == len(runs)  # every stage reused, nothing retrained
    assert again.stderr.count("reusing completed run") == len(runs)
    assert (
        json.loads((tmp_path / mixed.id / "run.json").read_text())["attempts"] == mixed.manifest["attempts"]
    )
