"""The Slurm plan of `m2rl pipeline --dry-run`: what each job asks for, the sbatch script submitit would
write, the partition check against `sinfo`, and the launcher's processes and machines as GPUs and nodes.

The CLI tests run the installed `m2rl` executable with the stand-in Slurm commands of tests/fixtures/slurm
on PATH (sinfo lists $FAKE_SLURM_PARTITIONS, the default marked with `*`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from m2rl.config import compose_config
from m2rl.errors import UserError
from m2rl.jobs.build import eval_job, merge_job, rl_job, sft_job
from m2rl.specs import SlurmSettings
from m2rl.study.backends import (
    SlurmBackend,
    check_partition,
    sbatch_preview,
    slurm_request,
    spec_request,
)

M2RL = Path(sys.executable).with_name("m2rl")  # the installed console script
SLURM_STANDINS = Path(__file__).parent / "fixtures" / "slurm"
PAPER_SLURM = ["pipeline", "preset=paper", "study.executor=slurm", "--dry-run"]


def m2rl(*args: str, runs_dir: Path, path: str | None = None, **env: str) -> subprocess.CompletedProcess:
    """The real `m2rl` executable; PATH starts with the Slurm stand-ins unless `path` is given."""
    full_env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        COLUMNS="250",
        PATH=path if path is not None else f"{SLURM_STANDINS}:{os.environ['PATH']}",
        **env,
    )
    command = [str(M2RL), *args, "--runs-dir", str(runs_dir)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=full_env)


def job_rows(stdout: str) -> dict[str, list[str]]:
    """The Slurm job table's rows by stage: kind, nodes, GPUs, CPUs, time limit, memory, partition, est."""
    table = stdout[stdout.index("Slurm jobs (") :]
    rows = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if cells and cells[0].startswith("study-"):
            rows[cells[0]] = cells[1:]
        elif rows and line.startswith("└"):
            break
    return rows


# ------------------------------------------------------------------------------- the dry run (CLI)
def test_paper_slurm_dry_run_prints_each_jobs_request_and_an_sbatch_script(tmp_path):
    result = m2rl(*PAPER_SLURM, "study.slurm.partition=gpu", runs_dir=tmp_path / "runs")
    assert result.returncode == 0, result.stderr
    rows = job_rows(result.stdout)
    assert len(rows) == 29  # every stage of the paper's one-seed study (seven merges, each evaluated)
    # stage: kind, nodes, GPUs, CPUs, time limit, memory, partition, est. hours on its GPUs
    assert rows["study-s0-sft"] == ["SFT", "1", "8", "8", "1440 min", "partition default", "gpu", "324.9"]
    assert rows["study-s0-rl-math"][:3] == ["RL", "1", "8"]
    assert rows["study-s0-rl-math"][-1] == "271.6"  # 2,172.8 GPU-hours (Table 2) on 8 GPUs
    assert rows["study-s0-distill"][:3] == ["MT-OPD", "1", "8"]
    assert rows["study-s0-merge-paper_ties"][:3] == ["merge", "1", "0"]  # merges run on CPU
    assert rows["study-s0-rl-mixed-eval"][:3] == ["eval", "1", "1"]  # vLLM, tensor_parallel_size 1
    assert rows["study-s0-analyze"][:3] == ["analyze", "1", "1"]
    out = result.stdout
    assert "partition gpu (listed by sinfo)" in out
    assert "run past study.slurm.time_min=1440 (24 h), the longest study-s0-rl-code (398.4 h" in out
    script = out[out.index("sbatch script of study-s0-sft, as submitit writes it") :]
    for line in (
        "#SBATCH --gpus-per-node=8",
        "#SBATCH --nodes=1",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --partition=gpu",
        "#SBATCH --time=1440",
        "-m submitit.core._submit",
    ):
        assert line in script, line
    assert not (tmp_path / "runs").exists()  # nothing submitted, nothing written


def test_an_unset_partition_is_refused_where_the_cluster_has_no_default(tmp_path):
    refused = m2rl(*PAPER_SLURM, runs_dir=tmp_path, FAKE_SLURM_PARTITIONS="cpu gpu")
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        "m2rl: error: study.slurm.partition is not set and the cluster has no default partition "
        "(sinfo lists cpu, gpu): set study.slurm.partition=NAME"
    )
    assert refused.stdout == ""
    default = m2rl(*PAPER_SLURM, runs_dir=tmp_path, FAKE_SLURM_PARTITIONS="cpu gpu*")
    assert default.returncode == 0, default.stderr
    assert "partition gpu: the cluster's default (study.slurm.partition is not set)" in default.stdout
    assert job_rows(default.stdout)["study-s0-sft"][6] == "cluster default"
    unknown = m2rl(*PAPER_SLURM, "study.slurm.partition=h100", runs_dir=tmp_path)
    assert unknown.returncode == 2
    assert (
        "study.slurm.partition=h100: the cluster has no partition h100 (sinfo lists debug*, gpu)"
        in unknown.stderr
    )


def test_without_sinfo_the_dry_run_says_the_partition_was_not_checked(tmp_path):
    path = f"{M2RL.parent}:/usr/bin:/bin"
    if shutil.which("sinfo", path=path):
        pytest.skip("this machine has a real sinfo")
    result = m2rl(*PAPER_SLURM, runs_dir=tmp_path, path=path)
    assert result.returncode == 0, result.stderr
    assert (
        "study.slurm.partition is not set and could not be checked (no sinfo on PATH): sbatch then uses the "
        "cluster's default partition, and refuses the jobs where there is none"
    ) in result.stdout
    failing = m2rl(*PAPER_SLURM, runs_dir=tmp_path, FAKE_SLURM_SINFO_FAILS="1")
    assert (
        failing.returncode == 0
        and "could not be checked (sinfo failed: sinfo: error: Unable to contact" in (failing.stdout)
    )


def test_multi_node_launcher_asks_for_its_nodes_and_a_real_run_is_refused(tmp_path):
    multi = [
        "study.slurm.partition=gpu",
        "launcher.num_machines=2",
        "launcher.num_processes=16",
        "launcher.main_process_ip=10.0.0.1",
    ]
    result = m2rl(*PAPER_SLURM, *multi, runs_dir=tmp_path / "runs")
    assert result.returncode == 0, result.stderr
    rows = job_rows(result.stdout)
    assert rows["study-s0-rl-mixed"][:4] == ["RL", "2", "16 (8/node)", "8/node"]
    assert rows["study-s0-rl-mixed-eval"][:3] == ["eval", "1", "1"]
    assert "not runnable as planned: launcher.num_machines=2" in result.stdout
    assert "#SBATCH --nodes=2" in result.stdout and "#SBATCH --gpus-per-node=8" in result.stdout
    real = m2rl(*PAPER_SLURM[:-1], *multi, runs_dir=tmp_path / "runs")
    assert (
        real.returncode == 2
        and "launcher.num_machines=2: a training job would ask for 2 nodes" in real.stderr
    )
    assert not (tmp_path / "runs").exists()


def test_fewer_gpus_per_job_than_the_launchers_processes_is_refused(tmp_path):
    result = m2rl(*PAPER_SLURM, "study.slurm.partition=gpu", "study.slurm.gpus_per_job=1", runs_dir=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "m2rl: error: study.slurm.gpus_per_job=1: launcher.num_processes=8 on 1 machine(s) starts 8 processes "
        "per node, one per GPU; set study.slurm.gpus_per_job=auto (or 8)"
    )


# ------------------------------------------------------------------------------ requests and script
def test_each_job_spec_asks_for_what_its_launcher_or_eval_backend_uses():
    paper = compose_config(["preset=paper"])
    auto = SlurmSettings()
    assert spec_request(auto, sft_job(paper, "a-sft")).gpus == 8
    assert spec_request(auto, rl_job(paper, "a-rl", ["math"], "sft-id")).gpus == 8
    assert spec_request(auto, eval_job(paper, "run-id")).gpus == 1
    assert spec_request(auto, merge_job(paper, "paper_ties", ["e1", "e2"], "sft-id", "a-merge")).gpus == 0
    two_nodes = rl_job(
        compose_config(
            [
                "preset=paper",
                "launcher.num_machines=2",
                "launcher.num_processes=16",
                "launcher.main_process_ip=h0",
            ]
        ),
        "a-rl",
        ["math"],
        "sft-id",
    )
    request = spec_request(auto, two_nodes)
    assert (request.nodes, request.gpus_per_node, request.gpus) == (2, 8, 16)
    on_cpu = compose_config(["preset=paper", "launcher.use_cpu=true"])
    assert spec_request(auto, sft_job(on_cpu, "a-sft")).gpus == 0
    tensor_parallel = compose_config(["preset=paper", "eval.vllm.tensor_parallel_size=2"])
    assert spec_request(auto, eval_job(tensor_parallel, "run-id")).gpus == 2
    tiny = compose_config([])
    assert spec_request(auto, sft_job(tiny, "a-sft")).gpus == 1  # launcher=local: one process
    assert spec_request(auto, eval_job(tiny, "run-id")).gpus == 1  # the hf backend
    fixed = SlurmSettings(gpus_per_job=2)  # a number: every job, merges too (as before `auto`)
    assert spec_request(fixed, merge_job(paper, "paper_ties", ["e1", "e2"], "sft-id", "a-merge")).gpus == 2


def test_the_preview_is_the_script_the_backend_submits(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{SLURM_STANDINS}:{os.environ['PATH']}")  # SlurmExecutor wants srun
    settings = SlurmSettings(partition="gpu", account="lab", mem="200G", setup=["source venv/bin/activate"])
    request = slurm_request(settings, sft_job(compose_config(["preset=paper"]), "a").launcher)
    submitted = SlurmBackend(settings).executor(tmp_path, "m2rl-x", request)
    expected = submitted._make_submission_file_text(submitted._submitit_command_str, "uid")
    monkeypatch.setenv("PATH", "/nonexistent")  # the preview needs no Slurm
    assert sbatch_preview(settings, request, tmp_path, "m2rl-x") == expected
    assert "#SBATCH --mem=200G" in expected and "#SBATCH --account=lab" in expected
    assert "source venv/bin/activate" in expected
    assert not any(tmp_path.iterdir())


def test_partition_check_reads_sinfos_default_mark():
    unset, gpu = SlurmSettings(), SlurmSettings(partition="gpu")
    assert (
        check_partition(unset, ["a", "b*"])
        == "partition b: the cluster's default (study.slurm.partition is not set)"
    )
    with pytest.raises(UserError, match=r"^study.slurm.partition is not set and the cluster has no default"):
        check_partition(unset, ["a", "b"])
    assert check_partition(gpu, ["a*", "gpu"]) == "partition gpu (listed by sinfo)"
    assert (
        check_partition(SlurmSettings(partition="a,gpu"), ["a*", "gpu"])
        == "partition a,gpu (listed by sinfo)"
    )
    with pytest.raises(UserError, match="no partition gpu"):
        check_partition(gpu, ["a*"])
    assert check_partition(gpu, None, "no sinfo on PATH") == "partition gpu (not checked: no sinfo on PATH)"
