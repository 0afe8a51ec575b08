"""The cascade in the comparison (m2rl.study.cascade): one row for its final model, its claims, and
the forgetting table.

A cascade is a chain of RL runs that record `cascade` in their manifest, each stage's parent the stage
before; stage 1 is a labelled run, or the expert of the same seed the study's cascade starts from.
`fold` replaces each chain by one `cascade` record: the final model's id and scores, the first stage's
parents (its SFT), and the sum of the stages' own costs as its own cost, so the row's cost is the whole
cascade's and its cumulative cost adds the SFT once, as for the mixed run. The stages are kept for the
forgetting table: each domain's score right after its own stage and at the end of the cascade, and
the end minus that, paired over seeds and the same test items as every difference is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from m2rl.compare.claims import MEAN, Difference
from m2rl.compare.intervals import Estimate
from m2rl.compare.records import DOMAIN_LABELS, RunRecord
from m2rl.compare.statistics import Row

ROLE = "cascade"


@dataclass
class Chain:
    """One seed's cascade: its stage records, first to last."""

    stages: list[RunRecord]

    @property
    def order(self) -> tuple[str, ...]:
        return tuple(s.domains[0] for s in self.stages)

    def record(self) -> RunRecord:
        """The cascade as one record: the final model's scores, the whole chain's cost."""
        first, last = self.stages[0], self.stages[-1]
        return RunRecord(
            id=last.id,
            kind=ROLE,
            name=last.name,
            parents=first.parents,
            domains=self.order,
            cost_hours=sum(s.cost_hours for s in self.stages),
            hours_label=last.hours_label,
            seed=last.seed,
            study=last.study,
            results=last.results,
        )


def fold(
    records: Sequence[RunRecord], lineage: Sequence[RunRecord]
) -> tuple[list[RunRecord], list[Chain], list[str]]:
    """(the records with each cascade's stages replaced by its one record, the chains, notes).

    A compared stage that is no other known stage's parent ends a chain; the chain is followed back
    through the parents to stage 1. A lone first stage, or a chain with a stage missing, is left out
    with a note."""
    known = {r.id: r for r in lineage} | {r.id: r for r in records}
    parents_of_stages = {p for r in known.values() if r.cascade_stage is not None for p in r.parents}
    kept = [r for r in records if r.cascade_stage is None]
    chains, notes = [], []
    for end in (r for r in records if r.cascade_stage is not None and r.id not in parents_of_stages):
        stages = [end]
        while stages[0].cascade_stage not in (1, None):
            parent = known.get(stages[0].parents[0]) if stages[0].parents else None
            if parent is None or not _stage_before(parent, stages[0].cascade_stage, (end.seed, end.study)):
                stages = []
                break
            stages.insert(0, parent)
        if len(stages) < 2:
            why = "its stages before are missing" if not stages else "only its first stage was made"
            notes.append(f"cascade run {end.name} ({end.id}): {why}; no Cascade row for it")
            continue
        chain = Chain(stages)
        chains.append(chain)
        kept.append(chain.record())
    return kept, chains, notes


def _stage_before(parent: RunRecord, k: int, seed_study: tuple) -> bool:
    """Whether `parent` is stage k-1 of a chain: labelled so, or, before stage 2, the expert a study's
    cascade starts from (m2rl.study.cascade: stage 1 is the first domain's expert, of the same seed)."""
    if k == 2 and parent.cascade_stage is None:
        return parent.kind == "rl" and len(parent.domains) == 1 and (parent.seed, parent.study) == seed_study
    return parent.cascade_stage == k - 1


@dataclass
class Forgetting:
    """One domain of a cascade: its score right after its own stage k and at the end, and the change."""

    domain: str
    stage: int
    after: Estimate | None
    end: Estimate | None
    change: Difference | None  # end minus after; None for the last stage (the same model)


@dataclass
class Cascade:
    """A cascade's row (its final model over seeds), its stages, claims and forgetting table."""

    row: Row
    stages: list[Row]  # stage k's models over seeds, the last being the row's own runs
    stage_hours: list[float]  # each stage's own cost, mean over seeds (their sum is the row's own cost)
    claims: list[Difference] = field(default_factory=list)  # minus the mixed run, the best merge, MT-OPD
    each_merge: list[Difference] = field(default_factory=list)  # minus every merge (simultaneous intervals)
    forgetting: list[Forgetting] = field(default_factory=list)

    @property
    def order(self) -> tuple[str, ...]:
        return self.row.record.domains

    @property
    def differences(self) -> list[Difference]:
        return [*self.claims, *self.each_merge, *(f.change for f in self.forgetting if f.change)]


MakeRow = Callable[[list[RunRecord], str], Row]
DifferenceFn = Callable[[str, Row, Row, str], Difference | None]
VersusBest = Callable[[str, str, Row, list[Row], str, str], tuple[Row, Difference | None, list[Difference]]]


def stage_label(row: Row, k: int, domain: str) -> str:
    """`Cascade after 2 (Science)`."""
    return f"{row.label} after {k} ({DOMAIN_LABELS.get(domain, domain)})"


def build(
    rows: Sequence[Row],
    chains: Sequence[Chain],
    make_row: MakeRow,
    difference: DifferenceFn,
    versus_best: VersusBest,
    mixed: Row | None,
    distill: Row | None,
) -> list[Cascade]:
    """Every cascade row's stages, claims (against the mixed run, the best merge and MT-OPD, where they
    exist) and forgetting table; `make_row`, `difference` and `versus_best` are the comparison's own."""
    by_end = {c.stages[-1].id: c for c in chains}
    merges = [r for r in rows if r.role == "merge"]
    found = []
    for row in (r for r in rows if r.role == ROLE):
        replicates = [by_end[r.id] for r in row.replicates]
        stages = [
            make_row([c.stages[k] for c in replicates], stage_label(row, k + 1, domain))
            for k, domain in enumerate(row.record.domains[:-1])
        ]
        hours = [
            sum(c.stages[k].cost_hours for c in replicates) / len(replicates)
            for k in range(len(row.record.domains))
        ]
        cascade = Cascade(row, [*stages, row], hours)
        if mixed is not None:
            cascade.claims.append(difference("cascade_vs_mixed", row, mixed, MEAN))
        if merges:
            _, best, cascade.each_merge = versus_best(
                "cascade_vs_best_merge", "cascade_vs_merge", row, merges, MEAN, "merge"
            )
            cascade.claims.append(best)
        if distill is not None:
            cascade.claims.append(difference("cascade_vs_distill", row, distill, MEAN))
        cascade.claims = [d for d in cascade.claims if d is not None]
        for k, (domain, stage) in enumerate(zip(row.record.domains, cascade.stages, strict=True), start=1):
            last = stage is row
            cascade.forgetting.append(
                Forgetting(
                    domain,
                    k,
                    stage.domain_scores.get(domain),
                    row.domain_scores.get(domain),
                    None if last else difference("cascade_forgetting", row, stage, domain),
                )
            )
        found.append(cascade)
    return found
