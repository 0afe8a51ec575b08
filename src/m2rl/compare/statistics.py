"""Scores and paired differences of replicate rows, from per-item results, with crossed-bootstrap intervals.

Items are aligned by id per benchmark (the items every replicate was evaluated on). A difference pairs
each replicate of one row with its partner in the other: its ancestor or descendant (an expert and
the SFT it started from, also a shared SFT), else the replicate of the same seed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from m2rl.compare.intervals import LEVEL, CrossedBootstrap, Estimate, Part
from m2rl.compare.records import RunRecord


@dataclass
class Row:
    """One model's line of the comparison: its replicates (one per training seed) and their estimates."""

    replicates: list[RunRecord]
    label: str
    scores: dict[str, Estimate]  # benchmark -> Avg@K in [0, 1]
    domain_scores: dict[str, Estimate]  # eval domain -> mean over its benchmarks
    mean: Estimate  # mean over the benchmarks this row has
    n_benchmarks: int
    own_hours: Estimate  # mean over seeds, with per-seed values
    cumulative_hours: Estimate

    @property
    def record(self) -> RunRecord:
        return self.replicates[0]

    @property
    def role(self) -> str:
        return self.record.role

    @property
    def seeds(self) -> tuple[int | None, ...]:
        return tuple(r.seed for r in self.replicates)


def equal_weights(benchmarks: Sequence[str]) -> dict[str, float]:
    """Each benchmark's weight in a mean over `benchmarks`."""
    return {b: 1 / len(benchmarks) for b in benchmarks}


class ItemScores:
    """Per-item mean rewards of every replicate, aligned on the items all replicates share per benchmark."""

    def __init__(self, records: Sequence[RunRecord], benchmarks: Sequence[str], notes: list[str]):
        self._ids: dict[str, list[str]] = {}
        for bench in benchmarks:
            item_sets = [
                set(r.results[bench].item_scores)
                for r in records
                if bench in r.results and r.results[bench].item_scores
            ]
            if not item_sets:
                continue
            shared = sorted(set.intersection(*item_sets))
            if len(shared) < max(len(s) for s in item_sets):
                notes.append(
                    f"{bench}: runs were evaluated on different items; scores and intervals use the "
                    f"{len(shared)} items all of them have"
                )
            self._ids[bench] = shared

    def matrix(self, records: Sequence[RunRecord], bench: str) -> np.ndarray | None:
        """records x shared items, or None when a record lacks per-item results for `bench`."""
        ids = self._ids.get(bench)
        if not ids or any(bench not in r.results or not r.results[bench].item_scores for r in records):
            return None
        return np.array([[r.results[bench].item_scores[i] for i in ids] for r in records], dtype=float)


class Statistics:
    """Scores and paired differences of rows from one set of draws."""

    def __init__(
        self,
        items: ItemScores,
        bootstrap: CrossedBootstrap,
        ancestors: Mapping[str, set[str]],
        notes: list[str],
    ):
        self.items = items
        self.bootstrap = bootstrap
        self.ancestors = ancestors
        self.notes = notes

    def score(self, replicates: Sequence[RunRecord], weights: Mapping[str, float]) -> Estimate:
        """The weighted score of one row over its seeds and all items."""
        parts = self._parts(replicates, weights)
        if parts is not None:
            return self.bootstrap.estimate(parts)
        per_seed = tuple(sum(w * r.results[b].score for b, w in weights.items()) for r in replicates)
        interval = None
        if len(replicates) == 1 and len(weights) == 1:
            interval = replicates[0].results[next(iter(weights))].ci95  # the eval's own item interval
        return Estimate(float(np.mean(per_seed)), interval, n_seeds=len(replicates), per_seed=per_seed)

    def difference(self, a: Row, b: Row, weights: Mapping[str, float], level: float = LEVEL) -> Estimate:
        """a minus b, paired over seed lineages and items where they can be paired; `level`: the
        interval's."""
        units = self.pair(a, b)
        if units:
            left = self._parts([u[0] for u in units], weights)
            right = self._parts([u[1] for u in units], weights)
            if left is not None and right is not None:
                paired = [
                    Part(p.weight, p.items, p.scores - q.scores) for p, q in zip(left, right, strict=True)
                ]
                return self.bootstrap.estimate(paired, level=level)
        else:
            left = self._parts(a.replicates, weights)
            right = self._parts(b.replicates, weights)
            if left is not None and right is not None:
                self.notes.append(f"{a.label} vs {b.label}: no shared seed lineage; seeds resampled unpaired")
                return self.bootstrap.estimate(left, minus=right, level=level)
        value = sum(w * (a.scores[x].value - b.scores[x].value) for x, w in weights.items())
        return Estimate(value, None, n_seeds=max(len(a.replicates), len(b.replicates)))

    def pair(self, a: Row, b: Row) -> list[tuple[RunRecord, RunRecord]]:
        """(replicate of a, its partner in b): lineage first, else the same seed, else the only ones."""
        units = []
        for left in a.replicates:
            partner = next(
                (
                    right
                    for right in b.replicates
                    if right.id in self.ancestors[left.id] or left.id in self.ancestors[right.id]
                ),
                None,
            )
            if partner is None and left.seed is not None:
                partner = next((right for right in b.replicates if right.seed == left.seed), None)
            if partner is None and len(a.replicates) == len(b.replicates) == 1:
                partner = b.replicates[0]
            if partner is not None:
                units.append((left, partner))
        unused = {r.id for r in b.replicates} - {right.id for _, right in units}
        if units and (len(units) < len(a.replicates) or unused):
            self.notes.append(f"{a.label} vs {b.label}: only the seed lineages both have are compared")
        return units

    def _parts(self, replicates: Sequence[RunRecord], weights: Mapping[str, float]) -> list[Part] | None:
        parts = []
        for bench, weight in weights.items():
            scores = self.items.matrix(replicates, bench)
            if scores is None:
                return None
            # the name keys the item draws: `:all` as in earlier versions, whose intervals this reproduces
            parts.append(Part(weight, f"{bench}:all", scores))
        return parts
