"""Launchers: accelerate/DeepSpeed configs built and checked on CPU, and a real 2-process gloo run."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from m2rl.config import compose_config
from m2rl.engine.launch import accelerate_command, accelerate_config
from m2rl.errors import UserError
from m2rl.jobs.build import section
from m2rl.ledger import Ledger, attempt
from m2rl.specs import LauncherSpec, validated

from cli_helpers import coin_domain, m2rl


def launcher(*overrides: str) -> LauncherSpec:
    return validated(LauncherSpec, section(compose_config(list(overrides)), "launcher"), prefix="launcher.")


def test_zero3_launcher_builds_a_deepspeed_accelerate_config(tmp_path):
    spec = launcher("launcher=accelerate_zero3", "launcher.use_cpu=false")
    config = accelerate_config(spec)
    assert config["distributed_type"] == "DEEPSPEED" and config["num_processes"] == 8
    assert config["deepspeed_config"]["zero_stage"] == 3 and config["deepspeed_config"]["zero3_init_flag"]
    assert config["mixed_precision"] == "bf16"
    command = accelerate_command(spec, tmp_path, "m2rl.jobs.entry", ["--run-dir", str(tmp_path)])
    assert command[1:3] == ["-m", "accelerate.commands.launch"] and command[-3:-1] == [
        "m2rl.jobs.entry",
        "--run-dir",
    ]
    assert yaml.safe_load((tmp_path / "accelerate.yaml").read_text()) == config


def test_ddp_launcher_on_cpu_uses_the_torchrun_path_without_mixed_precision():
    config = accelerate_config(launcher("launcher=accelerate_ddp", "launcher.use_cpu=true"))
    assert (
        config["distributed_type"] == "MULTI_GPU" and not config["use_cpu"] and config["num_processes"] == 2
    )
    assert config["mixed_precision"] == "no"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["launcher.num_machines=2"], "main_process_ip"),
        (
            ["launcher.num_processes=3", "launcher.num_machines=2", "launcher.main_process_ip=10.0.0.1"],
            "multiple",
        ),
        (["launcher.deepspeed.zero_stage=4"], "zero_stage"),
    ],
)
def test_bad_launcher_settings_are_user_errors(overrides, message):
    with pytest.raises(UserError, match=message):
        accelerate_config(launcher("launcher=accelerate_zero2", *overrides))


# A 2-process GRPO run of seconds: 4 prompts x 4 samples, 8 rows per rank, 16 new tokens, 2 steps.
TWO_PROCESS_RL = [
    "launcher=accelerate_ddp",
    "rl.prompts_per_step=4",
    "rl.num_generations=4",
    "rl.per_device_batch_size=8",
    "rl.max_completion_length=16",
    "rl.steps=2",
    "rl.save_steps=0",
]


def runs_with_sft(tmp_path: Path, model_dir: Path) -> Path:
    """A runs root holding a completed SFT run named `sft` (the untrained tiny model)."""
    runs = tmp_path / "runs"
    sft = Ledger(runs).create("sft", "sft", {})
    with attempt(sft):
        shutil.copytree(model_dir, sft.model_dir)
    return runs


@pytest.mark.slow
def test_two_process_accelerate_run_completes_on_cpu(tmp_path, tiny_model_dir):
    runs = runs_with_sft(tmp_path, tiny_model_dir)
    result = m2rl(
        "rl", "--domains", "math", "--from", "sft", *TWO_PROCESS_RL, "data.sizes.rl=16", runs_dir=runs
    )
    assert result.returncode == 0, result.stderr
    run = next(r for r in Ledger(runs).runs() if r.kind == "rl")
    assert run.status == "completed" and run.manifest["world_size"] == 2
    assert run.manifest["metrics"]["processes"] == 2  # rank 0 saw a 2-process group
    assert run.manifest["device"]["count"] == 2
    assert (run.model_dir / "model.safetensors").is_file()
    assert json.loads((run.path / "run.json").read_text())["status"] == "completed"


# A reward for the 2-process tests: rank 0's samples score a coin flip of their text (groups whose
# members differ: rows with a non-zero advantage), rank 1's all score 0 (no informative row), so the
# ranks keep different numbers of rows in the GRPO loss.
UNEVEN_REWARD = """
import os
import zlib


def score(sample, text):
    if os.environ.get("RANK", "0") != "0":
        return 0.0
    return float(zlib.crc32(text.encode()) % 2)
"""


def uneven_domain(folder: Path) -> list[str]:
    """The overrides of a `coin` domain (16 prompts) scored by UNEVEN_REWARD."""
    return coin_domain(folder, UNEVEN_REWARD)


def launch_log(runs: Path) -> str:
    """The end of the launch logs under `runs` (the ranks' tracebacks), for a failed test's message."""
    return "".join(log.read_text()[-3000:] for log in runs.glob("*/launch.log"))


def test_two_process_grpo_with_uneven_informative_rows_completes(tmp_path, tiny_model_dir):
    """Each rank computes the loss on its informative rows: rank 0 has some, rank 1 none. TRL gathers
    per-row statistics in the loss, so both must pass the same number of rows (gloo aborts otherwise)."""
    runs = runs_with_sft(tmp_path, tiny_model_dir)
    coin = uneven_domain(tmp_path / "coin")
    result = m2rl("rl", "--domains", "coin", "--from", "sft", *TWO_PROCESS_RL, *coin, runs_dir=runs)
    assert result.returncode == 0, result.stderr + launch_log(runs)
    run = next(r for r in Ledger(runs).runs() if r.kind == "rl")
    assert run.status == "completed" and run.manifest["metrics"]["processes"] == 2
    steps = [r for r in run.read_metrics() if "coin/reward" in r]
    assert len(steps) == 2
    # rank 0's rows scored 0 and 1, rank 1's 0: some groups informative, some not, on every step
    assert all(0 < r["coin/reward"] < 0.5 and 0 < r["frac_reward_zero_std"] < 1 for r in steps)


def test_a_rank_destroys_its_process_group_after_training(tmp_path, monkeypatch):
    """The entry every rank runs ends its process group itself: left to interpreter exit, gloo's worker
    threads can abort the rank (SIGABRT) after it trained to the end (a 1-rank gloo group here)."""
    import torch.distributed as dist

    from m2rl import jobs
    from m2rl.jobs import entry
    from m2rl.jobs.build import sft_job

    spec = sft_job(compose_config([]), "sft")
    run = jobs.create(spec, Ledger(tmp_path / "runs"))
    trained = []
    monkeypatch.setattr(
        "m2rl.jobs.training.train_on_this_rank", lambda spec, run, train, resume: trained.append(run.id)
    )
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        entry.main(["--run-dir", str(run.path)])
    finally:
        still_open = dist.is_initialized()
        if still_open:
            dist.destroy_process_group()
    assert trained == [run.id] and not still_open


def test_a_rank_leaves_without_finalization_once_its_work_is_flushed(tmp_path):
    """A finished rank's exit status does not depend on interpreter teardown: an object whose finalizer
    aborts the process (as a joinable C++ thread's destructor does under DeepSpeed) leaves it at 0, while
    what a normal exit does first still happens: a running thread is joined, the exit handlers run and
    printed output reaches the log."""
    program = f"""
import atexit, os, threading, time
from m2rl.jobs.entry import exit_rank
class AbortsWhenFinalized:
    def __del__(self):
        os.abort()
kept = AbortsWhenFinalized()
atexit.register(lambda: open({str(tmp_path / "handlers-ran")!r}, "w").close())
threading.Thread(target=lambda: (time.sleep(0.3), open({str(tmp_path / "thread-ended")!r}, "w"))).start()
print("trained", end="")
exit_rank()
"""
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "trained" and (tmp_path / "handlers-ran").exists()
    assert (tmp_path / "thread-ended").exists()
    finalized = subprocess.run(
        [sys.executable, "-c", program.replace("exit_rank()", "")], capture_output=True, timeout=60
    )
    assert finalized.returncode == -signal.SIGABRT  # what the rank did without exit_rank


def test_a_failed_attempts_launch_log_is_kept_when_the_run_is_launched_again(tmp_path, monkeypatch):
    """launch.log grows by one headed section per attempt: the resume's log does not overwrite the
    traceback of the attempt that failed."""
    from m2rl.engine import launch

    outputs = iter(["first attempt's traceback", "second attempt's traceback"])
    monkeypatch.setattr(
        launch,
        "accelerate_command",
        lambda *args: [sys.executable, "-c", f"print({next(outputs)!r}); raise SystemExit(3)"],
    )
    spec = launcher("launcher=accelerate_ddp")
    for _ in range(2):
        with pytest.raises(RuntimeError, match="exited 3 .*attempt.s traceback"):
            launch.launch_accelerate(spec, tmp_path, "m2rl.jobs.entry", [])
    log = (tmp_path / "launch.log").read_text()
    assert log.index("first attempt's traceback") < log.index("second attempt's traceback")
    assert log.count("m2rl: ") == 2


@pytest.mark.slow
def test_two_process_sft_ends_cleanly_every_time(tmp_path, tiny_model_dir):
    """A 2-process SFT that trained to the end completes: ten runs in a row (an exit-time abort of one
    rank in 2 of 7 runs would show here with probability 1 - (5/7)^10 = 97%)."""
    runs = tmp_path / "runs"
    for attempt_number in range(10):
        result = m2rl(
            "sft",
            "--name",
            f"sft-{attempt_number}",
            "launcher=accelerate_ddp",
            "sft.max_steps=2",
            "sft.per_device_batch_size=8",
            "data.sizes.sft=32",
            runs_dir=runs,
        )
        assert result.returncode == 0, f"run {attempt_number}: " + result.stderr + launch_log(runs)
    assert all(run.status == "completed" for run in Ledger(runs).runs())
