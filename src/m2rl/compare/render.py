"""The comparison in the terminal: tables that fit the console's width, in pipes too (80 columns there).

Each table has layouts from widest to narrowest; the first that renders within the width without
cutting a cell is shown, and the last (one line per value) fits any usual width. Every score keeps its
interval in every layout: bounds in brackets where there is room, `±` half the interval's width where
not. Full precision is in compare.md, compare.csv and compare.json.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence

from rich import box
from rich.cells import cell_len
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from m2rl.compare.cascade import Cascade
from m2rl.compare.cascade_report import (
    FORGETTING_HEADERS,
    FORGETTING_TITLE,
    NARROW_HEADERS,
    cost_line,
    forgetting_rows,
)
from m2rl.compare.claims import Difference
from m2rl.compare.core import Comparison
from m2rl.compare.formatting import (
    BEST_MARK,
    DASH,
    best_note,
    compact,
    format_hours,
    header_line,
    interval,
    pct,
    signed,
    summary_lines,
    trained_on,
    with_interval,
)
from m2rl.compare.intervals import Estimate
from m2rl.compare.records import DOMAIN_LABELS
from m2rl.compare.statistics import Row

RESOLVED_MARK = "*"


def _fits(renderable: RenderableType, width: int) -> bool:
    """Whether `renderable` prints within `width` columns with no cell cut short."""
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, force_terminal=False).print(renderable)
    text = buffer.getvalue()
    return "…" not in text and all(cell_len(line) <= width for line in text.splitlines())


def _first_fitting(layouts: Sequence[Callable[[], Table]], width: int | None) -> Table:
    """The widest layout that fits `width` (the first one when no width is given), else the last."""
    for build in layouts:
        table = build()
        if width is None or _fits(table, width):
            return table
    return table


def _table(title: str, caption: str = "") -> Table:
    """A table with a header rule and no vertical lines: narrow, and plain in pipes and logs."""
    return Table(
        title=title,
        title_justify="left",
        header_style="bold",
        caption=caption or None,
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )


def _domain_columns(comparison: Comparison) -> list[str]:
    """Domain-average columns are shown only for domains with more than one benchmark."""
    return [
        d
        for d in comparison.domains
        if sum(1 for b in comparison.benchmarks if comparison.benchmark_domains[b] == d) > 1
    ]


def _measures(comparison: Comparison) -> list[tuple[str, Callable[[Row], Estimate | None]]]:
    """(column name, getter) for every score column: benchmarks, multi-benchmark domain averages, mean."""
    measures: list[tuple[str, Callable[[Row], Estimate | None]]] = [
        (b, lambda row, b=b: row.scores.get(b)) for b in comparison.benchmarks
    ]
    measures += [
        (f"{DOMAIN_LABELS.get(d, d)} avg", lambda row, d=d: row.domain_scores.get(d))
        for d in _domain_columns(comparison)
    ]
    measures.append(("mean", lambda row: row.mean if row.n_benchmarks else None))
    return measures


def _best_values(comparison: Comparison) -> dict[str, float]:
    best = {}
    for name, get in _measures(comparison):
        values = [e.value for r in comparison.rows if (e := get(r)) is not None and not math.isnan(e.value)]
        if values:
            best[name] = max(values)
    return best


def _score_cell(estimate: Estimate | None, best: float | None, narrow: bool) -> Text:
    text = Text(compact(estimate) if narrow else with_interval(estimate))
    if estimate is not None and best is not None and estimate.value == best:
        text.stylize("bold green")
    return text


def _scores_caption(comparison: Comparison, narrow: bool) -> str:
    bounds = "± = half the 95% interval" if narrow else "[ ] = 95% interval"
    return (
        f"{bounds} ({comparison.variance_note}); h = {comparison.hours_label}, mean over seeds; "
        "cum. = the run plus its lineage (shared ancestors once)"
    )


def _label(row: Row, comparison: Comparison) -> Text:
    style = "bold" if row is comparison.mixed or row is comparison.best_merge else ""
    return Text(row.label, style=style)


def scores_table(comparison: Comparison, narrow: bool = False) -> Table:
    """Models as rows, each score with its interval (`narrow`: ± half-widths, fewer columns)."""
    table = _table("Scores (Avg@K, %)", _scores_caption(comparison, narrow))
    measures, best = _measures(comparison), _best_values(comparison)
    table.add_column("model", no_wrap=True)
    if not narrow:
        table.add_column("trained on")
    for name, _ in measures:
        table.add_column(name, justify="right", no_wrap=True)
    if not narrow:
        table.add_column("own h", justify="right", no_wrap=True)
    table.add_column("cum. h", justify="right", no_wrap=True)
    for row in comparison.rows:
        cells: list[Text | str] = [_label(row, comparison)]
        if not narrow:
            cells.append(trained_on(row))
        cells += [_score_cell(get(row), best.get(name), narrow) for name, get in measures]
        if not narrow:
            cells.append(format_hours(row.own_hours.value))
        cells.append(format_hours(row.cumulative_hours.value))
        table.add_row(*cells)
    return table


def scores_long_table(comparison: Comparison) -> Table:
    """One line per model and measure: fits any usual width."""
    table = _table("Scores (Avg@K, %)", _scores_caption(comparison, narrow=False))
    table.add_column("model", overflow="fold")
    table.add_column("measure", overflow="fold")
    table.add_column("score", justify="right", no_wrap=True, overflow="fold")
    table.add_column("95% interval", justify="right", no_wrap=True, overflow="fold")
    measures = _measures(comparison)
    for row in comparison.rows:
        lines = [(name, get(row)) for name, get in measures if get(row) is not None]
        for i, (name, estimate) in enumerate(lines):
            table.add_row(
                _label(row, comparison) if i == 0 else "", name, pct(estimate.value), interval(estimate)
            )
        table.add_row("", "cum. h", format_hours(row.cumulative_hours.value), "", end_section=True)
    return table


def _claim_style(difference: Difference) -> str:
    return {"above": "green", "below": "red"}.get(difference.short_verdict, "")


def claims_table(comparison: Comparison) -> Table:
    """The headline differences: verdict in words, the difference in points, its paired interval."""
    best = [d for d in comparison.headline if d.best_of > 1]
    caption = best_note("merge", best, "mean") if best else ""
    table = _table(f"Claims (points; paired 95% intervals, {comparison.variance_note})", caption)
    table.add_column("verdict", ratio=1)
    table.add_column("Δ", justify="right", no_wrap=True)
    table.add_column("95% interval", justify="right", no_wrap=True)
    for d in comparison.headline:
        mark = BEST_MARK if d.best_of > 1 else ""
        table.add_row(
            Text(d.verdict, style=_claim_style(d)),
            signed(d.estimate.value) + mark,
            interval(d.estimate, is_difference=True),
        )
    return table


def _synergy_table(comparison: Comparison, narrow: bool) -> Table:
    notes = ["± = half the 95% interval"] if narrow else []
    best = [s.difference for s in comparison.synergy if s.difference.best_of > 1]
    if best:
        notes.append(best_note("expert", best, "score on the domain"))
    table = _table("Synergy: mixed run minus the best single expert (points)", "; ".join(notes))
    headers = ["domain", "best expert", "Δ", "verdict"] if narrow else [
        "domain", "mixed", "best expert", "expert", "Δ", "95% interval", "verdict"
    ]  # fmt: skip
    for header in headers:
        table.add_column(
            header, justify="left" if header in ("domain", "best expert", "verdict") else "right"
        )
    for s in comparison.synergy:
        d = s.difference
        expert = s.best_expert + (f" {BEST_MARK}" if d.best_of > 1 else "")
        verdict = Text(d.short_verdict, style=_claim_style(d))
        domain = DOMAIN_LABELS.get(s.domain, s.domain)
        if narrow:
            table.add_row(domain, expert, compact(d.estimate, is_difference=True), verdict)
        else:
            table.add_row(
                domain,
                pct(s.mixed_score),
                expert,
                pct(s.expert_score),
                signed(d.estimate.value),
                interval(d.estimate, is_difference=True),
                verdict,
            )
    return table


def _transfer_cell(cell: Difference | None, narrow: bool) -> Text:
    if cell is None:
        return Text(DASH)
    shown = compact(cell.estimate, True) if narrow else with_interval(cell.estimate, True)
    if not cell.resolved:
        return Text(shown + " ")
    return Text(shown + RESOLVED_MARK, style="green" if cell.estimate.value > 0 else "red")


def _transfer_title(comparison: Comparison) -> str:
    reference = comparison.transfer.reference
    return f"Transfer: change vs {reference} (points), rows = trained model, columns = eval domain"


def _transfer_caption(narrow: bool) -> str:
    bounds = "± = half the 95% interval" if narrow else "[ ] = paired 95% interval"
    return f"{bounds}; {RESOLVED_MARK} = the interval excludes 0"


def transfer_table(comparison: Comparison, narrow: bool = False) -> Table:
    """The transfer matrix, each cell with its paired interval; resolved cells marked."""
    t = comparison.transfer
    table = _table(_transfer_title(comparison), _transfer_caption(narrow))
    table.add_column("model", no_wrap=True)
    for d in t.domains:
        table.add_column(DOMAIN_LABELS.get(d, d), justify="right", no_wrap=True)
    for label, cells in zip(t.rows, t.cells, strict=True):
        table.add_row(label, *[_transfer_cell(c, narrow) for c in cells])
    return table


def transfer_long_table(comparison: Comparison) -> Table:
    """The transfer matrix one cell per line."""
    t = comparison.transfer
    table = _table(_transfer_title(comparison), _transfer_caption(narrow=False))
    table.add_column("model", overflow="fold")
    table.add_column("domain", overflow="fold")
    table.add_column("Δ", justify="right", no_wrap=True, overflow="fold")
    table.add_column("95% interval", justify="right", no_wrap=True, overflow="fold")
    for label, cells in zip(t.rows, t.cells, strict=True):
        present = [(d, c) for d, c in zip(t.domains, cells, strict=True) if c is not None]
        for i, (domain, cell) in enumerate(present):
            table.add_row(
                label if i == 0 else "",
                DOMAIN_LABELS.get(domain, domain),
                signed(cell.estimate.value) + (RESOLVED_MARK if cell.resolved else ""),
                interval(cell.estimate, is_difference=True),
                end_section=i == len(present) - 1,
            )
    return table


def forgetting_table(cascade: Cascade, hours_label: str, narrow: bool = False) -> Table:
    """A cascade's forgetting table, its cost as the caption."""
    notes = ["± = half the 95% interval"] if narrow else []
    table = _table(FORGETTING_TITLE, "; ".join([*notes, cost_line(cascade, hours_label)]))
    for header in NARROW_HEADERS if narrow else FORGETTING_HEADERS:
        text = header in ("domain", "verdict")
        table.add_column(header, justify="left" if text else "right", no_wrap=not text)
    for cells in forgetting_rows(cascade, narrow):
        table.add_row(*cells)
    return table


def rich_renderable(comparison: Comparison, width: int | None = None) -> RenderableType:
    """Header, scores, claims, summary, synergy, transfer, notes and warnings, each table in a layout
    that fits."""
    parts: list[RenderableType] = [Text(header_line(comparison), style="bold")]
    parts.append(
        _first_fitting(
            [
                lambda: scores_table(comparison),
                lambda: scores_table(comparison, narrow=True),
                lambda: scores_long_table(comparison),
            ],
            width,
        )
    )
    if comparison.headline:
        parts.append(claims_table(comparison))
    summary = summary_lines(comparison)
    if summary:
        parts.append(Text("\n".join(summary)))
    if comparison.synergy:
        parts.append(
            _first_fitting(
                [lambda: _synergy_table(comparison, False), lambda: _synergy_table(comparison, True)], width
            )
        )
    if comparison.transfer is not None:
        parts.append(
            _first_fitting(
                [
                    lambda: transfer_table(comparison),
                    lambda: transfer_table(comparison, narrow=True),
                    lambda: transfer_long_table(comparison),
                ],
                width,
            )
        )
    for cascade in comparison.cascades:
        parts.append(
            _first_fitting(
                [
                    lambda c=cascade: forgetting_table(c, comparison.hours_label),
                    lambda c=cascade: forgetting_table(c, comparison.hours_label, narrow=True),
                ],
                width,
            )
        )
    if comparison.notes:
        parts.append(Text("\n".join(f"note: {n}" for n in comparison.notes), style="dim"))
    if comparison.warnings:  # last, where a reader of the terminal looks
        parts.append(Text("\n".join(f"warning: {w}" for w in comparison.warnings), style="bold yellow"))
    return Group(*parts)
