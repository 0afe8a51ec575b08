"""Fake studies for compare tests: run folders with manifests and per-item eval files, no training."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from m2rl.evaluate.results import ItemResult, results_path, write_results
from m2rl.ledger import Ledger, Run

K = 4
DOMAINS = ("math", "code", "science", "if")
# Solve-rate shift of each role over an item's base difficulty, per eval domain.
SKILL = {
    "sft": {"math": 0.0, "code": 0.0, "science": 0.0, "if": 0.0},
    "rl-math": {"math": 0.35, "code": 0.05, "science": 0.0, "if": 0.0},
    "rl-code": {"math": 0.05, "code": 0.3, "science": 0.0, "if": 0.0},
    "rl-science": {"math": 0.0, "code": 0.0, "science": 0.02, "if": 0.0},
    "rl-if": {"math": 0.0, "code": 0.0, "science": 0.0, "if": 0.25},
    "rl-mixed": {"math": 0.3, "code": 0.25, "science": 0.02, "if": 0.2},
    "merge-paper_ties": {"math": 0.2, "code": 0.15, "science": 0.01, "if": 0.1},
    "merge-paper_ta": {"math": 0.18, "code": 0.14, "science": 0.0, "if": 0.12},
}
# CPU seconds of each role's training; wall-clock device-hours are twice that (a loaded machine).
CPU_SECONDS = {"sft": 180.0, "rl-math": 80.0, "rl-code": 90.0, "rl-science": 70.0, "rl-if": 85.0,
               "rl-mixed": 150.0, "merge-paper_ties": 0.5, "merge-paper_ta": 0.5}  # fmt: skip


@dataclass
class Study:
    """The runs of a fake study, by (role, seed)."""

    root: Path
    name: str
    runs: dict[tuple[str, int], Run] = field(default_factory=dict)


def write_eval(run: Run, skill: dict[str, float], seed: int, n_items: int, seed_effect: float) -> None:
    """Per-item results and manifest metrics as `evaluate_run` writes them; items shared by every run."""
    rng = np.random.default_rng([seed, zlib.crc32(run.name.encode())])
    difficulty = np.random.default_rng(7).random((len(DOMAINS), n_items))  # the data seed's test set
    evals = {}
    for d, domain in enumerate(DOMAINS):
        items = []
        for i in range(n_items):
            p = float(np.clip(0.25 + skill[domain] + seed_effect + 0.5 - difficulty[d, i], 0, 1))
            rewards = [float(rng.random() < p) for _ in range(K)]
            items.append(
                ItemResult(f"{domain}-{i}", domain, rewards, [""] * K, [""] * K, [8] * K, [True] * K)
            )
        write_results(results_path(run.path, domain), items)
        avg = float(np.mean([np.mean(item.rewards) for item in items]))
        evals[domain] = {
            "domain": domain,
            "k": K,
            "avg_at_k": avg,
            "pass_at_k": avg,
            "ci95": [avg - 0.05, avg + 0.05],
            "n_items": n_items,
            "config_hash": "x",
        }
    run.manifest.setdefault("metrics", {})["eval"] = evals
    run.save()


def _make_run(
    ledger: Ledger,
    study: Study,
    role: str,
    kind: str,
    seed: int,
    parents: list[str],
    cpu_seconds: bool,
    **fields,
) -> Run:
    """A completed run of `role` for `seed` with its lineage, seed, study and costs recorded."""
    run = ledger.create(kind, f"{study.name}-{role}-s{seed}", {}, parents=parents)
    extra = {"cpu_seconds": CPU_SECONDS[role]} if cpu_seconds else {}
    if not cpu_seconds:
        run.manifest.pop("cpu_seconds", None)  # as in manifests written before m2rl recorded CPU time
    run.update(
        status="completed",
        seed=seed,
        study=study.name,
        device_hours=2 * CPU_SECONDS[role] / 3600,
        device_hours_label="CPU-hours",
        **extra,
        **fields,
    )
    study.runs[role, seed] = run
    return run


def build_study(
    root: Path,
    name: str = "study",
    seeds: tuple[int, ...] = (0, 1),
    n_items: int = 48,
    seed_spread: float = 0.03,
    cpu_seconds: bool = True,
    shared_sft: bool = False,
    skills: dict[str, dict[str, float]] | None = None,
) -> Study:
    """SFT, four experts, the mixed run and two merges per seed, evaluated on four domains
    (`shared_sft`: one SFT, of the first seed, that every seed's lineage starts from; `skills`: roles'
    shifts that replace SKILL's, per domain: -1 makes every item unsolvable)."""
    skill = {role: SKILL[role] | (skills or {}).get(role, {}) for role in SKILL}
    ledger = Ledger(root)
    study = Study(Path(root), name)
    for seed in seeds:
        sft_seed = seeds[0] if shared_sft else seed
        if sft_seed == seed:
            _make_run(ledger, study, "sft", "sft", seed, [], cpu_seconds)
        sft = study.runs["sft", sft_seed].id
        experts = [
            _make_run(ledger, study, f"rl-{d}", "rl", seed, [sft], cpu_seconds, domains=[d]).id
            for d in DOMAINS
        ]
        _make_run(ledger, study, "rl-mixed", "rl", seed, [sft], cpu_seconds, domains=list(DOMAINS))
        for method in ("paper_ties", "paper_ta"):
            merge = {"method": method, "backend": "paper", "experts": experts, "base": sft}
            _make_run(
                ledger, study, f"merge-{method}", "merge", seed, [sft, *experts], cpu_seconds, merge=merge
            )
        effect = seed_spread * (seed % 3 - 1)
        for (role, run_seed), run in study.runs.items():
            if run_seed == seed:
                write_eval(run, skill[role], seed, n_items, effect)
    return study
