"""Multi-teacher on-policy distillation (MT-OPD): `m2rl distill --teachers RUN1,RUN2,...|STUDY --from SFT_RUN`.
The student starts from the SFT run and samples on the mixed prompts; each sample's own-domain expert
scores the sampled tokens; the per-token advantage is log p_teacher - log p_student."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from m2rl.commands.common import DEFAULT_RUNS_DIR, DryRun, Name, Overrides, RunsDir, load_config, print_config
from m2rl.commands.training import parse_names, recipe_table, resume, train
from m2rl.console import console
from m2rl.errors import UserError

Teachers = Annotated[
    str | None,
    typer.Option(
        "--teachers",
        help="Comma-separated expert runs (id or name), one per domain, or a study name (its experts from --from).",
    ),
]
From = Annotated[
    str | None, typer.Option("--from", help="The completed SFT run the student starts from (id or name).")
]
Domains = Annotated[
    str | None,
    typer.Option(
        "--domains", help="Comma-separated prompt domains (default: study.domains); each needs a teacher."
    ),
]
Resume = Annotated[
    str | None,
    typer.Option("--resume", help="Continue this interrupted distill run from its last checkpoint."),
]


def command(
    overrides: Overrides = None,
    teachers: Teachers = None,
    from_run: From = None,
    domains: Domains = None,
    resume_ref: Resume = None,
    runs_dir: RunsDir = DEFAULT_RUNS_DIR,
    name: Name = None,
    dry_run: DryRun = False,
) -> None:
    """MT-OPD: `m2rl distill --teachers study --from study-s0-sft` distils every expert of the study into
    one student, each sample scored by its own domain's teacher (per-token reverse KL as the advantage)."""
    # lazy: numpy and pydantic; the CLI imports every command at start
    from m2rl.jobs.build import check_config, distill_job
    from m2rl.ledger import Ledger

    ledger = Ledger(runs_dir)
    if resume_ref:
        resume(ledger, runs_dir, resume_ref, "distill", dry_run)
        return
    if not teachers:
        raise UserError("--teachers is required (expert runs RUN1,RUN2,... or a study name)")
    if not from_run:
        raise UserError(
            "--from is required: the completed SFT run the student starts from (see `m2rl runs --kind sft`)"
        )
    cfg = load_config(overrides)
    check_config(cfg)
    domain_list = parse_names(domains) if domains else None
    spec = distill_job(cfg, name or "distill", parse_names(teachers), from_run, domain_list)
    served = spec.served_teachers()
    if dry_run:
        print_config(cfg, "m2rl distill: resolved config (dry run)")
        console.print(trl_mapping_table(spec))
        where = ", ".join(f"{d} on the vLLM server at {a}" for d, a in served.items())
        console.print(f"teachers: {where + '; the others' if where else 'all'} in the training process")
        return
    train(spec, cfg, ledger, runs_dir, f"{spec.steps} MT-OPD steps on {'+'.join(spec.domains)}")


def trl_mapping_table(spec) -> Table:
    """How the distill recipe lands on trl.GRPOConfig (engine.distill.DISTILL_MAPPING), built for real."""
    # lazy: m2rl.engine imports transformers; the CLI imports every command at start
    from m2rl.engine.distill import DISTILL_MAPPING, build_distill_config

    world = spec.launcher.world_size
    args = build_distill_config(
        spec.distill, Path("/tmp/m2rl-dry-run"), spec.steps, world, use_cpu=True, seed=spec.seed
    )
    title = f"MT-OPD recipe -> trl.GRPOConfig ({'+'.join(spec.domains)}, {world} processes)"
    return recipe_table(title, "distill", DISTILL_MAPPING, spec.distill, args, spec.steps, world)
