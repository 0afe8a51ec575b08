"""The study's Slurm executor against a real Slurm: a one-node cluster from Debian's packages, started by
scripts/slurm-one-node.sh in a temporary directory for this module and stopped after it.

Every stage is a real sbatch job run by slurmd; the cluster has no slurmdbd, so `sacct` answers
"accounting storage is disabled" and the executor must read job states from the controller. Each test
checks through `squeue`/`scontrol` that Slurm itself saw the jobs. Marked `engines`: `make test-engines`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from m2rl.config import compose_config
from m2rl.jobs.build import eval_job
from m2rl.ledger import Ledger, attempt
from m2rl.specs import SlurmSettings
from m2rl.study.backends import SLURM_JOBS_FILE, SlurmBackend, recorded_jobs
from m2rl.study.executor import Executor, MachineShare
from m2rl.study.plan import Stage

from cli_helpers import SMALL_STUDY, as_foreground_job

pytestmark = pytest.mark.engines

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "slurm-one-node.sh"
# The tiny study reduced to SFT, the math expert and their two evals: four Slurm jobs.
SLURM_STUDY = [
    *[o for o in SMALL_STUDY if not o.startswith(("study.domains", "study.merge_methods"))],
    "study.domains=[math]",
    "study.merge_methods=[]",
    "study.executor=slurm",
    "study.slurm.gpus_per_job=0",
    "study.slurm.time_min=30",
    "study.slurm.poll_s=0.5",
]


@dataclass(frozen=True)
class Cluster:
    dir: Path
    env: dict[str, str]

    def slurm(self, *command: str) -> subprocess.CompletedProcess:
        return subprocess.run(command, capture_output=True, text=True, timeout=60, env=self.env)

    def queued(self) -> dict[str, str]:
        """Job id -> state of every job squeue lists."""
        listed = self.slurm("squeue", "-h", "-o", "%i %T")
        assert listed.returncode == 0, listed.stderr
        return dict(line.split() for line in listed.stdout.splitlines() if line.strip())

    def job(self, job_id: str) -> dict[str, str]:
        """`scontrol show job`'s fields of a job (the controller keeps ended jobs for MinJobAge=300 s)."""
        shown = self.slurm("scontrol", "show", "job", "-o", job_id)
        assert shown.returncode == 0, shown.stderr
        return dict(field.split("=", 1) for field in shown.stdout.split() if "=" in field)


def _missing() -> str:
    """Why the cluster cannot start here ("" when it can)."""
    installed = all(
        shutil.which(c) or Path("/usr/sbin", c).exists() for c in ("slurmctld", "slurmd", "munged")
    )
    if os.geteuid() != 0:
        return "a one-node Slurm needs root (slurmd runs as root)" + (
            "" if installed else " and slurm-wlm, munge installed"
        )
    if not installed and shutil.which("apt-get") is None:
        return "slurm-wlm and munge are not installed and there is no apt-get to install them"
    return ""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    missing = _missing()
    if missing:
        pytest.skip(missing)
    where = tmp_path_factory.mktemp("slurm")
    started = subprocess.run([str(SCRIPT), "start", str(where)], capture_output=True, text=True, timeout=600)
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == f"export SLURM_CONF={where}/slurm.conf"
    assert (where / "env").read_text().strip() == started.stdout.strip()
    env = dict(os.environ, SLURM_CONF=str(where / "slurm.conf"), HF_HUB_OFFLINE="1", COLUMNS="200")
    pids = [int((where / f).read_text()) for f in ("munge/munged.pid", "run/slurmctld.pid", "run/slurmd.pid")]
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SLURM_CONF", env["SLURM_CONF"])  # for the executor run in this process
            yield Cluster(where, env)
    finally:
        stopped = subprocess.run(
            [str(SCRIPT), "stop", str(where)], capture_output=True, text=True, timeout=120
        )
        assert stopped.returncode == 0, stopped.stderr
        time.sleep(0.5)
        assert not [pid for pid in pids if _alive(pid)], "a daemon outlived `stop`"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return " Z " not in Path(f"/proc/{pid}/stat").read_text()  # a zombie is not running
    except OSError:
        return False


def _pipeline(cluster: Cluster, runs: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "m2rl.cli", "pipeline", "--name", "t", "--runs-dir", str(runs)]
    return subprocess.Popen(
        [*command, *SLURM_STUDY, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cluster.env,
        preexec_fn=as_foreground_job,
    )


def _watch(cluster: Cluster, proc: subprocess.Popen, timeout: float = 300) -> tuple[str, dict[str, set[str]]]:
    """Wait for the pipeline, collecting every job id squeue listed meanwhile with its states; its stderr."""
    seen: dict[str, set[str]] = {}
    deadline = time.time() + timeout
    while proc.poll() is None and time.time() < deadline:
        for job, state in cluster.queued().items():
            seen.setdefault(job, set()).add(state)
        time.sleep(0.2)
    _, stderr = proc.communicate(timeout=30)
    return stderr, seen


def _stage_logs(runs: Path) -> dict[str, Path]:
    """Every stage's logs folder that recorded a Slurm job: training runs' logs/, evals' logs/eval/."""
    return {str(p.parent.relative_to(runs)): p.parent for p in sorted(runs.glob("**/" + SLURM_JOBS_FILE))}


def test_every_stage_of_the_study_runs_as_a_slurm_job(cluster, tmp_path):
    runs = tmp_path / "runs"
    stderr, seen = _watch(cluster, _pipeline(cluster, runs, "study.slurm.cpus_per_job=1"))
    assert "Traceback" not in stderr
    assert "partition debug: the cluster's default" in stderr
    logs = _stage_logs(runs)
    assert len(logs) == 4, stderr  # sft, rl-math and the eval of each
    jobs = {name: recorded_jobs(folder) for name, folder in logs.items()}
    assert all(len(ids) == 1 for ids in jobs.values()), jobs  # one submission per stage
    ids = [ids[0] for ids in jobs.values()]
    assert len(set(ids)) == 4
    assert set(ids) <= set(seen), (ids, seen)  # squeue listed every one of them while it ran
    assert any("RUNNING" in seen[i] for i in ids)
    for name, folder in logs.items():
        (job,) = jobs[name]
        assert f"Slurm job {job}" in stderr
        shown = cluster.job(job)  # slurmctld ran it to completion
        assert shown["JobState"] == "COMPLETED" and shown["ExitCode"] == "0:0", shown
        assert shown["StdErr"] == str(folder / f"{job}_0_log.err")
        assert (folder / f"{job}_0_log.err").is_file() and (folder / f"{job}_submission.sh").is_file()
    # accounting is off: submitit alone (sacct) would have read every job as UNKNOWN and never ended
    sacct = cluster.slurm("sacct", "-j", ids[0])
    assert "accounting storage is disabled" in sacct.stdout + sacct.stderr
    ledger_runs = Ledger(runs).runs()
    assert {r.name for r in ledger_runs} == {"t-s0-sft", "t-s0-rl-math"}
    for run in ledger_runs:
        assert run.status == "completed"
        assert [a["slurm_job"] for a in run.manifest["attempts"]] == recorded_jobs(run.path / "logs")
    assert not cluster.queued()


def test_a_failing_stage_is_reported_with_its_slurm_log_and_error_line(cluster, tmp_path, tiny_model_dir):
    ledger = Ledger(tmp_path / "runs")
    model = ledger.create("sft", "m0", {})
    with attempt(model):
        shutil.copytree(tiny_model_dir, model.model_dir)
    cfg = compose_config(["data.sizes.test=2", "eval.k=1", "eval.benchmarks.math.domain=nope"])
    stages = [
        Stage("broken", "eval", 0, (), lambda runs: eval_job(cfg, model.id), evaluates="broken"),
        Stage("after", "eval", 0, ("broken",), lambda runs: eval_job(cfg, model.id), evaluates="after"),
    ]
    backend = SlurmBackend(SlurmSettings(gpus_per_job=0, cpus_per_job=1, time_min=10))
    states = Executor(stages, ledger, backend, MachineShare(slots=2, threads=1), poll_s=0.5).run()
    broken = states["broken"]
    assert broken.status == "failed" and states["after"].status == "skipped"
    (job,) = recorded_jobs(model.path / "logs" / "eval")
    log = model.path / "logs" / "eval" / f"{job}_0_log.err"
    assert "unknown built-in domain 'nope'" in broken.error.splitlines()[0], broken.error
    assert broken.error.endswith(f"(Slurm job {job} FAILED, log {log})")
    assert "unknown built-in domain 'nope'" in log.read_text()  # the traceback is in that log
    shown = cluster.job(job)
    assert shown["JobState"] == "FAILED" and shown["StdErr"] == str(log)


def test_ctrl_c_cancels_the_studys_jobs_and_exits_130(cluster, tmp_path):
    runs = tmp_path / "runs"
    proc = _pipeline(cluster, runs, "study.slurm.cpus_per_job=1", "sft.max_steps=5000")
    deadline, job = time.time() + 120, None
    while time.time() < deadline and job is None:  # SFT's job started training in slurmd's hands
        queued = cluster.queued()
        records = list(runs.glob(f"*/logs/{SLURM_JOBS_FILE}"))
        progress = list(runs.glob("*-sft-*/progress/*.json"))
        if records and progress and queued.get(recorded_jobs(records[0].parent)[0]) == "RUNNING":
            job = recorded_jobs(records[0].parent)[0]
        time.sleep(0.2)
    assert job is not None, proc.stderr.read() if proc.poll() is not None else "SFT never ran"
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the terminal's foreground process group
    _, stderr = proc.communicate(timeout=90)
    assert proc.returncode == 130, stderr
    assert "m2rl: interrupted by SIGINT" in stderr and "Traceback" not in stderr
    assert not cluster.queued()  # the study waited for its job to end
    assert cluster.job(job)["JobState"] == "CANCELLED"
    (run,) = Ledger(runs).runs()
    assert run.status == "failed" and run.manifest["attempts"][-1]["slurm_job"] == job


def test_a_killed_study_rerun_follows_its_jobs_and_runs_nothing_twice(cluster, tmp_path):
    runs = tmp_path / "runs"
    # Another user's job holds one of the two CPUs: the study's jobs run one at a time, so after SFT one
    # of its stages waits in the queue.
    held = cluster.slurm(
        "sbatch", "--parsable", "-c", "1", "-J", "other", "-o", "/dev/null", "--wrap", "sleep 600"
    )
    assert held.returncode == 0, held.stderr
    other = held.stdout.strip()
    try:
        while cluster.queued().get(other) != "RUNNING":
            time.sleep(0.1)
        proc = _pipeline(cluster, runs, "study.slurm.cpus_per_job=1")
        deadline = time.time() + 180
        study_jobs: dict[str, str] = {}
        while time.time() < deadline and proc.poll() is None:
            study_jobs = {job: state for job, state in cluster.queued().items() if job != other}
            if sorted(study_jobs.values()) == ["PENDING", "RUNNING"]:
                break
            time.sleep(0.2)
        assert sorted(study_jobs.values()) == ["PENDING", "RUNNING"], proc.stderr.read()
        os.killpg(proc.pid, signal.SIGKILL)  # the study dies at once; its jobs are Slurm's and go on
        proc.wait(timeout=30)
        stderr, _ = _watch(cluster, _pipeline(cluster, runs, "study.slurm.cpus_per_job=1"))
    finally:
        cluster.slurm("scancel", other)
    assert "Traceback" not in stderr
    (pending,) = [job for job, state in study_jobs.items() if state == "PENDING"]
    assert f"Slurm job {pending} (submitted by an earlier command, followed)" in stderr  # not submitted again
    logs = _stage_logs(runs)
    jobs = {name: recorded_jobs(folder) for name, folder in logs.items()}
    assert len(jobs) == 4 and all(len(ids) == 1 for ids in jobs.values()), jobs  # nothing submitted twice
    assert set(study_jobs) <= {ids[0] for ids in jobs.values()}
    for (job,) in jobs.values():
        assert cluster.job(job)["JobState"] == "COMPLETED"
    ledger_runs = Ledger(runs).runs()
    assert sorted(r.name for r in ledger_runs) == ["t-s0-rl-math", "t-s0-sft"]  # no run made twice
    for run in ledger_runs:
        assert run.status == "completed"
        assert [a["slurm_job"] for a in run.manifest["attempts"]] == recorded_jobs(run.path / "logs")
    deadline = time.time() + 30
    while cluster.queued() and time.time() < deadline:  # the other user's job ends after its scancel
        time.sleep(0.2)
    assert not cluster.queued()


def test_a_slurm_study_without_sbatch_or_controller_is_refused_before_any_run(cluster, tmp_path):
    runs = tmp_path / "runs"
    base = [sys.executable, "-m", "m2rl.cli", "pipeline", "--runs-dir", str(runs), *SLURM_STUDY]
    no_slurm = dict(cluster.env, PATH=str(Path(sys.executable).parent))  # no sbatch on it
    refused = subprocess.run(base, capture_output=True, text=True, timeout=120, env=no_slurm)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "m2rl: error: study.executor=slurm: no sbatch on PATH (Slurm's client commands are not installed "
        "here, or not on PATH); run the study where sbatch works, or set study.executor=local"
    ]
    conf = tmp_path / "slurm.conf"  # a controller on a port where none listens
    conf.write_text(
        (cluster.dir / "slurm.conf").read_text().replace("SlurmctldPort=", "SlurmctldPort=1") + "\n"
    )
    unreachable = subprocess.run(
        base, capture_output=True, text=True, timeout=120, env=dict(cluster.env, SLURM_CONF=str(conf))
    )
    assert unreachable.returncode == 2, unreachable.stderr
    (line,) = unreachable.stderr.strip().splitlines()
    assert line.startswith("m2rl: error: study.executor=slurm: the Slurm controller cannot be reached (sinfo")
    assert not runs.exists()
