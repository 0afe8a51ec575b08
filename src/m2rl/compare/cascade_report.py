"""The cascade as compare.md and the terminal show it: its cost as the sum of its stages, and the
forgetting table (each domain right after its own stage and at the end, the change with its interval)."""

from __future__ import annotations

from m2rl.compare.cascade import Cascade
from m2rl.compare.formatting import DASH, compact, format_hours, interval, signed, with_interval
from m2rl.compare.records import DOMAIN_LABELS

FORGETTING_TITLE = "Cascade: forgetting (%, points for the change; paired 95% intervals)"
FORGETTING_HEADERS = [
    "domain",
    "stage",
    "right after its stage",
    "at the end",
    "end − after",
    "95% interval",
    "verdict",
]
NARROW_HEADERS = [
    "domain",
    "stage",
    "after its stage",
    "at the end",
    "end − after",
    "verdict",
]  # ± half widths
LAST = "last stage: the end model"


def cost_line(cascade: Cascade, hours_label: str) -> str:
    """`Cascade (if → math): 0.040 CPU-hours, the sum of its stages (1 IF 0.010 + 2 Math 0.030)`."""
    stages = " + ".join(
        f"{k} {DOMAIN_LABELS.get(d, d)} {format_hours(h)}"
        for k, (d, h) in enumerate(zip(cascade.order, cascade.stage_hours, strict=True), start=1)
    )
    return (
        f"{cascade.row.label} ({cascade.row.record.trained_on}): {format_hours(cascade.row.own_hours.value)} "
        f"{hours_label}, the sum of its stages ({stages})"
    )


def forgetting_rows(cascade: Cascade, narrow: bool = False) -> list[list[str]]:
    """One line per domain of the cascade's order, as cells under FORGETTING_HEADERS (NARROW_HEADERS:
    each interval as `±` half its width)."""
    rows = []
    for f in cascade.forgetting:
        change = f.change
        if narrow:
            shown = compact(change.estimate, is_difference=True) if change else DASH
            verdict = change.short_verdict if change else LAST
            rows.append(
                [
                    DOMAIN_LABELS.get(f.domain, f.domain),
                    str(f.stage),
                    compact(f.after),
                    compact(f.end),
                    shown,
                    verdict,
                ]
            )
            continue
        rows.append(
            [
                DOMAIN_LABELS.get(f.domain, f.domain),
                str(f.stage),
                with_interval(f.after),
                with_interval(f.end),
                signed(change.estimate.value) if change else DASH,
                interval(change.estimate, is_difference=True) if change else DASH,
                change.short_verdict if change else LAST,
            ]
        )
    return rows
