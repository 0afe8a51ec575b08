"""`compare_runs` and `m2rl compare` read manifests and per-item eval files and write consistent outputs."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from typer.testing import CliRunner

from m2rl.compare import compare_runs, evaluated_runs
from m2rl.compare.core import Comparison, build_comparison
from m2rl.compare.manifests import records_from_runs
from m2rl.errors import UserError
from m2rl.evaluate.results import ItemResult, results_path, write_results
from m2rl.ledger import Ledger

N_ITEMS, K = 40, 4
# Per-domain solve probabilities of each model on the built-in-style benchmarks.
SOLVE_RATE = {
    "sft": {"math": 0.2, "code": 0.1},
    "rl-math": {"math": 0.6, "code": 0.2},
    "rl-code": {"math": 0.3, "code": 0.5},
    "rl-multi": {"math": 0.65, "code": 0.45},
    "merge-ties": {"math": 0.5, "code": 0.4},
}
HOURS = {"sft": 0.5, "rl-math": 2.0, "rl-code": 3.0, "rl-multi": 1.5, "merge-ties": 0.1}


def _write_eval(run, rates: dict[str, float], seed: int) -> None:
    """Record an eval in the format evaluate_run writes: per-item file plus manifest metrics."""
    rng = np.random.default_rng(seed)
    difficulty = np.random.default_rng(0).random(N_ITEMS)  # the same items for every model
    evals = {}
    for bench, rate in rates.items():
        items = []
        for i in range(N_ITEMS):
            p = float(np.clip(rate + 0.5 - difficulty[i], 0, 1))
            rewards = [float(rng.random() < p) for _ in range(K)]
            items.append(ItemResult(f"{bench}-{i}", bench, rewards, [""] * K, [""] * K, [8] * K, [True] * K))
        write_results(results_path(run.path, bench), items)
        avg = float(np.mean([np.mean(i.rewards) for i in items]))
        evals[bench] = {
            "domain": bench,
            "k": K,
            "avg_at_k": avg,
            "pass_at_k": avg,
            "ci95": [avg - 0.1, avg + 0.1],
            "n_items": N_ITEMS,
            "config_hash": "x",
        }
    run.manifest.setdefault("metrics", {})["eval"] = evals
    run.save()


def build_study(root, evaluate_sft: bool = True) -> dict[str, object]:
    ledger = Ledger(root)
    runs = {}

    def make(name, kind, parents=(), **fields):
        run = ledger.create(kind, name, {}, parents=[runs[p].id for p in parents])
        run.update(status="completed", device_hours=2 * HOURS[name], cpu_seconds=3600 * HOURS[name], **fields)
        runs[name] = run
        return run

    make("sft", "sft")
    make("rl-math", "rl", ["sft"], domains=["math"])
    make("rl-code", "rl", ["sft"], domains=["code"])
    make("rl-multi", "rl", ["sft"], domains=["math", "code"])
    experts = [runs["rl-math"].id, runs["rl-code"].id]
    make(
        "merge-ties",
        "merge",
        ["sft", "rl-math", "rl-code"],
        merge={"method": "ties", "params": {}, "experts": experts, "base": runs["sft"].id},
    )
    for seed, (name, run) in enumerate(runs.items()):
        if name != "sft" or evaluate_sft:
            _write_eval(run, SOLVE_RATE[name], seed)
    return runs


def test_compare_outputs_agree_with_the_manifests(tmp_path):
    runs = build_study(tmp_path / "runs")
    result = compare_runs(list(runs.values()), tmp_path / "out")
    for path in result.paths:
        assert path.is_file() and path.stat().st_size > 0
    assert [p.name for p in result.plot_paths] == [
        f"{name}.{fmt}" for name in ("score_vs_hours", "transfer_heatmap") for fmt in ("png", "pdf", "svg")
    ]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in result.plot_paths if p.suffix == ".png")

    rows = {r["name"]: r for r in csv.DictReader(result.csv_path.open())}
    for name, run in runs.items():
        for bench, m in run.manifest["metrics"]["eval"].items():
            assert float(rows[name][bench]) == pytest.approx(m["avg_at_k"], abs=1e-6)
        assert float(rows[name]["own_hours"]) == pytest.approx(HOURS[name])
    # cumulative: a merge pays for its experts and the SFT once; an expert for itself and the SFT
    assert float(rows["merge-ties"]["cumulative_hours"]) == pytest.approx(0.1 + 2.0 + 3.0 + 0.5)
    assert float(rows["rl-math"]["cumulative_hours"]) == pytest.approx(2.0 + 0.5)
    assert rows["rl-multi"]["role"] == "mixed" and rows["merge-ties"]["label"] == "Merge (TIES)"

    comparison = result.comparison
    assert comparison.cost_ratio.ratio.value == pytest.approx(1.5 / (2.0 + 3.0 + 0.1))
    assert comparison.hours_label == "CPU-hours (process CPU time)"
    assert comparison.best_merge.label == "Merge (TIES)"
    markdown = result.markdown_path.read_text()
    assert "Cost mix / merge: 29.4% (1.5 / 5.1 CPU-hours (process CPU time); 1 seed: no spread)" in markdown


def comparison_of(runs: dict) -> Comparison:
    return build_comparison(*records_from_runs(list(runs.values())), bootstrap_samples=300)


def test_synergy_has_a_paired_interval_around_its_estimate(tmp_path):
    comparison = comparison_of(build_study(tmp_path / "runs"))
    synergy = {s.domain: s for s in comparison.synergy}
    assert synergy["math"].best_expert == "RL-Math" and synergy["code"].best_expert == "RL-Code"
    for s in synergy.values():
        lo, hi = s.ci95
        assert lo <= s.delta <= hi
        assert hi - lo < 0.3
    transfer = comparison.transfer
    assert all(cell.estimate.ci95 is not None for row in transfer.cells for cell in row)
    assert transfer.reference == "SFT" and transfer.rows == [
        "RL-Math",
        "RL-Code",
        "RL-Mix(Math+Code)",
        "Merge (TIES)",
    ]
    sft, math_expert = comparison.row("SFT"), comparison.row("RL-Math")
    assert transfer.values[0][0] == pytest.approx(math_expert.scores["math"].value - sft.scores["math"].value)


def test_an_unevaluated_sft_still_counts_in_costs_but_gives_no_transfer_matrix(tmp_path):
    runs = build_study(tmp_path / "runs", evaluate_sft=False)
    ledger = Ledger(tmp_path / "runs")
    selected = evaluated_runs(ledger)
    assert runs["sft"].id not in [r.id for r in selected]
    result = compare_runs(selected, tmp_path / "out")
    assert result.comparison.row("Merge (TIES)").cumulative_hours.value == pytest.approx(5.6)
    assert result.comparison.transfer is None
    assert any("no evaluated SFT" in note for note in result.comparison.notes)
    assert [p.name for p in result.plot_paths] == [
        "score_vs_hours.png",
        "score_vs_hours.pdf",
        "score_vs_hours.svg",
    ]
    with pytest.raises(UserError, match="has no eval results"):
        compare_runs([ledger.get(runs["sft"].id), *selected], tmp_path / "out")


def test_cli_compare_of_runs_without_a_study_takes_every_evaluated_run(tmp_path):
    from m2rl.cli import app

    build_study(tmp_path / "runs")
    result = CliRunner().invoke(
        app, ["compare", "--runs-dir", str(tmp_path / "runs"), "--bootstrap-samples", "200"]
    )
    assert result.exit_code == 0, result.output
    assert "Cost mix / merge" in result.output and "Merge (TIES)" in result.output
    assert "no evaluated run here records a study" in " ".join(result.output.split())
    assert (tmp_path / "runs" / "compare" / "compare.md").is_file()
    empty = CliRunner().invoke(app, ["compare", "--runs-dir", str(tmp_path / "none")])
    assert empty.exit_code != 0


def test_runs_evaluated_on_different_items_are_flagged_but_not_with_different_k(tmp_path):
    runs = build_study(tmp_path / "runs")
    run = runs["rl-math"]
    run.manifest["metrics"]["eval"]["math"]["k"] = 8  # Avg@8 and Avg@2 estimate the same expected reward
    run.save()
    assert not any("evaluated on different items" in note for note in comparison_of(runs).notes)
    run.manifest["metrics"]["eval"]["math"]["n_items"] = 3
    run.save()
    comparison = comparison_of(runs)
    assert any(note.startswith("math: runs were evaluated on different items") for note in comparison.notes)
    assert not any(note.startswith("code:") for note in comparison.notes)
