"""Settings that need an engine this environment lacks (the main lane has neither vLLM nor DeepSpeed)
are refused before any run directory exists: one line naming the setting and the package, exit 2."""

from __future__ import annotations

import importlib.util

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
