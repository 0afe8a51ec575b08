"""Provenance in every manifest: m2rl's commit and dirty flag, the command line, versions, host, threads."""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from m2rl.ledger import Ledger
from m2rl.provenance import command_line, cpu_model, git_state, provenance, versions

REPO = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture()
def checkout() -> None:
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")


def test_git_state_is_the_checkout_commit_and_whether_tracked_files_changed(checkout):
    state = git_state(REPO / "src" / "m2rl")
    assert state["commit"] == _git("rev-parse", "HEAD").strip()
    assert state["dirty"] is bool(_git("status", "--porcelain", "--untracked-files=no").strip())


def test_git_state_outside_a_checkout_is_null(tmp_path):
    assert git_state(tmp_path) == {"commit": None, "dirty": None}


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["/venv/bin/m2rl", "rl", "--domains", "math", "rl.steps=5"], "m2rl rl --domains math rl.steps=5"),
        (["/src/m2rl/cli.py", "sft", "--name", "a b"], "m2rl sft --name 'a b'"),
        (["script.py", "x"], "script.py x"),
    ],
)
def test_command_line_reads_as_typed(argv, expected):
    assert command_line(argv) == expected


def test_versions_are_the_installed_ones_and_null_when_absent():
    found = versions()
    for package in ("m2rl", "torch", "transformers", "trl", "mergekit"):
        assert found[package] == metadata.version(package)
    assert "vllm" in found  # None here (no vLLM on a CPU machine), its version where installed
    assert found["python"] == platform.python_version()


def test_provenance_is_cached_but_copied_and_reads_threads_now(checkout):
    import torch

    record = provenance()
    record["git"]["commit"] = "changed by a caller"
    assert provenance()["git"]["commit"] != "changed by a caller"
    assert record["host"]["cpu"] == cpu_model() and record["host"]["cpu"]
    assert isinstance(record["host"]["gpus"], list)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert provenance()["torch_threads"] == 1
    finally:
        torch.set_num_threads(threads)


@pytest.fixture()
def typed_command(monkeypatch):
    """This process as if started by `m2rl sft sft.epochs=1` (the cached record is read again)."""
    from m2rl.provenance import _collect

    monkeypatch.setattr(sys, "argv", [str(Path(sys.executable).with_name("m2rl")), "sft", "sft.epochs=1"])
    _collect.cache_clear()
    yield
    _collect.cache_clear()


def test_a_new_manifest_records_provenance(tmp_path, checkout, typed_command):
    """Fails until `Ledger.create` writes `"provenance": provenance()` into the manifest."""
    run = Ledger(tmp_path / "runs").create("sft", "sft", {})
    recorded = run.manifest["provenance"]
    assert Ledger(tmp_path / "runs").get(run.id).manifest["provenance"] == recorded  # saved in run.json
    assert recorded["command"] == "m2rl sft sft.epochs=1"
    assert recorded["git"]["commit"] == _git("rev-parse", "HEAD").strip()
    assert isinstance(recorded["git"]["dirty"], bool)
    assert recorded["versions"]["torch"] == metadata.version("torch")
    assert recorded["versions"]["trl"] == metadata.version("trl")
    assert recorded["versions"]["python"] == platform.python_version()
    assert recorded["host"]["cpu"] == cpu_model()
    assert recorded["torch_threads"] >= 1


def test_the_recorded_thread_count_is_the_one_the_training_process_used(tmp_path):
    """A study makes a stage's run in its own process (two threads) and trains it in another (one):
    run.json says what the training used, as job.json does."""
    import torch

    from m2rl import jobs
    from m2rl.config import compose_config
    from m2rl.jobs.build import sft_job
    from m2rl.jobs.training import train_on_this_rank

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        spec = sft_job(compose_config(["torch_threads=1"]), "sft")
        run = jobs.create(spec, Ledger(tmp_path / "runs"))
        assert run.manifest["provenance"]["torch_threads"] == 2  # the creating process's
        train_on_this_rank(spec, run, lambda spec, run, resume: {}, None)
        saved = Ledger(tmp_path / "runs").get(run.id)
        assert saved.manifest["provenance"]["torch_threads"] == spec.torch_threads == 1
    finally:
        torch.set_num_threads(before)
