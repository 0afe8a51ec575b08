"""GRPO from an SFT run: one domain trains an expert, several domains train the mixed run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from m2rl.commands.common import (
    DEFAULT_RUNS_DIR,
    DryRun,
    Name,
    Overrides,
    RunsDir,
    load_config,
    print_config,
    resume_hint,
)
from m2rl.commands.sft import report, resume_run, start_run
from m2rl.console import console, quiet_libraries

Domains = Annotated[
    str | None,
    typer.Option("--domains", help="Comma-separated domains: one = an expert, several = the mixed run."),
]
From = Annotated[str | None, typer.Option("--from", help="The completed SFT run to start from (id or name).")]
Resume = Annotated[
    str | None, typer.Option("--resume", help="Continue this interrupted RL run from its last checkpoint.")
]


def command(
    overrides: Overrides = None,
    domains: Domains = None,
    from_run: From = None,
    resume: Resume = None,
    runs_dir: RunsDir = DEFAULT_RUNS_DIR,
    name: Name = None,
    dry_run: DryRun = False,
) -> None:
    """GRPO with verifiable rewards: `m2rl rl --domains math --from sft` (an expert) or
    `--domains math,code,science,if` (the mixed run). Each sample is scored by its own domain's verifier."""
    from m2rl.errors import UserError
    from m2rl.jobs.build import check_config, rl_job
    from m2rl.jobs.rl import parse_names
    from m2rl.ledger import Ledger

    ledger = Ledger(runs_dir)
    if resume:
        quiet_libraries()
        with resume_hint(runs_dir):
            report(resume_run(ledger, resume, "rl"))
        return
    if not domains:
        raise UserError(
            "--domains is required (e.g. --domains math, or math,code,science,if for the mixed run)"
        )
    cfg = load_config(overrides)
    check_config(cfg)
    domain_list = parse_names(domains)
    spec = rl_job(cfg, name or "rl-" + "+".join(domain_list), domain_list, from_run)
    if dry_run:
        print_config(cfg, "m2rl rl: resolved config (dry run)")
        console.print(trl_mapping_table(spec))
        return
    quiet_libraries()
    from m2rl.config import to_container

    what = f"{spec.steps} GRPO steps on {'+'.join(spec.domains)}"
    with resume_hint(runs_dir):
        report(start_run(spec, ledger, to_container(cfg), what))


def trl_mapping_table(spec) -> Table:
    """How the rl recipe lands on trl.GRPOConfig (engine.grpo.GRPO_MAPPING), built for real."""
    from m2rl.engine.grpo import GRPO_MAPPING, build_grpo_config

    world = spec.launcher.world_size
    args = build_grpo_config(
        spec.rl, Path("/tmp/m2rl-dry-run"), spec.steps, world, use_cpu=True, seed=spec.seed
    )
    title = f"GRPO recipe -> trl.GRPOConfig ({'+'.join(spec.domains)}, {world} processes)"
    return recipe_table(title, "rl", GRPO_MAPPING, spec.rl, args, spec.steps, world)


def recipe_table(title: str, section: str, mapping, recipe, args, steps: int, world: int) -> Table:
    """One row per item of a recipe -> TRL mapping: the paper's item, the m2rl keys, the TRL options set."""
    values = recipe.model_dump()
    table = Table(title=title)
    for column in ("paper recipe", "m2rl key = value", "TRL option = value"):
        table.add_column(column, overflow="fold")
    for item in mapping:
        keys = "\n".join(f"{section}.{key} = {_lookup(values, key)}" for key in item.keys) or "(fixed)"
        options = item.options(recipe, steps, world, True)
        trl = "\n".join(f"{option} = {getattr(args, option)}" for option in options)
        table.add_row(item.paper, keys, trl)
    return table


def _lookup(recipe: dict, key: str) -> object:
    node: object = recipe
    for part in key.split("."):
        if part == "*" or not isinstance(node, dict):
            return "..." if part == "*" else node
        node = node.get(part)
    return node
