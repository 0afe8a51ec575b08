"""`m2rl runs` at 80 columns and in pipes: whole ids, both costs labelled, `--json` through `head`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from m2rl.commands.runs import runs_listing
from m2rl.ledger import Device, Ledger, Run, attempt

EXECUTABLE = str(Path(sys.executable).with_name("m2rl"))  # the console script pip installed
DOMAINS = ("math", "code", "science", "if")


def m2rl(*args: str, root: Path, columns: int = 80) -> subprocess.CompletedProcess:
    """`m2rl ARGS --runs-dir ROOT` as a pipe sees it, `columns` wide."""
    environment = dict(os.environ, COLUMNS=str(columns))
    command = [EXECUTABLE, *args, "--runs-dir", str(root)]
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=120)


def _completed(ledger: Ledger, name: str, parents: list[str], seed: int, device: Device | None = None) -> Run:
    run = ledger.create(
        "sft" if not parents else "rl", name, {}, parents=parents, seed=seed, study="study", device=device
    )
    with attempt(run):
        pass
    run.update(device_hours=0.0123, cpu_seconds=3600 * 0.0456)
    return run


@pytest.fixture()
def study_root(tmp_path) -> Path:
    """A study of two seeds: an SFT run and four experts per seed, every name shared by both seeds."""
    ledger = Ledger(tmp_path / "runs")
    for seed in (0, 1):
        sft = _completed(ledger, "study-sft", [], seed)
        for domain in DOMAINS:
            _completed(ledger, f"study-rl-{domain}", [sft.id], seed)
    _completed(ledger, "gpu-run", [], 0, device=Device("cuda", "H100", 8))
    return tmp_path / "runs"


@pytest.mark.parametrize("columns", [60, 80, 100, 200])
def test_listing_fits_the_width_and_keeps_every_id_whole(study_root, columns):
    result = m2rl("runs", root=study_root, columns=columns)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert all(len(line.rstrip()) <= columns for line in lines), result.stdout
    assert "…" not in result.stdout
    for run in Ledger(study_root).runs():
        assert sum(line.split()[:1] == [run.id] for line in lines) == 1, run.id  # its row, id whole
    assert "CPU-h" in result.stdout and "device-h" in result.stdout
    assert "0.0456" in result.stdout and "0.0123 CPU" in result.stdout and "0.0123 GPU" in result.stdout
    assert "CPU time" in result.stdout and "wall time x devices" in result.stdout


def test_wide_listing_names_parents_by_id_when_their_name_is_shared(study_root):
    result = m2rl("runs", root=study_root, columns=250)
    runs = Ledger(study_root).runs()
    expert = next(r for r in runs if r.name == "study-rl-math")
    row = next(line for line in result.stdout.splitlines() if line.split()[:1] == [expert.id])
    assert expert.manifest["parents"][0] in row  # two runs are named study-sft: the id tells which


def test_narrow_listing_is_one_block_per_run(study_root):
    manifests = [r.manifest for r in Ledger(study_root).runs()]
    from rich.console import Console

    console = Console(width=50, record=True, color_system=None)
    console.print(runs_listing(manifests, study_root, 50))
    text = console.export_text()
    for manifest in manifests:
        assert f"\n{manifest['id']}\n" in text
    assert "seed 1" in text and "parents " in text


def test_json_and_tables_through_head_exit_0_quietly(tmp_path):
    ledger = Ledger(tmp_path / "runs")
    for i in range(12):
        _completed(ledger, f"run-{i}", [], 0).set_metrics(**{f"metric_{j}": float(j) for j in range(800)})
    size = len(m2rl("runs", "--json", root=tmp_path / "runs").stdout)
    assert size > 256 * 1024  # well past a pipe's buffer: the writer meets the closed pipe
    root = tmp_path / "runs"
    for command in (
        f"runs --json --runs-dir {root} | head -n 2",
        f"runs --runs-dir {root} | head -n 2",
        "--help | head -n 1",
    ):
        result = subprocess.run(
            ["bash", "-c", f"set -o pipefail; {EXECUTABLE} {command}"],
            capture_output=True,
            text=True,
            env=dict(os.environ, COLUMNS="80"),
            timeout=120,
        )
        assert result.returncode == 0, (command, result.stderr)
        assert result.stderr == "", (command, result.stderr)
    listed = json.loads(m2rl("runs", "--json", root=tmp_path / "runs").stdout)
    assert len(listed) == 12 and "cpu_seconds" in listed[0]
