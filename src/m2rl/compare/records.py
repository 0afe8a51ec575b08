"""Plain records the comparison is computed from: one per run, with its cost, lineage and scores.

The comparison never reads manifests itself, so it can be fed the paper's own numbers in a test;
`m2rl.compare.manifests` builds these records from run directories.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DOMAIN_ORDER = ("math", "code", "science", "if", "general")
DOMAIN_LABELS = {"math": "Math", "code": "Code", "science": "Science", "if": "IF", "general": "General"}
ALL_TRAINING_DOMAINS = frozenset({"math", "code", "science", "if"})
# A study names its mixed run `<study>-s<seed>-rl-mixed` (m2rl.study.plan): it trains on all of the
# study's domains, whichever they are (a user's own domains included).
STUDY_MIXED_SUFFIX = "-rl-mixed"
# Merge methods as the literature writes them; `paper_<method>` (MergeLM semantics) reads the same.
METHOD_LABELS = {
    "average": "Average",
    "linear": "Average",
    "task_arithmetic": "TA",
    "ta": "TA",
    "ties": "TIES",
    "dare_ties": "TIES+DARE",
    "ties_dare": "TIES+DARE",
    "dare_linear": "TA+DARE",
    "dare_ta": "TA+DARE",
    "ta_dare": "TA+DARE",
    "sce": "SCE",
    "mt_opd": "MT-OPD",
    "della": "DELLA",
    "breadcrumbs": "Breadcrumbs",
    "model_stock": "Model Stock",
    "slerp": "SLERP",
    "ram": "RAM",
    "ramplus_tl": "RAM+",
}

TUNED_SUFFIX = "+search"  # the method of a tuned merge's manifest (m2rl.merge.search.SEARCH_SUFFIX)


@dataclass(frozen=True)
class BenchmarkResult:
    """One benchmark's score for one run: Avg@K in [0, 1], its interval, and per-item mean rewards."""

    domain: str
    score: float
    ci95: tuple[float, float] | None = None
    item_scores: dict[str, float] | None = None
    k: int | None = None
    n_items: int | None = None


@dataclass
class RunRecord:
    """What the comparison needs to know about one run."""

    id: str
    # sft | rl | merge | distill | cascade (a chain of RL runs, m2rl.compare.cascade), or reference: a model
    # this ledger did not train, shown for reference (the paper's Base row), never a run kind
    kind: str
    name: str = ""
    parents: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()  # training domains of an rl run
    merge_method: str | None = None
    merge_backend: str | None = None
    merge_experts: tuple[str, ...] = ()
    cost_hours: float = 0.0  # the run's own compute cost (see m2rl.compare.costs)
    hours_label: str = "GPU-hours"
    seed: int | None = None  # training seed of the run's lineage
    study: str | None = None  # the pipeline study it belongs to
    results: dict[str, BenchmarkResult] = field(default_factory=dict)
    label: str = ""
    cascade_stage: int | None = None  # k of a study's cascade (m2rl.compare.cascade)

    def __post_init__(self) -> None:
        if not self.label:
            self.label = default_label(self)

    @property
    def role(self) -> str:
        """base (a reference row), sft, expert (one training domain), mixed (several), merge, or the kind
        itself (distill)."""
        if self.kind == "reference":
            return "base"
        if self.kind == "rl":
            return "mixed" if len(self.domains) > 1 else "expert"
        return self.kind

    @property
    def trained_on(self) -> str:
        """The training domains in words (for a merge, the experts' domains are not known here)."""
        if self.kind == "rl":
            return "+".join(self.domains)
        if self.kind == "merge":
            return f"merge of {len(self.merge_experts)}" if self.merge_experts else "merge"
        if self.kind == "distill":
            return f"distilled from {len(self.parents) - 1} experts"
        if self.kind == "cascade":
            return " → ".join(self.domains)
        return ""

    @property
    def ancestors_direct(self) -> tuple[str, ...]:
        """Direct lineage: parents plus a merge's experts."""
        return tuple(dict.fromkeys((*self.parents, *self.merge_experts)))


def method_label(method: str) -> str:
    """A merge method's display name as in the literature (TIES, TA+DARE, ...); a tuned merge's
    (`<method>+search`, m2rl.merge.search) is `TIES tuned`."""
    key = method.lower().removeprefix("paper_")
    if key.endswith(TUNED_SUFFIX):
        return f"{method_label(key.removesuffix(TUNED_SUFFIX))} tuned"
    return METHOD_LABELS.get(key, key.replace("_", " ").title())


def trains_on_all_domains(record: RunRecord) -> bool:
    """A mixed RL run on the paper's four domains, or a study's mixed run on all of the study's."""
    return record.kind == "rl" and (
        set(record.domains) >= ALL_TRAINING_DOMAINS
        or (bool(record.study) and len(record.domains) > 1 and record.name.endswith(STUDY_MIXED_SUFFIX))
    )


def default_label(record: RunRecord) -> str:
    """The paper's row names: Base, SFT, RL-Math, RL-Multi, Merge (TIES)."""
    if record.kind == "reference":
        return "Base"
    if record.kind == "sft":
        return "SFT"
    if record.kind == "rl":
        if len(record.domains) == 1:
            return f"RL-{DOMAIN_LABELS.get(record.domains[0], record.domains[0])}"
        if trains_on_all_domains(record):
            return "RL-Multi"
        return "RL-Mix(" + "+".join(DOMAIN_LABELS.get(d, d) for d in record.domains) + ")"
    if record.kind == "merge":
        return f"Merge ({method_label(record.merge_method or '?')})"
    if record.kind == "distill":
        return "MT-OPD"
    if record.kind == "cascade":
        return "Cascade"
    return record.name or record.id
