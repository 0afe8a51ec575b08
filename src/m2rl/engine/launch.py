"""Launchers: run a training entry in this process, or under `accelerate launch` on several processes.

`launcher=local` trains in-process. `launcher=accelerate*` writes an accelerate config (and a
DeepSpeed section when ZeRO is configured) into the run directory and starts
`accelerate launch ... -m ENTRY --run-dir RUN` (the jobs layer's `m2rl.jobs.entry`); every rank rebuilds the same trainer
from the run's job spec (job.json), rank 0 writes metrics and the model, and this process owns the
manifest (status, attempts, device-hours). On a machine with no GPU the processes use gloo on CPU,
which is how the distributed path is tested here.

Stopping: accelerate runs in a session of its own and dies with this process (parent-death signal);
its ranks, which torchrun starts in sessions of their own, die with it (see jobs/entry.py). SIGTERM
or Ctrl-C here is passed on to accelerate's process group, which stops its ranks; whatever is left
after `STOP_GRACE_S` is killed. A resume never meets a leftover's rendezvous port: a busy port is
replaced by a free one on a single machine (as is a port another launch there has claimed), and
named as an error across machines.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from m2rl.errors import UserError
from m2rl.ledger.manifest import now
from m2rl.specs import LauncherSpec

STOP_GRACE_S = 30.0


PR_SET_PDEATHSIG = 1


def parent_death_signal(signum: int) -> Callable[[], None]:
    """A call asking the kernel for `signum` when the caller's parent dies (Linux), safe in a fork's child."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (AttributeError, OSError):  # not Linux
        return lambda: None
    # resolved here, in the parent: a forked child then only calls it before it execs
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return lambda: prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)


def _use_cpu(launcher: LauncherSpec) -> bool:
    setting = launcher.use_cpu
    if setting == "auto":
        # lazy: torch, only where use_cpu=auto asks whether a GPU is visible
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


def launch_env(launcher: LauncherSpec) -> dict[str, str]:
    """The environment of `accelerate launch`: this one, unbuffered; DeepSpeed told to use the CPU where
    no GPU is visible (DS_ACCELERATOR=cpu: gloo, and its shared-memory op compiled on first use)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if launcher.deepspeed is not None:
        # lazy: torch, only for a DeepSpeed launch
        import torch

        if not torch.cuda.is_available():
            env.setdefault("DS_ACCELERATOR", "cpu")
    return env


def accelerate_command(launcher: LauncherSpec, run_dir: Path, entry: str, entry_args: list[str]) -> list[str]:
    """Write the accelerate config into the run and return the `accelerate launch` command line that
    runs the module `entry` with `entry_args` on every rank."""
    config_path = Path(run_dir) / "accelerate.yaml"
    config_path.write_text(yaml.safe_dump(accelerate_config(launcher), sort_keys=False))
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(config_path),
        "-m",
        entry,
        *entry_args,
    ]


def _port_free(port: int) -> bool:
    """Whether a rendezvous server could listen on `port` here (as torch's TCPStore binds it)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("", port))
        except OSError:
            return False
    return True


def _kernel_port() -> int:
    with socket.socket() as probe:
        probe.bind(("", 0))
        return probe.getsockname()[1]


# Launches on one machine claim their port here for as long as they run.
PORT_CLAIMS = Path(tempfile.gettempdir()) / "m2rl-rendezvous-ports"


@contextlib.contextmanager
def claimed_port(launcher: LauncherSpec) -> Iterator[int]:
    """The rendezvous port of this launch. Across machines: the configured `main_process_port` (busy on
    the main machine: an error). On one machine: the configured port where it is free and no other launch
    holds it, else a port the kernel picks. Launches that start at the same moment on one machine (a
    study's parallel stages, Slurm jobs on one node) all find the configured port free before any of
    them binds it (seen: `EADDRINUSE` in the second of two Slurm jobs), so each one holds an exclusive
    lock on a file named by its port while it runs."""
    port = launcher.main_process_port
    if launcher.num_machines > 1:
        if launcher.machine_rank == 0 and not _port_free(port):
            raise UserError(
                f"launcher.main_process_port={port} is in use on this machine (ranks left from an earlier "
                f"attempt? `ss -ltnp 'sport = :{port}'` names the process): stop it, or set another port on "
                "every machine"
            )
        yield port
        return
    PORT_CLAIMS.mkdir(exist_ok=True)
    while True:
        claim = open(PORT_CLAIMS / f"{port}.lock", "w")  # held until the launch ends
        try:
            fcntl.flock(claim, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if _port_free(port):
                break
        except BlockingIOError:  # another launch holds it
            pass
        claim.close()
        port = _kernel_port()
    try:
        yield port
    finally:
        claim.close()


def stop_launch(process: subprocess.Popen, signum: int, grace: float = STOP_GRACE_S) -> None:
    """Pass `signum` to the launcher's group, wait up to `grace` seconds, then kill all it started."""
    # lazy: psutil (~20 ms), only where a launcher's processes are stopped
    import psutil

    try:  # ranks live in sessions of their own, out of the group's reach
        started = psutil.Process(process.pid).children(recursive=True)
    except psutil.Error:
        started = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    for leftover in started:
        with contextlib.suppress(psutil.Error):  # psutil checks the pid still names that process
            leftover.kill()
    psutil.wait_procs(started, timeout=10)
    process.wait()


def launch_accelerate(launcher: LauncherSpec, run_dir: Path, entry: str, entry_args: list[str]) -> None:
    """Run the module `entry` under accelerate and wait (a failed rank: an error naming the log); signals
    stop all."""
    with claimed_port(launcher) as port:
        _launch(launcher, port, run_dir, entry, entry_args)


def _launch(launcher: LauncherSpec, port: int, run_dir: Path, entry: str, entry_args: list[str]) -> None:
    command = accelerate_command(
        launcher.model_copy(update={"main_process_port": port}), run_dir, entry, entry_args
    )
    log_path = Path(run_dir) / "launch.log"
    env = launch_env(launcher)
    with open(log_path, "a") as log:  # a resumed run keeps the failed attempt's log above its own
        log.write(f"m2rl: {now()} {shlex.join(command)}\n")  # the attempt's start, as run.json has it
        if port != launcher.main_process_port:
            log.write(f"m2rl: port {launcher.main_process_port} is in use; rendezvous on port {port}\n")
        log.flush()
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=parent_death_signal(signal.SIGTERM),  # accelerate then stops its ranks
        )
        try:
            code = process.wait()
        except BaseException as exc:  # SIGTERM (raised by the run's attempt) or Ctrl-C
            stop_launch(process, signal.SIGINT if isinstance(exc, KeyboardInterrupt) else signal.SIGTERM)
            raise
    if code != 0:
        tail = log_path.read_text().strip().splitlines()[-1:] or [""]
        raise RuntimeError(f"accelerate launch exited {code} (see {log_path}): {tail[0][:300]}")
