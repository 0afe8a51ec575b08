"""Exit statuses of the installed `m2rl` executable: 0, 2 for bad input or usage, 130 on Ctrl-C, 143 on SIGTERM."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from m2rl import __version__
from m2rl.ledger import Ledger, attempt

from cli_helpers import FAST_RL, as_foreground_job

EXECUTABLE = str(Path(sys.executable).with_name("m2rl"))  # the console script pip installed
CLASS_NAMES = ("NoSuchOption", "MissingParameter", "NoArgsIsHelpError", "UsageError", "Traceback")
# SFT steps of 4 short conversations: a step takes well under a second
SMALL_BATCHES = [
    "data.sizes.sft=16",
    "sft.global_batch_size=4",
    "sft.per_device_batch_size=4",
    "sft.max_length=96",
]


def run_m2rl(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    environment = dict(os.environ, HF_HUB_OFFLINE="1", COLUMNS="80")
    return subprocess.run(
        [EXECUTABLE, *args], capture_output=True, text=True, timeout=timeout, env=environment
    )


def start_m2rl(*args: str) -> subprocess.Popen:
    """`m2rl ARGS` in its own process group, as a terminal's foreground job is."""
    environment = dict(os.environ, HF_HUB_OFFLINE="1", COLUMNS="80")
    return subprocess.Popen(
        [EXECUTABLE, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
        preexec_fn=as_foreground_job,
    )


def wait_for(pattern: str, root: Path, proc: subprocess.Popen, timeout: float = 180) -> Path:
    """The first path under `root` matching `pattern`, waiting while `proc` runs."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        found = sorted(root.glob(pattern))
        if found:
            return found[0]
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"{pattern} never appeared; stderr: {proc.communicate()[1][-2000:]}")


def send(proc: subprocess.Popen, signum: int) -> None:
    if signum == signal.SIGINT:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground process group
    else:
        proc.send_signal(signal.SIGTERM)


def one_message(stderr: str) -> str:
    """The single line m2rl printed on stderr (progress bars aside), with no traceback anywhere."""
    assert not any(name in stderr for name in (*CLASS_NAMES, "KeyboardInterrupt")), stderr
    lines = [line for line in stderr.splitlines() if line.startswith("m2rl:")]
    assert len(lines) == 1, stderr
    return lines[0]


def test_version_prints_the_version_and_exits_0():
    result = run_m2rl("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"m2rl {__version__}" and result.stderr == ""


def test_help_exits_0_and_no_arguments_show_it_once_with_exit_2():
    help_text = run_m2rl("--help")
    assert help_text.returncode == 0 and "Usage: m2rl" in help_text.stdout
    bare = run_m2rl()
    assert bare.returncode == 2
    assert bare.stdout.count("Usage: m2rl") == 1
    assert not any(name in bare.stdout + bare.stderr for name in CLASS_NAMES)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--nope"], "No such option: --nope (see `m2rl --help`)"),
        (["sft", "--nope"], "(see `m2rl sft --help`)"),
        (["verify", "in.jsonl"], "Missing option '-o' / '--output'"),
        (["verify"], "Missing argument 'INPUT.jsonl'"),
        (["data", "nope"], "No such command 'nope'"),
        (["rl", "--domains", "math", "rl.stepz=3", "--runs-dir", "RUNS"], "did you mean rl.steps?"),
        (["rl", "--domains", "math", "rl.steps=abc", "--runs-dir", "RUNS"], "rl.steps=abc"),
        (["rl", "--domains", "math", "rl.steps=-1", "--runs-dir", "RUNS"], "rl.steps=-1"),
    ],
)
def test_usage_errors_and_bad_overrides_are_one_line_and_exit_2(tmp_path, args, expected):
    result = run_m2rl(*(str(tmp_path / "runs") if a == "RUNS" else a for a in args))
    assert result.returncode == 2, result.stderr
    line = one_message(result.stderr)
    assert line.startswith("m2rl: error:") and expected in line
    assert result.stderr.strip() == line
    assert not (tmp_path / "runs").exists()  # checked before any run directory exists


def _check_interrupted(proc: subprocess.Popen, signum: int, runs: Path, kind: str, what: str) -> str:
    """Exit 128 + signal; the run and folder named at start; one line naming the stopped run, its failed
    status and the resume command (with the runs root, not the default one here); no traceback.
    Returns the resume command."""
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, stderr
    line = one_message(stderr)
    (run,) = [r for r in Ledger(runs).runs() if r.kind == kind]
    assert run.status == "failed"
    first = stdout.splitlines()[0]  # the run, what it does, its thread plan and its folder
    assert first.startswith(f"{kind} run {run.id}: {what}; ") and first.endswith(f"; folder {run.path}")
    assert re.search(r"; \d+ torch threads? .*\(\d+\.\d of \d+ cores busy\); folder", first), first
    name = "SIGINT (Ctrl-C)" if signum == signal.SIGINT else "SIGTERM"
    resume = f"m2rl {kind} --resume {run.id} --runs-dir {runs.resolve()}"
    assert line == f"m2rl: interrupted by {name}: stopped run {run.id}, marked failed; resume with: {resume}"
    return resume


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupting_sft_exits_128_plus_the_signal_and_its_resume_command_finishes_it(tmp_path, signum):
    runs = tmp_path / "runs"
    proc = start_m2rl("sft", "--runs-dir", str(runs), *SMALL_BATCHES, "sft.max_steps=40", "sft.save_steps=2")
    wait_for("*/checkpoints/checkpoint-*/trainer_state.json", runs, proc)  # a checkpoint to resume from
    send(proc, signum)
    resume = _check_interrupted(proc, signum, runs, "sft", "training")
    planned = run_m2rl(*resume.split()[1:], "--dry-run")  # says what it would do, and does nothing
    assert planned.returncode == 0 and "dry run: would resume sft run" in planned.stdout, planned.stderr
    assert len(Ledger(runs).get(resume.split()[3]).manifest["attempts"]) == 1
    resumed = run_m2rl(*resume.split()[1:])
    assert resumed.returncode == 0, resumed.stderr
    (run,) = Ledger(runs).runs()
    assert run.status == "completed" and len(run.manifest["attempts"]) == 2
    assert "resuming sft run" in resumed.stdout and (run.model_dir / "config.json").is_file()


def test_interrupting_a_run_before_its_first_checkpoint_says_to_start_it_again(tmp_path):
    """Nothing can resume a run that saved no checkpoint: the line says so and gives the command that
    starts it again, never a resume command that would fail."""
    runs = tmp_path / "runs"
    args = ["sft", "--runs-dir", str(runs), *SMALL_BATCHES, "sft.max_steps=2000", "sft.save_steps=0"]
    proc = start_m2rl(*args)
    wait_for("*/progress/sft.json", runs, proc)
    send(proc, signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    line = one_message(stderr)
    (run,) = Ledger(runs).runs()
    assert "resume with" not in line and line.endswith(
        "it saved no checkpoint yet (sft.save_steps), so nothing can resume it: start it again with: "
        f"m2rl {' '.join(args)}"
    ), line


@pytest.fixture()
def sft_parent(tmp_path, tiny_model_dir) -> Path:
    """A runs root holding a completed SFT run (the untrained tiny model) named `sft`."""
    runs = tmp_path / "runs"
    run = Ledger(runs).create("sft", "sft", {})
    with attempt(run):
        shutil.copytree(tiny_model_dir, run.model_dir)
    return runs


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupting_rl_exits_128_plus_the_signal_with_no_worker_tracebacks(sft_parent, signum):
    mixed = ["--domains", "math,code", "--from", "sft", *FAST_RL, "rl.mixed_steps=200", "rl.save_steps=1"]
    args = [*mixed, "--runs-dir", str(sft_parent)]
    proc = start_m2rl("rl", *args)
    wait_for("*-rl-*/checkpoints/checkpoint-*/trainer_state.json", sft_parent, proc)  # workers are up
    send(proc, signum)
    _check_interrupted(proc, signum, sft_parent, "rl", "200 GRPO steps on math+code")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupting_eval_outside_any_attempt_exits_128_plus_the_signal(sft_parent, signum):
    proc = start_m2rl("eval", "sft", "--runs-dir", str(sft_parent), "eval.k=64")
    wait_for("*/progress/eval.json", sft_parent, proc)
    send(proc, signum)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, stderr
    name = "SIGINT (Ctrl-C)" if signum == signal.SIGINT else "SIGTERM"
    assert one_message(stderr) == f"m2rl: interrupted by {name}"


def test_an_error_raised_while_a_signal_unwinds_exits_as_that_signal(monkeypatch, capsys):
    """Outside a run's attempt too: a cleanup failing on the half-done state a SIGTERM left (rich's
    render-hook stack popped empty) is reported as the SIGTERM, exit 143, not as an internal error."""
    from m2rl import cli
    from m2rl.signals import Terminated

    def app(standalone_mode):
        try:
            raise Terminated("terminated by signal 15")
        finally:
            [].pop()

    monkeypatch.setattr(cli, "app", app)
    monkeypatch.setattr(cli.signal, "signal", lambda *args: None)  # leave pytest's own handlers alone
    monkeypatch.setattr(sys, "argv", ["m2rl", "sft"])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 143
    err = capsys.readouterr().err
    assert err.startswith("m2rl: ") and "SIGTERM" in err and "IndexError" not in err and err.count("\n") == 1
