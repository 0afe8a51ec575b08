"""The differences a study reports, each with its paired interval and a verdict in plain words.

A verdict never says more than the interval: "A above B on math" when the 95% interval lies above 0,
"A below B" when below, otherwise "no resolved difference: the interval spans 0". Intervals are per
comparison (not adjusted for the number of comparisons): among the many transfer cells, about one in
twenty resolves by chance when nothing differs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from m2rl.compare.intervals import Estimate

MEAN = "mean"
DOMAIN_WORDS = {"math": "math", "code": "code", "science": "science", "if": "IF", "general": "general"}
KINDS = {
    "expert_vs_sft": "expert minus SFT on its own domain",
    "mixed_vs_sft": "mixed run minus SFT",
    "mixed_vs_best_merge": "mixed run minus the best merge",
    "mixed_vs_merge": "mixed run minus a merge",
    "synergy": "mixed run minus the best single expert",
    "mixed_vs_expert": "mixed run minus an expert",
    "transfer": "trained model minus SFT",
    "distill_vs_sft": "MT-OPD minus SFT",
    "mixed_vs_distill": "mixed run minus MT-OPD",
    "cascade_vs_mixed": "cascade minus the mixed run",
    "cascade_vs_best_merge": "cascade minus the best merge",
    "cascade_vs_merge": "cascade minus a merge",
    "cascade_vs_distill": "cascade minus MT-OPD",
    "cascade_forgetting": "cascade's end minus right after the domain's stage",
}
UNRESOLVED = "no resolved difference: the interval spans 0"
IDENTICAL = "the same on every item: no difference to measure"


def scope_words(scope: str) -> str:
    """`on math`, `on the mean`."""
    return "on the mean" if scope == MEAN else f"on {DOMAIN_WORDS.get(scope, scope)}"


@dataclass(frozen=True)
class Difference:
    """a minus b on one scope (an eval domain, or the mean over benchmarks), in [0, 1] units."""

    kind: str
    a: str
    b: str  # in words: a row label, or "the best merge (TIES)"
    scope: str
    estimate: Estimate
    best_of: int = 0  # b is the best of this many rows (its interval is simultaneous over them)

    @property
    def resolved(self) -> bool:
        return self.estimate.excludes_zero

    @property
    def identical(self) -> bool:
        """Both sides scored the same on every item of every seed: an interval of the point 0."""
        interval = self.estimate.ci95
        return interval is not None and all(
            math.isclose(v, 0, abs_tol=1e-12) for v in (*interval, self.estimate.value)
        )

    @property
    def verdict(self) -> str:
        """The claim the interval supports, in words."""
        where = scope_words(self.scope)
        interval = self.estimate.ci95
        if interval is None:
            return f"{self.a} vs {self.b} {where}: no interval (no per-item results)"
        if self.identical:
            return f"{self.a} vs {self.b} {where}: {IDENTICAL}"
        if interval[0] > 0:
            return f"{self.a} above {self.b} {where}"
        if interval[1] < 0:
            return f"{self.a} below {self.b} {where}"
        return f"{self.a} vs {self.b} {where}: {UNRESOLVED}"

    @property
    def short_verdict(self) -> str:
        """`above`, `below`, `spans 0`, `identical` or `no interval`, for table cells."""
        interval = self.estimate.ci95
        if interval is None:
            return "no interval"
        if self.identical:
            return "identical"
        return "above" if interval[0] > 0 else "below" if interval[1] < 0 else "spans 0"
