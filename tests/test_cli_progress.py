"""Progress that speaks: the run and its folder before the first step, the resume step, both costs, tracker logs."""

from __future__ import annotations

import signal

import pytest

from m2rl.ledger import Ledger
from test_cli_exit import SMALL_BATCHES, run_m2rl, send, start_m2rl, wait_for


@pytest.mark.slow  # two SFT starts: 25-30 s on an idle 2-core machine, minutes under load
def test_sft_names_its_run_resumes_from_a_stated_step_and_points_at_its_logs(tmp_path):
    runs = tmp_path / "runs"
    settings = [*SMALL_BATCHES, "sft.max_steps=6", "sft.save_steps=2", "sft.report_to=[tensorboard]"]
    proc = start_m2rl("sft", "--runs-dir", str(runs), *settings)
    wait_for("*/checkpoints/checkpoint-2/trainer_state.json", runs, proc)
    send(proc, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    (run,) = Ledger(runs).runs()
    first_line = stdout.splitlines()[0]
    assert first_line.startswith(f"sft run {run.id}: training; ") and first_line.endswith(
        f"; folder {run.path}"
    )

    resumed = run_m2rl("sft", "--resume", run.id, "--runs-dir", str(runs))
    assert resumed.returncode == 0, resumed.stderr
    step = int(Ledger(runs).get(run.id).manifest["resumed_from"].rsplit("-", 1)[1])
    first = resumed.stdout.splitlines()[0]
    assert first.startswith(f"resuming sft run {run.id} from checkpoint-{step} (step {step} of 6); ")
    assert first.endswith(f"; folder {run.path}") and "torch thread" in first
    summary = " ".join(resumed.stdout.split())  # the table's folded cells joined again
    assert "CPU-hours (wall x 1 process)" in summary and "CPU-hours (process CPU time)" in summary
    logs = run.path / "checkpoints" / "runs"
    assert "tensorboard logs" in summary and list(logs.glob("*/events.out.tfevents.*"))
    assert str(logs) in resumed.stdout.replace("\n", "").replace(" ", "").replace("│", "")


def test_training_writes_progress_lines_where_stderr_is_a_file(tmp_path):
    """A bar cannot redraw in a log file: the first and the last step, and one line every 30 s between,
    are written as plain lines with the step, the time and the latest summary."""
    runs = tmp_path / "runs"
    result = run_m2rl(
        "sft", "--runs-dir", str(runs), *SMALL_BATCHES, "sft.max_steps=4", "sft.logging_steps=1"
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "] sft: step " in line]
    assert len(lines) == 2 and "step 1/4 (25%)" in lines[0] and "step 4/4 (100%)" in lines[1], result.stderr
    assert "elapsed, about 0:00:00 left; loss " in lines[1]
