"""Launchers: run a training entry in this process, or under `accelerate launch` on several processes.

`launcher=local` trains in-process. `launcher=accelerate*` writes an accelerate config (and a
DeepSpeed section when ZeRO is configured) into the run directory and starts
`accelerate launch ... -m m2rl.engine.entry --run-dir RUN`; every rank rebuilds the same trainer
from the run's job spec (job.json), rank 0 writes metrics and the model, and this process owns the
manifest (status, attempts, device-hours). On a machine with no GPU the processes use gloo on CPU,
which is how the distributed path is tested here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from m2rl.errors import UserError
from m2rl.specs import LauncherSpec


def _use_cpu(launcher: LauncherSpec) -> bool:
    setting = launcher.use_cpu
    if setting == "auto":
        import torch

        return not torch.cuda.is_available()
    return bool(setting)


def accelerate_config(launcher: LauncherSpec) -> dict[str, Any]:
    """The accelerate config file contents for this launcher (validated before anything starts)."""
    processes, machines = launcher.num_processes, launcher.num_machines
    if processes < 1 or machines < 1 or processes % machines:
        raise UserError(
            f"launcher: num_processes={processes} must be a positive multiple of num_machines={machines}"
        )
    if machines > 1 and not launcher.main_process_ip:
        raise UserError(
            "launcher: multi-node runs need launcher.main_process_ip (the rank-0 machine's address)"
        )
    use_cpu = _use_cpu(launcher)
    # accelerate's CPU launch path (`use_cpu`/MULTI_CPU) expects MPI and starts one process; the
    # torchrun path below starts `num_processes` ranks, and the trainers (use_cpu=True when there is no
    # GPU) then join them in a gloo process group.
    config: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": "MULTI_GPU",
        "num_processes": processes,
        "num_machines": machines,
        "machine_rank": launcher.machine_rank,
        "main_process_port": launcher.main_process_port,
        "mixed_precision": "no" if use_cpu else launcher.mixed_precision,
        "use_cpu": False,
        "rdzv_backend": "static",
        "same_network": True,
    }
    if launcher.main_process_ip:
        config["main_process_ip"] = launcher.main_process_ip
    if launcher.deepspeed is not None:
        ds = launcher.deepspeed
        config["distributed_type"] = "DEEPSPEED"
        config["deepspeed_config"] = {
            "zero_stage": ds.zero_stage,
            "offload_optimizer_device": ds.offload_optimizer_device,
            "offload_param_device": ds.offload_param_device,
            "gradient_clipping": ds.gradient_clipping,
            "zero3_init_flag": ds.zero3_init_flag,
            "zero3_save_16bit_model": ds.zero3_save_16bit_model,
        }
    return config


def accelerate_command(launcher: LauncherSpec, run_dir: Path, entry_args: list[str]) -> list[str]:
    """Write the accelerate config into the run and return the `accelerate launch` command line."""
    config_path = Path(run_dir) / "accelerate.yaml"
    config_path.write_text(yaml.safe_dump(accelerate_config(launcher), sort_keys=False))
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(config_path),
        "-m",
        "m2rl.engine.entry",
        *entry_args,
    ]


def launch_accelerate(launcher: LauncherSpec, run_dir: Path, entry_args: list[str]) -> None:
    """Run the entry under accelerate and wait; a failed rank is an error naming the log file."""
    command = accelerate_command(launcher, run_dir, entry_args)
    log_path = Path(run_dir) / "launch.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log_path, "w") as log:
        completed = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, check=False)
    if completed.returncode != 0:
        tail = log_path.read_text().strip().splitlines()[-1:] or [""]
        raise RuntimeError(
            f"accelerate launch exited {completed.returncode} (see {log_path}): {tail[0][:300]}"
        )
