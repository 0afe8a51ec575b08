"""The analysed runs grouped per training lineage: one SFT model, its experts, mixed run and merges, per seed."""

from __future__ import annotations

from dataclasses import dataclass, field

from m2rl.compare.records import DOMAIN_ORDER, RunRecord, default_label
from m2rl.errors import UserError
from m2rl.ledger import Ledger, Run


@dataclass
class Lineage:
    """The models of one seed: the SFT they start from, an expert per domain, the mixed run, merges."""

    seed: int | None
    sft: Run
    experts: dict[str, Run] = field(default_factory=dict)  # training domain -> expert
    mixed: Run | None = None
    merges: list[Run] = field(default_factory=list)
    distills: list[Run] = field(default_factory=list)  # MT-OPD students (m2rl distill)

    def models(self) -> list[tuple[str, Run]]:
        """(label, run) of every model, in the paper's row order: SFT, experts, mixed, merges, MT-OPD."""
        runs = [
            self.sft,
            *self.experts.values(),
            *([self.mixed] if self.mixed else []),
            *self.merges,
            *self.distills,
        ]
        return list(zip(labels(runs), runs, strict=True))

    def label(self, run: Run) -> str:
        return next(label for label, r in self.models() if r.id == run.id)

    @property
    def rl_runs(self) -> list[Run]:
        """The runs with a task vector of their own: the experts and the mixed run."""
        return [*self.experts.values(), *([self.mixed] if self.mixed else [])]


def labels(runs: list[Run]) -> list[str]:
    """The paper's row names (SFT, RL-Math, RL-Multi, Merge (TIES)); repeats get their method or name."""
    names = [default_label(_record(run)) for run in runs]
    repeated = {n for n in names if names.count(n) > 1}
    return [
        f"{n} [{(r.manifest.get('merge') or {}).get('method') or r.name}]" if n in repeated else n
        for n, r in zip(names, runs, strict=True)
    ]


def _record(run: Run) -> RunRecord:
    merge = run.manifest.get("merge") or {}
    return RunRecord(
        id=run.id,
        kind=run.kind,
        domains=tuple(run.manifest.get("domains") or ()),
        merge_method=merge.get("method"),
    )


def sft_of(ledger: Ledger, run: Run) -> Run:
    """The SFT run a model descends from (itself for an SFT run)."""
    seen: set[str] = set()
    while run.kind != "sft":
        if run.id in seen:
            raise UserError(f"run {run.id}: its lineage loops")
        seen.add(run.id)
        merge = run.manifest.get("merge") or {}
        parent = merge.get("base") or next(iter(run.manifest.get("parents") or []), None)
        if parent is None:
            raise UserError(f"run {run.id} ({run.kind}) has no SFT ancestor to measure its changes against")
        run = ledger.get(parent)
    return run


def group(ledger: Ledger, runs: list[Run]) -> list[Lineage]:
    """The runs as lineages, keyed by (SFT, seed): a shared SFT serves every seed's lineage."""
    lineages: dict[tuple[str, int | None], Lineage] = {}
    sfts = {r.id: r for r in runs if r.kind == "sft"}
    for run in runs:
        if run.kind == "sft":
            continue
        sft = sft_of(ledger, run)
        sfts.pop(sft.id, None)
        key = (sft.id, run.manifest.get("seed"))
        lineage = lineages.setdefault(key, Lineage(seed=key[1], sft=sft))
        domains = list(run.manifest.get("domains") or [])
        if run.kind == "merge":
            lineage.merges.append(run)
        elif run.kind == "distill":
            lineage.distills.append(run)
        elif run.kind == "rl" and len(domains) == 1:
            if domains[0] in lineage.experts:
                other = lineage.experts[domains[0]]
                raise UserError(f"two {domains[0]} experts of one lineage: {other.id} and {run.id}; name one")
            lineage.experts[domains[0]] = run
        elif run.kind == "rl":
            if lineage.mixed is not None:
                raise UserError(f"two mixed runs of one lineage: {lineage.mixed.id} and {run.id}; name one")
            lineage.mixed = run
        else:
            raise UserError(
                f"run {run.id} is a {run.kind} run: analyze takes SFT, RL, merge and distill runs"
            )
    for lineage in lineages.values():
        lineage.experts = dict(sorted(lineage.experts.items(), key=lambda item: _domain_key(item[0])))
    for sft in sfts.values():  # an SFT run named alone
        lineages[(sft.id, sft.manifest.get("seed"))] = Lineage(seed=sft.manifest.get("seed"), sft=sft)
    return sorted(lineages.values(), key=lambda lineage: (lineage.seed is None, lineage.seed or 0))


def _domain_key(domain: str) -> tuple[int, str]:
    return (DOMAIN_ORDER.index(domain) if domain in DOMAIN_ORDER else len(DOMAIN_ORDER), domain)
