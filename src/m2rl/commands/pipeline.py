"""The whole study in one command: SFT, experts, the mixed run, merges, eval and the compare table.

`--dry-run` prints the plan and what can be known before any work: the tiny study's time on this
machine's cores, the paper-scale GPU-hours of every stage, what each Slurm job asks for with one sbatch
script as submitit writes it, and whether the model and data are here or must be downloaded.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig
from rich.table import Table
from rich.text import Text

from m2rl.commands.common import (
    DEFAULT_RUNS_DIR,
    DryRun,
    Name,
    Overrides,
    RunsDir,
    load_config,
    print_config,
    say,
)
from m2rl.console import console, err_console, quiet_libraries
from m2rl.engines import check_config_engines
from m2rl.errors import UserError
from m2rl.machine import usable_cores

KIND_NAMES = {
    "sft": "SFT",
    "rl": "RL",
    "distill": "MT-OPD",
    "merge": "merge",
    "eval": "eval",
    "analyze": "analyze",
}


def command(
    overrides: Overrides = None,
    runs_dir: RunsDir = DEFAULT_RUNS_DIR,
    name: Name = None,
    dry_run: DryRun = False,
) -> None:
    """Run the mix-vs-merge study end to end: `m2rl pipeline` (tiny, CPU), `study.seeds=3` to replicate it
    per seed, `study.executor=slurm` to send each stage to Slurm; `m2rl pipeline preset=paper --dry-run`
    prints the paper's plan. Resumable: finished stages are reused, interrupted ones resumed."""
    # lazy: numpy and pydantic; the CLI imports every command at start
    from m2rl.specs import check_name
    from m2rl.study import check_study, study_settings
    from m2rl.study.plan import plan
    from m2rl.study.view import plan_view

    cfg = load_config(overrides)
    study = _study_name(name or "study", check_name)
    stages = plan(cfg, study)
    check_study(cfg, stages)
    slurm = study_settings(cfg).executor == "slurm"
    notes = _check_slurm(cfg, dry_run) if slurm else []
    if dry_run:
        print_config(cfg, "m2rl pipeline: resolved config (dry run)")
        paper = cfg.get("preset") == "paper"
        device = "GPU-hours" if paper else "CPU-hours (process CPU time)"
        console.print(plan_view(cfg, stages, device, console))
        costs = _paper_estimate(cfg, stages) if paper else {}
        if slurm:
            _slurm_plan(cfg, stages, costs, Path(runs_dir), notes)
        elif cfg.get("preset") == "tiny":
            _tiny_time(cfg, stages)
        _inputs(cfg)
        return
    check_config_engines(cfg, distill=any(s.kind == "distill" for s in stages))
    for line in notes:
        err_console.print(line, highlight=False, markup=False)
    _run(cfg, Path(runs_dir), study)


def _run(cfg: DictConfig, runs_dir: Path, study: str) -> None:
    # lazy: numpy and pydantic; the CLI imports every command at start
    from m2rl.compare import print_compare
    from m2rl.study import run_study

    quiet_libraries()
    result = run_study(cfg, runs_dir, study, err_console)
    console.rule("[bold]mix vs merge")
    print_compare(result, console)


def _study_name(name: str, check) -> str:
    try:
        return check(name)
    except ValueError as exc:
        raise UserError(f"--name {exc}") from None


def _launcher(cfg: DictConfig):
    # lazy: numpy and pydantic; the CLI imports every command at start
    from m2rl.jobs.build import section
    from m2rl.specs import LauncherSpec, validated

    return validated(LauncherSpec, section(cfg, "launcher"), prefix="launcher.")


def _check_slurm(cfg: DictConfig, dry_run: bool) -> list[str]:
    """The Slurm checks made before the first job (UserError: the study is refused); the lines to print."""
    # lazy: numpy and pydantic; the CLI imports every command at start
    from m2rl.study import study_settings
    from m2rl.study.backends import check_cluster, check_launcher, check_partition, cluster_partitions

    settings = study_settings(cfg).slurm
    if not dry_run:
        check_cluster()
    partitions, why = cluster_partitions()
    return [check_partition(settings, partitions, why), *check_launcher(settings, _launcher(cfg), dry_run)]


def _tiny_time(cfg: DictConfig, stages: list) -> None:
    # lazy: numpy and pydantic; the CLI imports every command at start
    from m2rl.study.plan import tiny_time

    cores = usable_cores()
    estimate = tiny_time(cfg, stages, cores)
    more = (
        f"; with {estimate.cores_for_best} cores or more about {_minutes(estimate.best_seconds)}"
        if estimate.best_seconds < estimate.seconds * 0.98
        else "; more cores would not shorten it (its longest chain of stages sets the time)"
    )
    say(
        f"estimated time: about {_minutes(estimate.seconds)} on {cores} CPU core{'s' * (cores != 1)}, idle "
        "(the executor's schedule replayed with stage times measured on a 2-core machine: one stage per core, "
        f"up to {estimate.widest} at once{more})"
    )


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def _paper_estimate(cfg: DictConfig, stages: list) -> dict:
    """Print the paper-scale GPU-hours of every stage by kind, with a total; return each stage's."""
    # lazy: numpy and pydantic; the CLI imports every command at start
    from m2rl.study.plan import paper_costs

    costs = paper_costs(cfg, stages)
    table = Table(title="paper-scale estimate of every stage (GPU-hours)")
    for column in ("kind", "stages", "GPU-hours", "basis"):
        table.add_column(column, overflow="fold")
    total = 0.0
    for kind in KIND_NAMES:
        of_kind = [s for s in stages if s.kind == kind]
        if not of_kind:
            continue
        hours = [costs[s.name].hours for s in of_kind]
        known = sum(h for h in hours if h is not None)
        total += known
        shown = f"{known:,.1f}" + (" + unknown" if None in hours else "")
        bases = list(dict.fromkeys(costs[s.name].basis for s in of_kind))
        table.add_row(KIND_NAMES[kind], str(len(of_kind)), shown, "; ".join(bases))
    table.add_row("total", str(len(stages)), f"{total:,.1f}", "", style="bold")
    table.caption = (
        "RL and MT-OPD from the paper's Table 2; SFT, evals and analyze estimated here "
        "(figures in study.paper_estimate, assumptions marked in conf/config.yaml)"
    )
    console.print(table)
    return costs


def _slurm_plan(cfg: DictConfig, stages: list, costs: dict, runs_dir: Path, notes: list[str]) -> None:
    """What each Slurm job asks for, the checks' lines, and the sbatch script of the largest job."""
    # lazy: numpy and pydantic; the CLI imports every command at start
    from m2rl.evaluate.settings import eval_section
    from m2rl.specs import SPEC_TYPES, TRAINING_KINDS
    from m2rl.study import study_settings
    from m2rl.study.backends import sbatch_preview, slurm_request

    settings = study_settings(cfg).slurm
    launcher, ev = _launcher(cfg), eval_section(cfg) if cfg.get("eval") is not None else None
    requests = {
        s.name: slurm_request(
            settings,
            launcher if s.kind in TRAINING_KINDS else None,  # the stages the launcher runs
            ev if "eval" in SPEC_TYPES[s.kind].model_fields else None,  # those that generate
        )
        for s in stages
    }
    table = Table(title=f"Slurm jobs ({len(stages)}, one per stage, submitted as their inputs finish)")
    columns = ["stage", "kind", "nodes", "GPUs", "CPUs", "time limit", "memory", "partition"]
    if costs:
        columns.append("est. hours on its GPUs")
    for column in columns:
        table.add_column(column, overflow="fold")
    over = []
    for stage in stages:
        request = requests[stage.name]
        gpus = f"{request.gpus}" + (f" ({request.gpus_per_node}/node)" if request.nodes > 1 else "")
        row = [
            stage.name,
            KIND_NAMES.get(stage.kind, stage.kind),
            str(request.nodes),
            gpus,
            f"{request.cpus_per_task}" + ("/node" if request.nodes > 1 else ""),
            f"{request.time_min} min",
            request.mem or "partition default",
            request.partition or "cluster default",
        ]
        if costs:
            hours = costs[stage.name].hours
            wall = hours / request.gpus if hours and request.gpus else None
            row.append(f"{wall:,.1f}" if wall else "")
            if wall and wall * 60 > request.time_min:
                over.append((stage.name, wall))
        table.add_row(*row)
    console.print(table)
    for line in notes:
        say(line)
    if over:
        longest = max(over, key=lambda item: item[1])
        say(
            f"{len(over)} job(s) are estimated to run past study.slurm.time_min={settings.time_min} "
            f"({settings.time_min / 60:g} h), the longest {longest[0]} ({longest[1]:,.1f} h on its GPUs): Slurm "
            "stops a job at its limit, and the same command resumes a stopped training stage from its last "
            "checkpoint and an eval from the benchmarks it finished (about "
            f"{int(-(-longest[1] * 60 // settings.time_min))} submissions for the longest); raise "
            "study.slurm.time_min as far as the partition allows"
        )
    shown = max(stages, key=lambda s: (requests[s.name].gpus, -stages.index(s)))
    run_id = f"YYYYMMDD-HHMMSS-{shown.name}-XXXXXX"  # the run's id, made when the stage starts
    script = sbatch_preview(
        settings, requests[shown.name], runs_dir.absolute() / run_id / "logs", f"m2rl-{run_id}"[:64]
    )
    console.rule(f"sbatch script of {shown.name}, as submitit writes it (not submitted)")
    console.print(Text(script), soft_wrap=True)


def _inputs(cfg: DictConfig) -> None:
    # lazy: numpy and pydantic; the CLI imports every command at start
    from m2rl.study import study_inputs

    table = Table(title="model and data: here, or to download")
    for column in ("config key", "source", "found", "detail"):
        table.add_column(column, overflow="fold")
    for item in study_inputs(cfg):
        style = {"download": "yellow", "missing": "red"}.get(item.found)
        table.add_row(_keys(item.keys), item.source, item.found, item.detail, style=style)
    console.print(table)


def _keys(keys: tuple[str, ...]) -> str:
    """`eval.benchmarks.{math,code}.source` for keys that differ in one part, else the keys listed."""
    parts = [key.split(".") for key in keys]
    if len(keys) > 1 and len({len(p) for p in parts}) == 1:
        differ = [i for i in range(len(parts[0])) if len({p[i] for p in parts}) > 1]
        if len(differ) == 1:
            i = differ[0]
            return ".".join([*parts[0][:i], "{" + ",".join(p[i] for p in parts) + "}", *parts[0][i + 1 :]])
    return ", ".join(keys)
