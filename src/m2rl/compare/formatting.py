"""Numbers and sentences as the comparison shows them: scores in %, differences in signed points,
intervals in brackets; the header and summary lines the terminal and compare.md share."""

from __future__ import annotations

import math

from m2rl.compare.best import family_level
from m2rl.compare.claims import Difference
from m2rl.compare.core import Comparison
from m2rl.compare.costs import format_hours
from m2rl.compare.intervals import LEVEL, Estimate
from m2rl.compare.records import trains_on_all_domains
from m2rl.compare.statistics import Row

DASH = "—"
BEST_MARK = "†"  # a difference from "the best" of several rows, with an interval simultaneous over them
PLURALS = {"merge": "merges", "expert": "experts"}

__all__ = [
    "BEST_MARK",
    "DASH",
    "best_note",
    "compact",
    "format_hours",
    "header_line",
    "interval",
    "interval_with_level",
    "level_words",
    "pct",
    "signed",
    "summary_lines",
    "trained_on",
    "with_interval",
]


def _missing(value: float | None) -> bool:
    return value is None or math.isnan(value)


def pct(value: float | None, digits: int = 2) -> str:
    """A [0, 1] score as a percentage, or a dash."""
    return DASH if _missing(value) else f"{100 * value:.{digits}f}"


def signed(value: float | None, digits: int = 2) -> str:
    """A [0, 1] difference in percentage points with its sign, or a dash."""
    return DASH if _missing(value) else f"{100 * value:+.{digits}f}"


def interval(estimate: Estimate, is_difference: bool = False, digits: int = 2) -> str:
    """`[27.10, 36.90]` (signed for a difference), or a dash without an interval."""
    if estimate.ci95 is None:
        return DASH
    show = signed if is_difference else pct
    return f"[{show(estimate.ci95[0], digits)}, {show(estimate.ci95[1], digits)}]"


def level_words(level: float) -> str:
    """`97.5%`, `98.75%`, `98.33%` (at most two decimals: 1 - 5%/3 is not printed to its last digit)."""
    return f"{round(100 * level, 2):g}%"


def interval_with_level(difference: Difference) -> str:
    """The interval, followed by its level where it is not 95% (one of a family over "the best")."""
    shown = interval(difference.estimate, is_difference=True)
    level = difference.estimate.level
    return shown if difference.estimate.ci95 is None or level == LEVEL else f"{shown} {level_words(level)}"


def best_note(what: str, differences: list[Difference], score: str = "score") -> str:
    """The footnote of differences from "the best" merge or expert: which row it is, what its interval
    covers."""
    sizes = {d.best_of for d in differences if d.best_of > 1}
    plural = PLURALS.get(what, f"{what}s")
    if len(sizes) == 1:
        size = sizes.pop()
        family = f"the {size} {plural} (each at {level_words(family_level(size))}, Bonferroni)"
    else:
        family = f"the m {plural} (each at 1 - 5%/m, Bonferroni)"
    return (
        f"{BEST_MARK} the best {what} = the highest {score} in the table, Δ = the difference from it; the "
        f"interval is simultaneous over {family}: it holds whichever is truly best, so choosing from the "
        "table does not flatter the verdict"
    )


def with_interval(estimate: Estimate | None, is_difference: bool = False) -> str:
    """`32.03 [27.10, 36.90]`, or the value alone without an interval."""
    if estimate is None:
        return DASH
    value = (signed if is_difference else pct)(estimate.value)
    return value if estimate.ci95 is None else f"{value} {interval(estimate, is_difference)}"


def compact(estimate: Estimate | None, is_difference: bool = False) -> str:
    """`32.0±4.1`: one decimal and half the interval's width, for narrow tables."""
    if estimate is None:
        return DASH
    value = (signed if is_difference else pct)(estimate.value, 1)
    return value if estimate.ci95 is None else f"{value}±{100 * estimate.half_width:.1f}"


def trained_on(row: Row) -> str:
    """The training domains in words (`all` for the four)."""
    if row.role == "mixed" and trains_on_all_domains(row.record):
        return "all"
    return row.record.trained_on


def header_line(comparison: Comparison) -> str:
    """Which study and seeds, and what the intervals cover."""
    study = ", ".join(comparison.studies) if comparison.studies else "runs without a study"
    listed = ", ".join(str(s) for s in comparison.seeds) or "not recorded"
    seeds = f"{'seeds' if len(comparison.seeds) > 1 else 'seed'} {listed}"  # `seeds: 2` read as a count
    return (
        f"Study: {study} · {seeds} · intervals: 95%, {comparison.variance_note} "
        f"(crossed bootstrap, {comparison.bootstrap_samples} resamples)"
    )


def summary_lines(comparison: Comparison) -> list[str]:
    """The best merge and how it was chosen, and the mix/merge cost ratio with its spread over seeds."""
    lines = []
    if comparison.best_merge is not None:
        best = comparison.best_merge
        choice = f", {comparison.best_merge_choice}" if comparison.best_merge_choice else ""
        tied = [
            r.label
            for r in comparison.rows
            if r.role == "merge" and r is not best and r.mean.value == best.mean.value
        ]
        choice += f" (tied with {', '.join(tied)})" if tied else ""
        lines.append(f"Best merge: {best.label}{choice} (mean {with_interval(best.mean)})")
    if comparison.cost_ratio is not None:
        c = comparison.cost_ratio
        merge = f" + {c.merge} {format_hours(c.merge_hours)}" if c.merge else ""
        experts = " + ".join(f"{label} {format_hours(h)}" for label, h in c.expert_hours.items())
        lines.append(
            f"Cost mix / merge: {c.describe()}  [{c.mixed} {format_hours(c.mixed_hours)} vs {experts}{merge}]"
        )
    if comparison.cost_ratio_with_distill is not None:
        c = comparison.cost_ratio_with_distill
        lines.append(
            f"Cost mix / (experts + {c.merge}), MT-OPD counted (the paper's ratio above leaves it out): "
            f"{c.describe()}"
        )
    return lines
