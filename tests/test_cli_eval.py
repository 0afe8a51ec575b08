"""`m2rl eval` through the executable: a name two runs share is an error listing both; reuse is said."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from m2rl.ledger import Ledger, attempt

EXECUTABLE = str(Path(sys.executable).with_name("m2rl"))  # the console script pip installed
SMALL = ["data.sizes.test=2", "eval.k=2", "eval.max_new_tokens=16", "verifiers.workers=0"]


def m2rl(*args: str, root: Path) -> subprocess.CompletedProcess:
    environment = dict(os.environ, HF_HUB_OFFLINE="1", COLUMNS="80")
    command = [EXECUTABLE, *args, "--runs-dir", str(root)]
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)


def _model_run(ledger: Ledger, name: str, model: Path, study: str | None = None):
    run = ledger.create("sft", name, {}, study=study)
    with attempt(run):
        shutil.copytree(model, run.model_dir)
    return run


def test_a_name_two_runs_share_is_an_error_listing_both(tmp_path, tiny_model_dir):
    ledger = Ledger(tmp_path / "runs")
    first = _model_run(ledger, "expert", tiny_model_dir, study="study-a")
    second = _model_run(ledger, "expert", tiny_model_dir, study="study-b")
    result = m2rl("eval", "expert", *SMALL, root=tmp_path / "runs")
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("m2rl: error: run name 'expert' is ambiguous (2 runs)")
    for run, study in ((first, "study-a"), (second, "study-b")):
        assert f"{run.id} (study {study}" in line and run.manifest["created"] in line
    assert "eval" not in {p.name for p in (tmp_path / "runs").glob("*/*")}  # nothing was evaluated


def test_eval_says_what_it_evaluates_and_what_it_reuses(tmp_path, tiny_model_dir):
    root = tmp_path / "runs"
    run = _model_run(Ledger(root), "sft", tiny_model_dir)
    first = m2rl("eval", "sft", *SMALL, "~eval.benchmarks.code", "~eval.benchmarks.if", root=root)
    assert first.returncode == 0, first.stderr
    assert f"eval sft ({run.id}): evaluating math, science with " in first.stdout  # and its thread plan
    assert re.search(
        r"evaluating math, science with \d+ torch threads? \(\d\.\d of \d+ cores busy\)\n", first.stdout
    )
    again = m2rl("eval", run.id, *SMALL, root=root)
    assert again.returncode == 0, again.stderr
    reused = "reusing saved results for math, science (same model, eval and verifier config)"
    assert f"eval sft ({run.id}): {reused}; evaluating code, if with " in again.stdout
    assert "Avg@K %" in again.stdout
    note = json.loads((run.path / "progress" / "eval.json").read_text())["note"]
    assert re.fullmatch(r"sft · if: Avg@2 \d+\.\d\d%", note), note  # percent, as the tables show it
