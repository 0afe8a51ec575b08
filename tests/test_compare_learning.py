"""A study that learned nothing says so: a warning naming the domains, and no zero read as a measurement."""

from __future__ import annotations

import io
import json

from rich.console import Console
from typer.testing import CliRunner

from m2rl.compare import compare_runs, select_runs
from m2rl.compare.claims import IDENTICAL, UNRESOLVED, Difference
from m2rl.compare.intervals import Estimate
from m2rl.compare.render import rich_renderable
from m2rl.ledger import Ledger
from study_builder import DOMAINS, SKILL, build_study

NOTHING = {role: dict.fromkeys(DOMAINS, -1.0) for role in SKILL}  # no model solves any item


def compared(root):
    selection = select_runs(Ledger(root))
    return compare_runs(selection.runs, selection.out_dir, bootstrap_samples=200)


def words(text: str) -> str:
    return " ".join(text.split())


def test_a_study_where_every_model_scored_zero_ends_with_a_warning_that_names_it(tmp_path):
    build_study(tmp_path / "runs", seeds=(0, 1), n_items=12, skills=NOTHING)
    result = compared(tmp_path / "runs")
    comparison = result.comparison
    assert all(row.mean.value == 0 for row in comparison.rows)
    (warning,) = comparison.warnings
    assert warning.startswith("every model scored 0.0% on Math, Code, Science, IF: the study learned nothing")
    assert "make the domain's data easier or train SFT longer" in warning

    markdown = result.markdown_path.read_text()
    assert f"> **warning**: {warning}" in markdown
    assert json.loads(result.json_path.read_text())["warnings"] == [warning]
    buffer = io.StringIO()
    Console(file=buffer, width=80, color_system=None).print(rich_renderable(comparison, width=80))
    assert words(buffer.getvalue()).endswith(f"warning: {words(warning)}")

    # +0.00 [+0.00, +0.00] is no measurement: every claim says the models were the same on every item
    assert comparison.headline and all(d.verdict.endswith(IDENTICAL) for d in comparison.headline)
    assert UNRESOLVED not in markdown and "- **RL-Math vs SFT on math: the same on every item" in markdown
    assert {s.difference.short_verdict for s in comparison.synergy} == {"identical"}


def test_the_cli_prints_the_warning(tmp_path):
    from m2rl.cli import app

    build_study(tmp_path / "runs", seeds=(0,), n_items=12, skills=NOTHING)
    result = CliRunner().invoke(
        app, ["compare", "--runs-dir", str(tmp_path / "runs"), "--bootstrap-samples", "200"]
    )
    assert result.exit_code == 0, result.output
    assert "warning: every model scored 0.0% on Math, Code, Science, IF" in words(result.output)


def test_sft_at_zero_on_one_domain_is_named_while_the_rest_learned(tmp_path):
    build_study(tmp_path / "runs", seeds=(0,), n_items=24, skills={"sft": {"code": -1.0}})
    comparison = compared(tmp_path / "runs").comparison
    assert comparison.row("SFT").domain_scores["code"].value == 0
    assert comparison.row("RL-Code").domain_scores["code"].value > 0
    assert comparison.warnings == [
        "SFT scored 0.0% on Code: RL has almost no reward to learn from there, so what the study says "
        "about it rests on a model that solves nothing (make the domain's data easier or train SFT longer)"
    ]


def test_a_study_that_learned_has_no_warning(tmp_path):
    build_study(tmp_path / "runs", seeds=(0,), n_items=24)
    assert compared(tmp_path / "runs").comparison.warnings == []


def test_a_zero_difference_with_a_zero_width_interval_is_not_a_measured_zero():
    same = Difference("expert_vs_sft", "RL-Code", "SFT", "code", Estimate(0.0, (0.0, 0.0)))
    assert same.verdict == f"RL-Code vs SFT on code: {IDENTICAL}" and same.short_verdict == "identical"
    assert not same.resolved
    measured = Difference("expert_vs_sft", "RL-Code", "SFT", "code", Estimate(0.0, (-0.02, 0.02)))
    assert measured.verdict == f"RL-Code vs SFT on code: {UNRESOLVED}"
    every_item_one_better = Difference("expert_vs_sft", "RL-Code", "SFT", "code", Estimate(1.0, (1.0, 1.0)))
    assert every_item_one_better.verdict == "RL-Code above SFT on code"
