"""Plots a paper could use: role legend, labels that neither overlap nor leave the axes, honest axes."""

from __future__ import annotations

import itertools

import pytest
from matplotlib.text import Text

from m2rl.compare import select_runs
from m2rl.compare.core import Comparison, build_comparison
from m2rl.compare.manifests import records_from_runs
from m2rl.compare.plots import plot_score_vs_hours, plot_transfer, score_vs_hours_figure, transfer_figure
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
    assert ax.get_ylim()[0] == 0 and ax.get_xlim()[0] == 0
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["SFT", "single-domain expert", "mixed run", "merge of experts", "Pareto front"]
    assert "95% interval (2 seeds x test items)" in ax.get_title()


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
