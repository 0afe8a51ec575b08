"""Why mixing works, measured: weight-update geometry, skill consistency, policy neighbourhoods, self-verification.

`m2rl analyze` takes the latest study, `m2rl analyze STUDY` a study by name, `m2rl analyze RUN [RUN...]`
the models named (their SFT bases are added); Hydra overrides follow (`analyze.threshold=1e-4`). It
writes an `analyze` run holding analysis.md, analysis.json and figures/; a study's report is also put
in `<runs>/<study>-analysis/`, which `m2rl compare` links. A completed analysis of the same runs and
settings is reused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from m2rl.commands.common import DEFAULT_RUNS_DIR, DryRun, Name, RunsDir, load_config, print_config, say
from m2rl.commands.eval import split_arguments
from m2rl.config import to_container
from m2rl.console import console, quiet_libraries
from m2rl.errors import UserError

if TYPE_CHECKING:
    from m2rl.analysis.lineage import Lineage
    from m2rl.ledger import Ledger, Run


def study_runs(ledger: Ledger, study: str) -> list[Run]:
    """The newest completed, evaluated run of each name in `study` (SFT, RL and merge runs; not the
    cascade's stages)."""
    # lazy: numpy and pydantic; the CLI imports every command at start
    from m2rl.compare.manifests import evaluated_runs
    from m2rl.specs import MODEL_KINDS

    newest: dict[str, Run] = {}
    for run in evaluated_runs(ledger):  # oldest first
        # a cascade's stages are not analysed (their lineage is not one of SFT, experts and merges)
        if run.manifest.get("study") == study and run.kind in MODEL_KINDS and not run.manifest.get("cascade"):
            newest[run.name] = run
    return list(newest.values())


def select(ledger: Ledger, refs: list[str]) -> tuple[list[Run], str | None, bool]:
    """(runs to analyse, their study, whether they are a whole study): the latest study, a study named,
    or the runs named."""
    # lazy: numpy and pydantic; the CLI imports every command at start
    from m2rl.compare.manifests import evaluated_runs
    from m2rl.compare.selection import resolve_run

    if not refs:
        studies = [r.manifest["study"] for r in reversed(evaluated_runs(ledger)) if r.manifest.get("study")]
        if not studies:
            raise UserError(f"no evaluated study under {ledger.root}: run `m2rl pipeline`, or name runs")
        return study_runs(ledger, studies[0]), studies[0], True
    if len(refs) == 1 and not any(r.name == refs[0] for r in ledger.runs()):
        runs = study_runs(ledger, refs[0])
        if runs:
            return runs, refs[0], True
    runs = [resolve_run(ledger, ref) for ref in refs]
    studies = {r.manifest.get("study") for r in runs}
    return runs, studies.pop() if len(studies) == 1 else None, False


def command(
    arguments: Annotated[
        list[str] | None,
        typer.Argument(
            help="A study name or runs (id, id prefix, name or folder; default: the latest study), then Hydra "
            "overrides such as `analyze.neighbourhoods.prompts=16`.",
            show_default=False,
        ),
    ] = None,
    runs_dir: RunsDir = DEFAULT_RUNS_DIR,
    name: Name = None,
    dry_run: DryRun = False,
) -> None:
    """Analyse a study's models: `m2rl analyze [STUDY | RUN...] [overrides]` writes analysis.md, analysis.json
    and figures; a completed analysis of the same runs and settings is reused."""
    # lazy, as in every command module: the CLI imports them all at start
    from m2rl import jobs
    from m2rl.analysis import analysis_folder
    from m2rl.analysis.lineage import group
    from m2rl.analysis.report import rich_tables
    from m2rl.jobs.build import analyze_job
    from m2rl.ledger import Ledger
    from m2rl.study.plan import analyze_stage_name

    refs, overrides = split_arguments(list(arguments or []))
    cfg = load_config(overrides)
    ledger = Ledger(runs_dir)
    runs, study, whole = select(ledger, refs)
    lineages = group(ledger, runs)
    publish = analysis_folder(study) if whole and study else None
    default_name = "analyze"
    if publish and len(lineages) == 1 and lineages[0].seed is not None:
        default_name = analyze_stage_name(study, lineages[0].seed)  # the study's own stage: its run is reused
    elif publish:
        default_name = f"{study}-analyze"
    spec = jobs.resolve(analyze_job(cfg, [r.id for r in runs], name or default_name, study, publish), ledger)
    lineages = group(ledger, [ledger.get(ref) for ref in spec.runs])
    if dry_run:
        print_config(cfg.analyze, "m2rl analyze: resolved analyze config (dry run)")
        console.print(plan_table(lineages))
        return
    quiet_libraries()
    models = sum(len(lineage.models()) for lineage in lineages)
    say(f"analyze {models} models in {len(lineages)} lineage(s)" + (f" of study {study}" if study else ""))
    run = jobs.start(spec, ledger, config=to_container(cfg), reuse=True)
    if publish and _published_run(ledger.root / publish) != run.id:  # a reused run; another's report is there
        # lazy: numpy and pydantic; the CLI imports every command at start
        from m2rl.jobs.analyze import publish as publish_report

        publish_report(run, publish)
    console.print(rich_tables(json.loads((run.path / "analysis.json").read_text())))
    where = f"; report also in {ledger.root / publish}/" if publish else ""
    say(f"analyze run {run.id}: {run.path / 'analysis.md'}, analysis.json, figures/{where}")


def _published_run(folder: Path) -> str | None:
    """The id of the analyze run whose report `folder` holds."""
    marker = folder / "RUN"
    return marker.read_text().strip() if marker.is_file() else None


def plan_table(lineages: list[Lineage]) -> Table:
    """The models each lineage analyses, with their roles and run ids."""
    table = Table(title="models to analyse")
    for column in ("seed", "model", "run"):
        table.add_column(column, overflow="fold")
    for lineage in lineages:
        for label, run in lineage.models():
            table.add_row(str(lineage.seed), label, run.id)
    return table
