"""The comparison as compare.md: claims in words first, then every table with its intervals."""

from __future__ import annotations

from pathlib import Path

from m2rl.compare.cascade_report import FORGETTING_HEADERS, FORGETTING_TITLE, cost_line, forgetting_rows
from m2rl.compare.claims import KINDS, scope_words
from m2rl.compare.core import Comparison
from m2rl.compare.formatting import (
    BEST_MARK,
    DASH,
    best_note,
    format_hours,
    header_line,
    interval,
    interval_with_level,
    pct,
    signed,
    summary_lines,
    trained_on,
    with_interval,
)
from m2rl.compare.intervals import Estimate
from m2rl.compare.records import DOMAIN_LABELS
from m2rl.folders import REPORT_NAME, analysis_folder

METHOD = """\
- Every score is the mean over training seeds of Avg@K over the test items; its interval and every
  difference's come from a crossed bootstrap that resamples seeds and, per benchmark, test items
  (one item draw shared by all seeds and models, since they all see the same test set), 95%
  percentile intervals. Differences are paired: each seed's run against its partner of the same
  lineage (an expert and its SFT) or seed, on the same items. With one seed an interval covers the
  item variance only; with 2-3 seeds the seed part is a rough estimate.
- A verdict says "above" or "below" only when the interval excludes 0; two models that scored the same
  on every item are "the same on every item", not a measured zero. Intervals are per comparison: of
  many transfer cells, about one in twenty resolves by chance when nothing differs.
- "The best" merge (and the best expert per domain, for synergy) is the highest score in the scores
  table, and Δ is the difference from that row. The mixed run's differences from each of the m
  candidates have (1 - 5%/m) intervals (Bonferroni), so they hold together at 95%; the interval
  against the best (marked {mark}) runs from the lowest of their lower bounds to the lowest of their
  upper bounds, which holds whichever candidate is truly best: "above the best merge" means above
  every merge, and choosing the best from the table does not flatter the verdict.
- Costs: {hours_label}; a run's cost is its own compute (GPU count x wall on GPUs, process CPU time on
  CPUs), eval excluded; cumulative = the run plus its lineage, shared ancestors counted once."""


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _scores(comparison: Comparison) -> str:
    domains = [
        d
        for d in comparison.domains
        if sum(1 for b in comparison.benchmarks if comparison.benchmark_domains[b] == d) > 1
    ]
    headers = [
        "model",
        "trained on",
        "seeds",
        *comparison.benchmarks,
        *[f"{DOMAIN_LABELS.get(d, d)} avg" for d in domains],
        "mean",
        f"own {comparison.hours_label}",
        f"cumulative {comparison.hours_label}",
    ]
    rows = []
    for row in comparison.rows:
        mean = with_interval(row.mean) if row.n_benchmarks else DASH
        if row.n_benchmarks < len(comparison.benchmarks):
            mean += f" ({row.n_benchmarks}/{len(comparison.benchmarks)})"
        rows.append(
            [
                f"**{row.label}**" if row is comparison.mixed or row is comparison.best_merge else row.label,
                trained_on(row),
                str(len(row.replicates)),
                *[with_interval(row.scores.get(b)) for b in comparison.benchmarks],
                *[with_interval(row.domain_scores.get(d)) for d in domains],
                mean,
                format_hours(row.own_hours.value),
                format_hours(row.cumulative_hours.value),
            ]
        )
    return _md_table(headers, rows)


def _per_seed(estimate: Estimate) -> str:
    """`+18.40, +5.10` for a difference over several seeds, else empty."""
    return ", ".join(signed(v) for v in estimate.per_seed) if len(estimate.per_seed) > 1 else ""


def _analysis_links(comparison: Comparison, root: Path | None) -> list[str]:
    """Links to the study's analysis reports (`m2rl analyze`) that exist in their folders under `root`
    (the runs root this comparison is written into), and the command that makes the ones that do not."""

    def made(folder: str) -> bool:
        return root is not None and (root / folder / REPORT_NAME).is_file()

    def link(folder: str) -> str:
        return f"[`{folder}/{REPORT_NAME}`](../{folder}/{REPORT_NAME})"

    lines = []
    for study in comparison.studies:
        folders = (
            [analysis_folder(study, seed) for seed in comparison.seeds] if len(comparison.seeds) > 1 else []
        )
        folders.append(analysis_folder(study))
        found = [link(folder) for folder in folders if made(folder)]
        if found:
            where = f"in {', '.join(found)}"
        else:
            where = (
                f"not made yet: `m2rl analyze {study}` writes them (`study.analyze=true` makes them part "
                "of the pipeline)"
            )
        lines.append(
            f"- Study {study}: weight-update geometry, skill consistency, policy neighbourhoods and "
            f"self-verification {where}."
        )
    return ["", "## Analysis: why mixing works", "", *lines] if lines else []


def to_markdown(comparison: Comparison, root: Path | None = None) -> str:
    """The whole comparison as a Markdown document."""
    out = ["# m2rl compare", "", header_line(comparison)]
    if comparison.warnings:
        out += ["", *[f"> **warning**: {w}" for w in comparison.warnings]]
    if comparison.headline:
        out += ["", f"## Claims (points, paired 95% intervals, {comparison.variance_note})", ""]
        for d in comparison.headline:
            mark = f" {BEST_MARK}" if d.best_of > 1 else ""
            seeds = f" (per seed {_per_seed(d.estimate)})" if _per_seed(d.estimate) else ""
            out.append(
                f"- **{d.verdict}**{mark}: {signed(d.estimate.value)} "
                f"{interval(d.estimate, is_difference=True)}{seeds}"
            )
        best = [d for d in comparison.headline if d.best_of > 1]
        if best:
            out.append(f"\n{best_note('merge', best, 'mean')}.")
    summary = summary_lines(comparison)
    if summary:
        out += ["", *[f"- {line}" for line in summary]]
    out += ["", "## Scores (Avg@K, %, mean over seeds [95% interval])", "", _scores(comparison)]
    if comparison.differences:
        out += ["", "## Differences (points, paired 95% intervals)", ""]
        out.append(
            _md_table(
                ["comparison", "Δ", "interval (95% unless marked)", "per seed", "items", "verdict"],
                [
                    [
                        f"{KINDS[d.kind]}: {d.a} − {d.b} {scope_words(d.scope)}"
                        + (f" {BEST_MARK}" if d.best_of > 1 else ""),
                        signed(d.estimate.value),
                        interval_with_level(d),
                        _per_seed(d.estimate) or str(d.estimate.n_seeds),
                        str(d.estimate.n_items),
                        d.verdict,
                    ]
                    for d in comparison.differences
                ],
            )
        )
        if any(d.best_of > 1 for d in comparison.differences):
            out.append(
                f"\n{BEST_MARK} against the best of several rows (the table's highest), with an interval "
                "simultaneous over them; an interval marked with a level above 95% is one of such a family "
                "(Bonferroni): the family's intervals hold together at 95%."
            )
    if comparison.synergy:
        out += ["", "## Synergy (mixed minus the best single expert, points)", ""]
        out.append(
            _md_table(
                ["domain", "mixed", "best expert", "expert", "Δ", "95% interval", "verdict"],
                [
                    [
                        DOMAIN_LABELS.get(s.domain, s.domain),
                        pct(s.mixed_score),
                        s.best_expert + (f" {BEST_MARK}" if s.difference.best_of > 1 else ""),
                        pct(s.expert_score),
                        signed(s.delta),
                        interval(s.difference.estimate, is_difference=True),
                        s.difference.short_verdict,
                    ]
                    for s in comparison.synergy
                ],
            )
        )
        best = [s.difference for s in comparison.synergy if s.difference.best_of > 1]
        if best:
            out.append(f"\n{best_note('expert', best, 'score on the domain')}.")
    if comparison.transfer is not None:
        t = comparison.transfer
        out += [
            "",
            f"## Transfer matrix (change vs {t.reference}, points; **bold**: the interval excludes 0)",
            "",
        ]
        out.append(
            _md_table(
                ["model", *[DOMAIN_LABELS.get(d, d) for d in t.domains]],
                [
                    [
                        label,
                        *[
                            DASH
                            if c is None
                            else f"**{with_interval(c.estimate, True)}**"
                            if c.resolved
                            else with_interval(c.estimate, True)
                            for c in cells
                        ],
                    ]
                    for label, cells in zip(t.rows, t.cells, strict=True)
                ],
            )
        )
    for cascade in comparison.cascades:
        out += ["", f"## {FORGETTING_TITLE}", "", f"- {cost_line(cascade, comparison.hours_label)}", ""]
        out.append(_md_table(FORGETTING_HEADERS, forgetting_rows(cascade)))
    ratio = comparison.cost_ratio
    if ratio is not None and len(ratio.seeds) > 1:
        out += ["", f"## Cost per seed ({comparison.hours_label})", ""]
        out.append(
            _md_table(
                ["seed", ratio.mixed, "experts + merge", "mix / merge"],
                [
                    [
                        str(s.seed),
                        format_hours(s.mixed_hours),
                        format_hours(s.merge_side_hours),
                        f"{s.ratio:.1%}",
                    ]
                    for s in ratio.seeds
                ],
            )
        )
    out += _analysis_links(comparison, root)
    out += ["", "## Method", "", METHOD.format(hours_label=comparison.hours_label, mark=BEST_MARK)]
    if comparison.notes:
        out += ["", *[f"> note: {n}" for n in comparison.notes]]
    return "\n".join(out) + "\n"
