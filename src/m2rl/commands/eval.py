"""Evaluate runs on the configured benchmarks: Avg@K, pass@K and a bootstrap 95% interval per benchmark."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.console import RenderableType
from rich.table import Table

from m2rl.commands.common import (
    DEFAULT_RUNS_DIR,
    DryRun,
    RunsDir,
    first_fitting,
    load_config,
    print_config,
    say,
)
from m2rl.config import is_override
from m2rl.console import console, quiet_libraries
from m2rl.engines import require
from m2rl.errors import UserError
from m2rl.machine import thread_plan

if TYPE_CHECKING:
    from m2rl.evaluate.settings import BenchmarkSpec
    from m2rl.ledger import Run
    from m2rl.specs import EvalJob

RESULT_COLUMNS = ("benchmark", "domain", "items", "K", "Avg@K %", "95% CI", "pass@K %", "tokens")


def split_arguments(arguments: list[str]) -> tuple[list[str], list[str]]:
    """(run references, Hydra overrides): `key=value`, `+key=value` and `~key` (delete) are overrides."""
    return [a for a in arguments if not is_override(a)], [a for a in arguments if is_override(a)]


def command(
    arguments: Annotated[
        list[str] | None,
        typer.Argument(
            help="Runs to evaluate (id, id prefix, name or directory), then Hydra overrides such as "
            "`eval.k=8 eval.benchmarks.code.count=32`.",
            show_default=False,
        ),
    ] = None,
    runs_dir: RunsDir = DEFAULT_RUNS_DIR,
    all_runs: Annotated[
        bool,
        typer.Option("--all", help="Evaluate every completed model run under the runs root.", metavar=""),
    ] = False,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="Evaluate again where a run holds results made with other settings (the old files move "
            "to eval/replaced/); without it such an eval is refused.",
            metavar="",
        ),
    ] = False,
    dry_run: DryRun = False,
) -> None:
    """Evaluate runs: `m2rl eval RUN [RUN...] [overrides]`; saved results with the same config are reused."""
    # lazy, as in every command module: the CLI imports them all at start
    from m2rl.compare.selection import resolve_run
    from m2rl.evaluate.runner import check_evaluable, eval_plan, replaced_results
    from m2rl.jobs.build import eval_job
    from m2rl.jobs.eval import eval_settings
    from m2rl.ledger import Ledger
    from m2rl.specs import MODEL_KINDS

    refs, overrides = split_arguments(list(arguments or []))
    cfg = load_config(overrides)
    ledger = Ledger(runs_dir)
    if all_runs:
        runs = [r for r in ledger.runs() if r.status == "completed" and r.kind in MODEL_KINDS]
    else:
        runs = [resolve_run(ledger, ref) for ref in refs]
    if not runs:
        raise UserError("no runs to evaluate: name runs (see `m2rl runs`) or pass --all")
    # the config parsed once: each run's job is this one with its own `run`
    job = eval_job(cfg, runs[0].id, replace=replace)
    settings = eval_settings(job)
    if settings.backend == "vllm" and not dry_run:
        require("vllm", "eval.backend=vllm")
    for run in runs:  # refused before any run is evaluated
        check_evaluable(run)
        replaced_results(run, eval_plan(run, settings), settings, replace)
    if dry_run:
        print_config(cfg.eval, "m2rl eval: resolved eval config (dry run)")
        plan = Table(title="plan")
        for column in ("run", "benchmark", "K", "action"):
            plan.add_column(column)
        for run in runs:
            for bench, _digest, saved in eval_plan(run, settings):
                plan.add_row(
                    run.name, bench.name, str(bench.k), "reuse saved results" if saved else "evaluate"
                )
        console.print(plan)
        return
    quiet_libraries()
    # lazy: pydantic (the run specs); the CLI imports every command at start
    from m2rl import jobs

    job, threads = eval_thread_plan(job)
    for run in runs:
        say_plan(run, eval_plan(run, settings), threads)
        done = jobs.execute(job.model_copy(update={"run": run.id}), run)
        metrics = {b.name: done.manifest["metrics"]["eval"][b.name] for b in settings.benchmarks}
        console.print(results(run.name, run.id, metrics, run.path, console.width))


def eval_thread_plan(job: EvalJob) -> tuple[EvalJob, str]:
    """The job with `eval.torch_threads` set from the cores free now where the config leaves it unset and
    the hf backend generates on CPU (the thread count changes no sample: m2rl.machine); the plan in words."""
    if job.eval.torch_threads is not None:
        return job, f"{job.eval.torch_threads} torch thread(s) (eval.torch_threads)"
    import torch  # heavy: only once the eval is about to generate

    if job.eval.backend != "hf" or torch.cuda.is_available():
        return job, ""
    threads, words = thread_plan()
    return job.model_copy(update={"eval": job.eval.model_copy(update={"torch_threads": threads})}), words


def say_plan(
    run: Run, plan: list[tuple[BenchmarkSpec, str, dict[str, Any] | None]], threads: str = ""
) -> None:
    """Which benchmarks of `run` are evaluated and which reuse saved results of the same config, and
    the thread plan of the generation."""
    reused = [bench.name for bench, _digest, saved in plan if saved is not None]
    todo = [bench.name for bench, _digest, saved in plan if saved is None]
    parts = []
    if reused:
        parts.append(f"reusing saved results for {', '.join(reused)} (same model, eval and verifier config)")
    if todo:
        parts.append(f"evaluating {', '.join(todo)}" + (f" with {threads}" if threads else ""))
    say(f"eval {run.name} ({run.id}): {'; '.join(parts)}")


def results_table(
    name: str, run_id: str, metrics: dict[str, dict], run_dir: Path, columns: tuple[str, ...] = RESULT_COLUMNS
) -> Table:
    """One run's eval metrics as a table (scores in %), with these `columns`."""
    caption = f"per-item results in {run_dir / 'eval'}"
    table = Table(
        title=f"eval {name} ({run_id})",
        title_justify="left",
        caption=f"tokens = mean response length; {caption}" if "tokens" in columns else caption,
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
        header_style="bold",
    )
    for column in columns:
        table.add_column(
            column, justify="left" if column in ("benchmark", "domain") else "right", no_wrap=True
        )
    for bench, m in metrics.items():
        lo, hi = m["ci95"]
        cells = {
            "benchmark": bench,
            "domain": m["domain"],
            "items": str(m["n_items"]),
            "K": str(m["k"]),
            "Avg@K %": f"{100 * m['avg_at_k']:.2f}",
            "95% CI": f"[{100 * lo:.1f}, {100 * hi:.1f}]",
            "pass@K %": f"{100 * m['pass_at_k']:.2f}",
            "tokens": f"{m.get('mean_tokens', float('nan')):.1f}",
        }
        table.add_row(*(cells[c] for c in columns))
    return table


def results(
    name: str, run_id: str, metrics: dict[str, dict], run_dir: Path, width: int | None
) -> RenderableType:
    """The results table with every column, or without domain and tokens where that does not fit `width`."""
    narrow = tuple(c for c in RESULT_COLUMNS if c not in ("domain", "tokens"))
    return first_fitting(
        [
            lambda: results_table(name, run_id, metrics, run_dir),
            lambda: results_table(name, run_id, metrics, run_dir, narrow),
        ],
        width,
    )
