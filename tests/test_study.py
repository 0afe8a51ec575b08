"""The study: its plan, job specs, the executor (order, concurrency, failures, interrupts, resume), Slurm."""

from __future__ import annotations

import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from m2rl.config import compose_config
from m2rl.errors import Interrupted, UserError
from m2rl.jobs.build import eval_job, merge_job, rl_job, sft_job
from m2rl.ledger import Ledger, attempt
from m2rl.specs import load_spec
from m2rl.study.backends import LocalBackend
from m2rl.study.executor import Executor, MachineShare, machine_share
from m2rl.study.plan import Stage, estimated_gpu_hours, plan

from cli_helpers import ONE_SEED, SMALL_STUDY, as_foreground_job, m2rl

SLURM_STANDINS = Path(__file__).parent / "fixtures" / "slurm"


# ------------------------------------------------------------------------------------- the plan
def test_tiny_plan_replicates_the_lineage_per_seed():
    cfg = compose_config([*ONE_SEED, "study.seeds=2", "study.analyze=true"])
    stages = plan(cfg, "s")
    names = {s.name: s for s in stages}
    models = 1 + 4 + 1 + len(cfg.study.merge_methods)  # SFT, experts, the mixed run, merges
    for seed in (0, 1):
        assert names[f"s-s{seed}-rl-mixed"].domains == ("math", "code", "science", "if")
        assert names[f"s-s{seed}-rl-math"].deps == (f"s-s{seed}-sft",)
        assert set(names[f"s-s{seed}-merge-paper_ties"].deps) == {
            f"s-s{seed}-sft",
            *(f"s-s{seed}-rl-{d}" for d in ("math", "code", "science", "if")),
        }
        assert all(names[f"s-s{seed}-{m}-eval"].kind == "eval" for m in ("sft", "rl-mixed", "merge-paper_ta"))
        assert len(names[f"s-s{seed}-analyze"].deps) == models  # after the eval of every model of the seed
    assert len(stages) == 2 * (2 * models + 1)  # per seed: each model made and evaluated, then analyze
    order = [s.name for s in stages]
    assert all(order.index(d) < order.index(s.name) for s in stages for d in s.deps)


def test_a_seeds_evals_are_the_same_alone_or_among_other_seeds():
    """The eval of seed 1's models samples with seed 1 whether the study runs seeds [0, 1] or seed=1."""
    runs = {"s-s1-rl-code": SimpleNamespace(id="run-code-1")}

    def eval_spec(overrides):
        stages = {s.name: s for s in plan(compose_config(overrides), "s")}
        return stages["s-s1-rl-code-eval"].build(runs)

    together, alone = eval_spec(["study.seeds=[0,1]"]), eval_spec(["seed=1"])
    assert together == alone and together.seed == 1


def test_the_evals_behind_the_expert_claims_get_claim_k_samples_per_item():
    """SFT (every claim's baseline) on every domain and each expert on its own domain get at least
    study.claim_k samples per item; every other eval keeps eval.k, and a benchmark's own larger k stays."""
    runs = {name: SimpleNamespace(id=f"run-{name}") for name in ("s-sft", "s-rl-code", "s-rl-mixed")}
    runs["s-merge-paper_ties"] = SimpleNamespace(id="run-merge")

    def ks(overrides, stage):
        stages = {s.name: s for s in plan(compose_config([*ONE_SEED, "study.claim_k=4", *overrides]), "s")}
        spec = stages[f"{stage}-eval"].build({k.replace("s-", "s-s0-", 1): v for k, v in runs.items()})
        return {name: bench.get("k", spec.eval.k) for name, bench in spec.eval.benchmarks.items() if bench}

    assert ks([], "s-s0-sft") == {"math": 4, "code": 4, "science": 4, "if": 4}
    assert ks([], "s-s0-rl-code") == {"math": 2, "code": 4, "science": 2, "if": 2}
    assert ks([], "s-s0-rl-mixed") == {"math": 2, "code": 2, "science": 2, "if": 2}
    assert ks([], "s-s0-merge-paper_ties") == {"math": 2, "code": 2, "science": 2, "if": 2}
    assert ks(["+eval.benchmarks.code.k=8"], "s-s0-rl-code")["code"] == 8
    assert ks(["study.claim_k=null"], "s-s0-sft") == {"math": 2, "code": 2, "science": 2, "if": 2}
    assert ks(["eval.benchmarks.code=null"], "s-s0-sft") == {"math": 4, "science": 4, "if": 4}


def test_shared_sft_trains_once_for_every_seed():
    stages = plan(compose_config(["study.seeds=[3,7]", "study.share_sft=true"]), "s")
    assert [s.name for s in stages if s.kind == "sft"] == ["s-sft"]
    assert {s.deps for s in stages if s.name.endswith("-rl-math")} == {("s-sft",)}


def test_bad_seeds_are_one_line_errors():
    for value, message in (("0", "at least one seed"), ("[1,1]", "distinct"), ("[a]", "list of integer")):
        with pytest.raises(UserError, match=message):
            plan(compose_config([f"study.seeds={value}"]), "s")


def test_paper_plan_estimates_the_papers_gpu_hours():
    cfg = compose_config(["preset=paper"])
    stages = plan(cfg, "paper")
    hours = {s.name: estimated_gpu_hours(cfg, s) for s in stages if s.kind == "rl"}
    assert hours["paper-s0-rl-math"] == pytest.approx(2172.8)
    assert hours["paper-s0-rl-mixed"] == pytest.approx(2166.4)
    experts = sum(v for k, v in hours.items() if k != "paper-s0-rl-mixed")
    assert hours["paper-s0-rl-mixed"] / experts == pytest.approx(0.332, abs=1e-3)
    assert [s.method for s in stages if s.kind == "merge"] == [
        "paper_average",
        "paper_ta",
        "paper_ties",
        "paper_dare_ta",
        "paper_dare_ties",
        "paper_sce",
        "ram",
    ]


def test_paper_pipeline_dry_run_prints_the_plan_and_the_cost_ratio(tmp_path):
    result = m2rl("pipeline", "preset=paper", "--dry-run", runs_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "study plan" in result.stdout and "2172.8" in result.stdout and "33.2%" in result.stdout
    assert not tmp_path.exists() or not any(tmp_path.iterdir())
    tiny = m2rl("pipeline", "--dry-run", runs_dir=tmp_path)
    assert "GPU-hours" not in tiny.stdout and "CPU-hours" in tiny.stdout


@pytest.mark.parametrize("preset", ["tiny", "paper"])
def test_the_plan_names_every_stage_whole_at_80_columns(tmp_path, preset):
    """A table where it fits, one line per stage where it does not: never a name split over lines."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, HF_HUB_OFFLINE="1", COLUMNS="80")
    command = [sys.executable, "-m", "m2rl.cli", "pipeline", f"preset={preset}", "--dry-run"]
    result = subprocess.run([*command, "--runs-dir", str(tmp_path)], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    for stage in plan(compose_config([f"preset={preset}"]), "study"):
        assert re.search(rf"(^|[ │]){re.escape(stage.name)}([: │]|$)", result.stdout, re.M), stage.name


# ------------------------------------------------------------------------------------ job specs
def test_job_specs_round_trip_and_pin_what_decides_their_output():
    cfg = compose_config([])
    specs = [
        sft_job(cfg, "a-sft"),
        rl_job(cfg, "a-rl", ["math"], "sft-id"),
        merge_job(cfg, "paper_ties", ["e1", "e2"], "sft-id", "a-merge"),
        eval_job(cfg, "run-id"),
    ]
    for spec in specs:
        assert pickle.loads(pickle.dumps(spec)) == spec
        assert load_spec(spec.to_json()) == spec
    sft, rl = specs[0], specs[1]

    def identities(*overrides: str) -> tuple[str, str]:
        c = compose_config(list(overrides))
        return sft_job(c, "a-sft").identity(), rl_job(c, "a-rl", ["math"], "sft-id").identity()

    assert identities("eval.k=8", "study.merge_methods=[ties]", "torch_threads=1") == (
        sft.identity(),
        rl.identity(),
    )
    assert identities("rl.steps=7")[0] == sft.identity() and identities("rl.steps=7")[1] != rl.identity()
    assert identities("sft.epochs=1")[0] != sft.identity()
    new_sft, new_rl = identities("data.difficulty.code=1")  # the data decides both
    assert new_sft != sft.identity() and new_rl != rl.identity()
    assert rl_job(cfg, "a-rl", ["math"], "other-sft").identity() != rl.identity()


@pytest.mark.parametrize(
    "override, message",
    [
        ("rl.steps=abc", "rl.steps=abc: Input should be a valid integer"),
        ("rl.steps=-1", "rl.steps=-1: Input should be greater than or equal to 1"),
        ("rl.top_p=1.5", "rl.top_p=1.5"),
        ("+rl.stepz=3", "rl.stepz: unknown key; did you mean rl.steps?"),
        ("sft.epochs=0", "sft.epochs=0"),
        ("launcher.num_processes=0", "launcher.num_processes=0"),
        ("study.max_parallel=many", "study.max_parallel=many"),
        (
            "launcher=accelerate_ddp",
            "sft.global_batch_size=32 is not a multiple of per_device_batch_size x processes = 64",
        ),
    ],
)
def test_bad_values_are_rejected_before_any_run_with_one_line(tmp_path, override, message):
    result = m2rl("pipeline", override, runs_dir=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_unknown_key_without_plus_suggests_the_known_one(tmp_path):
    result = m2rl("rl", "--domains", "math", "rl.stepz=3", runs_dir=tmp_path)
    assert result.returncode == 2 and "did you mean rl.steps?" in result.stderr


def test_machine_share_never_exceeds_the_cores():
    settings = __import__("m2rl.study", fromlist=["study_settings"]).study_settings(compose_config([]))
    idle = machine_share(settings, cores=2, load=0.0)
    assert (idle.slots, idle.threads) == (2, 2)
    assert idle.threads_for(running_after=1) == 2 and idle.threads_for(running_after=5) == 1
    busy = machine_share(settings, cores=2, load=1.2)  # one core already busy elsewhere
    assert (busy.slots, busy.threads) == (1, 1)
    assert MachineShare(slots=8, threads=8).threads_for(3) == 2


# ------------------------------------------------------------------------------------- executor
EVAL = [
    "data.sizes.test=2",
    "eval.k=1",
    "eval.max_new_tokens=8",
    "~eval.benchmarks.code",
    "~eval.benchmarks.science",
    "~eval.benchmarks.if",
]


@pytest.fixture
def models(tmp_path, tiny_model_dir):
    """A ledger with five completed "sft" runs holding the tiny model, to evaluate in stages."""
    ledger = Ledger(tmp_path / "runs")
    runs = []
    for index in range(5):
        run = ledger.create("sft", f"m{index}", {})
        with attempt(run):
            shutil.copytree(tiny_model_dir, run.model_dir)
        runs.append(run)
    return ledger, runs


def _eval_stage(name: str, run_id: str, deps: tuple[str, ...] = (), bad: bool = False) -> Stage:
    overrides = EVAL + (["eval.benchmarks.math.domain=nope"] if bad else [])
    cfg = compose_config(overrides)
    return Stage(name, "eval", 0, deps, lambda runs: eval_job(cfg, run_id), evaluates=name)


class RecordingBackend(LocalBackend):
    """The local backend, recording how many stages ran at once when each was submitted."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.handles: list = []
        self.concurrent: list[int] = []

    def submit(self, spec_json, run_dir, resume, resources, logs):
        self.concurrent.append(1 + sum(not h.finished() for h in self.handles))
        handle = super().submit(spec_json, run_dir, resume, resources, logs)
        self.handles.append(handle)
        return handle


def test_executor_follows_the_graph_within_the_concurrency_limit(models):
    ledger, runs = models
    stages = [
        _eval_stage("a", runs[0].id),
        _eval_stage("b", runs[1].id, ("a",)),
        _eval_stage("c", runs[2].id, ("a",)),
        _eval_stage("d", runs[3].id, ("a",)),
        _eval_stage("e", runs[4].id, ("b", "c")),
    ]
    events = []
    backend = RecordingBackend()
    executor = Executor(stages, ledger, backend, MachineShare(slots=2, threads=2), poll_s=0.05)
    executor.on_event = lambda state: events.append((state.stage.name, state.status))
    states = executor.run()
    assert all(s.status == "completed" for s in states.values()), {n: s.error for n, s in states.items()}
    assert max(backend.concurrent) == 2
    order = [name for name, status in events]
    for stage in stages:
        started = events.index((stage.name, "running"))
        for dep in stage.deps:
            assert events.index((dep, "completed")) < started
    assert order.count("a") == 2 and len(order) == 10
    assert all(ledger.get(r.id).manifest["metrics"]["eval"]["math"]["n_items"] == 2 for r in runs)


def test_a_failed_stage_stops_its_dependents_not_its_siblings(models):
    ledger, runs = models
    stages = [
        _eval_stage("root", runs[0].id),
        _eval_stage("broken", runs[1].id, ("root",), bad=True),
        _eval_stage("sibling", runs[2].id, ("root",)),
        _eval_stage("after-broken", runs[3].id, ("broken",)),
        _eval_stage("after-after", runs[4].id, ("after-broken", "sibling")),
    ]
    executor = Executor(stages, ledger, LocalBackend(), MachineShare(slots=2, threads=2), poll_s=0.05)
    states = executor.run()
    status = {name: state.status for name, state in states.items()}
    assert status == {
        "root": "completed",
        "broken": "failed",
        "sibling": "completed",
        "after-broken": "skipped",
        "after-after": "skipped",
    }
    assert "unknown built-in domain 'nope'" in states["broken"].error
    assert (runs[1].path / "logs" / "eval" / "stage.log").is_file()


def test_reused_stages_are_not_run_again(models):
    ledger, runs = models
    stages = [_eval_stage("a", runs[0].id)]
    Executor(stages, ledger, LocalBackend(), MachineShare(slots=1, threads=1), poll_s=0.05).run()
    backend = RecordingBackend()
    states = Executor(stages, ledger, backend, MachineShare(slots=1, threads=1), poll_s=0.05).run()
    assert states["a"].status == "reused" and backend.handles == []


# ------------------------------------------------------------------- the pipeline as a process


def _pipeline(tmp_path: Path, *extra: str, env: dict | None = None) -> subprocess.Popen:
    command = [sys.executable, "-m", "m2rl.cli", "pipeline", "--name", "t", "--runs-dir", str(tmp_path)]
    environment = dict(os.environ, HF_HUB_OFFLINE="1", COLUMNS="200", **(env or {}))
    return subprocess.Popen(
        [*command, *SMALL_STUDY, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
        preexec_fn=as_foreground_job,
    )


def _wait_for_running_rl(root: Path, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for manifest in root.glob("*/run.json"):
            text = manifest.read_text()
            if (
                '"kind": "rl"' in text
                and '"status": "running"' in text
                and (manifest.parent / "progress").is_dir()
            ):
                return
        time.sleep(0.2)
    raise AssertionError("no RL stage started")


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_stops_every_stage_and_marks_it_failed(tmp_path, signum, status):
    proc = _pipeline(tmp_path, "rl.steps=200", "rl.mixed_steps=200")
    _wait_for_running_rl(tmp_path)
    descendants = psutil.Process(proc.pid).children(recursive=True)
    if signum == signal.SIGINT:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground process group
    else:
        proc.send_signal(signal.SIGTERM)  # SIGTERM to the study alone
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == status, stderr
    assert "Traceback" not in stderr
    assert "m2rl: interrupted by SIG" in stderr and "marked failed" in stderr
    time.sleep(1)
    alive = [p for p in descendants if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, [p.cmdline() for p in alive]
    runs = Ledger(tmp_path).runs()
    rl = [r for r in runs if r.kind == "rl"]
    assert rl and all(r.status == "failed" for r in rl)
    assert all(r.status in ("completed", "failed") for r in runs)


@pytest.mark.slow
def test_pipeline_resumes_after_a_kill_and_reuses_everything_on_a_rerun(tmp_path):
    proc = _pipeline(tmp_path, "rl.steps=6", "rl.mixed_steps=6")
    deadline = time.time() + 300
    while time.time() < deadline and not list(
        tmp_path.glob("*-rl-*/checkpoints/checkpoint-2/trainer_state.json")
    ):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole study dies at once (power loss, OOM killer)
    proc.wait(timeout=30)
    before = {r.name: r.id for r in Ledger(tmp_path).runs()}
    # stages run two at once: the one that reached checkpoint-2 resumes from it; another may have had none
    checkpointed = {r.name for r in Ledger(tmp_path).runs() if r.kind == "rl" and r.complete_checkpoints()}
    assert checkpointed

    again = _pipeline(tmp_path, "rl.steps=6", "rl.mixed_steps=6")
    _, stderr = again.communicate(timeout=900)
    assert again.returncode == 0, stderr
    runs = Ledger(tmp_path).runs()
    assert all(r.status == "completed" for r in runs)
    assert len({r.name for r in runs}) == len(runs)  # no stage trained twice
    resumed = [
        r for r in runs if r.name in before and r.id == before[r.name] and len(r.manifest["attempts"]) == 2
    ]
    assert checkpointed <= {r.name for r in resumed}
    assert all(r.manifest["resumed_from"] for r in resumed if r.name in checkpointed)
    for run in resumed:
        assert run.device_hours == pytest.approx(sum(a["device_hours"] for a in run.manifest["attempts"]))
    assert (tmp_path / "t-compare" / "compare.md").is_file()

    rerun = _pipeline(tmp_path, "rl.steps=6", "rl.mixed_steps=6")
    _, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0 and stderr.count("reusing completed run") >= len(runs)
    assert len(Ledger(tmp_path).runs()) == len(runs)


# ------------------------------------------------------------------------------------ Slurm
def test_slurm_executor_submits_each_stage_through_submitit(tmp_path):
    fake = tmp_path / "slurm-state"
    env = {
        "PATH": f"{SLURM_STANDINS}:{os.environ['PATH']}",
        "FAKE_SLURM_DIR": str(fake),
    }
    proc = _pipeline(
        tmp_path / "runs",
        "study.executor=slurm",
        "study.slurm.partition=gpu",
        "study.slurm.gpus_per_job=0",
        "study.slurm.cpus_per_job=1",
        "study.slurm.time_min=30",
        "study.slurm.poll_s=0.5",
        "+study.slurm.additional.constraint=h100",
        "study.domains=[math]",
        "study.merge_methods=[]",
        env=env,
    )
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    scripts = sorted(fake.glob("*.sbatch"))
    assert len(scripts) == 4  # sft, its eval, the math expert, its eval
    text = scripts[0].read_text()
    for line in (
        "--partition=gpu",
        "--time=30",
        "--cpus-per-task=1",
        "--constraint=h100",
        "submitit.core._submit",
    ):
        assert line in text
    assert all((fake / f"{s.stem}.state").read_text().strip() == "COMPLETED" for s in scripts)
    runs = Ledger(tmp_path / "runs").runs()
    assert {r.name for r in runs} == {"t-s0-sft", "t-s0-rl-math"} and all(
        r.status == "completed" for r in runs
    )
    assert all(list((r.path / "logs").glob("*_log.out")) for r in runs)


def test_interrupted_error_has_the_signal_exit_status():
    assert Interrupted(signal.SIGINT).exit_status == 130 and Interrupted(signal.SIGTERM).exit_status == 143
