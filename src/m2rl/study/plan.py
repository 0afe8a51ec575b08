"""The study as a graph of jobs: per seed, SFT -> an expert per domain and the mixed run -> merges
(with `study.merge_search`, tuned merges too, m2rl.merge.search; with `study.distill`, MT-OPD of the
experts into the SFT model; with `study.cascade`, the cascade: RL on one domain after another,
m2rl.study.cascade),
an eval of every model, then (`study.analyze`) an analyze stage over the seed's evaluated models; the
comparison over all seeds closes it (run by the executor's caller).

A stage's job spec is built when its dependencies have finished, from their runs (an RL stage starts
from the SFT run's id, a merge names its experts' ids), so a stage's identity pins its inputs.

What the dry-run estimates is here too: the tiny study's wall time on a number of cores, replaying the
executor's schedule with measured stage times (`tiny_time`), and every stage's paper-scale GPU-hours
(`paper_costs`), each with the basis it was estimated on.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from omegaconf import DictConfig, open_dict

from m2rl.analysis import analysis_folder
from m2rl.errors import UserError
from m2rl.jobs.build import (
    analyze_job,
    check_config,
    distill_job,
    eval_job,
    merge_job,
    rl_job,
    section,
    sft_job,
)
from m2rl.ledger import Run
from m2rl.specs import JobSpec, StudySettings, validated
from m2rl.study.cascade import cascade_order, stage_name

MIXED = "mixed"
# Rough cost of a stage in "RL step" units, for the order stages start in (priorities) and the ETA.
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
        """Estimated cost (the start order, with the stages after it; ETA weights)."""
        if self.kind in ("rl", "distill"):
            return float(self.steps or 1)
        if self.kind == "merge" and self.steps:  # a tuned merge: a merge and a validation eval per trial
            return self.steps * (MERGE_COST + EVAL_COST)
        costs = {"sft": SFT_COST, "eval": EVAL_COST, "merge": MERGE_COST, "analyze": ANALYZE_COST}
        return costs.get(self.kind, 1.0)


def priorities(stages: Sequence[Stage]) -> dict[str, float]:
    """Each stage's cost plus the costliest chain of stages that wait on it: the order in which ready
    stages start (highest first; ties keep the plan's order, experts before the mixed run). With
    MT-OPD, a tuned merge or the cascade after the experts, an expert's chain outweighs the mixed run
    (twice an expert's steps), which longest-first would start first, leaving them to the end."""
    dependents: dict[str, list[Stage]] = {s.name: [] for s in stages}
    for stage in stages:
        for dep in stage.deps:
            if dep in dependents:
                dependents[dep].append(stage)
    memo: dict[str, float] = {}

    def chain(stage: Stage) -> float:
        if stage.name not in memo:
            memo[stage.name] = stage.cost + max((chain(d) for d in dependents[stage.name]), default=0.0)
        return memo[stage.name]

    return {s.name: chain(s) for s in stages}


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
            if spec is not None and spec.get("domain") in domains:  # None: a benchmark left out
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
                merge = _from_experts(
                    seeded,
                    name,
                    "merge",
                    sft,
                    experts,
                    lambda ids, sft_id, c=seeded, n=name, m=method: merge_job(c, m, ids, sft_id, n, study),
                    method=str(method),
                )
                stages.append(merge)
                models.append(merge)
            for method in _settings(cfg).merge_search.methods:
                tuned = _tuned_merge_stage(seeded, study, prefix, sft, experts, method)
                stages.append(tuned)
                models.append(tuned)
            if cfg.study.get("distill", False):
                distill = _distill_stage(seeded, study, prefix, sft, experts, domains)
                stages.append(distill)
                models.append(distill)
        cascade = _cascade_stages(seeded, study, prefix, {e.domains[0]: e.name for e in experts})
        stages += cascade
        for model in (*models, *cascade):  # the cascade is not analysed: its lineage is a chain
            add_eval(model, model.domains if model.kind == "rl" and len(model.domains) == 1 else ())
        if cfg.study.get("analyze", False):
            stages.append(_analyze_stage(cfg, study, seed, [sft, *models], several=len(seeds) > 1))
    return stages


def _from_experts(
    cfg: DictConfig,
    name: str,
    kind: str,
    sft: Stage,
    experts: list[Stage],
    build: Callable[[list[str], str], JobSpec],
    **fields: object,
) -> Stage:
    """A stage made from one seed's experts and SFT model (a merge, MT-OPD), after them: `build` makes
    its job from the experts' run ids and the SFT run's id."""
    names = tuple(e.name for e in experts)
    return Stage(
        name,
        kind,
        int(cfg.seed),
        (sft.name, *names),
        lambda runs: build([runs[e].id for e in names], runs[sft.name].id),
        domains=tuple(d for e in experts for d in e.domains),
        **fields,
    )


def _distill_stage(
    cfg: DictConfig, study: str, prefix: str, sft: Stage, experts: list[Stage], domains: list[str]
) -> Stage:
    """MT-OPD of one seed's experts into its SFT model, on the mixed run's prompts (after the experts)."""
    name = f"{prefix}-distill"
    distill_job(cfg, name, ["unused"], "unused", domains, study)  # validate the recipe before any work
    return _from_experts(
        cfg,
        name,
        "distill",
        sft,
        experts,
        lambda ids, sft_id: distill_job(cfg, name, ids, sft_id, domains, study),
        steps=int(cfg.distill.steps),
    )


def _cascade_stages(cfg: DictConfig, study: str, prefix: str, experts: dict[str, str]) -> list[Stage]:
    """The seed's cascade (`study.cascade`): one RL stage per domain of its order after the first, each
    from the run of the stage before, with the expert recipe (m2rl.study.cascade). Stage 1 is the first
    domain's expert: GRPO on that domain from the SFT model with the expert recipe is what stage 1
    trains, so the study trains it once."""
    order = cascade_order(cfg)
    if not order:
        return []
    stages: list[Stage] = []
    previous = experts[order[0]]
    for k, domain in enumerate(order[1:], start=2):
        name = stage_name(prefix, k, domain)
        stages.append(
            Stage(
                name,
                "rl",
                int(cfg.seed),
                (previous,),
                lambda runs, n=name, d=domain, p=previous, k=k: rl_job(cfg, n, [d], runs[p].id, study, k),
                domains=(domain,),
                steps=int(cfg.rl.steps),
            )
        )
        previous = name
    return stages


def merge_search(cfg: DictConfig) -> dict:
    """The search of the study's tuned merges (`study.merge_search`), on the study's domains."""
    settings = _settings(cfg).merge_search
    return {
        "trials": settings.trials,
        "items_per_domain": settings.items_per_domain,
        "params": list(settings.params),
        "domains": list(cfg.study.domains),
    }


def _tuned_merge_stage(
    cfg: DictConfig, study: str, prefix: str, sft: Stage, experts: list[Stage], method: str
) -> Stage:
    """A merge of one seed's experts with `method`'s parameters tuned on validation items (after the experts)."""
    name = f"{prefix}-merge-{method}-tuned"
    search = merge_search(cfg)
    merge_job(cfg, method, ["unused"], study=study, search=search)  # validate the search before any work
    return _from_experts(
        cfg,
        name,
        "merge",
        sft,
        experts,
        lambda ids, sft_id: merge_job(cfg, method, ids, sft_id, name, study, search=search),
        method=method,
        steps=search["trials"],
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


# -- what the dry-run estimates --------------------------------------------------------------------
@dataclass(frozen=True)
class Measured:
    """A tiny stage as measured: its seconds at one torch thread for `work` sequences or samples."""

    seconds: float
    work: float
    two_threads: float = 1.0  # speed-up with two threads (none assumed beyond: not measured)


# The tiny study on a 2-core machine (2026-11-30, commit edd0498; docs/results.md):
# seed 0 in 7 min 36 s (7 min 33 s to 7 min 39 s for three seeds). SFT took 2 min 3 s to 2 min 12 s
# with two threads, and the study with one thread 56 s longer (8 min 32 s): SFT was its only
# two-thread stage. Then two stages at once with one thread each: the experts 54-76 s (25 steps x 16
# prompts x 8 samples), the mixed run 2 min 30 s to 2 min 38 s (twice the steps), evals 17-38 s per
# model, the longest the SFT model's (4 domains x 256 items x K=4); one model's eval took 22 s with
# two threads against 27 s with one (preset/tiny.yaml). MT-OPD: 204-212 s of CPU for 60 steps x 16
# prompts x 4 samples (docs/distill.md, at ca6bbc1); analyze: 29 s of CPU (docs/analyze.md). The
# three-seed default study (shared SFT, MT-OPD) took 28 min 0 s at b3adb62, its SFT slowed by other
# commands beside it; this replay estimates 23.2 min for it.
TINY_MEASURED = {
    "sft": Measured(128.0 + 56.0, 3500 * 3, two_threads=(128.0 + 56.0) / 128.0),
    "expert": Measured(65.0, 25 * 16 * 8),
    "mixed": Measured(154.0, 50 * 16 * 8),
    "eval": Measured(38.0, 4 * 256 * 4, two_threads=27.0 / 22.0),
    "distill": Measured(208.0, 60 * 16 * 4),
    "analyze": Measured(29.0, 1.0),
}
TINY_STUDY_S = 456.0  # the seed-0 study's wall time
# What the replayed schedule of the measured stages leaves of it (456 s less the 432.5 s `tiny_time`
# replays for the demo's config on 2 cores): start-up, the two merges, the closing compare. With it the
# one-thread study (torch_threads=1) replays to its measured 8 min 32 s.
TINY_OVERHEAD_S = 23.5


@dataclass(frozen=True)
class TimeEstimate:
    """The tiny study's wall time on this many cores, and with as many cores as stages can use."""

    seconds: float
    cores: int
    best_seconds: float
    cores_for_best: int  # the fewest cores that reach best_seconds
    widest: int  # the most stages running at once with cores to spare


def _tiny_work(cfg: DictConfig, stage: Stage, stages: dict[str, Stage]) -> tuple[str, float]:
    """The measured figure a stage is scaled from, and its work in that figure's units."""
    if stage.kind == "sft":
        steps = int(cfg.sft.max_steps)
        sizes = (cfg.data.get("sizes") or {}).get("sft")  # built-in data: per domain, or one for each
        if steps > 0:
            return "sft", steps * int(cfg.sft.global_batch_size)
        if sizes is None:  # rows of files: unknown until read
            return "sft", float("nan")
        rows = sum(sizes.values()) if isinstance(sizes, DictConfig) else int(sizes) * len(cfg.data.domains)
        return "sft", rows * float(cfg.sft.epochs)
    if stage.kind == "rl":
        samples = int(stage.steps or 0) * int(cfg.rl.prompts_per_step) * int(cfg.rl.num_generations)
        return ("expert" if len(stage.domains) == 1 else "mixed"), samples
    if stage.kind == "distill":
        return "distill", int(stage.steps or 0) * int(cfg.distill.prompts_per_step) * int(
            cfg.distill.num_generations
        )
    if stage.kind == "eval":
        return "eval", float(sum(_eval_samples(cfg, stages[stage.evaluates or ""]).values()))
    if stage.kind == "merge" and stage.steps:  # a tuned merge: every trial samples the validation items
        return "eval", float(stage.steps * sum(_search_samples(cfg, stage).values()))
    return stage.kind, 1.0


def _search_samples(cfg: DictConfig, stage: Stage) -> dict[str, int]:
    """Samples per domain of one trial of a tuned merge: validation items x `eval.k`."""
    items = _settings(cfg).merge_search.items_per_domain
    return {domain: items * int(cfg.eval.get("k", 1)) for domain in stage.domains}


def _claim_domains(cfg: DictConfig, model: Stage) -> Sequence[str]:
    """The domains whose benchmarks a model's eval samples `study.claim_k` times (as `plan` builds it)."""
    if model.kind == "sft":
        return list(cfg.study.domains)
    return model.domains if model.kind == "rl" and len(model.domains) == 1 else ()


def _eval_samples(cfg: DictConfig, model: Stage, items: dict[str, int] | None = None) -> dict[str, float]:
    """Samples per benchmark of a model's eval: items (`limit`, `count`, else `items`) x K; NaN if unknown."""
    evaluated = _with_claim_k(cfg, _claim_domains(cfg, model))
    default_k = int(evaluated.eval.get("k", 1))
    samples = {}
    for name, bench in evaluated.eval.benchmarks.items():
        if bench is None:
            continue
        count = bench.get("limit") or bench.get("count") or (items or {}).get(name)
        samples[name] = int(count) * int(bench.get("k", default_k)) if count else float("nan")
    return samples


def tiny_time(cfg: DictConfig, stages: list[Stage], cores: int) -> TimeEstimate:
    """The tiny study's wall time on `cores` idle CPU cores, from the measured stage times.

    The executor's schedule is replayed: ready stages in its order (priorities), as many at once as it would start,
    each with its share of the threads; a stage's time is its measured time scaled by its work, sped up
    by its measured two-thread gain when it gets two threads or more.
    """
    settings = _settings(cfg)
    by_name = {s.name: s for s in stages}

    def seconds(stage: Stage, threads: int) -> float:
        key, work = _tiny_work(cfg, stage, by_name)
        figure = TINY_MEASURED.get(key)
        if figure is None or work != work:  # merges are in the overhead; NaN: items unknown
            return figure.seconds if figure else 0.0
        return figure.seconds * work / figure.work / (figure.two_threads if threads >= 2 else 1.0)

    def replay(cores: int) -> tuple[float, int]:
        threads = cores if settings.cpu_threads == "auto" else int(settings.cpu_threads)
        slots = max(1, threads if settings.max_parallel == "auto" else int(settings.max_parallel))
        return _schedule(stages, seconds, max(1, threads), slots, cfg.get("torch_threads"))

    wall, _ = replay(cores)
    best, widest = replay(len(stages))
    # up to as many cores as stages: where SFT gains from two threads, more cores than `widest` can still help
    enough = next(n for n in range(1, len(stages) + 1) if replay(n)[0] <= best * 1.01)
    return TimeEstimate(wall + TINY_OVERHEAD_S, cores, best + TINY_OVERHEAD_S, enough, widest)


def _schedule(
    stages: list[Stage],
    seconds: Callable[[Stage, int], float],
    threads: int,
    slots: int,
    fixed: int | None = None,
) -> tuple[float, int]:
    """Wall seconds of the executor's order (Executor.ready, threads_for; `fixed`: `torch_threads` set)
    and the most stages at once."""
    pending, done, priority = list(stages), set(), priorities(stages)
    running: list[tuple[float, str]] = []
    now, widest = 0.0, 0
    while pending or running:
        ready = sorted(
            (s for s in pending if all(d in done for d in s.deps)), key=lambda s: -priority[s.name]
        )
        while ready and len(running) < slots:
            stage = ready.pop(0)
            pending.remove(stage)
            share = fixed or max(1, threads // min(len(running) + 1 + len(ready), slots))
            running.append((now + seconds(stage, share), stage.name))
        widest = max(widest, len(running))
        if not running:  # what is left waits on a stage that is not in the plan
            break
        running.sort()
        now, name = running.pop(0)
        done.add(name)
    return now, widest


def _settings(cfg: DictConfig) -> StudySettings:
    return validated(StudySettings, section(cfg, "study"), prefix="study.")


@dataclass(frozen=True)
class PaperCost:
    """A stage's paper-scale GPU-hours (None: not estimable) and how they were estimated."""

    hours: float | None
    basis: str


def paper_costs(cfg: DictConfig, stages: list[Stage]) -> dict[str, PaperCost]:
    """Every stage's paper-scale GPU-hours: RL and MT-OPD from the paper's per-step costs, SFT from its
    FLOPs, evals and analyze from the paper's RL cost per sample, merges none (CPU)."""
    settings = _settings(cfg)
    by_name = {s.name: s for s in stages}
    costs = {}
    for stage in stages:
        if stage.kind in ("rl", "distill"):
            hours = estimated_gpu_hours(cfg, stage)
            costs[stage.name] = PaperCost(hours, "steps x the paper's GPU-hours per step (Table 2 / steps)")
        elif stage.kind == "sft":
            costs[stage.name] = _sft_cost(cfg, settings)
        elif stage.kind == "eval":
            costs[stage.name] = _eval_cost(cfg, settings, by_name[stage.evaluates or ""])
        elif stage.kind == "analyze":
            costs[stage.name] = _analyze_cost(
                cfg, settings, [by_name[d.removesuffix("-eval")] for d in stage.deps]
            )
        elif stage.kind == "merge" and stage.steps:
            costs[stage.name] = _search_cost(cfg, settings, stage)
        else:
            costs[stage.name] = PaperCost(0.0, "CPU: not counted, as in the paper")
    return costs


def _sft_cost(cfg: DictConfig, settings: StudySettings) -> PaperCost:
    """8 x parameters x tokens / (peak x MFU): forward, backward and the recomputed forward."""
    figures = settings.paper_estimate
    steps = int(cfg.sft.max_steps)
    subsets = cfg.data.get("sft", {}).get("subsets", {}) or {}
    counts = {name: spec.get("count") for name, spec in subsets.items()}
    if steps > 0:
        rows, what = (
            steps * int(cfg.sft.global_batch_size),
            f"{steps:,} steps x {int(cfg.sft.global_batch_size)} rows",
        )
    elif counts and all(c is not None for c in counts.values()):
        rows = sum(int(c) for c in counts.values()) * float(cfg.sft.epochs)
        what = f"{sum(int(c) for c in counts.values()):,} rows x {float(cfg.sft.epochs):g} epochs"
    else:
        unknown = [name for name, c in counts.items() if c is None] or ["data.sft"]
        return PaperCost(None, f"rows unknown ({', '.join(unknown)}: every row); set a count")
    passes = 8 if cfg.sft.get("gradient_checkpointing") else 6
    tokens = rows * figures.sft_tokens_per_row
    flops = passes * figures.model_params * tokens
    hours = flops / (figures.gpu_peak_tflops * 1e12 * figures.mfu) / 3600
    basis = (
        f"{passes} x {figures.model_params / 1e9:.1f}B parameters x {tokens / 1e9:,.0f}B tokens ({what} x "
        f"{figures.sft_tokens_per_row:,} tokens per row, assumed) / ({figures.gpu_peak_tflops:g} TFLOP/s x "
        f"{figures.mfu:g} MFU, assumed)"
    )
    return PaperCost(hours, basis)


def _sample_hours(cfg: DictConfig, settings: StudySettings, domain: str, new_tokens: int) -> float | None:
    """The paper's RL GPU-hours per sample of a domain (the mixed run's for another), scaled to
    `new_tokens`: an RL step samples prompts_per_step x num_generations and trains on them."""
    per_step = settings.paper_gpu_hours_per_step
    key = domain if domain in per_step else MIXED
    if key not in per_step:
        return None
    samples = int(cfg.rl.prompts_per_step) * int(cfg.rl.num_generations)
    return per_step[key] / samples * new_tokens / int(cfg.rl.max_completion_length)


SAMPLE_BASIS = (
    "the paper's RL GPU-hours per sample of the domain (per step / {samples:,}) x new tokens / {tokens:,}"
)


def _sample_basis(cfg: DictConfig) -> str:
    samples = int(cfg.rl.prompts_per_step) * int(cfg.rl.num_generations)
    return SAMPLE_BASIS.format(samples=samples, tokens=int(cfg.rl.max_completion_length))


def _eval_cost(cfg: DictConfig, settings: StudySettings, model: Stage) -> PaperCost:
    samples = _eval_samples(cfg, model, settings.paper_estimate.eval_items)
    new_tokens = int(cfg.eval.max_new_tokens)
    hours, unknown = 0.0, []
    for name, count in samples.items():
        per_sample = _sample_hours(cfg, settings, str(cfg.eval.benchmarks[name].get("domain")), new_tokens)
        if count != count or per_sample is None:
            unknown.append(name)
            continue
        hours += count * per_sample
    basis = f"items x K x {_sample_basis(cfg)}; an upper bound (an RL step also trains)"
    if unknown:
        basis += f"; left out, items unknown: {', '.join(unknown)} (study.paper_estimate.eval_items)"
    return PaperCost(hours, basis)


def _search_cost(cfg: DictConfig, settings: StudySettings, stage: Stage) -> PaperCost:
    """A tuned merge: its trials' validation evals (the merges run on CPU, not counted)."""
    new_tokens = int(cfg.eval.max_new_tokens)
    hours = 0.0
    for domain, samples in _search_samples(cfg, stage).items():
        hours += int(stage.steps or 0) * samples * (_sample_hours(cfg, settings, domain, new_tokens) or 0.0)
    basis = f"trials x validation items x K x {_sample_basis(cfg)}; an upper bound (an RL step also trains)"
    return PaperCost(hours, basis)


def _analyze_cost(cfg: DictConfig, settings: StudySettings, models: list[Stage]) -> PaperCost:
    """Self-verification (each model judges trajectories of its domains, an expert of its own) and the
    KL's samples (every expert on every expert's domain); the KL's scoring passes are not counted."""
    recipe = cfg.analyze
    bench_domains = {b.get("domain") for b in cfg.eval.benchmarks.values() if b is not None}
    experts = [m for m in models if m.kind == "rl" and len(m.domains) == 1]
    domains = [e.domains[0] for e in experts if e.domains[0] in bench_domains]
    hours, judged, sampled = 0.0, 0, 0
    judging = recipe.self_verification
    if judging.enabled:
        per_judgement = len(judging.modes) * int(judging.trajectories)
        for model in models:
            own = model.domains if model in experts else domains
            for domain in (d for d in own if d in domains):
                hours += per_judgement * (
                    _sample_hours(cfg, settings, domain, int(judging.max_new_tokens)) or 0.0
                )
                judged += per_judgement
    kl = recipe.neighbourhoods
    if kl.enabled and any(m.kind == "rl" and len(m.domains) > 1 for m in models):
        per_domain = len(experts) * int(kl.prompts) * int(kl.samples)
        for domain in domains:
            hours += per_domain * (_sample_hours(cfg, settings, domain, int(kl.max_new_tokens)) or 0.0)
            sampled += per_domain
    basis = (
        f"{judged:,} judgements (up to {int(judging.max_new_tokens):,} tokens) and {sampled:,} KL samples "
        f"(up to {int(kl.max_new_tokens):,}) x {_sample_basis(cfg)}; scoring not counted"
    )
    return PaperCost(hours, basis)
