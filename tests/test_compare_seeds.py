"""Compare over seeds: replicates grouped into rows, paired intervals and verdicts in md, csv and json."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from m2rl.compare import compare_runs, select_runs
from m2rl.compare.claims import UNRESOLVED, Difference
from m2rl.compare.core import build_comparison
from m2rl.compare.costs import CPU_TIME_HOURS, CPU_WALL_HOURS
from m2rl.compare.intervals import Estimate
from m2rl.compare.manifests import records_from_runs
from m2rl.compare.markdown import to_markdown
from m2rl.evaluate.results import read_results, results_path
from m2rl.ledger import Ledger
from study_builder import DOMAINS, build_study

LABELS = ["SFT", "RL-Math", "RL-Code", "RL-Science", "RL-IF", "RL-Multi", "Merge (TIES)", "Merge (TA)"]


def comparison_of(root, samples: int = 300):
    runs = select_runs(Ledger(root)).runs
    return build_comparison(*records_from_runs(runs), bootstrap_samples=samples)


def item_means(run, bench: str) -> np.ndarray:
    items = sorted(read_results(results_path(run.path, bench)), key=lambda item: item.id)
    return np.array([item.mean_reward for item in items])


def test_two_seeds_give_intervals_in_markdown_csv_and_json(tmp_path):
    study = build_study(tmp_path / "runs", seeds=(0, 1))
    selection = select_runs(Ledger(tmp_path / "runs"))
    result = compare_runs(selection.runs, selection.out_dir, bootstrap_samples=300)
    comparison = result.comparison
    assert result.markdown_path.parent == tmp_path / "runs" / "study-s0-s1-compare"
    assert [row.label for row in comparison.rows] == LABELS
    assert all(row.seeds == (0, 1) for row in comparison.rows)
    assert comparison.variance_note == "2 seeds x test items" and comparison.seeds == [0, 1]

    rows = {r["label"]: r for r in csv.DictReader(result.csv_path.open())}
    for role, label in (("sft", "SFT"), ("rl-math", "RL-Math"), ("merge-paper_ties", "Merge (TIES)")):
        row = rows[label]
        assert row["seeds"] == "0;1" and len(row["run_id"].split(";")) == 2
        for bench in DOMAINS:
            value, low, high = (float(row[bench + suffix]) for suffix in ("", "_lo", "_hi"))
            manifests = [study.runs[role, s].manifest["metrics"]["eval"][bench]["avg_at_k"] for s in (0, 1)]
            assert value == pytest.approx(np.mean(manifests), abs=1e-6)
            assert low < value < high
        assert float(row["mean_lo"]) < float(row["mean"]) < float(row["mean_hi"])

    differences = list(csv.DictReader(result.differences_path.open()))
    assert {d["kind"] for d in differences} == {
        "expert_vs_sft", "mixed_vs_sft", "mixed_vs_best_merge", "mixed_vs_merge", "synergy",
        "mixed_vs_expert", "transfer",
    }  # fmt: skip
    assert all(d["difference_lo"] and d["difference_hi"] and d["verdict"] for d in differences)

    data = json.loads(result.json_path.read_text())
    assert data["seeds"] == [0, 1] and data["intervals"]["covers"] == "2 seeds x test items"
    math_score = data["rows"][1]["scores"]["math"]
    assert data["rows"][1]["label"] == "RL-Math" and len(math_score["per_seed"]) == 2
    assert math_score["ci95"][0] < math_score["value"] < math_score["ci95"][1]
    assert [d["verdict"] for d in data["headline"]] == [d.verdict for d in comparison.headline]
    assert data["cost_ratio"]["ratio"]["ci95"] is not None and len(data["cost_ratio"]["seeds"]) == 2
    cells = data["transfer"]["cells"]
    assert len(cells) == 7 and all(cell["estimate"]["ci95"] for row in cells for cell in row)

    markdown = result.markdown_path.read_text()
    assert "## Claims (points, paired 95% intervals, 2 seeds x test items)" in markdown
    assert "- **RL-Math above SFT on math**: +" in markdown
    assert "## Cost per seed" in markdown and "the best merge = the highest mean in the table" in markdown
    for name in ("score_vs_hours", "transfer_heatmap"):
        assert (result.markdown_path.parent / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"
        assert b"<svg" in (result.markdown_path.parent / f"{name}.svg").read_bytes()[:1000]


def test_differences_pair_each_seed_with_its_own_lineage_on_the_same_items(tmp_path):
    study = build_study(tmp_path / "runs", seeds=(0, 1), seed_spread=0.1)
    comparison = comparison_of(tmp_path / "runs")
    expert = next(d for d in comparison.headline if d.kind == "expert_vs_sft" and d.a == "RL-Math")
    per_seed = [
        (item_means(study.runs["rl-math", s], "math") - item_means(study.runs["sft", s], "math")).mean()
        for s in (0, 1)
    ]
    assert expert.estimate.per_seed == pytest.approx(per_seed)
    assert expert.estimate.value == pytest.approx(np.mean(per_seed))
    assert expert.estimate.n_seeds == 2 and expert.estimate.n_items == 48
    assert expert.verdict == "RL-Math above SFT on math"


def test_a_shared_sft_is_the_partner_of_every_seed(tmp_path):
    study = build_study(tmp_path / "runs", seeds=(0, 1, 2), shared_sft=True)
    comparison = comparison_of(tmp_path / "runs")
    assert comparison.row("SFT").seeds == (0,) and comparison.row("RL-Math").seeds == (0, 1, 2)
    expert = next(d for d in comparison.headline if d.kind == "expert_vs_sft" and d.a == "RL-Code")
    sft = item_means(study.runs["sft", 0], "code")
    expected = [(item_means(study.runs["rl-code", s], "code") - sft).mean() for s in (0, 1, 2)]
    assert expert.estimate.per_seed == pytest.approx(expected)
    assert not any("only the seed lineages" in note for note in comparison.notes)


def test_one_seed_says_its_intervals_cover_item_variance_only(tmp_path):
    build_study(tmp_path / "runs", seeds=(0,))
    comparison = comparison_of(tmp_path / "runs")
    assert comparison.variance_note == "1 seed: item variance only"
    assert "1 seed: item variance only" in to_markdown(comparison)
    assert "1 seed: no spread" in comparison.cost_ratio.describe()
    assert all(d.estimate.ci95 is not None for d in comparison.differences)


def test_the_best_merge_is_the_tables_top_with_an_interval_simultaneous_over_the_merges(tmp_path):
    build_study(tmp_path / "runs", seeds=(0,), n_items=60)
    comparison = comparison_of(tmp_path / "runs")
    merges = [row for row in comparison.rows if row.role == "merge"]
    top = max(merges, key=lambda row: row.mean.value)
    assert comparison.best_merge is top
    best = next(d for d in comparison.headline if d.kind == "mixed_vs_best_merge")
    assert best.b == f"the best merge ({top.label.removeprefix('Merge (').rstrip(')')})"
    assert best.estimate.value == pytest.approx(comparison.mixed.mean.value - top.mean.value)
    assert best.estimate.n_items == 4 * 60 and best.best_of == 2 and best.estimate.level == 0.95
    each = [d for d in comparison.differences if d.kind == "mixed_vs_merge"]
    assert [d.b for d in each] == ["Merge (TIES)", "Merge (TA)"]
    assert all(d.estimate.level == 0.975 for d in each)  # Bonferroni over the two merges
    assert best.estimate.ci95 == (
        min(d.estimate.ci95[0] for d in each),
        min(d.estimate.ci95[1] for d in each),
    )


def test_cost_is_process_cpu_time_and_older_manifests_fall_back_with_a_note(tmp_path):
    build_study(tmp_path / "new", seeds=(0,))
    comparison = comparison_of(tmp_path / "new")
    assert comparison.hours_label == CPU_TIME_HOURS
    assert comparison.cost_ratio.mixed_hours == pytest.approx(150 / 3600)
    build_study(tmp_path / "old", seeds=(0,), cpu_seconds=False)
    old = comparison_of(tmp_path / "old")
    assert old.hours_label == CPU_WALL_HOURS
    assert old.cost_ratio.mixed_hours == pytest.approx(2 * 150 / 3600)
    assert any("wall x processes" in note for note in old.notes)


@pytest.mark.parametrize(
    ("interval", "verdict"),
    [
        ((0.01, 0.05), "RL-Multi above the best merge (TIES) on the mean"),
        ((-0.05, -0.01), "RL-Multi below the best merge (TIES) on the mean"),
        ((-0.01, 0.05), f"RL-Multi vs the best merge (TIES) on the mean: {UNRESOLVED}"),
        ((0.0, 0.05), f"RL-Multi vs the best merge (TIES) on the mean: {UNRESOLVED}"),
    ],
)
def test_verdicts_never_say_more_than_the_interval(interval, verdict):
    difference = Difference(
        "mixed_vs_best_merge", "RL-Multi", "the best merge (TIES)", "mean", Estimate(0.02, interval)
    )
    assert difference.verdict == verdict
    assert UNRESOLVED == "no resolved difference: the interval spans 0"


def test_the_header_names_one_seed_as_a_seed_and_several_as_a_list():
    """`seeds: 2` read as a count of two; the header says `seed 2` for a study of seed 2 alone."""
    from types import SimpleNamespace

    from m2rl.compare.formatting import header_line

    def header(seeds: list[int]) -> str:
        comparison = SimpleNamespace(
            studies=["eng"], seeds=seeds, variance_note="1 seed: item variance only", bootstrap_samples=2000
        )
        return header_line(comparison)

    assert header([2]).startswith("Study: eng · seed 2 · intervals: 95%")
    assert "· seeds 0, 1, 2 ·" in header([0, 1, 2]) and "· seed not recorded ·" in header([])
