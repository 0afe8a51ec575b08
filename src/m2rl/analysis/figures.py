"""The analysis as PNG figures: overlap and cosine heatmaps, the KL matrix, consistency and judge bars."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from m2rl.analysis.consistency import ALL_DOMAINS, Consistency
from m2rl.analysis.runner import Analysis, JudgeRow, LineageAnalysis
from m2rl.compare.records import DOMAIN_LABELS

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def _pyplot():
    # lazy: matplotlib, only where the figures are drawn
    import matplotlib

    matplotlib.use("Agg")
    # lazy: pyplot only once the Agg backend is chosen
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.savefig(path, bbox_inches="tight", dpi=150)
    _pyplot().close(fig)
    return path


def _heatmap(
    ax: Axes, matrix: np.ndarray, labels: tuple[list[str], list[str]], text: list[list[str]], scale: tuple
) -> None:
    """`matrix` as an annotated heatmap: `labels` (rows, columns), `scale` (vmin, vmax, colormap)."""
    rows, columns = labels
    vmin, vmax, cmap = scale
    shown = np.ma.masked_invalid(np.asarray(matrix, dtype=float))
    image = ax.imshow(shown, vmin=vmin, vmax=vmax, cmap=cmap)
    ax.set_xticks(range(len(columns)), columns, rotation=35, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    for i in range(len(rows)):
        for j in range(len(columns)):
            red, green, blue, _ = image.cmap(image.norm(shown[i, j]))
            dark = shown[i, j] is not np.ma.masked and 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
            ax.text(
                j, i, text[i][j], ha="center", va="center", fontsize=7, color="white" if dark else "black"
            )
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)


def _suffix(lineage: LineageAnalysis, several: bool) -> str:
    return f"_s{lineage.seed}" if several and lineage.seed is not None else ""


def geometry_figures(lineage: LineageAnalysis, folder: Path, several: bool) -> list[Path]:
    """jaccard.png (observed, with the independent-masks reference) and cosine.png (exact and projected)."""
    geometry = lineage.geometry
    if geometry is None:
        return []
    plt = _pyplot()
    labels, suffix = geometry.labels, _suffix(lineage, several)
    size = 1.2 + 0.75 * len(labels)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    jaccard, random = geometry.jaccard, geometry.jaccard_random
    text = [
        [f"{jaccard[i, j]:.2f}\n({random[i, j]:.2f})" for j in range(len(labels))] for i in range(len(labels))
    ]
    ax.set_title("Jaccard overlap of changed weights\n(independent masks of those rates)", fontsize=10)
    _heatmap(ax, jaccard, (labels, labels), text, (0.0, 1.0, "viridis"))
    paths = [_save(fig, folder / f"jaccard{suffix}.png")]
    fig, axes = plt.subplots(1, 2, figsize=(2 * size + 3, size), layout="constrained")
    dim = geometry.projected.shape[1]
    for ax, matrix, title in (
        (axes[0], geometry.cosine, "cosine of task vectors (exact)"),
        (axes[1], geometry.projected_cosine, f"cosine after a {dim}-d orthogonal projection"),
    ):
        text = [[f"{v:.2f}" if not math.isnan(v) else "-" for v in row] for row in matrix]
        ax.set_title(title, fontsize=10)
        _heatmap(ax, matrix, (labels, labels), text, (-1.0, 1.0, "RdBu_r"))
    paths.append(_save(fig, folder / f"cosine{suffix}.png"))
    return paths


def kl_figure(lineage: LineageAnalysis, folder: Path, several: bool) -> list[Path]:
    """kl.png: per-token KL(pi_B || pi_multi) per prompt domain and expert, annotated with the score change."""
    matrix = lineage.neighbourhoods
    if matrix is None:
        return []
    plt = _pyplot()
    values = np.array([[math.nan if c is None else c.per_token for c in row] for row in matrix.cells])
    text = []
    for cells, changes in zip(matrix.cells, matrix.score_change, strict=True):
        line = []
        for cell, change in zip(cells, changes, strict=True):
            kl = "-" if cell is None else f"{cell.per_token:.3f}±{cell.per_token_se:.3f}"
            line.append(kl + ("" if change is None else f"\nΔ {change:+.1f}"))
        text.append(line)
    rows = [f"{DOMAIN_LABELS.get(d, d)} prompts" for d in matrix.domains]
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(matrix.experts), 1.2 + 0.9 * len(rows)))
    top = float(np.nanmax(values)) if np.isfinite(values).any() else 1.0
    reference = matrix.reference
    ax.set_title(
        f"KL(expert || {reference}) per token, nats\nΔ: {reference} minus the expert, points", fontsize=10
    )
    _heatmap(ax, values, (rows, matrix.experts), text, (0.0, max(top, 1e-9), "magma_r"))
    return [_save(fig, folder / f"kl{_suffix(lineage, several)}.png")]


def consistency_figure(rows: list[Consistency], folder: Path) -> list[Path]:
    """consistency.png: consistency per model, grouped by eval domain, with 95% intervals."""
    if not rows:
        return []
    plt = _pyplot()
    domains = list(dict.fromkeys(r.domain for r in rows))
    models = list(dict.fromkeys(r.model for r in rows))
    by_key = {(r.model, r.domain): r for r in rows}
    width = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(1.5 + 1.4 * len(domains), 3.6))
    for m, model in enumerate(models):
        xs, ys, low, high = [], [], [], []
        for d, domain in enumerate(domains):
            row = by_key.get((model, domain))
            if row is None or math.isnan(row.value):
                continue
            xs.append(d + (m - (len(models) - 1) / 2) * width)
            ys.append(row.value)
            low.append(row.value - (row.ci95[0] if row.ci95 else row.value))
            high.append((row.ci95[1] if row.ci95 else row.value) - row.value)
        ax.bar(xs, ys, width, yerr=[low, high], capsize=2, label=model)
    names = ["all domains" if d == ALL_DOMAINS else DOMAIN_LABELS.get(d, d) for d in domains]
    ax.set_xticks(range(len(domains)), names)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("cos(g_union, g_model)")
    ax.set_title("skill consistency with the experts' per-item gains (95% intervals)", fontsize=10)
    ax.legend(fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left")
    return [_save(fig, folder / "consistency.png")]


def judge_figure(rows: list[JudgeRow], folder: Path, suffix: str = "") -> list[Path]:
    """judge.png: one panel per domain, each model's judge accuracy (Wilson 95% intervals) per mode."""
    if not rows:
        return []
    plt = _pyplot()
    domains = list(dict.fromkeys(r.domain for r in rows))
    modes = list(dict.fromkeys(r.mode for r in rows))
    width = 0.8 / len(modes)
    fig, axes = plt.subplots(
        1, len(domains), figsize=(1.5 + 2.6 * len(domains), 3.8), squeeze=False, sharey=True
    )
    for ax, domain in zip(axes[0], domains, strict=True):
        models = list(dict.fromkeys(r.model for r in rows if r.domain == domain))
        scores = {(r.model, r.mode): r.score for r in rows if r.domain == domain}
        for m, mode in enumerate(modes):
            xs, ys, low, high = [], [], [], []
            for i, model in enumerate(models):
                score = scores.get((model, mode))
                if score is None or not score.n:
                    continue
                interval = score.ci95 or (score.accuracy, score.accuracy)
                xs.append(i + (m - (len(modes) - 1) / 2) * width)
                ys.append(score.accuracy)
                low.append(score.accuracy - interval[0])
                high.append(interval[1] - score.accuracy)
            ax.bar(xs, ys, width, yerr=[low, high], capsize=2, label=mode)
        ax.set_xticks(range(len(models)), models, rotation=60, ha="right", fontsize=7)
        ax.set_title(f"{DOMAIN_LABELS.get(domain, domain)} trajectories", fontsize=9)
        ax.set_ylim(0, 1.05)
    axes[0][0].set_ylabel("judge accuracy vs the verifier")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle("self-verification: outcome-only vs process judging (Wilson 95% intervals)", fontsize=10)
    return [_save(fig, folder / f"judge{suffix}.png")]


def write_figures(analysis: Analysis, folder: Path) -> list[Path]:
    """Every figure of the analysis into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    several = len(analysis.lineages) > 1
    paths: list[Path] = []
    for lineage in analysis.lineages:
        paths += geometry_figures(lineage, folder, several)
        paths += kl_figure(lineage, folder, several)
        paths += judge_figure(lineage.judges, folder, _suffix(lineage, several))
    paths += consistency_figure(analysis.consistency, folder)
    return paths
