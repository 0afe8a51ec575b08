"""Plots a paper could use: role legend, labels that neither overlap nor leave the axes, honest axes,
intervals that say what they are."""

from __future__ import annotations

import itertools

import pytest
from matplotlib.text import Text

from m2rl.compare import select_runs
from m2rl.compare.core import Comparison, build_comparison
from m2rl.compare.manifests import records_from_runs
from m2rl.compare.plots import (
    MARGIN,
    fitted_limits,
    plot_score_vs_hours,
    plot_transfer,
    score_vs_hours_figure,
    transfer_figure,
)
from m2rl.compare.records import RunRecord, method_label
from m2rl.ledger import Ledger
from study_builder import build_study


@pytest.fixture(scope="module")
def comparison(tmp_path_factory) -> Comparison:
    root = tmp_path_factory.mktemp("runs")
    build_study(root, seeds=(0, 1))
    return build_comparison(*records_from_runs(select_runs(Ledger(root)).runs), bootstrap_samples=300)


def test_score_plot_labels_neither_overlap_nor_leave_the_axes(comparison):
    fig = score_vs_hours_figure(comparison)
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    labels = [t for t in ax.texts if t.get_text() in {row.label for row in comparison.rows}]
    assert sorted(t.get_text() for t in labels) == sorted(row.label for row in comparison.rows)
    boxes = []
    for label in labels:
        label.update_positions(renderer)
        boxes.append(Text.get_window_extent(label, renderer))  # the text, not its leader line
    for box in boxes:
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b)
    assert ax.get_xlim()[0] == 0
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["SFT", "single-domain expert", "mixed run", "merge of experts", "Pareto front"]


def test_the_score_axis_is_fitted_to_the_intervals_and_says_they_are_unpaired(comparison):
    ax = score_vs_hours_figure(comparison).axes[0]
    lows = [100 * row.mean.ci95[0] for row in comparison.rows]
    highs = [100 * row.mean.ci95[1] for row in comparison.rows]
    bottom, top = ax.get_ylim()
    assert bottom <= min(lows) and max(highs) <= top  # every bar inside
    span = max(highs) - min(lows)
    assert top - bottom == pytest.approx(span * (1 + 2 * MARGIN))  # and little else
    assert bottom > 0  # not from 0, where the points would sit in a thin band
    title = ax.get_title()
    assert "each model's own 95% interval, unpaired (overlapping bars can still differ)" in title
    assert "(2 seeds x test items" in title


def test_a_second_panel_shows_the_paired_differences_from_sft_the_claims_rest_on(comparison):
    fig = score_vs_hours_figure(comparison)
    lower = fig.axes[1]
    differences = comparison.versus_sft
    assert [t.get_text() for t in lower.get_xticklabels()] == [d.a for d in differences]
    assert [d.a for d in differences] == comparison.transfer.rows and {d.b for d in differences} == {"SFT"}
    mixed = next(d for d in differences if d.a == "RL-Multi")
    assert mixed in comparison.headline  # the claim "RL-Multi above SFT on the mean", as plotted
    plotted = [container.lines[0].get_ydata()[0] for container in lower.containers]
    assert plotted == pytest.approx([100 * d.estimate.value for d in differences])
    bottom, top = lower.get_ylim()
    assert bottom < 0 < top and all(
        bottom <= 100 * d.estimate.ci95[0] and 100 * d.estimate.ci95[1] <= top for d in differences
    )
    filled = [container.lines[0].get_markerfacecolor() != "white" for container in lower.containers]
    assert filled == [d.resolved for d in differences] and any(filled)
    assert "paired 95% intervals, as in the claims; filled: the interval excludes 0" in lower.get_title()
    assert lower.get_title().startswith("Change vs SFT on the mean (points)")


def test_fitted_limits_of_flat_data_keep_a_visible_range():
    assert fitted_limits([0.0, 0.0], [0.0, 0.0], bounds=(0.0, 100.0)) == (0.0, 1.0)
    assert fitted_limits([95.0], [100.0], bounds=(0.0, 100.0)) == (95.0 - 5 * MARGIN, 100.0)


def test_transfer_heatmap_marks_the_cells_whose_interval_excludes_zero(comparison):
    fig = transfer_figure(comparison)
    ax = fig.axes[0]
    marked = {
        (round(t.get_position()[1]), round(t.get_position()[0]))
        for t in ax.texts
        if t.get_text().endswith("*")
    }
    resolved = {
        (i, j)
        for i, row in enumerate(comparison.transfer.cells)
        for j, cell in enumerate(row)
        if cell.resolved
    }
    assert marked == resolved and resolved
    assert [t.get_text() for t in ax.get_yticklabels()] == comparison.transfer.rows


def test_both_plots_are_written_as_png_pdf_and_svg(comparison, tmp_path):
    paths = plot_score_vs_hours(comparison, tmp_path / "score_vs_hours")
    paths += plot_transfer(comparison, tmp_path / "transfer_heatmap")
    assert [p.name for p in paths] == [
        f"{name}.{fmt}" for name in ("score_vs_hours", "transfer_heatmap") for fmt in ("png", "pdf", "svg")
    ]
    heads = {p.suffix: p.read_bytes()[:200] for p in paths}
    assert (
        heads[".png"].startswith(b"\x89PNG")
        and heads[".pdf"].startswith(b"%PDF-")
        and b"<svg" in heads[".svg"]
    )


@pytest.mark.parametrize(
    ("method", "label"),
    [
        ("paper_ties", "TIES"),
        ("paper_ta", "TA"),
        ("paper_average", "Average"),
        ("paper_dare_ties", "TIES+DARE"),
        ("paper_dare_ta", "TA+DARE"),
        ("paper_sce", "SCE"),
        ("ties", "TIES"),
        ("task_arithmetic", "TA"),
        ("linear", "Average"),
        ("model_stock", "Model Stock"),
    ],
)
def test_merge_methods_are_named_as_the_literature_writes_them(method, label):
    assert method_label(method) == label
    assert RunRecord("m", "merge", merge_method=method).label == f"Merge ({label})"
