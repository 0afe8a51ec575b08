"""An RL run from start to finish: validate inputs, create the run, launch training, resume."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from m2rl.config import to_container
from m2rl.data.load import check_domains, mixture_weights, rl_samples
from m2rl.engine.jobs import execute
from m2rl.errors import UserError
from m2rl.ledger import Device, Ledger, Run
from m2rl.models.resolve import resolve_base_model


def parse_domains(text: str) -> list[str]:
    """`math,code` -> ["math", "code"] (order kept, duplicates dropped)."""
    domains = [d.strip() for d in text.split(",") if d.strip()]
    return list(dict.fromkeys(domains))


def resolve_parent(ledger: Ledger, cfg: DictConfig, from_ref: str | None) -> tuple[str, list[str]]:
    """(model to start from, parent run ids): a completed SFT run, or an external `model.path`."""
    if from_ref:
        parent = ledger.get(from_ref)
        if parent.kind != "sft" or parent.status != "completed":
            raise UserError(
                f"--from {from_ref}: run {parent.id} is a {parent.status} {parent.kind} run, not a completed SFT run"
            )
        if not (parent.model_dir / "config.json").is_file():
            raise UserError(
                f"--from {from_ref}: run {parent.id} has no model directory at {parent.model_dir}"
            )
        return str(parent.model_dir), [parent.id]
    if cfg.model.get("path"):
        return resolve_base_model(cfg.model, ledger.root), []
    raise UserError(
        "say where RL starts: --from SFT_RUN (see `m2rl runs --kind sft`) or model.path=DIR_OR_HUB_ID"
    )


def rl_steps(cfg: DictConfig, domains: list[str]) -> int:
    """Optimizer steps: rl.steps for an expert, rl.mixed_steps for a multi-domain run."""
    return int(cfg.rl.steps if len(domains) == 1 else cfg.rl.mixed_steps)


def training_samples(cfg: DictConfig, domains: list[str]) -> list[dict]:
    """The prompts of this run: one domain's, or the mixture of several (natural proportions by default)."""
    per_domain = rl_samples(cfg.data, domains)
    if len(domains) == 1:
        return per_domain[domains[0]]
    from m2rl.data.mixture import mix

    return mix(per_domain, mixture_weights(cfg.data), int(cfg.seed))


def create_rl_run(
    cfg: DictConfig, ledger: Ledger, domains: list[str], from_ref: str | None, name: str | None
) -> Run:
    """Validate everything that can be checked up front, then create the run directory."""
    from m2rl.config import training_config_hash
    from m2rl.engine.grpo import rollout_batch
    from m2rl.engine.launch import world_size

    check_domains(domains, cfg.data)
    model_path, parents = resolve_parent(ledger, cfg, from_ref)
    processes = world_size(cfg.launcher)
    rollout_batch(cfg.rl, processes)  # fail now on an inconsistent batch
    training_samples(cfg, domains)  # fail now on bad rows or empty domains
    run = ledger.create(
        "rl",
        name or "rl-" + "+".join(domains),
        to_container(cfg),
        parents=parents,
        device=Device.detect(processes),
        world_size=processes,
        config_hash=training_config_hash(cfg, "rl", domains, parents),
    )
    run.update(domains=domains, base_model=model_path, steps=rl_steps(cfg, domains))
    return run


def last_checkpoint(run: Run) -> str | None:
    """The newest `checkpoint-N` directory of a run, if any."""
    checkpoints = sorted(
        (p for p in (run.path / "checkpoints").glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
        key=lambda p: int(p.name.split("-")[-1]),
    )
    return str(checkpoints[-1]) if checkpoints else None


def train_from_run(cfg: DictConfig, run: Run, resume_from: str | None = None) -> dict:
    """Train this run's policy in this process; return its summary metrics."""
    from m2rl.engine.grpo import train_grpo
    from m2rl.engine.launch import world_size

    domains = list(run.manifest["domains"])
    return train_grpo(
        cfg,
        run,
        run.manifest["base_model"],
        training_samples(cfg, domains),
        domains,
        int(run.manifest["steps"]),
        world_size=world_size(cfg.launcher),
        resume_from=resume_from,
    )


def resume(ledger: Ledger, ref: str) -> Run:
    """Continue an interrupted RL run from its last checkpoint, with its saved config."""
    run = ledger.get(ref)
    if run.kind != "rl":
        raise UserError(f"--resume {ref}: run {run.id} is a {run.kind} run, not an RL run")
    if run.status == "completed":
        raise UserError(f"--resume {ref}: run {run.id} already completed")
    if run.status == "running":
        raise UserError(f"--resume {ref}: run {run.id} is still running (pid {run.manifest.get('pid')})")
    checkpoint = last_checkpoint(run)
    if checkpoint is None:
        raise UserError(
            f"--resume {ref}: run {run.id} saved no checkpoint (rl.save_steps); start it again instead"
        )
    cfg = OmegaConf.load(Path(run.path) / "config.yaml")
    return execute("rl", cfg, run, resume_from=checkpoint)
