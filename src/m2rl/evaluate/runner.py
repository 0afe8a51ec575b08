"""`evaluate_run`: sample K responses per benchmark item, score them, record per-item results and metrics.

Results go to `<run>/eval/<benchmark>.jsonl` and `metrics.eval.<benchmark>` of the run's manifest;
eval wall time goes to `stage_seconds.eval` and `eval_device_hours`, never into the run's training
`device_hours` (the paper's cost excludes eval). A benchmark whose saved results were made with the
same eval config, verifier config and model is not evaluated again.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from m2rl.config import config_hash
from m2rl.console import err_console
from m2rl.errors import UserError
from m2rl.evaluate.benchmarks import load_items
from m2rl.evaluate.generation import Generator, HFGenerator, VllmGenerator, derived_seed
from m2rl.evaluate.metrics import avg_at_k, bootstrap_ci, item_means, pass_at_k
from m2rl.evaluate.results import ItemResult, read_results, results_path, write_results
from m2rl.evaluate.settings import BenchmarkSpec, EvalSettings
from m2rl.ledger import Ledger, Run
from m2rl.verifiers import VerifierConfig, score_batch


def _config_hash(run: Run, bench: BenchmarkSpec, settings: EvalSettings) -> str:
    model_identity = {"run_config": run.manifest.get("config_hash"), "finished": run.manifest.get("finished")}
    return config_hash(
        bench.stable_hash(), bench.k, settings.protocol(), settings.verifier_identity(), model_identity
    )


def _saved_metrics(run: Run, bench: BenchmarkSpec, digest: str) -> dict[str, Any] | None:
    """The manifest's metrics for `bench` if they were made with this config and the file is intact."""
    saved = run.manifest.get("metrics", {}).get("eval", {}).get(bench.name)
    if not saved or saved.get("config_hash") != digest:
        return None
    path = results_path(run.path, bench.name)
    if not path.is_file():
        return None
    try:
        items = read_results(path)
    except (OSError, ValueError, TypeError):
        return None
    return saved if len(items) == saved.get("n_items") else None


def _lineage_dirs(ledger: Ledger, run: Run) -> list[Path]:
    """Model directories of the run's ancestors, nearest first (tokenizer fallbacks for merges)."""
    dirs, queue, seen = [], list(run.manifest.get("parents", [])), set()
    while queue:
        ref = queue.pop(0)
        if ref in seen:
            continue
        seen.add(ref)
        try:
            parent = ledger.get(ref)
        except UserError:
            continue
        dirs.append(parent.model_dir)
        queue.extend(parent.manifest.get("parents", []))
    return dirs


def summarise(
    items: list[ItemResult], bench: BenchmarkSpec, bootstrap_samples: int, seed: int
) -> dict[str, Any]:
    """Avg@K, pass@K and the bootstrap 95% interval of Avg@K over items."""
    rewards = [item.rewards for item in items]
    lo, hi = bootstrap_ci(
        item_means(rewards), samples=bootstrap_samples, seed=derived_seed(seed, bench.name, "ci")
    )
    samples = [n for item in items for n in item.num_tokens]
    stopped = [s for item in items for s in item.stopped]
    return {
        "domain": bench.domain,
        "k": bench.k,
        "avg_at_k": avg_at_k(rewards),
        "pass_at_k": pass_at_k(rewards, bench.k),
        "ci95": [lo, hi],
        "n_items": len(items),
        "n_samples": len(samples),
        "mean_tokens": sum(samples) / max(len(samples), 1),
        "stopped_rate": sum(stopped) / max(len(stopped), 1),
    }


def _make_generator(model_dir: Path, fallbacks: list[Path], settings: EvalSettings) -> Generator:
    if settings.backend == "vllm":
        return VllmGenerator(model_dir, fallbacks, settings.vllm, settings.seed)
    return HFGenerator(
        model_dir, fallbacks, batch_size=settings.batch_size, torch_threads=settings.torch_threads
    )


def eval_progress():
    """The rich progress bar of eval (samples done per benchmark)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("samples"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
    )


def eval_plan(
    run: Run, settings: EvalSettings, any_k: bool = False
) -> list[tuple[BenchmarkSpec, str, dict[str, Any] | None]]:
    """(benchmark, config hash, saved metrics or None when it must be evaluated) for each benchmark.

    `any_k`: saved results of the same settings with another number of samples per item also count
    (the analyses read each item's first sample; a study evaluates some models with more, study.claim_k).
    """
    plan = []
    for bench in settings.benchmarks:
        digest = _config_hash(run, bench, settings)
        saved = _saved_metrics(run, bench, digest)
        if saved is None and any_k:
            saved_k = run.manifest.get("metrics", {}).get("eval", {}).get(bench.name, {}).get("k")
            if isinstance(saved_k, int) and saved_k != bench.k:
                other = dataclasses.replace(bench, k=saved_k)
                other_digest = _config_hash(run, other, settings)
                if (found := _saved_metrics(run, other, other_digest)) is not None:
                    digest, saved = other_digest, found
        plan.append((bench, digest, saved))
    return plan


def settings_summary(bench: BenchmarkSpec, settings: EvalSettings) -> dict[str, Any]:
    """The settings a reader tells results apart by (kept beside the results' config hash)."""
    generation = settings.generation
    return {
        "K": bench.k,
        "seed": settings.seed,
        "temperature": generation.temperature,
        "top_p": generation.top_p,
        "max_new_tokens": generation.max_new_tokens,
        "backend": settings.backend,
        "items": bench.stable_hash()[:12],
    }


def other_settings(
    run: Run, plan: list[tuple[BenchmarkSpec, str, dict[str, Any] | None]], settings: EvalSettings
) -> dict[str, str]:
    """benchmark -> how the run's saved results differ from these settings, for each benchmark whose
    results this eval would replace (made with other settings; the file is there)."""
    saved_all = run.manifest.get("metrics", {}).get("eval", {})
    differ: dict[str, str] = {}
    for bench, _digest, saved in plan:
        old = saved_all.get(bench.name)
        if saved is not None or not old or not results_path(run.path, bench.name).is_file():
            continue
        new = settings_summary(bench, settings)
        before = old.get("settings")
        if before is None:  # results from before the settings were recorded
            differ[bench.name] = "other eval, verifier or model settings"
            continue
        changed = [
            f"{key} {before.get(key)} (now {value})" for key, value in new.items() if before.get(key) != value
        ]
        differ[bench.name] = ", ".join(changed) or "other verifier settings or another model"
    return differ


def replaced_results(
    run: Run,
    plan: list[tuple[BenchmarkSpec, str, dict[str, Any] | None]],
    settings: EvalSettings,
    replace: bool,
) -> list[str]:
    """The benchmarks whose saved results of other settings this eval replaces; UserError naming what
    differs unless `replace`."""
    differ = other_settings(run, plan, settings)
    if differ and not replace:
        what = "; ".join(f"{bench}: {how}" for bench, how in differ.items())
        raise UserError(
            f"run {run.name} ({run.id}) holds eval results made with other settings ({what}): pass the "
            "same settings to reuse them, or --replace to evaluate again (the old files move to eval/replaced/)"
        )
    return list(differ)


def _keep_replaced(run: Run, bench: str) -> Path:
    """Move a benchmark's results of other settings to `eval/replaced/`, named by their config hash."""
    old = run.manifest.get("metrics", {}).get("eval", {}).get(bench, {})
    source = results_path(run.path, bench)
    target = source.parent / "replaced" / f"{bench}.{str(old.get('config_hash', 'unknown'))[:12]}.jsonl"
    target.parent.mkdir(exist_ok=True)
    source.replace(target)
    replaced = run.manifest.setdefault("metrics", {}).setdefault("eval_replaced", {})
    replaced[target.name] = old
    run.save()
    return target


def check_evaluable(run: Run) -> None:
    """Raise UserError unless the run is completed and holds a Hugging Face model."""
    if run.status != "completed":
        raise UserError(f"run {run.id} is {run.status}, not completed: only finished runs can be evaluated")
    if not (run.model_dir / "config.json").is_file():
        raise UserError(f"run {run.id} ({run.kind}) has no model at {run.model_dir}")


def evaluate_run(
    ledger: Ledger,
    run: Run,
    settings: EvalSettings,
    *,
    progress: Any | None = None,
    replace: bool = False,
) -> dict[str, dict]:
    """Evaluate `run` on every benchmark of `settings`; return {benchmark: metrics} (reused ones included).

    `progress`: a rich Progress to add tasks to (e.g. the pipeline's); by default a new one is shown.
    Saved results of other settings are never overwritten silently: without `replace` a UserError
    names what differs; with it they move to `eval/replaced/` and their metrics to `eval_replaced`.
    """
    verifier_config = VerifierConfig.of(settings.verifiers)
    check_evaluable(run)
    plan = eval_plan(run, settings)
    for bench in replaced_results(run, plan, settings, replace):
        _keep_replaced(run, bench)
    results: dict[str, dict] = {}
    todo: list[tuple[BenchmarkSpec, str]] = []
    for bench, digest, saved in plan:
        if saved is not None:
            results[bench.name] = saved
        else:
            todo.append((bench, digest))
    if not todo:
        return results

    generator: Generator | None = None
    owned = progress is None
    bar = eval_progress() if owned else progress
    with bar if owned else nullcontext(bar):
        for bench, digest in todo:
            start = time.perf_counter()
            items = load_items(bench)
            task = bar.add_task(f"eval {run.name} · {bench.name}", total=len(items) * bench.k)
            if generator is None:
                generator = _make_generator(run.model_dir, _lineage_dirs(ledger, run), settings)
            item_results = _sample_and_score(
                items, bench, generator, settings, verifier_config, lambda n, task=task: bar.advance(task, n)
            )
            write_results(results_path(run.path, bench.name), item_results)
            seconds = time.perf_counter() - start
            metrics = summarise(item_results, bench, settings.bootstrap_samples, settings.seed)
            metrics.update(
                config_hash=digest,
                settings=settings_summary(bench, settings),
                backend=settings.backend,
                device=generator.device_type,
                seconds=round(seconds, 3),
            )
            bar.update(
                task, description=f"{run.name} · {bench.name}: Avg@{bench.k} {100 * metrics['avg_at_k']:.2f}%"
            )
            _record(run, bench.name, metrics, seconds, generator)
            results[bench.name] = metrics
    return {bench.name: results[bench.name] for bench in settings.benchmarks}


def evaluate_items(
    model_dir: Path,
    fallbacks: list[Path],
    items: dict[str, list[dict[str, Any]]],
    settings: EvalSettings,
    k: int,
) -> dict[str, list[ItemResult]]:
    """K responses per item of a model directory that is no run (a merge search's trial), scored by the
    items' verifiers with `settings`; {domain: results}, nothing written."""
    verifier_config = VerifierConfig.of(settings.verifiers)
    generator = _make_generator(model_dir, fallbacks, settings)
    return {
        domain: _sample_and_score(
            rows,
            BenchmarkSpec(f"validation-{domain}", domain, "validation", k),
            generator,
            settings,
            verifier_config,
            lambda n: None,
        )
        for domain, rows in items.items()
    }


def _sample_and_score(
    items: list[dict[str, Any]],
    bench: BenchmarkSpec,
    generator: Generator,
    settings: EvalSettings,
    verifier_config: VerifierConfig,
    on_progress: Callable[[int], None],
) -> list[ItemResult]:
    """K responses per item, each scored by the item's verifier."""
    completions = generator.generate(
        [item["prompt"] for item in items],
        bench.k,
        settings.generation,
        seed=derived_seed(settings.seed, bench.name),
        on_progress=on_progress,
    )
    flat_samples = [item for item, group in zip(items, completions, strict=True) for _ in group]
    verdicts = score_batch(flat_samples, [c.text for group in completions for c in group], verifier_config)
    results, cursor = [], 0
    for item, group in zip(items, completions, strict=True):
        scored = verdicts[cursor : cursor + len(group)]
        cursor += len(group)
        results.append(
            ItemResult(
                id=str(item["id"]),
                domain=str(item.get("domain", bench.domain)),
                rewards=[float(v.reward) for v in scored],
                reasons=[str(v.reason) for v in scored],
                responses=[c.text for c in group],
                num_tokens=[c.num_tokens for c in group],
                stopped=[c.stopped for c in group],
            )
        )
    return results


def _record(run: Run, benchmark: str, metrics: dict[str, Any], seconds: float, generator: Generator) -> None:
    """Store one benchmark's metrics and eval time in the manifest, re-read first so that fields
    another process wrote meanwhile are kept (one atomic write)."""
    run.manifest = Run.load(run.path).manifest
    manifest = run.manifest
    manifest.setdefault("metrics", {}).setdefault("eval", {})[benchmark] = metrics
    stages = manifest.setdefault("stage_seconds", {})
    stages["eval"] = round(stages.get("eval", 0.0) + seconds, 3)
    hours = seconds * generator.device_count / 3600
    manifest["eval_device_hours"] = manifest.get("eval_device_hours", 0.0) + hours
    manifest["eval_device_hours_label"] = "GPU-hours" if generator.device_type == "cuda" else "CPU-hours"
    run.save()
