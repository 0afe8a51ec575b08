"""The best of several rows as the scores table ranks them, and a difference from it the choice cannot flatter.

"The best merge" (and, for synergy, the best expert on a domain) is the candidate with the highest
score in the table: the row a reader sees on top, so a label never contradicts a table. The top of
several noisy scores is high partly by luck, so a difference from it measured on the same items
would favour it. Every candidate's difference therefore gets a (1 - 0.05/m) interval, m the number
of candidates (Bonferroni): the m intervals then hold together at least 95% of the time, and so does
any one of them picked after looking at the table. The claim against "the best" runs from the lowest
of the m lower bounds to the lowest of the m upper bounds: when every interval holds, the difference
from whichever candidate is truly best lies there. "Above the best merge" thus says above every
merge, and "below" below at least one, 95% of the time together. The point value is the difference
from the table's top, which is the table's own difference where both rows cover the same seeds.

Why not the alternatives: choosing on a held-out third of the items (earlier versions) named a best
that the table, on all items, could contradict, and measured it on other items than the table's;
Holm's step-down resolves a little more often than Bonferroni but has no interval to print beside
each verdict, and every verdict here is read off the interval shown with it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace

from m2rl.compare.claims import Difference
from m2rl.compare.intervals import LEVEL
from m2rl.compare.statistics import Row


def family_level(size: int) -> float:
    """Each interval's level in a family of `size` that holds at 95% together (Bonferroni)."""
    return 1 - (1 - LEVEL) / max(size, 1)


def top(rows: Sequence[Row], score: Callable[[Row], float]) -> Row:
    """The row with the highest score (the first of a tie), as the table shows them."""
    return max(rows, key=lambda row: -math.inf if math.isnan(score(row)) else score(row))


def versus_best(members: Sequence[Difference], best: int, kind: str, words: str) -> Difference:
    """a minus the best of the members' b sides (`best`: the table's top): its difference, with the
    interval that holds for whichever member is truly best (see the module docstring)."""
    chosen = members[best]
    intervals = [d.estimate.ci95 for d in members]
    simultaneous = None
    if None not in intervals:
        simultaneous = (min(low for low, _ in intervals), min(high for _, high in intervals))
    estimate = replace(chosen.estimate, ci95=simultaneous, level=LEVEL)
    return Difference(kind, chosen.a, words, chosen.scope, estimate, best_of=len(members))
