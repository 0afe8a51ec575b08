""" "The best" merge and expert are the tables' top rows, in every output, with differences the tables show.

The study here is made so that the items an earlier version chose "the best" on (a fixed third, by a
hash of benchmark and item id) name another winner than the whole table: TA and RL-Code win there,
TIES and RL-Math in the table.
"""

from __future__ import annotations

import csv
import io
import json
import zlib

import pytest
from rich.console import Console

from m2rl.compare.best import family_level, versus_best
from m2rl.compare.claims import UNRESOLVED, Difference
from m2rl.compare.core import Comparison, build_comparison
from m2rl.compare.export import to_json, write_differences_csv
from m2rl.compare.formatting import pct, signed, summary_lines
from m2rl.compare.intervals import Estimate
from m2rl.compare.markdown import to_markdown
from m2rl.compare.records import DOMAIN_LABELS, BenchmarkResult, RunRecord
from m2rl.compare.render import rich_renderable

N_ITEMS = 90
# Per-item solve rate of each model on (the earlier version's selection third, the other items).
RATES = {
    "sft": {"math": (0.3, 0.3), "code": (0.3, 0.3)},
    "rl-math": {"math": (0.5, 0.8), "code": (0.3, 0.3)},
    "rl-code": {"math": (0.9, 0.5), "code": (0.8, 0.8)},
    "rl-multi": {"math": (0.7, 0.7), "code": (0.7, 0.7)},
    "merge-ties": {"math": (0.5, 0.9), "code": (0.5, 0.8)},
    "merge-ta": {"math": (0.9, 0.6), "code": (0.9, 0.6)},
}


def in_old_selection_third(bench: str, item: str) -> bool:
    return zlib.crc32(f"{bench}/{item}".encode()) % 3 == 0


def results(name: str) -> dict[str, BenchmarkResult]:
    found = {}
    for bench, rates in RATES[name].items():
        items = [f"{bench}-{i}" for i in range(N_ITEMS)]
        scores = {}
        for part, rate in zip((True, False), rates, strict=True):
            share = [item for item in items if in_old_selection_third(bench, item) == part]
            solved = round(rate * len(share))
            scores |= {item: float(i < solved) for i, item in enumerate(share)}
        found[bench] = BenchmarkResult(bench, sum(scores.values()) / N_ITEMS, item_scores=scores)
    return found


def records() -> list[RunRecord]:
    experts = [RunRecord(f"rl-{d}", "rl", parents=("sft",), domains=(d,), results=results(f"rl-{d}")) for d in ("math", "code")]  # fmt: skip
    ids = tuple(e.id for e in experts)
    merges = [
        RunRecord(f"merge-{m}", "merge", parents=("sft", *ids), merge_method=m, merge_experts=ids, results=results(f"merge-{m}"))
        for m in ("ties", "ta")
    ]  # fmt: skip
    mixed = RunRecord(
        "rl-multi", "rl", parents=("sft",), domains=("math", "code"), results=results("rl-multi")
    )
    return [RunRecord("sft", "sft", results=results("sft")), *experts, mixed, *merges]


@pytest.fixture(scope="module")
def comparison() -> Comparison:
    return build_comparison(records(), bootstrap_samples=400)


def third_score(record: RunRecord, bench: str) -> float:
    scores = record.results[bench].item_scores
    chosen = [v for item, v in scores.items() if in_old_selection_third(bench, item)]
    return sum(chosen) / len(chosen)


def test_the_study_has_other_winners_on_the_old_selection_third_than_in_the_table(comparison):
    by_id = {r.id: r for r in records()}
    ties, ta = by_id["merge-ties"], by_id["merge-ta"]
    assert third_score(ta, "math") + third_score(ta, "code") > third_score(ties, "math") + third_score(
        ties, "code"
    )
    assert comparison.row("Merge (TIES)").mean.value > comparison.row("Merge (TA)").mean.value
    assert third_score(by_id["rl-code"], "math") > third_score(by_id["rl-math"], "math")
    assert comparison.row("RL-Math").scores["math"].value > comparison.row("RL-Code").scores["math"].value


def test_the_best_merge_and_expert_are_the_tables_top_with_the_tables_differences(comparison):
    mixed, ties = comparison.mixed, comparison.row("Merge (TIES)")
    assert comparison.best_merge is ties
    best = next(d for d in comparison.headline if d.kind == "mixed_vs_best_merge")
    assert best.b == "the best merge (TIES)" and best.best_of == 2
    assert best.estimate.value == pytest.approx(mixed.mean.value - ties.mean.value)
    for s in comparison.synergy:
        experts = [r for r in comparison.rows if r.role == "expert" and s.domain in r.domain_scores]
        top = max(experts, key=lambda r: r.domain_scores[s.domain].value)
        assert s.best_expert == top.label and s.expert_score == top.domain_scores[s.domain].value
        assert s.mixed_score == mixed.domain_scores[s.domain].value
        assert s.delta == pytest.approx(s.mixed_score - s.expert_score)  # the table's own difference
    assert {s.domain: s.best_expert for s in comparison.synergy} == {"math": "RL-Math", "code": "RL-Code"}


def test_no_output_names_another_best_or_another_difference_than_the_tables(comparison, tmp_path):
    mixed, ties = comparison.mixed, comparison.row("Merge (TIES)")
    delta = signed(mixed.mean.value - ties.mean.value)

    markdown = to_markdown(comparison)
    claim = next(
        line for line in markdown.splitlines() if "the best merge" in line and line.startswith("- **")
    )
    assert "the best merge (TIES)" in claim and f"†: {delta} [" in claim
    assert "the best merge = the highest mean in the table" in markdown and "best merge (TA)" not in markdown
    assert "Best merge: Merge (TIES), the highest mean in the scores table" in "\n".join(
        summary_lines(comparison)
    )

    buffer = io.StringIO()
    Console(file=buffer, width=200, color_system=None).print(rich_renderable(comparison, width=200))
    terminal = buffer.getvalue()
    assert (
        "the best merge (TIES)" in terminal and f"{delta}†" in terminal and "best merge (TA)" not in terminal
    )

    for s in comparison.synergy:
        domain, expert, score = DOMAIN_LABELS[s.domain], f"{s.best_expert} †", pct(s.expert_score)
        assert f"| {domain} | {pct(s.mixed_score)} | {expert} | {score} | {signed(s.delta)} |" in markdown
        line = next(line for line in terminal.splitlines() if line.split()[:1] == [domain] and expert in line)
        assert line.split() == [
            domain,
            pct(s.mixed_score),
            *expert.split(),
            score,
            signed(s.delta),
            *line.split()[6:],
        ]

    data = json.loads(json.dumps(to_json(comparison)))
    assert data["best_merge"] == {"label": "Merge (TIES)", "choice": "the highest mean in the scores table"}
    for s in data["synergy"]:
        assert s["difference"]["estimate"]["value"] == pytest.approx(s["mixed_score"] - s["expert_score"])
        assert len(s["each_expert"]) == 2 and s["difference"]["best_of"] == 2

    write_differences_csv(comparison, tmp_path / "differences.csv")
    rows = list(csv.DictReader((tmp_path / "differences.csv").open()))
    best = next(r for r in rows if r["kind"] == "mixed_vs_best_merge")
    assert best["b"] == "the best merge (TIES)" and best["best_of"] == "2" and best["level"] == "0.95"
    assert float(best["difference"]) == pytest.approx(mixed.mean.value - ties.mean.value, abs=1e-6)
    assert {r["level"] for r in rows if r["kind"] == "mixed_vs_merge"} == {"0.975"}


def difference(b: str, interval: tuple[float, float], value: float = 0.03) -> Difference:
    return Difference("mixed_vs_merge", "RL-Multi", b, "mean", Estimate(value, interval, level=0.975))


def test_above_the_best_merge_means_above_every_merge_and_below_means_below_one():
    assert family_level(2) == 0.975 and family_level(4) == pytest.approx(0.9875)
    clear, unsure = difference("Merge (TIES)", (0.01, 0.05)), difference("Merge (TA)", (-0.01, 0.06), 0.04)
    best = versus_best([clear, unsure], 0, "mixed_vs_best_merge", "the best merge (TIES)")
    # above TIES alone, but not above TA: not above "the best merge", whichever of them it truly is
    assert best.estimate.ci95 == (-0.01, 0.05) and best.estimate.value == 0.03 and best.estimate.level == 0.95
    assert best.verdict == f"RL-Multi vs the best merge (TIES) on the mean: {UNRESOLVED}"
    above = versus_best(
        [clear, difference("Merge (TA)", (0.02, 0.07))], 0, "mixed_vs_best_merge", "the best merge (TIES)"
    )
    assert above.verdict == "RL-Multi above the best merge (TIES) on the mean"
    below_one = difference("Merge (TA)", (-0.06, -0.01), -0.03)
    below = versus_best([unsure, below_one], 1, "mixed_vs_best_merge", "the best merge (TA)")
    assert below.verdict == "RL-Multi below the best merge (TA) on the mean"
