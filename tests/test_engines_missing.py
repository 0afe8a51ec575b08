"""Settings that need an engine this environment lacks (the main lane has neither vLLM nor DeepSpeed)
are refused before any run directory exists: one line naming the setting and the package, exit 2."""

from __future__ import annotations

import importlib.util
import json

import pytest

from cli_helpers import m2rl

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("vllm") is not None, reason="vLLM installed (the engines lane tests it)"
)


@pytest.mark.parametrize(
    ("args", "setting"),
    [
        (["rl", "--domains", "math", "--from", "sft", "rl.rollout=vllm"], "rl.rollout=vllm"),
        (["eval", "sft", "eval.backend=vllm"], "eval.backend=vllm"),
        (["pipeline", "--name", "s", "eval.backend=vllm"], "eval.backend=vllm"),
        (["pipeline", "--name", "s", "rl.rollout=vllm"], "rl.rollout=vllm"),
    ],
)
def test_a_setting_that_needs_vllm_is_refused_before_any_run(ledger_with_sft, args, setting):
    ledger, _ = ledger_with_sft
    before = sorted(p.name for p in ledger.root.iterdir())
    result = m2rl(*args, runs_dir=ledger.root)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"m2rl: error: {setting} needs vLLM"), result.stderr
    assert "make install-engines" in lines[0]
    assert sorted(p.name for p in ledger.root.iterdir()) == before


def test_resuming_a_run_whose_spec_needs_vllm_is_refused_before_it_starts(ledger_with_sft):
    """A run started where vLLM was installed, resumed where it is not: refused, the run left as it was."""
    from m2rl import jobs
    from m2rl.config import compose_config
    from m2rl.jobs.build import rl_job

    ledger, sft = ledger_with_sft
    spec = jobs.resolve(rl_job(compose_config(["rl.rollout=vllm"]), "rl-v", ["math"], sft.id), ledger)
    run = jobs.create(spec, ledger)
    run.update(status="failed")  # an attempt stopped after its first checkpoint
    state = run.path / "checkpoints" / "checkpoint-1" / "trainer_state.json"
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"global_step": 1, "max_steps": 25}))
    before = run.manifest["status"]
    result = m2rl("rl", "--resume", "rl-v", runs_dir=ledger.root)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().startswith("m2rl: error: rl.rollout=vllm needs vLLM"), result.stderr
    assert ledger.get("rl-v").manifest["status"] == before
