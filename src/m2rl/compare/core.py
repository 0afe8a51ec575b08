"""The study's comparison from plain run records: scores, costs, differences with verdicts, synergy, transfer.

Runs are grouped into rows of replicates over training seeds (`m2rl.compare.groups`); every score and
difference carries a 95% interval over seeds and test items (`m2rl.compare.statistics`); "the best"
merge or expert is the table's top, with intervals simultaneous over the candidates
(`m2rl.compare.best`); a study that learned nothing somewhere gets a warning (`m2rl.compare.learning`);
a cascade is one row with its claims and forgetting table (`m2rl.compare.cascade`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from m2rl.compare.best import family_level, top, versus_best
from m2rl.compare.cascade import ROLE as CASCADE
from m2rl.compare.cascade import Cascade
from m2rl.compare.cascade import build as build_cascades
from m2rl.compare.cascade import fold as fold_cascades
from m2rl.compare.claims import MEAN, Difference
from m2rl.compare.costs import CostRatio, SeedCost, common_label, cost_ratio
from m2rl.compare.groups import group_replicates, unique_labels
from m2rl.compare.intervals import DEFAULT_SAMPLES, LEVEL, CrossedBootstrap, Estimate
from m2rl.compare.learning import nothing_learned
from m2rl.compare.records import DOMAIN_ORDER, RunRecord, default_label, method_label
from m2rl.compare.statistics import ItemScores, Row, Statistics, equal_weights

ROLE_ORDER = {"base": 0, "sft": 1, "expert": 2, "mixed": 3, "merge": 4, "distill": 5, CASCADE: 6}
TRAINED = ("expert", "mixed", "merge", "distill", CASCADE)
BEST_BY_TABLE = "the highest mean in the scores table"


@dataclass
class Synergy:
    """Mixed run minus the best single-domain expert on one eval domain (the table's top there)."""

    domain: str
    mixed_score: float
    best_expert: str
    expert_score: float
    difference: Difference
    each: list[Difference] = field(default_factory=list)  # minus every expert, when there are several

    @property
    def delta(self) -> float:
        return self.difference.estimate.value

    @property
    def ci95(self) -> tuple[float, float] | None:
        return self.difference.estimate.ci95


@dataclass
class Transfer:
    """Rows = trained models (experts, mixed, merges), columns = eval domains, cells = change vs SFT."""

    reference: str
    rows: list[str]
    domains: list[str]
    cells: list[list[Difference | None]]  # None where a row lacks a domain

    @property
    def values(self) -> list[list[float]]:
        return [[math.nan if c is None else c.estimate.value for c in row] for row in self.cells]


@dataclass
class Comparison:
    """Everything `m2rl compare` reports."""

    benchmarks: list[str]
    benchmark_domains: dict[str, str]
    domains: list[str]
    rows: list[Row]
    hours_label: str
    cost_ratio: CostRatio | None
    best_merge: Row | None
    mixed: Row | None
    synergy: list[Synergy]
    transfer: Transfer | None
    headline: list[Difference]  # the study's claims, in order
    differences: list[Difference]  # every reported difference, headline first
    studies: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    bootstrap_samples: int = DEFAULT_SAMPLES
    best_merge_choice: str = ""
    notes: list[str] = field(default_factory=list)
    distill: Row | None = None  # the MT-OPD row (m2rl distill), the study's third answer
    # mixed / (experts + merge + MT-OPD): the paper's denominator (cost_ratio) leaves MT-OPD out
    cost_ratio_with_distill: CostRatio | None = None
    # every trained model minus the SFT of its lineage on the mean (the claims' kind of interval)
    versus_sft: list[Difference] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # where the study learned nothing
    cascades: list[Cascade] = field(default_factory=list)  # `study.cascade`: claims, forgetting

    def row(self, label: str) -> Row:
        """The row with this label."""
        for row in self.rows:
            if row.label == label:
                return row
        raise KeyError(label)

    @property
    def max_seeds(self) -> int:
        return max((len(r.replicates) for r in self.rows), default=1)

    @property
    def variance_note(self) -> str:
        """What the intervals cover, e.g. `3 seeds x test items` or `1 seed: item variance only`."""
        if not any(d.estimate.ci95 is not None for d in self.differences):
            return "no per-item results: differences have no intervals"
        seeds = self.max_seeds
        return "1 seed: item variance only" if seeds == 1 else f"{seeds} seeds x test items"


def _domain_sort_key(domain: str) -> tuple[int, str]:
    return (DOMAIN_ORDER.index(domain) if domain in DOMAIN_ORDER else len(DOMAIN_ORDER), domain)


def _row_sort_key(group: list[RunRecord]) -> tuple[int, tuple[int, str]]:
    record = group[0]
    return (
        ROLE_ORDER.get(record.role, 9),
        _domain_sort_key(record.domains[0]) if record.role == "expert" else (0, ""),
    )


def _ancestors(known: dict[str, RunRecord]) -> dict[str, set[str]]:
    """Every run's transitive ancestors (parents and a merge's experts) among the known ids."""
    found: dict[str, set[str]] = {}
    for run_id, record in known.items():
        seen: set[str] = set()
        queue = list(record.ancestors_direct)
        while queue:
            ref = queue.pop()
            if ref in seen:
                continue
            seen.add(ref)
            if ref in known:
                queue.extend(known[ref].ancestors_direct)
        found[run_id] = seen
    return found


def _cumulative_hours(record: RunRecord, known: dict[str, RunRecord], notes: list[str]) -> float:
    """Own cost plus every distinct ancestor's own cost (shared ancestors such as SFT counted once)."""
    seen: set[str] = set()
    queue = list(record.ancestors_direct)
    total = record.cost_hours
    while queue:
        ref = queue.pop()
        if ref in seen:
            continue
        seen.add(ref)
        ancestor = known.get(ref)
        if ancestor is None:
            notes.append(
                f"{record.label}: ancestor {ref} not found; its hours are not in the cumulative cost"
            )
            continue
        total += ancestor.cost_hours
        queue.extend(ancestor.ancestors_direct)
    return total


def _per_seed(values: Sequence[float]) -> Estimate:
    return Estimate(sum(values) / len(values), None, n_seeds=len(values), per_seed=tuple(values))


def _primary(rows: Sequence[Row], role: str) -> Row | None:
    """The row of `role` with the most training domains (the latest on a tie)."""
    candidates = [r for r in rows if r.role == role]
    if not candidates:
        return None
    return max(enumerate(candidates), key=lambda pair: (len(pair[1].record.domains), pair[0]))[1]


class _Builder:
    """Assembles one Comparison; holds what its parts share (benchmarks, statistics, notes)."""

    def __init__(
        self,
        records: Sequence[RunRecord],
        lineage: Sequence[RunRecord],
        samples: int,
        seed: int,
        stages: Sequence[RunRecord] = (),
    ):
        """`stages`: evaluated runs that are not rows but get rows of their own (a cascade's stages)."""
        self.notes: list[str] = []
        groups = sorted(group_replicates(records), key=_row_sort_key)
        labels = unique_labels(groups)
        self.known = {r.id: r for r in (*lineage, *stages)} | {r.id: r for r in records}
        self.benchmark_domains: dict[str, str] = {}
        for record in records:
            for bench, result in record.results.items():
                self.benchmark_domains.setdefault(bench, result.domain)
        self.domains = sorted(set(self.benchmark_domains.values()), key=_domain_sort_key)
        self.benchmarks = [
            b for d in self.domains for b in self.benchmark_domains if self.benchmark_domains[b] == d
        ]
        self._check_protocols(records)
        self.hours_label, cost_notes = common_label(
            {r.hours_label for r in self.known.values() if r.cost_hours > 0}
        )
        self.notes += cost_notes
        self.stats = Statistics(
            ItemScores([*records, *stages], self.benchmarks, self.notes),
            CrossedBootstrap(samples, seed),
            _ancestors(self.known),
            self.notes,
        )
        self.rows = [self._row(group, label) for group, label in zip(groups, labels, strict=True)]

    def _check_protocols(self, records: Sequence[RunRecord]) -> None:
        # Only the items matter: Avg@K estimates the same expected reward whatever K is (a study gives
        # its claims' evals more samples, study.claim_k); K only changes how noisy each item's mean is,
        # which the intervals carry.
        for bench in self.benchmarks:
            counts = {r.results[bench].n_items for r in records if bench in r.results}
            if len(counts) > 1:
                shown = ", ".join(str(n) for n in sorted(counts))
                self.notes.append(
                    f"{bench}: runs were evaluated on different items ({shown} items); scores are not strictly comparable"
                )

    def _row(self, replicates: list[RunRecord], label: str) -> Row:
        for record in replicates:
            record.label = label
        benchmarks = [b for b in self.benchmarks if all(b in r.results for r in replicates)]
        if len(benchmarks) < len(self.benchmarks):
            missing = [b for b in self.benchmarks if b not in benchmarks]
            self.notes.append(f"{label}: not evaluated on {', '.join(missing)}; its mean covers the rest")
        scores = {b: self.stats.score(replicates, {b: 1.0}) for b in benchmarks}
        domain_scores = {}
        for domain in self.domains:
            members = [b for b in benchmarks if self.benchmark_domains[b] == domain]
            if members:
                domain_scores[domain] = self.stats.score(replicates, equal_weights(members))
        mean = self.stats.score(replicates, equal_weights(benchmarks)) if benchmarks else Estimate(math.nan)
        return Row(
            replicates=replicates,
            label=label,
            scores=scores,
            domain_scores=domain_scores,
            mean=mean,
            n_benchmarks=len(benchmarks),
            own_hours=_per_seed([r.cost_hours for r in replicates]),
            cumulative_hours=_per_seed([_cumulative_hours(r, self.known, self.notes) for r in replicates]),
        )

    def _shared(self, a: Row, b: Row, scope: str) -> dict[str, float]:
        """Benchmark weights of `scope` (a domain, or MEAN) over the benchmarks both rows have."""
        both = [x for x in self.benchmarks if x in a.scores and x in b.scores]
        if scope != MEAN:
            both = [x for x in both if self.benchmark_domains[x] == scope]
        return equal_weights(both) if both else {}

    def difference(
        self, kind: str, a: Row, b: Row, scope: str, b_words: str = "", level: float = LEVEL
    ) -> Difference | None:
        """a minus b on `scope` (`level`: its interval's), or None where they share no benchmark of it."""
        weights = self._shared(a, b, scope)
        if not weights:
            return None
        estimate = self.stats.difference(a, b, weights, level)
        return Difference(kind, a.label, b_words or b.label, scope, estimate)

    def versus_best(
        self, kind: str, each_kind: str, a: Row, candidates: list[Row], scope: str, prefix: str
    ) -> tuple[Row, Difference | None, list[Difference]]:
        """The best candidate on `scope` (the table's top), a minus it, and a minus each candidate, with
        intervals simultaneous over them (`m2rl.compare.best`); a single candidate is just itself."""
        score = (lambda r: r.mean.value) if scope == MEAN else (lambda r: r.domain_scores[scope].value)
        best = top(candidates, score)
        if len(candidates) == 1:
            return best, self.difference(kind, a, best, scope), []
        level = family_level(len(candidates))
        found = [(r, d) for r in candidates if (d := self.difference(each_kind, a, r, scope, level=level))]
        each = [d for _, d in found]
        index = next((i for i, (row, _) in enumerate(found) if row is best), None)
        if index is None:
            return best, None, each
        return best, versus_best(each, index, kind, _best_words(prefix, best)), each

    def sft_of(self, row: Row, fallback: Row | None) -> Row | None:
        """The SFT row of the row's lineage, else `fallback`."""
        ancestors = set().union(*(self.stats.ancestors[r.id] for r in row.replicates))
        for candidate in self.rows:
            if candidate.role == "sft" and any(r.id in ancestors for r in candidate.replicates):
                return candidate
        return fallback

    def transfer(self, sft: Row, mixed: Row | None) -> Transfer:
        """Every trained row minus the SFT of its lineage, per eval domain."""
        trained = [r for r in self.rows if r.role in TRAINED]
        cells = []
        for row in trained:
            reference = self.sft_of(row, sft)
            if reference is not sft:
                self.notes.append(f"{row.label}: compared with {reference.label}, the SFT of its own lineage")
            line = []
            for domain in self.domains:
                own = row.role == "expert" and row.record.domains == (domain,)
                kind = "expert_vs_sft" if own else "mixed_vs_sft" if row is mixed else "transfer"
                line.append(self.difference(kind, row, reference, domain))
            cells.append(line)
        return Transfer(sft.label, [r.label for r in trained], list(self.domains), cells)

    def synergy(self, mixed: Row, experts: list[Row]) -> list[Synergy]:
        """Per eval domain: the mixed run minus the best single expert there (the table's top)."""
        found = []
        for domain in self.domains:
            candidates = [r for r in experts if domain in r.domain_scores]
            if domain not in mixed.domain_scores or not candidates:
                continue
            best, difference, each = self.versus_best(
                "synergy", "mixed_vs_expert", mixed, candidates, domain, "expert"
            )
            if difference is not None:
                found.append(
                    Synergy(
                        domain,
                        mixed.domain_scores[domain].value,
                        best.label,
                        best.domain_scores[domain].value,
                        difference,
                        each,
                    )
                )
        return found

    def with_distill_seeds(self, seeds: list[SeedCost], distill: Row) -> list[SeedCost]:
        """The same seeds with each seed's MT-OPD run's own cost added to the merge side."""
        found = []
        for cost in seeds:
            run = next((r for r in distill.replicates if r.seed == cost.seed), None)
            if run is None:
                self.notes.append(
                    f"cost ratio with MT-OPD: no {distill.label} run of seed {cost.seed}; seed left out"
                )
                continue
            found.append(
                SeedCost(cost.seed, cost.mixed_hours, cost.expert_hours, cost.merge_hours + run.cost_hours)
            )
        return found

    def cost_seeds(self, mixed: Row, merge: Row | None, experts: list[Row]) -> list[SeedCost]:
        """Per seed lineage: the mixed run's cost against its experts' (the merge's) plus the merge's."""
        seeds = []
        for mixed_run in mixed.replicates:
            merge_run = None
            if merge is not None:
                merge_run = next((r for r in merge.replicates if r.seed == mixed_run.seed), None)
                if merge_run is None and len(merge.replicates) == 1:
                    merge_run = merge.replicates[0]
                if merge_run is None:
                    self.notes.append(
                        f"cost ratio: no {merge.label} run of seed {mixed_run.seed}; seed left out"
                    )
                    continue
            if merge_run is not None and merge_run.merge_experts:
                expert_runs = [self.known[e] for e in merge_run.merge_experts if e in self.known]
                if len(expert_runs) < len(merge_run.merge_experts):
                    self.notes.append(
                        f"{merge_run.label}: some experts were not found; the cost ratio misses their hours"
                    )
            else:  # no merge: each domain's expert of this seed
                expert_runs = [
                    next((r for r in row.replicates if r.seed == mixed_run.seed), row.replicates[-1])
                    for row in {row.record.domains[0]: row for row in experts}.values()
                ]
            if expert_runs:
                seeds.append(
                    SeedCost(
                        seed=mixed_run.seed,
                        mixed_hours=mixed_run.cost_hours,
                        expert_hours={default_label(r): r.cost_hours for r in expert_runs},
                        merge_hours=merge_run.cost_hours if merge_run is not None else 0.0,
                    )
                )
        return seeds


def _best_words(prefix: str, row: Row) -> str:
    """`the best merge (TIES)`: the method alone when the label is the plain default."""
    if row.role == "merge" and row.label == default_label(row.record) and row.record.merge_method:
        return f"the best {prefix} ({method_label(row.record.merge_method)})"
    return f"the best {prefix} ({row.label})"


def build_comparison(
    records: Sequence[RunRecord],
    lineage: Sequence[RunRecord] = (),
    bootstrap_samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
) -> Comparison:
    """Compare `records` (evaluated runs); `lineage` holds ancestors that are not rows, for costs."""
    records, chains, cascade_notes = fold_cascades(records, lineage)
    b = _Builder(records, lineage, bootstrap_samples, seed, [s for c in chains for s in c.stages])
    b.notes += cascade_notes
    rows = b.rows
    mixed = _primary(rows, "mixed")
    experts = [r for r in rows if r.role == "expert"]
    merges = [r for r in rows if r.role == "merge"]
    sft = b.sft_of(mixed, None) if mixed is not None else None
    sft = sft or next((r for r in reversed(rows) if r.role == "sft"), None)

    best_merge, best_vs_mixed, each_merge = None, None, []
    if merges and mixed is not None:
        best_merge, best_vs_mixed, each_merge = b.versus_best(
            "mixed_vs_best_merge", "mixed_vs_merge", mixed, merges, MEAN, "merge"
        )
    elif merges:
        best_merge = top(merges, lambda r: r.mean.value)
    best_merge_choice = BEST_BY_TABLE if len(merges) > 1 else ""

    transfer = None
    versus_sft: dict[str, Difference] = {}  # by row label
    if sft is not None and any(r.role in TRAINED for r in rows):
        transfer = b.transfer(sft, mixed)
        for row in (r for r in rows if r.role in TRAINED):
            kind = (
                "mixed_vs_sft" if row is mixed else "distill_vs_sft" if row.role == "distill" else "transfer"
            )
            difference = b.difference(kind, row, b.sft_of(row, sft), MEAN)
            if difference is not None:
                versus_sft[row.label] = difference
    elif any(r.role in TRAINED for r in rows):
        b.notes.append("no evaluated SFT run among the compared runs: no transfer matrix")

    headline: list[Difference | None] = []
    if transfer is not None:
        headline += [
            cell for line in transfer.cells for cell in line if cell and cell.kind == "expert_vs_sft"
        ]
        if mixed is not None:
            headline.append(versus_sft.get(mixed.label))
    headline.append(best_vs_mixed)
    synergy = b.synergy(mixed, experts) if mixed is not None else []
    distill = _primary(rows, "distill")
    if distill is not None:
        headline.append(versus_sft.get(distill.label))
        if mixed is not None:
            headline.append(b.difference("mixed_vs_distill", mixed, distill, MEAN))
    found = build_cascades(rows, chains, b._row, b.difference, b.versus_best, mixed, distill)
    headline += [d for c in found for d in c.claims]

    ratio = None
    seeds = b.cost_seeds(mixed, best_merge, experts) if mixed is not None else []
    if seeds:
        merge_label = best_merge.label if best_merge is not None else None
        ratio = cost_ratio(mixed.label, merge_label, b.hours_label, seeds, bootstrap_samples, seed)
    ratio_with_distill = None
    if ratio is not None and distill is not None:
        with_distill = b.with_distill_seeds(seeds, distill)
        if with_distill:
            label = f"{merge_label} + {distill.label}" if merge_label else distill.label
            ratio_with_distill = cost_ratio(
                mixed.label, label, b.hours_label, with_distill, bootstrap_samples, seed
            )

    claims = [d for d in headline if d is not None]
    cells = [c for line in transfer.cells for c in line if c is not None] if transfer is not None else []
    everything = [
        *claims,
        *each_merge,
        *[s.difference for s in synergy],
        *[d for s in synergy for d in s.each],
        *cells,
        *versus_sft.values(),
        *[d for c in found for d in c.differences],
    ]
    return Comparison(
        benchmarks=b.benchmarks,
        benchmark_domains=b.benchmark_domains,
        domains=b.domains,
        rows=rows,
        hours_label=b.hours_label,
        cost_ratio=ratio,
        best_merge=best_merge,
        mixed=mixed,
        synergy=synergy,
        transfer=transfer,
        headline=claims,
        differences=list(dict.fromkeys(everything)),
        studies=sorted({r.record.study for r in rows if r.record.study}),
        seeds=sorted({r.seed for row in rows for r in row.replicates if r.seed is not None}),
        bootstrap_samples=bootstrap_samples,
        best_merge_choice=best_merge_choice,
        notes=list(dict.fromkeys(b.notes)),
        distill=distill,
        cost_ratio_with_distill=ratio_with_distill,
        versus_sft=list(versus_sft.values()),
        warnings=nothing_learned(rows, b.domains),
        cascades=found,
    )
