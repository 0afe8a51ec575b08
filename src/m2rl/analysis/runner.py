"""Runs every analysis over a study's lineages: geometry, neighbourhoods and judges per lineage,
skill consistency over all of them.

Models are loaded one at a time for generation (the eval backend: HF with m2rl.sampling, or vLLM),
each doing its judging and, for an expert, its sampling on every domain's prompts; the engine is
released before the next. Scoring for the KL then loads the mixed run once and each expert in turn.
"""

from __future__ import annotations

import gc
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from m2rl.analysis.consistency import Consistency, LineageItems, skill_consistency
from m2rl.analysis.geometry import Geometry, task_vector_geometry
from m2rl.analysis.lineage import Lineage
from m2rl.analysis.neighbourhoods import KLEstimate, KLMatrix, kl_estimate, sample_token_ids
from m2rl.analysis.scoring import completion_logprobs, load_scorer
from m2rl.analysis.self_verification import (
    JudgeScore,
    Trajectory,
    judge_prompt,
    judge_score,
    parse_verdict,
    pick_trajectories,
)
from m2rl.evaluate.benchmarks import load_items
from m2rl.evaluate.generation import HFGenerator, VllmGenerator, derived_seed
from m2rl.evaluate.results import read_results, results_path
from m2rl.evaluate.settings import BenchmarkSpec, EvalSettings, GenerationSettings
from m2rl.ledger import Run
from m2rl.specs import AnalyzeRecipe

Progress = Callable[[int, int, str], None]


@dataclass
class JudgeRow:
    """One model judging one domain's trajectories in one mode."""

    model: str
    domain: str
    mode: str
    score: JudgeScore


@dataclass
class LineageAnalysis:
    """Everything measured on one lineage (one seed)."""

    seed: int | None
    models: dict[str, str]  # label -> run id
    geometry: Geometry | None = None
    neighbourhoods: KLMatrix | None = None
    judges: list[JudgeRow] = field(default_factory=list)
    missing_items: int = 0  # eval results whose test item the benchmark no longer has


@dataclass
class Analysis:
    """The whole analysis: per lineage, skill consistency over lineages, and the settings behind it."""

    lineages: list[LineageAnalysis]
    consistency: list[Consistency]
    settings: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class Benchmarks:
    """The eval benchmarks' items (prompts) by benchmark and id, loaded once."""

    def __init__(self, settings: EvalSettings):
        self.specs = {b.name: b for b in settings.benchmarks}
        self._items: dict[str, dict[str, dict]] = {}

    def items(self, bench: str) -> dict[str, dict]:
        if bench not in self._items:
            self._items[bench] = {str(item["id"]): item for item in load_items(self.specs[bench])}
        return self._items[bench]

    def of_domain(self, domain: str) -> list[BenchmarkSpec]:
        return [b for b in self.specs.values() if b.domain == domain]

    @property
    def domains(self) -> list[str]:
        return list(dict.fromkeys(b.domain for b in self.specs.values()))


def domain_score(run: Run, benchmarks: list[BenchmarkSpec]) -> float | None:
    """The mean Avg@K (in points) of `run` over `benchmarks`, from its manifest."""
    evals = run.manifest.get("metrics", {}).get("eval") or {}
    scores = [evals[b.name]["avg_at_k"] for b in benchmarks if b.name in evals]
    return 100 * sum(scores) / len(scores) if scores else None


def item_accuracies(run: Run, benchmarks: Benchmarks) -> tuple[dict[str, float], dict[str, str]]:
    """({bench/item: mean reward}, {bench/item: eval domain}) from the run's per-item eval results."""
    accuracy, domain_of = {}, {}
    for name, spec in benchmarks.specs.items():
        path = results_path(run.path, name)
        if not path.is_file():
            continue
        for item in read_results(path):
            key = f"{name}/{item.id}"
            accuracy[key], domain_of[key] = item.mean_reward, spec.domain
    return accuracy, domain_of


def _generator(run: Run, fallbacks: list[Path], settings: EvalSettings):
    if settings.backend == "vllm":
        return VllmGenerator(run.model_dir, fallbacks, settings.vllm, settings.seed)
    return HFGenerator(
        run.model_dir, fallbacks, batch_size=settings.batch_size, torch_threads=settings.torch_threads
    )


def _release() -> None:
    """Free what a dropped model or engine held (GPU memory before the next one loads)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _trajectories(run: Run, domain: str, benchmarks: Benchmarks) -> tuple[list[Trajectory], int]:
    """(the run's first eval response to every item of `domain` with the verifier's verdict, how many
    results name an item the benchmark no longer has: its data changed since the eval)."""
    found, missing = [], 0
    for spec in benchmarks.of_domain(domain):
        path = results_path(run.path, spec.name)
        if not path.is_file():
            continue
        items = benchmarks.items(spec.name)
        for result in read_results(path):
            if result.id not in items:
                missing += 1
            elif result.responses:
                prompt = items[result.id]["prompt"]
                correct = result.rewards[0] >= 0.5
                found.append(Trajectory(f"{spec.name}/{result.id}", prompt, result.responses[0], correct))
    return found, missing


def _prompts(domain: str, benchmarks: Benchmarks, count: int, seed: int) -> list[list[dict]]:
    """`count` prompts of `domain`'s benchmarks in a seeded order (the same for every expert)."""
    keyed = [
        (zlib.crc32(f"{seed}|{spec.name}|{item_id}".encode()), item["prompt"])
        for spec in benchmarks.of_domain(domain)
        for item_id, item in benchmarks.items(spec.name).items()
    ]
    return [prompt for _, prompt in sorted(keyed, key=lambda pair: pair[0])[:count]]


@dataclass
class Context:
    """What every step of one lineage's analysis reads."""

    recipe: AnalyzeRecipe
    settings: EvalSettings
    benchmarks: Benchmarks
    seed: int
    seconds: dict[str, float]
    progress: Progress

    def timed(self, stage: str, began: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - began


def _judge(
    generator, label: str, run: Run, domains: list[str], context: Context
) -> tuple[list[JudgeRow], int]:
    """The model judging its own trajectories of each domain in each mode (rows, results without an item)."""
    judging, generation = context.recipe.self_verification, context.settings.generation
    settings = GenerationSettings(
        generation.temperature, generation.top_p, judging.max_new_tokens, generation.enable_thinking
    )
    rows, missing = [], 0
    for domain in domains:
        found, lost = _trajectories(run, domain, context.benchmarks)
        missing += lost
        picked = pick_trajectories(found, judging.trajectories, context.seed)
        for mode in judging.modes if picked else ():
            prompts = [judge_prompt(t.prompt, t.response, mode) for t in picked]
            seed = derived_seed(context.seed, label, domain, mode)
            verdicts = [
                parse_verdict(reply[0].text) for reply in generator.generate(prompts, 1, settings, seed)
            ]
            rows.append(JudgeRow(label, domain, mode, judge_score([t.correct for t in picked], verdicts)))
    return rows, missing


def _generate(
    lineage: Lineage, domains: list[str], context: Context, result: LineageAnalysis
) -> dict[str, dict]:
    """Each model in turn: its judging, and an expert's samples on every domain's prompts (returned as
    expert domain -> prompt domain -> (prompt ids, completions))."""
    recipe = context.recipe
    sampling = recipe.neighbourhoods.enabled and lineage.mixed is not None
    expert_domain = {run.id: d for d, run in lineage.experts.items()}
    prompts = {
        d: _prompts(d, context.benchmarks, recipe.neighbourhoods.prompts, context.seed) for d in domains
    }
    samples: dict[str, dict] = {}
    models = lineage.models()
    for number, (label, run) in enumerate(models, 1):
        own = expert_domain.get(run.id)
        if not recipe.self_verification.enabled and not (sampling and own):
            continue
        context.progress(number, len(models), f"generating with {label}")
        generator = _generator(run, [lineage.sft.model_dir], context.settings)
        if recipe.self_verification.enabled:
            judged = [own] if own else domains
            rows, missing = _judge(generator, label, run, [d for d in judged if d in domains], context)
            result.judges += rows
            result.missing_items += missing
        if sampling and own:
            samples[own] = {
                d: sample_token_ids(
                    generator,
                    prompts[d],
                    recipe.neighbourhoods.samples,
                    recipe.neighbourhoods.max_new_tokens,
                    context.settings.generation.enable_thinking,
                    derived_seed(context.seed, label, d, "kl"),
                )
                for d in domains
            }
        del generator
        _release()
    return samples


def _neighbourhoods(
    lineage: Lineage, domains: list[str], samples: dict[str, dict], context: Context
) -> KLMatrix:
    """KL(pi_B || pi_mixed) of every expert B's samples on every domain's prompts."""
    assert lineage.mixed is not None
    budget, dtype = context.recipe.neighbourhoods.score_tokens, context.recipe.neighbourhoods.score_dtype
    reference = load_scorer(lineage.mixed.model_dir, dtype)
    cells: dict[tuple[str, str], KLEstimate] = {}
    for number, (expert, per_domain) in enumerate(samples.items(), 1):
        label = lineage.label(lineage.experts[expert])
        context.progress(number, len(samples), f"scoring {label}'s samples")
        scorer = load_scorer(lineage.experts[expert].model_dir, dtype)
        for domain, (prompt_ids, completions) in per_domain.items():
            prompt_of = [i for i, group in enumerate(completions) for _ in group]
            flat_prompts = [prompt_ids[i] for i in prompt_of]
            flat = [c for group in completions for c in group]
            own = completion_logprobs(scorer, flat_prompts, flat, budget)
            other = completion_logprobs(reference, flat_prompts, flat, budget)
            cells[domain, expert] = kl_estimate(own, other, prompt_of)
        del scorer
        _release()
    del reference
    _release()
    experts = list(samples)
    scores = {
        run.id: {d: domain_score(run, context.benchmarks.of_domain(d)) for d in domains}
        for run in [lineage.mixed, *lineage.experts.values()]
    }
    mixed = scores[lineage.mixed.id]
    change = [
        [
            None
            if mixed[d] is None or scores[lineage.experts[e].id][d] is None
            else mixed[d] - scores[lineage.experts[e].id][d]
            for e in experts
        ]
        for d in domains
    ]
    return KLMatrix(
        lineage.label(lineage.mixed),
        domains,
        [lineage.label(lineage.experts[e]) for e in experts],
        [[cells.get((d, e)) for e in experts] for d in domains],
        change,
    )


def analyze_lineage(lineage: Lineage, context: Context) -> LineageAnalysis:
    """Geometry, neighbourhoods and self-verification of one lineage."""
    recipe = context.recipe
    result = LineageAnalysis(lineage.seed, {label: run.id for label, run in lineage.models()})
    tag = f"seed {lineage.seed}: " if lineage.seed is not None else ""
    began = time.perf_counter()
    if lineage.rl_runs:
        result.geometry = task_vector_geometry(
            lineage.sft.model_dir,
            [(lineage.label(run), run.model_dir) for run in lineage.rl_runs],
            recipe.threshold,
            recipe.projection_dim,
            recipe.projection_block,
            recipe.projection_seed,
            recipe.chunk_elements,
            on_progress=lambda done, total: context.progress(done, total, f"{tag}geometry"),
        )
    context.timed("geometry", began)
    domains = [d for d in lineage.experts if d in context.benchmarks.domains]
    if not domains:
        return result
    began = time.perf_counter()
    samples = _generate(lineage, domains, context, result)
    context.timed("generation", began)
    if samples:
        began = time.perf_counter()
        result.neighbourhoods = _neighbourhoods(lineage, domains, samples, context)
        context.timed("scoring", began)
    return result


def analyze(
    lineages: list[Lineage], recipe: AnalyzeRecipe, settings: EvalSettings, seed: int, progress: Progress
) -> Analysis:
    """Every analysis of every lineage, and skill consistency over all of them."""
    context = Context(recipe, settings, Benchmarks(settings), seed, {}, progress)
    results = [analyze_lineage(lineage, context) for lineage in lineages]
    began = time.perf_counter()
    pooled = []
    for lineage in lineages:
        sft, domain_of = item_accuracies(lineage.sft, context.benchmarks)
        experts = [item_accuracies(run, context.benchmarks)[0] for run in lineage.experts.values()]
        candidates = {
            lineage.label(run): item_accuracies(run, context.benchmarks)[0]
            for run in [*([lineage.mixed] if lineage.mixed else []), *lineage.merges, *lineage.distills]
        }
        pooled.append(LineageItems(sft, experts, candidates, domain_of))
    consistency = skill_consistency(pooled, recipe.bootstrap_samples, seed)
    context.timed("consistency", began)
    notes = []
    if any(lineage.mixed is None for lineage in lineages):
        notes.append("a lineage without a mixed run has no policy neighbourhoods (KL against the mixed run)")
    if not any(lineage.experts for lineage in lineages):
        notes.append("no single-domain experts: no skill consistency and no overlap between experts")
    missing = sum(r.missing_items for r in results)
    if missing:
        notes.append(
            f"{missing} eval result(s) name test items the benchmarks no longer have (the data changed since "
            "the eval): those trajectories were not judged; evaluate again to judge them"
        )
    return Analysis(results, consistency, recipe.model_dump(mode="json"), context.seconds, notes)
