"""The study as a graph of jobs: per seed, SFT -> an expert per domain and the mixed run -> merges
(and, with `study.distill`, MT-OPD of the experts into the SFT model),
an eval of every model, then (`study.analyze`) an analyze stage over the seed's evaluated models; the
comparison over all seeds closes it (run by the executor's caller).

A stage's job spec is built when its dependencies have finished, from their runs (an RL stage starts
from the SFT run's id, a merge names its experts' ids), so a stage's identity pins its inputs.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from omegaconf import DictConfig, open_dict

from m2rl.errors import UserError
from m2rl.jobs.build import analyze_job, check_config, distill_job, eval_job, merge_job, rl_job, sft_job
from m2rl.ledger import Run
from m2rl.specs import JobSpec

MIXED = "mixed"
# Rough cost of a stage in "RL step" units, for longest-first scheduling and the ETA.
SFT_COST, EVAL_COST, MERGE_COST, ANALYZE_COST = 60.0, 8.0, 0.5, 8.0


@dataclass
class Stage:
    """One job of the study graph."""

    name: str  # unique in the study; the run name for training and merge stages
    kind: str  # sft | rl | merge | eval | analyze | distill
    seed: int
    deps: tuple[str, ...]
    build: Callable[[dict[str, Run]], JobSpec] = field(repr=False)  # the spec, from finished stages' runs
    domains: tuple[str, ...] = ()
    method: str | None = None
    steps: int | None = None
    evaluates: str | None = None  # eval stages: the stage whose model they evaluate

    @property
    def cost(self) -> float:
        """Estimated cost (longest first; ETA weights)."""
        if self.kind in ("rl", "distill"):
            return float(self.steps or 1)
        costs = {"sft": SFT_COST, "eval": EVAL_COST, "merge": MERGE_COST, "analyze": ANALYZE_COST}
        return costs.get(self.kind, 1.0)


def study_seeds(cfg: DictConfig) -> list[int]:
    """The training seeds of the study: `study.seeds` as a count (from `seed` up) or an explicit list."""
    seeds = cfg.study.get("seeds", 1)
    if isinstance(seeds, int | str) and str(seeds).isdigit():
        if int(seeds) < 1:
            raise UserError(f"study.seeds={seeds}: need at least one seed")
        return [int(cfg.seed) + i for i in range(int(seeds))]
    try:
        values = [int(s) for s in seeds]
    except (TypeError, ValueError):
        raise UserError(f"study.seeds={seeds}: expected a count or a list of integer seeds") from None
    if not values or len(set(values)) != len(values):
        raise UserError(f"study.seeds={seeds}: expected distinct seeds")
    return values


def _with_seed(cfg: DictConfig, seed: int) -> DictConfig:
    seeded = cfg.copy()
    seeded.seed = seed
    return seeded


def _with_claim_k(cfg: DictConfig, domains: Sequence[str]) -> DictConfig:
    """The config with at least `study.claim_k` samples per item on the benchmarks of `domains`.

    The study's noisiest claims rest on few evals: the SFT model is the baseline of every claim, and an
    expert's claim is on its one domain (a claim on the mean over domains has four times its items).
    More samples there narrow those intervals at a fraction of the cost of raising `eval.k` for all
    evals (the shared baseline is worth the most samples, as the control arm of a trial with several
    arms is). Avg@K estimates the same expected reward whatever K is, so the scores stay comparable.
    """
    claim_k = cfg.study.get("claim_k")
    if not claim_k or not domains:
        return cfg
    result = copy.deepcopy(cfg)
    default = int(result.eval.get("k", 1))
    with open_dict(result):
        for spec in result.eval.benchmarks.values():
            if spec.get("domain") in domains:
                spec.k = max(int(spec.get("k", default)), int(claim_k))
    return result


def plan(cfg: DictConfig, study: str) -> list[Stage]:
    """Every stage of the study for this config, in a valid order (dependencies first)."""
    check_config(cfg)
    domains = list(cfg.study.domains)
    seeds = study_seeds(cfg)
    share_sft = bool(cfg.study.get("share_sft", False)) and len(seeds) > 1
    stages: list[Stage] = []

    def add_eval(model: Stage, claim_domains: Sequence[str]) -> None:
        stages.append(
            Stage(
                f"{model.name}-eval",
                "eval",
                model.seed,
                (model.name,),
                # the lineage's seed, so a seed's evals are the same whether it runs alone or among others
                lambda runs, model=model, c=_with_claim_k(_with_seed(cfg, model.seed), claim_domains): (
                    eval_job(c, runs[model.name].id, study, "eval")
                ),
                evaluates=model.name,
            )
        )

    shared = None
    for seed in seeds:
        seeded = _with_seed(cfg, seed)
        prefix = seed_prefix(study, seed)
        if shared is None or not share_sft:
            sft_cfg = _with_seed(cfg, seeds[0]) if share_sft else seeded
            name = f"{study}-sft" if share_sft else f"{prefix}-sft"
            shared = Stage(
                name,
                "sft",
                seeds[0] if share_sft else seed,
                (),
                lambda runs, c=sft_cfg, n=name: sft_job(c, n, study),
            )
            stages.append(shared)
            add_eval(shared, domains)  # the baseline of every claim
        sft = shared
        experts = []
        for domain in domains:
            name = f"{prefix}-rl-{domain}"
            stage = Stage(
                name,
                "rl",
                seed,
                (sft.name,),
                lambda runs, c=seeded, n=name, d=domain, s=sft.name: rl_job(c, n, [d], runs[s].id, study),
                domains=(domain,),
                steps=int(cfg.rl.steps),
            )
            experts.append(stage)
        stages += experts
        models = list(experts)
        if len(domains) > 1:
            name = f"{prefix}-rl-{MIXED}"
            mixed = Stage(
                name,
                "rl",
                seed,
                (sft.name,),
                lambda runs, c=seeded, n=name, s=sft.name: rl_job(c, n, domains, runs[s].id, study),
                domains=tuple(domains),
                steps=int(cfg.rl.mixed_steps),
            )
            stages.append(mixed)
            models.append(mixed)
            for method in cfg.study.merge_methods:
                name = f"{prefix}-merge-{method}"
                merge = Stage(
                    name,
                    "merge",
                    seed,
                    (sft.name, *(e.name for e in experts)),
                    lambda runs, c=seeded, n=name, m=method, s=sft.name, ex=tuple(e.name for e in experts): (
                        merge_job(c, m, [runs[e].id for e in ex], runs[s].id, n, study)
                    ),
                    domains=tuple(domains),
                    method=str(method),
                )
                stages.append(merge)
                models.append(merge)
            if cfg.study.get("distill", False):
                distill = _distill_stage(seeded, study, prefix, sft, experts, domains)
                stages.append(distill)
                models.append(distill)
        for model in models:
            add_eval(model, model.domains if model.kind == "rl" and len(model.domains) == 1 else ())
        if cfg.study.get("analyze", False):
            stages.append(_analyze_stage(cfg, study, seed, [sft, *models], several=len(seeds) > 1))
    return stages


def _distill_stage(
    cfg: DictConfig, study: str, prefix: str, sft: Stage, experts: list[Stage], domains: list[str]
) -> Stage:
    """MT-OPD of one seed's experts into its SFT model, on the mixed run's prompts (after the experts)."""
    name = f"{prefix}-distill"
    distill_job(cfg, name, ["unused"], "unused", domains, study)  # validate the recipe before any work
    return Stage(
        name,
        "distill",
        int(cfg.seed),
        (sft.name, *(e.name for e in experts)),
        lambda runs, ex=tuple(e.name for e in experts): distill_job(
            cfg, name, [runs[e].id for e in ex], runs[sft.name].id, domains, study
        ),
        domains=tuple(domains),
        steps=int(cfg.distill.steps),
    )


def seed_prefix(study: str, seed: int) -> str:
    """What the names of one seed's stages start with: `<study>-s<seed>`."""
    return f"{study}-s{seed}"


def analyze_stage_name(study: str, seed: int) -> str:
    """The analyze stage's (and run's) name for one seed; `m2rl analyze STUDY` uses it too, so that the
    pipeline and the command make and reuse the same run."""
    return f"{seed_prefix(study, seed)}-analyze"


def _analyze_stage(cfg: DictConfig, study: str, seed: int, models: list[Stage], several: bool) -> Stage:
    """The analyses of one seed's models, after all their evals; its report is also published under
    the runs root (m2rl.analysis.analysis_folder), where compare.md links it."""
    from m2rl.analysis import analysis_folder

    name = analyze_stage_name(study, seed)
    publish = analysis_folder(study, seed if several else None)
    analyze_job(cfg, ["unused"], name, study, publish)  # validate the analyze settings before any work
    # the root config, as the eval stages use: its seed is part of the eval results the analyses read
    return Stage(
        name,
        "analyze",
        seed,
        tuple(f"{m.name}-eval" for m in models),
        lambda runs, ms=tuple(m.name for m in models): analyze_job(
            cfg, [runs[m].id for m in ms], name, study, publish
        ),
    )


def estimated_gpu_hours(cfg: DictConfig, stage: Stage) -> float | None:
    """Paper-scale estimate: steps x the paper's GPU-hours per step for that domain (RL stages only)."""
    if stage.kind not in ("rl", "distill"):
        return None
    per_step = cfg.study.paper_gpu_hours_per_step
    key = "distill" if stage.kind == "distill" else stage.domains[0] if len(stage.domains) == 1 else MIXED
    return float(per_step[key]) * int(stage.steps or 0) if key in per_step else None
