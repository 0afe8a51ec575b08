"""Warnings for a study that learned nothing: a domain every model scored the same on, or SFT scored 0 on.

Either leaves the comparison nothing to say there, and its differences of +0.00 would otherwise read
as measurements. Models that all scored the same were not told apart by the test items (or were not
trained apart); an SFT model that solves none of a domain's test items gives RL almost no reward to
learn from (GRPO learns from rewards that differ within a group of samples). Each warning names the
domains and what to change.
"""

from __future__ import annotations

from collections.abc import Sequence

from m2rl.compare.records import DOMAIN_LABELS
from m2rl.compare.statistics import Row

TOLERANCE = 1e-12


def _domains(domains: Sequence[str]) -> str:
    return ", ".join(DOMAIN_LABELS.get(d, d) for d in domains)


def _advice(score: float) -> str:
    if score <= TOLERANCE:
        return "no model solves any item: make the domain's data easier or train SFT longer"
    if score >= 1 - TOLERANCE:
        return "every item is solved: the test items are too easy to tell the models apart"
    return "check that the runs were trained and evaluated apart"


def nothing_learned(rows: Sequence[Row], domains: Sequence[str]) -> list[str]:
    """One warning per score that every model shares on some domains, then one per SFT row at 0 elsewhere."""
    warnings = []
    same: dict[float, list[str]] = {}
    for domain in domains:
        scores = [r.domain_scores[domain].value for r in rows if domain in r.domain_scores]
        if len(scores) > 1 and max(scores) - min(scores) <= TOLERANCE:
            same.setdefault(scores[0], []).append(domain)
    for score, found in same.items():
        warnings.append(
            f"every model scored {100 * score:.1f}% on {_domains(found)}: the study learned nothing there "
            f"and its differences there are zero by construction ({_advice(score)})"
        )
    flat = {d for found in same.values() for d in found}
    for row in rows:
        if row.role != "sft":
            continue
        zero = [
            d
            for d in domains
            if d not in flat and d in row.domain_scores and row.domain_scores[d].value <= TOLERANCE
        ]
        if zero:
            warnings.append(
                f"{row.label} scored 0.0% on {_domains(zero)}: RL has almost no reward to learn from there, "
                "so what the study says about it rests on a model that solves nothing (make the domain's "
                "data easier or train SFT longer)"
            )
    return warnings
