"""One attempt of a training run (SFT or RL), in this process or under the configured launcher."""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig

from m2rl.ledger import Run, attempt


def _is_rank_zero() -> bool:
    import torch.distributed as dist

    return not dist.is_initialized() or dist.get_rank() == 0


def train_in_process(kind: str, cfg: DictConfig, run: Run, resume_from: str | None = None) -> None:
    """Train this run in this process: the only process, or one rank of an accelerate launch."""
    from m2rl.engine.launch import world_size

    if cfg.get("torch_threads"):
        import torch

        torch.set_num_threads(int(cfg.torch_threads))
    if kind == "sft":
        from m2rl.engine.sft import train_sft

        metrics = train_sft(cfg, run, run.manifest["base_model"], world_size(cfg.launcher))
    else:
        from m2rl.engine.rl_job import train_from_run

        metrics = train_from_run(cfg, run, resume_from)
    if _is_rank_zero():
        import torch.distributed as dist

        run.set_metrics(**metrics, processes=dist.get_world_size() if dist.is_initialized() else 1)


def execute(kind: str, cfg: DictConfig, run: Run, resume_from: str | None = None) -> Run:
    """Run one attempt of `run` with the configured launcher; the manifest records the outcome."""
    from m2rl.engine.launch import launch_accelerate

    with attempt(run):
        if cfg.launcher.name == "local":
            train_in_process(kind, cfg, run, resume_from)
        else:
            args = [kind, "--run-dir", str(run.path)] + (
                ["--resume-from", resume_from] if resume_from else []
            )
            launch_accelerate(cfg.launcher, run.path, args)
            run.manifest = json.loads((run.path / "run.json").read_text())  # rank 0 wrote metrics
    return run


def run_sft(cfg, runs_dir: Path, name: str):
    """Create an SFT run, train it, and return the completed run (Python API for the pipeline)."""
    from m2rl.config import to_container, training_config_hash
    from m2rl.engine.launch import world_size
    from m2rl.ledger import Device, Ledger
    from m2rl.models.resolve import resolve_base_model

    ledger = Ledger(runs_dir)
    base = resolve_base_model(cfg.model, ledger.root)
    processes = world_size(cfg.launcher)
    run = ledger.create(
        "sft",
        name,
        to_container(cfg),
        parents=[],
        device=Device.detect(processes),
        world_size=processes,
        config_hash=training_config_hash(cfg, "sft"),
    )
    run.update(base_model=base)
    return execute("sft", cfg, run)
