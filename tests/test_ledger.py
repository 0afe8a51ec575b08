"""Run ledger: manifests, atomic writes, failure status, ownership by lock, bad manifests, lineage lookups,
device-hours."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from m2rl.errors import Interrupted, UserError
from m2rl.jobs.training import check_resumable
from m2rl.ledger import (
    Device,
    Ledger,
    Run,
    attempt,
    lock_held,
    read_manifest,
    replace_dir,
    temp_sibling,
    write_json_atomic,
)

from cli_helpers import m2rl


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
    assert caught.value.resume == "" and "saved no checkpoint yet (rl.save_steps)" in caught.value.no_resume
    checkpoint = run.path / "checkpoints" / "checkpoint-4"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text("{}")  # written last: a complete checkpoint
    with pytest.raises(Interrupted) as caught, attempt(run):
        raise KeyboardInterrupt
    assert caught.value.resume == f"m2rl rl --resume {run.id}" and caught.value.no_resume == ""


@pytest.mark.parametrize("signal_error", ["ctrl-c", "sigterm"])
def test_a_cleanup_failing_on_the_signal_does_not_mask_it(tmp_path, signal_error):
    """A signal landing in a library's bookkeeping (rich pushing its render hook) makes that library's
    cleanup fail (IndexError: pop from empty list): still the interrupt, its exit status and one line."""
    from m2rl.signals import Terminated

    run = Ledger(tmp_path).create("sft", "half-done", {})
    with pytest.raises(Interrupted) as caught, attempt(run):
        try:
            raise KeyboardInterrupt if signal_error == "ctrl-c" else Terminated("terminated by signal 15")
        finally:
            [].pop()
    assert caught.value.exit_status == (130 if signal_error == "ctrl-c" else 143)
    saved = Ledger(tmp_path).get(run.id)
    assert saved.status == "failed" and saved.manifest["error"].startswith("interrupted (")
    with pytest.raises(IndexError), attempt(Ledger(tmp_path).create("sft", "plain", {})):
        [].pop()  # without a signal behind it, an error stays itself


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


# -- ownership: an attempt holds its run's lock; `running` means the lock is held ------------------
def _holder(root) -> subprocess.Popen:
    """A process in the middle of an attempt of a new run; its first line of output is the run id."""
    script = textwrap.dedent(
        f"""
        import time
        from m2rl.ledger import Ledger, attempt
        run = Ledger({str(root)!r}).create("sft", "holder", {{}})
        with attempt(run):
            print(run.id, flush=True)
            time.sleep(120)
        """
    )
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)


def test_temp_names_are_unique_per_host_and_process(tmp_path):
    first, second = temp_sibling(tmp_path / "run.json"), temp_sibling(tmp_path / "run.json")
    assert first != second and first.parent == tmp_path
    assert (
        first.name.startswith(f".run.json.{socket.gethostname()}.{os.getpid()}.") and first.suffix == ".tmp"
    )


def test_only_the_main_process_writes_the_manifest(tmp_path):
    run = Ledger(tmp_path).create("sft", "ranks", {})
    rank = Run.load(run.path)
    rank.writes_manifest = False  # what jobs/entry.py sets on ranks other than 0
    rank.set_metrics(loss=1.0)
    assert "loss" not in read_manifest(run.path)["metrics"]


def test_a_live_attempt_owns_its_run_and_a_second_one_is_refused(tmp_path, monkeypatch):
    proc = _holder(tmp_path)
    try:
        run_id = proc.stdout.readline().strip()
        run = Ledger(tmp_path).get(run_id)
        assert run.status == "running" and not run.killed
        assert run.manifest["pid"] == proc.pid and run.manifest["boot_id"] and run.manifest["process_started"]
        monkeypatch.setattr("m2rl.ledger.run.CLAIM_WAIT_S", 0.2)
        with (
            pytest.raises(UserError, match=rf"run {run_id} is running \(process {proc.pid} on "),
            attempt(run),
        ):
            pass
        assert read_manifest(run.path)["attempts"] == run.manifest["attempts"]  # untouched
    finally:
        proc.kill()
        proc.wait()


def test_a_killed_run_is_failed_and_resumable_on_any_host_whatever_its_pid(tmp_path):
    proc = _holder(tmp_path)
    run_id = proc.stdout.readline().strip()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    # as if it ran in another container: another host name, and a pid that is alive here (ours)
    manifest = read_manifest(tmp_path / run_id)
    assert manifest["status"] == "running"  # what the killed process left on disk
    write_json_atomic(tmp_path / run_id / "run.json", {**manifest, "host": "container-7", "pid": os.getpid()})
    run = Ledger(tmp_path).get(run_id)
    assert run.killed and run.status == "failed" and run.manifest["attempts"][-1]["status"] == "killed"
    assert run.manifest["error"].startswith(f"killed: process {os.getpid()} on container-7")
    check_resumable(run, "sft", run_id)
    with attempt(run):
        pass
    statuses = [a["status"] for a in read_manifest(run.path)["attempts"]]
    assert statuses == ["killed", "completed"]
    assert run.device_hours == pytest.approx(sum(a["device_hours"] for a in run.manifest["attempts"]))


def test_a_live_run_seen_from_another_pid_namespace_stays_running(tmp_path):
    if shutil.which("unshare") is None:
        pytest.skip("no unshare")
    listing = ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-m", "m2rl.cli"]
    probe = subprocess.run([*listing, "--help"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"no PID namespaces here: {probe.stderr.strip()[:200]}")
    proc = _holder(tmp_path)
    try:
        run_id = proc.stdout.readline().strip()
        unseen = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "kill", "-0", str(proc.pid)])
        assert unseen.returncode != 0  # its pid means nothing in there, yet it runs:
        result = subprocess.run(
            [*listing, "runs", "--json", "--runs-dir", str(tmp_path)], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        (manifest,) = json.loads(result.stdout)
        assert manifest["id"] == run_id and manifest["status"] == "running"
        assert read_manifest(tmp_path / run_id)["status"] == "running"
    finally:
        proc.kill()
        proc.wait()


def test_a_run_created_running_is_owned_until_its_status_changes(tmp_path):
    ledger = Ledger(tmp_path)
    run = ledger.create("merge", "owned", {})
    assert lock_held(run.path / "run.lock") and ledger.get(run.id).status == "running"
    run.update(status="completed")
    assert not lock_held(run.path / "run.lock") and ledger.get(run.id).status == "completed"
    queued = ledger.create("rl", "later", {}, status="queued")
    assert not lock_held(queued.path / "run.lock") and ledger.get(queued.id).status == "queued"


# -- a ledger one bad file cannot break -------------------------------------------------------------
BAD_MANIFESTS = {
    "list": ("[]", "expected a JSON object, found a list"),
    "no-status": (
        json.dumps({"id": "x", "kind": "rl", "name": "x"}),
        "no 'status' field",
    ),
    "pid": (None, "'pid' is \"x\", expected an integer or null"),
    "json": ('{"id": "x", ', "not valid JSON"),
    "utf8": (b'{"id": "\xff"}', "not valid JSON"),
}


def plant_bad_manifests(root) -> dict[str, str]:
    """One folder per bad manifest (and a queued run, `template`); returns {run.json path: message}."""
    good = Ledger(root).create("sft", "template", {}, status="queued")
    expected = {}
    for name, (content, message) in BAD_MANIFESTS.items():
        folder = root / f"bad-{name}"
        folder.mkdir()
        if content is None:
            content = json.dumps({**good.manifest, "id": folder.name, "pid": "x"})
        path = folder / "run.json"
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        expected[str(path)] = message
    return expected


def test_the_ledger_lists_what_it_can_read_and_names_what_it_cannot(tmp_path, capsys):
    expected = plant_bad_manifests(tmp_path)
    found = []
    runs = Ledger(tmp_path, report=found.append).runs()
    assert [r.name for r in runs] == ["template"]
    assert {str(p.path): p.what for p in found}.keys() == expected.keys()
    for problem in found:
        assert expected[str(problem.path)] in problem.what and "move its folder" in problem.fix
    Ledger(tmp_path).runs()
    Ledger(tmp_path).runs()  # every bad file named once per process, one line each
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == len(expected) and all(line.startswith("m2rl: warning: skipped ") for line in lines)
    with pytest.raises(UserError, match="not a run manifest: expected a JSON object"):
        Ledger(tmp_path).get("bad-list")  # named directly: an error, one line


def test_runs_check_reports_every_problem_with_its_path_and_what_to_do(tmp_path):
    ok = m2rl("runs", "--check", runs_dir=tmp_path)
    assert ok.returncode == 0 and "no problems" in ok.stdout
    expected = plant_bad_manifests(tmp_path)
    proc = _holder(tmp_path)
    killed = proc.stdout.readline().strip()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    cut_short = tmp_path / "20260101-000000-x"
    cut_short.mkdir()
    (cut_short / "config.yaml").write_text("a: 1\n")
    leftover = tmp_path / killed / ".run.json.host.1.abcd.tmp"
    leftover.write_text("{")
    os.utime(leftover, (0, 0))
    Ledger(tmp_path).create("merge", "no-model", {}).update(status="completed")
    result = m2rl("runs", "--check", runs_dir=tmp_path)
    assert result.returncode == 1, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == len(expected) + 5  # + killed run, missing model, cut-short folder, leftover, total
    said = "\n".join(lines)
    for path, message in expected.items():
        assert f"{path}: not" in said and message in said
    assert "killed: process" in said  # it saved no checkpoint: nothing can resume it
    assert "it saved no checkpoint yet (sft.save_steps), so nothing can resume it: run the command" in said
    assert "model is missing" in said and f"{cut_short}: a run folder without run.json" in said
    assert f"{leftover}: left by a write that never finished; delete it" in said
    assert lines[-1].startswith(f"{len(lines) - 1} problem(s) under")


def test_replace_dir_swaps_a_whole_folder(tmp_path):
    target = tmp_path / "out"
    for content in ("old", "new"):
        tmp = temp_sibling(target)
        tmp.mkdir()
        (tmp / "a.txt").write_text(content)
        replace_dir(tmp, target)
    assert (target / "a.txt").read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["out"]


# the warning is the lost exception, as expected
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_sigterm_lost_in_a_finalizer_is_raised_again_where_progress_is_reported():
    """Python drops an exception raised in a `__del__`; a stage signalled at that moment must still stop."""
    from m2rl.signals import Terminated, raise_lost_signal, sigterm_raises

    class SignalledInFinalizer:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs here, inside the finalizer: its exception is lost
                pass

    went_on = False
    with (
        pytest.raises(Terminated),
        sigterm_raises(lambda signum: Terminated(f"terminated by signal {signum}")),
    ):
        finalized = SignalledInFinalizer()
        del finalized
        went_on = True
        raise_lost_signal()
    assert went_on  # the signal did not stop the work by itself
    raise_lost_signal()  # outside the context: nothing pending
    with sigterm_raises(lambda signum: Terminated("unused")):
        raise_lost_signal()  # no signal came


def test_every_run_kind_has_a_job_module_of_the_one_shape_and_the_ledger_takes_the_kinds_that_write_runs(
    tmp_path,
):
    """The kinds come from the spec types: each has a job module with resolve, create and run; an eval
    writes into the evaluated run, so the ledger refuses a run of kind eval."""
    from m2rl import jobs

    for kind in jobs.KINDS:
        job = jobs.module(kind)
        assert all(callable(getattr(job, name, None)) for name in ("resolve", "create", "run")), kind
    ledger = Ledger(tmp_path / "runs")
    assert ledger.create("analyze", "a", {}).kind == "analyze"
    with pytest.raises(ValueError, match="unknown job kind 'model'"):
        jobs.module("model")
    with pytest.raises(ValueError, match="unknown run kind 'eval'"):
        ledger.create("eval", "e", {})
