"""Figures of the comparison, as PNG, PDF and SVG: mean score vs cumulative cost, and the transfer heatmap.

Score vs cost: one point per model with its 95% interval (and its cost's range over seeds), colours by
role with a legend, the Pareto front; the cost axis from 0, the score axis fitted to the intervals
(from 0 every point would sit in a thin band). Labels are placed where they overlap neither each
other nor a point, inside the axes; the legend sits outside them. A model's own interval is unpaired:
two models' bars can overlap while their paired difference, which the claims rest on, is resolved.
So a second panel shows what the claims show: each trained model minus the SFT of its lineage on the
mean, with its paired interval.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from m2rl.compare.core import Comparison
from m2rl.compare.records import DOMAIN_LABELS
from m2rl.compare.statistics import Row

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.transforms import Bbox

FORMATS = ("png", "pdf", "svg")
ROLE_COLOURS = {
    "base": "#7f7f7f",
    "sft": "#1f77b4",
    "expert": "#2ca02c",
    "mixed": "#d62728",
    "merge": "#9467bd",
    "distill": "#ff7f0e",
    "cascade": "#8c564b",
}
ROLE_NAMES = {
    "base": "base model",
    "sft": "SFT",
    "expert": "single-domain expert",
    "mixed": "mixed run",
    "merge": "merge of experts",
    "distill": "MT-OPD (distilled from the experts)",
    "cascade": "cascade (RL on one domain after another)",
}
# Label positions around a point (offset in points, alignment), tried nearest first, then farther out.
LABEL_OFFSETS = ((6, 4, "left", "bottom"), (6, -4, "left", "top"), (-6, 4, "right", "bottom"),
                 (-6, -4, "right", "top"), (0, 8, "center", "bottom"), (0, -8, "center", "top"))  # fmt: skip
LABEL_DISTANCES = (1.0, 2.5, 4.0, 6.0)
MARGIN = 0.12  # of the data's span, around a fitted axis (room for labels)
SCORE_BARS = "bars: each model's own 95% interval, unpaired (overlapping bars can still differ)"
PAIRED_BARS = "paired 95% intervals, as in the claims; filled: the interval excludes 0"


def fitted_limits(
    lows: list[float], highs: list[float], bounds: tuple[float, float] | None = None
) -> tuple[float, float]:
    """Axis limits around [min(lows), max(highs)] with a margin, kept within `bounds`."""
    low, high = min(lows, default=0.0), max(highs, default=1.0)
    margin = MARGIN * (high - low) or 1.0
    low, high = low - margin, high + margin
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return low, high


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points no other point beats (no more hours and no lower score, one of them strictly)."""
    front = []
    for i, (hi, si) in enumerate(points):
        dominated = any(
            (hj <= hi and sj >= si) and (hj < hi or sj > si) for j, (hj, sj) in enumerate(points) if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def _pyplot():
    # lazy: matplotlib, only where a figure is drawn (compare imports this module)
    import matplotlib

    matplotlib.use("Agg")
    # lazy: pyplot only once the Agg backend is chosen
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Figure, stem: Path) -> list[Path]:
    """Write `stem`.png, .pdf and .svg (nothing clipped) and close the figure."""
    paths = []
    for fmt in FORMATS:
        path = stem.with_suffix(f".{fmt}")
        fig.savefig(path, bbox_inches="tight", dpi=150)
        paths.append(path)
    _pyplot().close(fig)
    return paths


def _overlap(a: Bbox, b: Bbox) -> float:
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(width, 0.0) * max(height, 0.0)


def _place_labels(
    ax: Axes, points: list[tuple[float, float]], spans: list[tuple[float, float]], labels: list[str]
) -> None:
    """Annotate each point where its label overlaps no other label, point or error bar (`spans`: each
    point's low and high y) and stays inside the axes."""
    # lazy: matplotlib, only where a figure is drawn (compare imports this module)
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    taken = []
    for (x, _), (low, high) in zip(points, spans, strict=True):
        (x0, y0), (_, y1) = ax.transData.transform([(x, low), (x, high)])
        taken.append(Bbox.from_extents(x0 - 5, y0 - 5, x0 + 5, y1 + 5))  # the marker and its bar
    for point, label in sorted(zip(points, labels, strict=True), key=lambda pair: -pair[0][1]):
        best = None
        for distance in LABEL_DISTANCES:
            for dx, dy, ha, va in LABEL_OFFSETS:
                arrow = {"arrowstyle": "-", "lw": 0.5, "color": "0.5"} if distance > 1 else None
                note = ax.annotate(
                    label, point, xytext=(dx * distance, dy * distance), textcoords="offset points",
                    ha=ha, va=va, fontsize=8, arrowprops=arrow,
                )  # fmt: skip
                note.update_positions(renderer)
                box = Text.get_window_extent(note, renderer).padded(2)  # the text, not its leader line
                outside = box.x0 < frame.x0 or box.x1 > frame.x1 or box.y0 < frame.y0 or box.y1 > frame.y1
                cost = sum(_overlap(box, other) for other in taken) + (1e6 if outside else 0.0)
                if best is None or cost < best[0]:
                    if best is not None:
                        best[1].remove()
                    best = (cost, note, box)
                else:
                    note.remove()
                if cost == 0:
                    break
            if best is not None and best[0] == 0:
                break
        taken.append(best[2])


def _score_span(row: Row) -> tuple[float, float]:
    """The row's mean score interval in %, or its value twice."""
    low, high = row.mean.ci95 or (row.mean.value, row.mean.value)
    return 100 * low, 100 * high


def _versus_sft_panel(ax: Axes, comparison: Comparison) -> None:
    """Each trained model minus the SFT of its lineage on the mean, with its paired interval."""
    differences = [d for d in comparison.versus_sft if not math.isnan(d.estimate.value)]
    roles = {row.label: row.role for row in comparison.rows}
    spans = []
    for x, d in enumerate(differences):
        value = 100 * d.estimate.value
        low, high = (100 * v for v in (d.estimate.ci95 or (d.estimate.value,) * 2))
        spans.append((low, high))
        colour = ROLE_COLOURS.get(roles.get(d.a, ""), "black")
        ax.errorbar(
            [x],
            [value],
            yerr=[[max(value - low, 0.0)], [max(high - value, 0.0)]],
            fmt="o",
            color=colour,
            mfc=colour if d.resolved else "white",
            ms=5,
            capsize=2,
            lw=1,
            zorder=3,
        )
    ax.axhline(0, color="0.4", lw=0.8, zorder=1)
    ax.set_xticks(range(len(differences)), [d.a for d in differences], rotation=30, ha="right", fontsize=8)
    ax.set_xlim(-0.6, len(differences) - 0.4)
    ax.set_ylim(*fitted_limits([0.0, *(s[0] for s in spans)], [0.0, *(s[1] for s in spans)]))
    references = sorted({d.b for d in differences})
    ax.set_ylabel(f"minus {' / '.join(references)} (points)")
    ax.set_title(f"Change vs {' / '.join(references)} on the mean (points)\n{PAIRED_BARS}", fontsize=9)
    ax.grid(alpha=0.3, axis="y")


def score_vs_hours_figure(comparison: Comparison) -> Figure:
    """Mean score (%) with its 95% interval against cumulative cost, per model, with the Pareto front;
    below it, each trained model's paired difference from SFT on the mean."""
    plt = _pyplot()
    # lazy: matplotlib, only where a figure is drawn (compare imports this module)
    from matplotlib.lines import Line2D

    rows: list[Row] = [r for r in comparison.rows if r.n_benchmarks and not math.isnan(r.mean.value)]
    points = [(r.cumulative_hours.value, 100 * r.mean.value) for r in rows]
    spans = [_score_span(r) for r in rows]
    paired = bool(comparison.versus_sft)
    if paired:
        fig, (ax, lower) = plt.subplots(2, 1, figsize=(7.5, 8.0), gridspec_kw={"height_ratios": [3, 2]})
    else:
        fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for row, (x, y), (low, high) in zip(rows, points, spans, strict=True):
        costs = row.cumulative_hours.per_seed or (x,)
        ax.errorbar(
            [x],
            [y],
            yerr=[[max(y - low, 0.0)], [max(high - y, 0.0)]],
            xerr=[[max(x - min(costs), 0.0)], [max(max(costs) - x, 0.0)]] if len(costs) > 1 else None,
            fmt="o",
            color=ROLE_COLOURS.get(row.role, "black"),
            ms=5,
            capsize=2,
            lw=1,
            zorder=3,
        )
    handles = [
        Line2D([], [], marker="o", ls="", color=ROLE_COLOURS[role], label=ROLE_NAMES[role])
        for role in ROLE_COLOURS
        if any(r.role == role for r in rows)
    ]
    front = pareto_front(points)
    if len(front) > 1:
        ax.plot(
            [points[i][0] for i in front], [points[i][1] for i in front], "--", color="0.4", lw=1, zorder=2
        )
        handles.append(Line2D([], [], ls="--", color="0.4", label="Pareto front"))
    ax.set_ylim(*fitted_limits([s[0] for s in spans], [s[1] for s in spans], bounds=(0.0, 100.0)))
    ax.set_xlim(0, max((max(r.cumulative_hours.per_seed or (0,)) for r in rows), default=1.0) * 1.25 or 1.0)
    ax.set_xlabel(f"cumulative cost of the run and its lineage: {comparison.hours_label}")
    ax.set_ylabel(f"mean Avg@K over {len(comparison.benchmarks)} benchmarks (%)")
    ax.set_title(
        f"Score vs cost (score axis fitted to the intervals)\n{SCORE_BARS}\n({comparison.variance_note}"
        + ("; horizontal: cost range over seeds)" if comparison.max_seeds > 1 else ")"),
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    if paired:
        _versus_sft_panel(lower, comparison)
    fig.tight_layout()
    _place_labels(ax, points, spans, [r.label for r in rows])
    return fig


def transfer_figure(comparison: Comparison) -> Figure | None:
    """Heatmap of the transfer matrix (points vs SFT), diverging around 0, resolved cells marked."""
    if comparison.transfer is None:
        return None
    plt = _pyplot()
    # lazy: matplotlib, only where a figure is drawn (compare imports this module)
    from matplotlib.patches import Rectangle

    t = comparison.transfer
    values = 100 * np.array(t.values, dtype=float)
    bound = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
    bound = bound or 1.0
    fig, ax = plt.subplots(figsize=(2.2 + 1.3 * len(t.domains), 1.4 + 0.5 * len(t.rows)))
    image = ax.imshow(values, cmap="RdBu", vmin=-bound, vmax=bound, aspect="auto")
    ax.set_xticks(range(len(t.domains)), [DOMAIN_LABELS.get(d, d) for d in t.domains])
    ax.set_yticks(range(len(t.rows)), t.rows)
    for i, cells in enumerate(t.cells):
        for j, cell in enumerate(cells):
            if cell is None or not np.isfinite(values[i, j]):
                continue
            colour = "white" if abs(values[i, j]) > 0.6 * bound else "black"
            resolved = cell.resolved
            ax.text(
                j,
                i,
                f"{values[i, j]:+.1f}" + ("*" if resolved else ""),
                ha="center",
                va="center",
                fontsize=8,
                color=colour,
                fontweight="bold" if resolved else "normal",
            )
            if resolved:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="black", lw=1.5))
    ax.set_xlabel("eval domain")
    ax.set_title(
        f"Change vs {t.reference} (points)\n* boxed: the paired 95% interval excludes 0", fontsize=10
    )
    fig.colorbar(image, ax=ax, shrink=0.8, label="points")
    fig.tight_layout()
    return fig


def plot_score_vs_hours(comparison: Comparison, stem: Path) -> list[Path]:
    """score_vs_hours.{png,pdf,svg} at `stem`."""
    return save_figure(score_vs_hours_figure(comparison), stem)


def plot_transfer(comparison: Comparison, stem: Path) -> list[Path]:
    """transfer_heatmap.{png,pdf,svg} at `stem`, or nothing without a transfer matrix."""
    fig = transfer_figure(comparison)
    return [] if fig is None else save_figure(fig, stem)
