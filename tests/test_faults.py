"""Runs under faults: processes killed at each stage, two commands on one runs root, corrupt manifests
among good ones, every rank of a launch stopped.

A kill here is a SIGKILL of a command's whole process group (a power loss, the OOM killer), at a point
a test hook holds it at: `HOOK`, installed as `sitecustomize` in the command's processes, pauses the
Nth call of a named function, and the test kills the group once the pause is reported. Then the same
command runs again and must finish with nothing lost or done twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from m2rl.cli import app
from m2rl.config import compose_config
from m2rl.engine.launch import claimed_port
from m2rl.errors import UserError
from m2rl.jobs.build import rl_job, section
from m2rl.ledger import Ledger, Run, attempt, read_manifest
from m2rl.specs import LauncherSpec, validated
from m2rl.study.executor import Executor, MachineShare, RunElsewhere
from m2rl.study.plan import Stage
from test_ledger import plant_bad_manifests

from cli_helpers import FAST_RL, SMALL_STUDY, m2rl

HOOK = '''
"""Test hook: M2RL_TEST_PAUSE="module:attr.path:before|after:N" holds the process at the Nth call of that
function (counted per process), after appending its pid to $M2RL_TEST_PAUSE_MARK."""
import os
import sys

_target = os.environ.get("M2RL_TEST_PAUSE")
if _target:
    import importlib.util
    import time

    _module, _attr, _when, _count = _target.split(":")

    def _pause():
        with open(os.environ["M2RL_TEST_PAUSE_MARK"], "a") as mark:
            mark.write(f"{os.getpid()}\\n")
        time.sleep(3600)

    def _patch(module):
        *path, name = _attr.split(".")
        owner = module
        for part in path:
            owner = getattr(owner, part)
        original, calls = getattr(owner, name), [0]

        def held(*args, **kwargs):
            calls[0] += 1
            if _when == "before" and calls[0] == int(_count):
                _pause()
            result = original(*args, **kwargs)
            if _when == "after" and calls[0] == int(_count):
                _pause()
            return result

        setattr(owner, name, held)

    class _PatchOnImport:
        def find_spec(self, fullname, path, target=None):
            if fullname != _module:
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(fullname)
            load = spec.loader.exec_module

            def exec_module(module):
                load(module)
                _patch(module)

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, _PatchOnImport())
'''

EVAL = [
    "data.sizes.test=2",
    "eval.k=1",
    "eval.max_new_tokens=8",
    "~eval.benchmarks.code",
    "~eval.benchmarks.science",
    "~eval.benchmarks.if",
]


# -- helpers ------------------------------------------------------------------------------------------
class Command:
    """A command started in its own process group, its output in files, that can be held at a hook."""

    def __init__(self, tmp: Path, argv: list[str], pause: str | None = None, name: str = "cmd"):
        self.mark = tmp / f"{name}.paused"
        self.out, self.err = tmp / f"{name}.out", tmp / f"{name}.err"
        env = dict(os.environ, HF_HUB_OFFLINE="1", COLUMNS="200")
        if pause:
            hooks = tmp / "hooks"
            hooks.mkdir(exist_ok=True)
            (hooks / "sitecustomize.py").write_text(HOOK)
            self.mark.unlink(missing_ok=True)
            env.update(PYTHONPATH=str(hooks), M2RL_TEST_PAUSE=pause, M2RL_TEST_PAUSE_MARK=str(self.mark))
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env, start_new_session=True)

    @property
    def stderr(self) -> str:
        return self.err.read_text()

    def wait(self, timeout: float = 900) -> int:
        return self.proc.wait(timeout=timeout)

    def kill_when_paused(self, timeout: float = 600) -> None:
        """Wait for the hook to hold a process, then SIGKILL the whole group and wait until it is gone."""
        deadline = time.time() + timeout
        while not self.mark.exists():
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"ended ({self.proc.returncode}) before the pause: {self.stderr[-3000:]}"
                )
            if time.time() > deadline:
                raise AssertionError(f"never paused: {self.stderr[-3000:]}")
            time.sleep(0.1)
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=60)
        _wait_gone(self.proc.pid)


def _wait_gone(pgid: int, timeout: float = 60) -> None:
    """Until every process of group `pgid` is gone: reaped, or a zombie whose threads all exited (a
    killed process's leader turns zombie while its other threads still hold its files and locks)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        left = []
        for proc in psutil.process_iter(["status", "num_threads"]):
            with contextlib.suppress(ProcessLookupError, psutil.Error):
                zombie = proc.info["status"] == psutil.STATUS_ZOMBIE and (proc.info["num_threads"] or 0) <= 1
                if os.getpgid(proc.pid) == pgid and not zombie:
                    left.append(proc)
        if not left:
            return
        time.sleep(0.2)
    raise AssertionError(f"processes of group {pgid} outlived a SIGKILL")


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "m2rl.cli", *args]


def _invoke(root: Path, *args: str):
    """`m2rl ARGS --runs-dir ROOT` in this process (the libraries are loaded once for the whole test)."""
    return CliRunner().invoke(app, [*args, "--runs-dir", str(root)])


def _completed_run(ledger: Ledger, kind: str, name: str, model: Path, **fields) -> Run:
    run = ledger.create(kind, name, {}, parents=fields.pop("parents", []), study=fields.pop("study", None))
    with attempt(run):
        shutil.copytree(model, run.model_dir)
        run.update(**fields)
    return run


def _lineage(root: Path, model: Path, study: str = "s") -> tuple[Run, list[Run]]:
    """A completed SFT run and two completed experts (math, code) of it, all holding the tiny model."""
    ledger = Ledger(root)
    sft = _completed_run(ledger, "sft", f"{study}-sft", model, study=study)
    experts = [
        _completed_run(ledger, "rl", f"{study}-rl-{d}", model, parents=[sft.id], study=study, domains=[d])
        for d in ("math", "code")
    ]
    return sft, experts


def _attempt_statuses(run: Run) -> list[str]:
    return [a["status"] for a in run.manifest["attempts"]]


def _check_costs(run: Run) -> None:
    attempts = run.manifest["attempts"]
    assert run.device_hours == pytest.approx(sum(a["device_hours"] for a in attempts)), run.name
    assert run.manifest["cpu_seconds"] == pytest.approx(sum(a["cpu_seconds"] for a in attempts), abs=0.01)


# -- a merge killed mid-attempt, resumed by the executor (the fast variant) -----------------------------
EXECUTOR_SCRIPT = """
import sys
from m2rl.config import compose_config
from m2rl.jobs.build import merge_job
from m2rl.ledger import Ledger
from m2rl.study.backends import LocalBackend
from m2rl.study.executor import Executor, MachineShare
from m2rl.study.plan import Stage

root, base, experts = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
cfg = compose_config([])
build = lambda runs: merge_job(cfg, "paper_ties", experts, base, "t-merge", "t")
backend = LocalBackend()
backend.context.set_forkserver_preload(["torch"])  # what a merge needs, not the trainers
states = Executor([Stage("t-merge", "merge", 0, (), build)], Ledger(root), backend,
                  MachineShare(slots=1, threads=1), poll_s=0.1).run()
sys.exit(0 if states["t-merge"].status == "completed" else 1)
"""


def test_a_study_stage_killed_mid_merge_resumes_as_the_same_run(tmp_path, tiny_model_dir):
    root = tmp_path / "runs"
    sft, experts = _lineage(root, tiny_model_dir)
    argv = [sys.executable, "-c", EXECUTOR_SCRIPT, str(root), sft.id, ",".join(r.id for r in experts)]
    Command(tmp_path, argv, pause="m2rl.merge.run:merge_models:before:1").kill_when_paused()
    (merge,) = [r for r in Ledger(root).runs() if r.kind == "merge"]
    assert read_manifest(merge.path)["status"] == "running"  # what the killed stage left on disk
    assert merge.killed and merge.status == "failed" and _attempt_statuses(merge) == ["killed"]

    again = Command(tmp_path, argv, name="again")
    assert again.wait() == 0, again.stderr
    (merged,) = [r for r in Ledger(root).runs() if r.kind == "merge"]
    assert merged.id == merge.id and merged.status == "completed"
    assert _attempt_statuses(merged) == ["killed", "completed"]
    assert (merged.model_dir / "config.json").is_file()
    _check_costs(merged)


# -- compare killed while writing ----------------------------------------------------------------------
def test_compare_killed_while_writing_leaves_the_previous_folder_whole(tmp_path):
    from study_builder import build_study

    root = tmp_path / "runs"
    build_study(root, name="s", seeds=(0,), n_items=12)
    compare = ["compare", "--bootstrap-samples", "100"]
    assert _invoke(root, *compare).exit_code == 0
    folder = root / "s-s0-compare"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert {"compare.md", "compare.json", "score_vs_hours.png"} <= before.keys()

    argv = _cli(*compare, "--seed", "1", "--runs-dir", str(root))
    Command(tmp_path, argv, pause="m2rl.compare.plots:plot_transfer:before:1").kill_when_paused()
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # the old output, whole
    assert [
        p for p in root.glob(".s-s0-compare.*.tmp") if (p / "compare.json").is_file()
    ]  # the new, unfinished

    assert _invoke(root, *compare, "--seed", "1").exit_code == 0
    after = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert after.keys() == before.keys() and after["compare.json"] != before["compare.json"]


# -- a corrupt manifest among good ones ------------------------------------------------------------------
def test_every_command_works_on_the_good_runs_beside_corrupt_manifests(tmp_path, tiny_model_dir):
    root = tmp_path / "runs"
    sft, experts = _lineage(root, tiny_model_dir)
    bad = plant_bad_manifests(root)
    good = {sft.id, *(r.id for r in experts)}

    listed = _invoke(root, "runs", "--json")
    assert listed.exit_code == 0, listed.output
    assert good <= {m["id"] for m in json.loads(listed.stdout)}
    warnings = listed.stderr.strip().splitlines()  # each bad file named once, on one line
    assert len(warnings) == len(bad) and all(any(p in w for p in bad) for w in warnings)

    evaluated = _invoke(root, "eval", "--all", *EVAL)
    assert evaluated.exit_code == 0, evaluated.output
    assert all(Ledger(root).get(i).manifest["metrics"]["eval"]["math"]["n_items"] == 2 for i in good)

    merged = _invoke(root, "merge", "--method", "paper_ties", "--experts", "s")
    assert merged.exit_code == 0, merged.output
    (merge,) = [r for r in Ledger(root).runs() if r.kind == "merge"]
    assert merge.status == "completed" and set(merge.manifest["parents"]) == good

    compared = _invoke(root, "compare", "--bootstrap-samples", "100")
    assert compared.exit_code == 0, compared.output
    rows = json.loads((root / "s-compare" / "compare.json").read_text())["rows"]
    assert {run["id"] for row in rows for run in row["runs"]} == good

    checked = _invoke(root, "runs", "--check")
    assert checked.exit_code == 1
    assert len(checked.stdout.strip().splitlines()) == len(bad) + 1  # one line per bad file, then the total


# -- the study executor's stage locks --------------------------------------------------------------------
class NotStarted:
    """A stage handle that never finishes."""

    def finished(self) -> bool:
        return False

    def error(self) -> str | None:
        return None

    def cancel(self) -> None:
        """Nothing to stop."""


class Submitted:
    """A backend that records what it was asked to start and starts nothing."""

    name = "recording"

    def __init__(self) -> None:
        self.calls: list[tuple[Path, bool]] = []

    def submit(self, spec_json, run_dir, resume, resources, logs):  # noqa: ARG002
        self.calls.append((Path(run_dir), resume))
        return NotStarted()


def _in_child(script: str) -> subprocess.Popen:
    """A python process running `script`; returns once it printed its first line."""
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_a_stage_waits_for_its_lock_and_follows_a_run_another_command_runs(tmp_path, tiny_model_dir):
    root = tmp_path / "runs"
    ledger = Ledger(root)
    sft = _completed_run(ledger, "sft", "t-sft", tiny_model_dir)
    spec = rl_job(compose_config(FAST_RL), "t-rl-math", ["math"], sft.id, "t")
    stage = Stage("t-rl-math", "rl", 0, (), lambda runs: spec)
    backend = Submitted()
    executor = Executor([stage], ledger, backend, MachineShare(slots=1, threads=1))
    state = executor.states["t-rl-math"]
    lock = root / ".locks" / f"t-rl-math.{spec.identity()}.lock"
    lock.parent.mkdir()
    holder = _in_child(
        f"""
        import fcntl, os, time
        fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        print("ready", flush=True)
        time.sleep(120)
        """
    )
    executor._start(state, 1)  # another command holds the stage: wait, create nothing
    assert (
        state.status == "pending" and backend.calls == [] and [r.id for r in Ledger(root).runs()] == [sft.id]
    )
    holder.kill()
    holder.wait()

    executor._start(state, 1)
    assert state.status == "running" and backend.calls == [(state.run.path, False)]
    assert state.run.status == "queued" and state.lock is not None  # held until the attempt owns the run
    stage_attempt = _in_child(
        f"""
        import time
        from m2rl.ledger import Run, attempt
        with attempt(Run.load({str(state.run.path)!r})):
            print("ready", flush=True)
            time.sleep(120)
        """
    )
    executor._hand_over(state)
    assert state.lock is None  # the attempt owns the run now: the next command may look

    other = Executor([stage], Ledger(root), backend, MachineShare(slots=1, threads=1))
    followed = other.states["t-rl-math"]
    other._start(followed, 1)  # a second command finds the run running: it follows, starts nothing
    assert isinstance(followed.handle, RunElsewhere) and followed.run.id == state.run.id
    assert len(backend.calls) == 1 and not followed.handle.finished()
    stage_attempt.kill()  # the first command's stage dies: the follower takes the stage over
    stage_attempt.wait()
    assert followed.handle.finished()
    other._finish(followed)
    assert followed.status == "pending"
    other._start(followed, 1)
    assert backend.calls[-1] == (state.run.path, True) and followed.run.id == state.run.id  # resumed
    assert len(Ledger(root).runs()) == 2


# -- launchers -------------------------------------------------------------------------------------------
def _launcher(*overrides: str) -> LauncherSpec:
    return validated(LauncherSpec, section(compose_config(list(overrides)), "launcher"), prefix="launcher.")


def test_a_busy_rendezvous_port_is_replaced_on_one_machine_and_named_across_machines():
    with socket.socket() as busy:
        busy.bind(("", 0))
        busy.listen()
        port = busy.getsockname()[1]
        one = _launcher("launcher=accelerate_ddp", f"launcher.main_process_port={port}")
        with claimed_port(one) as replaced:
            assert replaced not in (port, 0)
        many = _launcher(
            "launcher=accelerate_ddp",
            f"launcher.main_process_port={port}",
            "launcher.num_machines=2",
            "launcher.main_process_ip=10.0.0.1",
        )
        with pytest.raises(UserError, match=f"main_process_port={port} is in use"):
            with claimed_port(many):
                pass
    free = _launcher("launcher=accelerate_ddp", f"launcher.main_process_port={port}")
    with claimed_port(free) as kept:
        assert kept == port


def test_launches_starting_together_on_one_machine_claim_different_ports():
    """Both find the configured port free before either binds it; the claim gives the second another."""
    with socket.socket() as probe:
        probe.bind(("", 0))
        port = probe.getsockname()[1]
    launcher = _launcher("launcher=accelerate_ddp", f"launcher.main_process_port={port}")
    with claimed_port(launcher) as first, claimed_port(launcher) as second:
        assert first == port and second not in (port, 0)
    with claimed_port(launcher) as again:  # released when the launch ends
        assert again == port


def _training_processes(pid: int) -> tuple[list[psutil.Process], list[psutil.Process]]:
    """(every process under a command, its training ranks): accelerate starts ranks in sessions of
    their own."""
    try:
        tree = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return [], []
    ranks = []
    for proc in tree:
        with contextlib.suppress(psutil.Error):
            line = " ".join(proc.cmdline())
            if "m2rl.jobs.entry" in line and "accelerate" not in line:
                ranks.append(proc)
    return tree, ranks


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_stopping_a_two_process_accelerate_run_leaves_no_rank_alive(tmp_path, tiny_model_dir, signum):
    runs = tmp_path / "runs"
    sft = _completed_run(Ledger(runs), "sft", "sft", tiny_model_dir)
    with socket.socket() as busy:  # a leftover holding the configured port: the launch picks another
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("", 29500))
        busy.listen()
        command = Command(
            tmp_path,
            _cli("rl", "--domains", "math", "--from", sft.id, "--runs-dir", str(runs),
                 "launcher=accelerate_ddp",
                 "rl.prompts_per_step=4", "rl.num_generations=4", "rl.per_device_batch_size=8",
                 "rl.max_completion_length=16", "data.sizes.rl=16", "rl.steps=500", "rl.save_steps=0"),
        )  # fmt: skip
        deadline = time.time() + 300
        while True:
            tree, ranks = _training_processes(command.proc.pid)
            if len(ranks) == 2 and list(runs.glob("*/progress/rl.json")):
                break
            assert time.time() < deadline and command.proc.poll() is None, command.stderr[-3000:]
            time.sleep(0.5)
        os.kill(command.proc.pid, signum)  # the m2rl process alone, as a scheduler or a kill would
        status = command.wait(timeout=120)
    _, alive = psutil.wait_procs(tree, timeout=60)
    assert not alive, [p.cmdline() for p in alive]
    (run,) = [r for r in Ledger(runs).runs() if r.kind == "rl"]
    assert run.status == "failed" and "rendezvous on port" in (run.path / "launch.log").read_text()
    if signum == signal.SIGTERM:
        assert status == 143 and run.manifest["error"] == "interrupted (SIGTERM)", command.stderr
    else:
        assert run.killed and _attempt_statuses(run) == ["killed"]


# -- the reduced pipeline killed at each stage, and two pipelines at once ----------------------------------
SMALL = [
    *SMALL_STUDY,
    "sft.save_steps=2",
    "sft.logging_steps=1",
    "study.analyze=true",  # off on tiny; these tests kill and resume it too
]
MODELS = ["t-s0-sft", "t-s0-rl-math", "t-s0-rl-code", "t-s0-rl-mixed", "t-s0-merge-paper_ties"]
STAGES = [*MODELS, "t-s0-analyze"]  # the analyze stage's run holds a report, not a model
# Where each run of the pipeline is held and killed, in the order the stages reach them (one at a time).
KILLS = [
    ("sft, after its checkpoint-2", "transformers.trainer:Trainer._save_checkpoint:after:1"),
    ("an expert, while saving checkpoint-2", "transformers.trainer:Trainer._save_rng_state:before:2"),
    ("a merge", "m2rl.merge.run:merge_models:before:1"),
    ("an eval, after its first benchmark", "m2rl.evaluate.runner:_record:after:1"),
    ("compare, while writing", "m2rl.compare.plots:plot_transfer:before:1"),
]


def _pipeline(root: Path, *extra: str) -> list[str]:
    return _cli("pipeline", "--name", "t", "--runs-dir", str(root), *SMALL, *extra)


def _no_duplicate_steps(run: Run) -> None:
    steps = [r["step"] for r in run.read_metrics() if "loss" in r]
    assert steps == sorted(set(steps)) and steps[-1] == (4 if run.kind == "sft" else 2), (run.name, steps)


@pytest.mark.slow
def test_a_pipeline_killed_at_each_stage_completes_on_the_same_command_with_nothing_lost_or_doubled(tmp_path):
    root = tmp_path / "runs"
    bad = plant_bad_manifests(root)  # the pipeline works on the good runs around them
    for index, (where, hook) in enumerate(KILLS):
        Command(
            tmp_path, _pipeline(root, "study.max_parallel=1"), hook, name=f"kill{index}"
        ).kill_when_paused()
        if where.startswith("an expert"):
            expert = next(r for r in Ledger(root, report=None).runs() if r.name == "t-s0-rl-math")
            saved = expert.path / "checkpoints"
            assert (saved / "checkpoint-1" / "trainer_state.json").is_file()
            assert not (saved / "checkpoint-2" / "trainer_state.json").exists(), where  # cut short
    assert not (root / "t-compare").exists()  # never half-written

    final = Command(tmp_path, _pipeline(root, "study.max_parallel=1"), name="final")
    assert final.wait() == 0, final.stderr
    runs = Ledger(root, report=None).runs()
    assert sorted(r.name for r in runs if r.name != "template") == sorted(STAGES)  # each stage once
    by_name = {r.name: r for r in runs}
    assert all(r.status == "completed" for r in by_name.values() if r.name in STAGES)
    assert _attempt_statuses(by_name["t-s0-sft"]) == ["killed", "completed"]
    assert by_name["t-s0-sft"].manifest["resumed_from"].endswith("checkpoint-2")
    assert _attempt_statuses(by_name["t-s0-rl-math"]) == ["killed", "completed"]
    assert by_name["t-s0-rl-math"].manifest["resumed_from"].endswith("checkpoint-1")  # the complete one
    assert _attempt_statuses(by_name["t-s0-merge-paper_ties"]) == ["killed", "completed"]
    for name in MODELS:
        run = by_name[name]
        _check_costs(run)
        assert set(run.manifest["metrics"]["eval"]) == {"math", "code", "science", "if"}, name
        if run.kind != "merge":
            _no_duplicate_steps(run)
    rows = (root / "t-compare" / "compare.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + len(MODELS)
    checked = m2rl("runs", "--check", runs_dir=root)
    assert checked.returncode == 1 and len(checked.stdout.strip().splitlines()) == len(bad) + 1


@pytest.mark.slow
def test_two_pipelines_started_together_train_each_stage_once(tmp_path):
    root = tmp_path / "runs"
    first = Command(tmp_path, _pipeline(root), name="first")
    second = Command(tmp_path, _pipeline(root), name="second")
    assert first.wait() == 0, first.stderr
    assert second.wait() == 0, second.stderr
    runs = Ledger(root).runs()
    assert sorted(r.name for r in runs) == sorted(STAGES)
    assert all(_attempt_statuses(r) == ["completed"] for r in runs), {
        r.name: _attempt_statuses(r) for r in runs
    }
    models = [r for r in runs if r.kind != "analyze"]
    assert all(set(r.manifest["metrics"]["eval"]) == {"math", "code", "science", "if"} for r in models)
    assert (root / "t-compare" / "compare.md").is_file() and not list(root.glob(".t-compare.*"))
