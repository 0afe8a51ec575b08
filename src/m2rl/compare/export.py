"""The comparison for scripts: compare.csv (one row per model), differences.csv and compare.json (everything).

Scores and differences are in [0, 1] units at full precision; every one carries its interval bounds
(`_lo`/`_hi` columns, `ci95` in JSON; empty or null without per-item results).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from m2rl.compare.cascade import Cascade
from m2rl.compare.claims import Difference
from m2rl.compare.core import Comparison
from m2rl.compare.intervals import LEVEL, Estimate
from m2rl.compare.statistics import Row

SCHEMA_VERSION = 2  # 2: estimates carry `level`, differences `best_of` (no more `items`); `warnings`


def _num(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.6f}"


def _bounds(estimate: Estimate | None) -> list[str]:
    """value, low, high as CSV cells."""
    if estimate is None:
        return ["", "", ""]
    low, high = estimate.ci95 or (None, None)
    return [_num(estimate.value), _num(low), _num(high)]


def _with_bounds(name: str) -> list[str]:
    return [name, f"{name}_lo", f"{name}_hi"]


def write_csv(comparison: Comparison, path: Path) -> None:
    """One row per model: runs, role, every benchmark, domain average and mean with bounds, costs."""
    domains = comparison.domains
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "run_id",
                "name",
                "label",
                "role",
                "kind",
                "trained_on",
                "seeds",
                *[c for b in comparison.benchmarks for c in _with_bounds(b)],
                *[c for d in domains for c in _with_bounds(f"avg_{d}")],
                *_with_bounds("mean"),
                "n_benchmarks",
                "own_hours",
                "cumulative_hours",
                "hours_label",
            ]
        )
        for row in comparison.rows:
            writer.writerow(
                [
                    ";".join(r.id for r in row.replicates),
                    ";".join(r.name for r in row.replicates),
                    row.label,
                    row.role,
                    row.record.kind,
                    row.record.trained_on,
                    ";".join("" if s is None else str(s) for s in row.seeds),
                    *[c for b in comparison.benchmarks for c in _bounds(row.scores.get(b))],
                    *[c for d in domains for c in _bounds(row.domain_scores.get(d))],
                    *_bounds(row.mean if row.n_benchmarks else None),
                    row.n_benchmarks,
                    f"{row.own_hours.value:.6g}",
                    f"{row.cumulative_hours.value:.6g}",
                    comparison.hours_label,
                ]
            )


def write_differences_csv(comparison: Comparison, path: Path) -> None:
    """Every reported difference: what minus what, on what, its interval, and the verdict."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "kind",
                "a",
                "b",
                "scope",
                *_with_bounds("difference"),
                "level",
                "best_of",
                "n_seeds",
                "n_items",
                "verdict",
            ]
        )
        for d in comparison.differences:
            writer.writerow(
                [
                    d.kind,
                    d.a,
                    d.b,
                    d.scope,
                    *_bounds(d.estimate),
                    d.estimate.level if d.estimate.ci95 is not None else "",
                    d.best_of or "",
                    d.estimate.n_seeds,
                    d.estimate.n_items,
                    d.verdict,
                ]
            )


def _finite(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value


def estimate_json(estimate: Estimate | None) -> dict[str, Any] | None:
    """An estimate as JSON (NaN as null)."""
    if estimate is None:
        return None
    return {
        "value": _finite(estimate.value),
        "ci95": list(estimate.ci95) if estimate.ci95 is not None else None,
        "level": estimate.level if estimate.ci95 is not None else None,
        "n_seeds": estimate.n_seeds,
        "n_items": estimate.n_items,
        "per_seed": [_finite(v) for v in estimate.per_seed],
    }


def difference_json(d: Difference | None) -> dict[str, Any] | None:
    if d is None:
        return None
    return {
        "kind": d.kind,
        "a": d.a,
        "b": d.b,
        "scope": d.scope,
        "best_of": d.best_of or None,
        "estimate": estimate_json(d.estimate),
        "verdict": d.verdict,
        "resolved": d.resolved,
    }


def _row_json(row: Row) -> dict[str, Any]:
    return {
        "label": row.label,
        "role": row.role,
        "kind": row.record.kind,
        "trained_on": row.record.trained_on,
        "runs": [{"id": r.id, "name": r.name, "seed": r.seed, "study": r.study} for r in row.replicates],
        "scores": {b: estimate_json(e) for b, e in row.scores.items()},
        "domain_scores": {d: estimate_json(e) for d, e in row.domain_scores.items()},
        "mean": estimate_json(row.mean) if row.n_benchmarks else None,
        "n_benchmarks": row.n_benchmarks,
        "own_hours": estimate_json(row.own_hours),
        "cumulative_hours": estimate_json(row.cumulative_hours),
    }


def _cascade_json(cascade: Cascade) -> dict[str, Any]:
    return {
        "label": cascade.row.label,
        "order": list(cascade.order),
        "stages": [[r.id for r in stage.replicates] for stage in cascade.stages],
        "stage_hours": cascade.stage_hours,
        "hours": estimate_json(cascade.row.own_hours),
        "claims": [difference_json(d) for d in cascade.claims],
        "forgetting": [
            {
                "domain": f.domain,
                "stage": f.stage,
                "after_stage": estimate_json(f.after),
                "end": estimate_json(f.end),
                "change": difference_json(f.change),
            }
            for f in cascade.forgetting
        ],
    }


def to_json(comparison: Comparison) -> dict[str, Any]:
    """The whole comparison as one JSON-ready object."""
    c = comparison
    ratio = c.cost_ratio
    return {
        "schema_version": SCHEMA_VERSION,
        "studies": c.studies,
        "seeds": c.seeds,
        "intervals": {
            "level": LEVEL,
            "method": "crossed bootstrap over training seeds and test items, paired for differences",
            "resamples": c.bootstrap_samples,
            "covers": c.variance_note,
            "units": "scores and differences in [0, 1]; x100 for % and points",
        },
        "hours_label": c.hours_label,
        "benchmarks": {b: c.benchmark_domains[b] for b in c.benchmarks},
        "domains": c.domains,
        "rows": [_row_json(r) for r in c.rows],
        "mixed": c.mixed.label if c.mixed is not None else None,
        "best_merge": (
            {"label": c.best_merge.label, "choice": c.best_merge_choice} if c.best_merge is not None else None
        ),
        "headline": [difference_json(d) for d in c.headline],
        "differences": [difference_json(d) for d in c.differences],
        "synergy": [
            {
                "domain": s.domain,
                "mixed_score": _finite(s.mixed_score),
                "best_expert": s.best_expert,
                "expert_score": _finite(s.expert_score),
                "difference": difference_json(s.difference),
                "each_expert": [difference_json(d) for d in s.each],
            }
            for s in c.synergy
        ],
        "transfer": (
            {
                "reference": c.transfer.reference,
                "rows": c.transfer.rows,
                "domains": c.transfer.domains,
                "cells": [[difference_json(cell) for cell in row] for row in c.transfer.cells],
            }
            if c.transfer is not None
            else None
        ),
        "cost_ratio": (
            {
                "mixed": ratio.mixed,
                "merge": ratio.merge,
                "hours_label": ratio.hours_label,
                "ratio": estimate_json(ratio.ratio),
                "describe": ratio.describe(),
                "seeds": [
                    {
                        "seed": s.seed,
                        "mixed_hours": s.mixed_hours,
                        "expert_hours": s.expert_hours,
                        "merge_hours": s.merge_hours,
                        "ratio": _finite(s.ratio),
                    }
                    for s in ratio.seeds
                ],
            }
            if ratio is not None
            else None
        ),
        "distill": c.distill.label if c.distill is not None else None,
        "cost_ratio_with_distill": (
            {
                "mixed": c.cost_ratio_with_distill.mixed,
                "merge": c.cost_ratio_with_distill.merge,
                "ratio": estimate_json(c.cost_ratio_with_distill.ratio),
                "describe": c.cost_ratio_with_distill.describe(),
            }
            if c.cost_ratio_with_distill is not None
            else None
        ),
        "cascades": [_cascade_json(cascade) for cascade in c.cascades],
        "notes": c.notes,
        "warnings": c.warnings,
    }


def write_json(comparison: Comparison, path: Path) -> None:
    """compare.json: the whole result for scripts."""
    path.write_text(json.dumps(to_json(comparison), indent=2, allow_nan=False) + "\n")
