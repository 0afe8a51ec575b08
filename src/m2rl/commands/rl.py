"""GRPO from an SFT run: one domain trains an expert, several domains train the mixed run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from m2rl.commands.common import DEFAULT_RUNS_DIR, DryRun, Name, Overrides, RunsDir, load_config, print_config
from m2rl.commands.training import parse_names, recipe_table, resume, train
from m2rl.console import console
from m2rl.errors import UserError

Domains = Annotated[
    str | None,
    typer.Option("--domains", help="Comma-separated domains: one = an expert, several = the mixed run."),
]
From = Annotated[
    str | None,
    typer.Option(
        "--from", help="The completed SFT run (or RL run, to continue it) to start from (id or name)."
    ),
]
Resume = Annotated[
    str | None, typer.Option("--resume", help="Continue this interrupted RL run from its last checkpoint.")
]


def command(
    overrides: Overrides = None,
    domains: Domains = None,
    from_run: From = None,
    resume_ref: Resume = None,
    runs_dir: RunsDir = DEFAULT_RUNS_DIR,
    name: Name = None,
    dry_run: DryRun = False,
) -> None:
    """GRPO with verifiable rewards: `m2rl rl --domains math --from sft` (an expert) or
    `--domains math,code,science,if` (the mixed run). Each sample is scored by its own domain's verifier."""
    # lazy: numpy and pydantic; the CLI imports every command at start
    from m2rl.jobs.build import check_config, rl_job
    from m2rl.ledger import Ledger

    ledger = Ledger(runs_dir)
    if resume_ref:
        resume(ledger, runs_dir, resume_ref, "rl", dry_run)
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
    train(spec, cfg, ledger, runs_dir, f"{spec.steps} GRPO steps on {'+'.join(spec.domains)}")


def trl_mapping_table(spec) -> Table:
    """How the rl recipe lands on trl.GRPOConfig (engine.grpo.GRPO_MAPPING), built for real."""
    # lazy: m2rl.engine imports transformers; the CLI imports every command at start
    from m2rl.engine.grpo import GRPO_MAPPING, build_grpo_config

    world = spec.launcher.world_size
    args = build_grpo_config(
        spec.rl, Path("/tmp/m2rl-dry-run"), spec.steps, world, use_cpu=True, seed=spec.seed
    )
    title = f"GRPO recipe -> trl.GRPOConfig ({'+'.join(spec.domains)}, {world} processes)"
    return recipe_table(title, "rl", GRPO_MAPPING, spec.rl, args, spec.steps, world)
