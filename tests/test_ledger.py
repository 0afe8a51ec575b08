"""Run ledger: manifests, atomic writes, failure status, lineage lookups, device-hours."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from m2rl.errors import Interrupted, UserError
from m2rl.ledger import Device, Ledger, attempt, write_json_atomic


def test_completed_run_records_stages_device_hours_and_attempts(tmp_path):
    ledger = Ledger(tmp_path)
    run = ledger.create("sft", "demo", {"a": 1}, device=Device("cpu", "test-cpu", 2), world_size=2)
    with attempt(run):
        with run.stage("training"):
            time.sleep(0.05)
        run.set_metrics(loss=1.5)
    manifest = json.loads((run.path / "run.json").read_text())
    assert manifest["status"] == "completed"
    assert manifest["stage_seconds"]["training"] >= 0.05
    assert manifest["device_hours"] == pytest.approx(manifest["wall_seconds"] * 2 / 3600, rel=2e-2)
    assert manifest["device_hours"] > 0
    assert manifest["device_hours_label"] == "CPU-hours"
    assert manifest["metrics"] == {"loss": 1.5}
    assert (run.path / "config.yaml").read_text().strip() == "a: 1"


def test_exception_marks_run_failed_with_error(tmp_path):
    run = Ledger(tmp_path).create("rl", "boom", {})
    with pytest.raises(ValueError), attempt(run):
        raise ValueError("bad thing")
    manifest = json.loads((run.path / "run.json").read_text())
    assert manifest["status"] == "failed"
    assert "bad thing" in manifest["error"]
    assert manifest["finished"] is not None


def test_keyboard_interrupt_marks_run_failed_and_says_how_to_resume(tmp_path):
    run = Ledger(tmp_path).create("rl", "ctrl-c", {})
    with pytest.raises(Interrupted) as caught, attempt(run):
        raise KeyboardInterrupt
    assert Ledger(tmp_path).get(run.id).status == "failed"
    assert caught.value.exit_status == 130 and caught.value.stopped == [run.id]
    assert caught.value.resume == f"m2rl rl --resume {run.id}"


def _child_script(root, body: str) -> str:
    return textwrap.dedent(
        f"""
        import time
        from m2rl.ledger import Ledger, attempt
        run = Ledger({str(root)!r}).create("sft", "child", {{}})
        print(run.id, flush=True)
        with attempt(run):
            {body}
        """
    )


def test_sigterm_marks_run_failed(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", _child_script(tmp_path, "time.sleep(60)")], stdout=subprocess.PIPE, text=True
    )
    run_id = proc.stdout.readline().strip()
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    run = Ledger(tmp_path).get(run_id)
    assert run.status == "failed"
    assert run.manifest["error"] == "interrupted (SIGTERM)"


def test_sigkilled_run_is_reported_failed(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", _child_script(tmp_path, "time.sleep(60)")], stdout=subprocess.PIPE, text=True
    )
    run_id = proc.stdout.readline().strip()
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    run = Ledger(tmp_path).get(run_id)
    assert run.status == "failed"
    assert "killed" in run.manifest["error"]


def test_atomic_write_never_leaves_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "run.json"
    write_json_atomic(path, {"status": "running"})

    def broken_dump(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(json, "dump", broken_dump)
    with pytest.raises(OSError):
        write_json_atomic(path, {"status": "completed"})
    assert json.loads(path.read_text()) == {"status": "running"}


def test_get_resolves_id_prefix_name_and_path(tmp_path):
    ledger = Ledger(tmp_path)
    first = ledger.create("sft", "alpha", {})
    second = ledger.create("sft", "alpha", {})
    assert ledger.get("alpha").id == second.id  # newest of that name
    assert ledger.get(first.id).id == first.id
    assert ledger.get(str(first.path)).id == first.id
    with pytest.raises(UserError, match="no run"):
        ledger.get("missing")
    with pytest.raises(UserError, match="no run"):  # not a home directory lookup that crashes
        ledger.get("~no-such-user/run")


def test_resumed_run_sums_device_hours_of_attempts(tmp_path):
    run = Ledger(tmp_path).create("rl", "twice", {})
    with pytest.raises(RuntimeError), attempt(run):
        time.sleep(0.02)
        raise RuntimeError("crash")
    first_hours = run.device_hours
    with attempt(run):
        time.sleep(0.02)
    assert run.status == "completed"
    assert len(run.manifest["attempts"]) == 2
    assert run.device_hours > first_hours > 0
    assert run.device_hours == pytest.approx(sum(a["device_hours"] for a in run.manifest["attempts"]))
