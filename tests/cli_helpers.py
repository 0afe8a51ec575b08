"""Run the real `m2rl` command line in a subprocess, as a user would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

# GRPO overrides that keep a test run small and fast: 4 prompts x 4 samples, 16 new tokens.
# The tiny preset's study is three seeds sharing one SFT model, with MT-OPD: a test's study is one seed.
ONE_SEED = ["study.seeds=1", "study.share_sft=false", "study.distill=false"]

FAST_RL = [
    "rl.prompts_per_step=4",
    "rl.num_generations=4",
    "rl.per_device_batch_size=16",
    "rl.max_completion_length=16",
    "data.sizes.rl=16",
]

# A study of minutes: SFT of 4 steps, two experts (math, code) and the mixed run of 2 GRPO steps each
# (checkpoint every step), one merge, 4 test items per domain at K=1; one seed, no MT-OPD.
SMALL_STUDY = [
    *ONE_SEED,
    "data.sizes.sft=32",
    "sft.max_steps=4",
    *FAST_RL,
    "rl.steps=2",
    "rl.mixed_steps=2",
    "rl.save_steps=1",
    "data.sizes.test=4",
    "eval.k=1",
    "eval.max_new_tokens=16",
    "study.domains=[math,code]",
    "study.merge_methods=[paper_ties]",
]


def m2rl(
    *args: str, runs_dir: Path | None = None, timeout: float = 600, env: dict | None = None
) -> subprocess.CompletedProcess:
    """`m2rl ARGS...` with an optional runs dir; returns the completed process (text output)."""
    command = [sys.executable, "-m", "m2rl.cli", *args]
    if runs_dir is not None:
        command += ["--runs-dir", str(runs_dir)]
    full_env = dict(os.environ, HF_HUB_OFFLINE="1", COLUMNS="200", **(env or {}))
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=full_env)


def as_foreground_job() -> None:
    """`preexec_fn` for a child that stands for a terminal's foreground job: its own process group, and
    Ctrl-C (SIGINT) at its default even where the test runner was started with it ignored (a
    background job of a non-interactive shell, `nohup ... &`), which the child would inherit."""
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def coin_domain(folder: Path, reward_source: str) -> list[str]:
    """The overrides of a `coin` domain of 16 prompts (a data file) scored by `score` in `reward_source`."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            "id": f"coin-{i}",
            "domain": "coin",
            "rm_type": "coin",
            "prompt": [{"role": "user", "content": f"Flip {i}"}],
        }
        for i in range(16)
    ]
    (folder / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (folder / "reward.py").write_text(reward_source)
    return [
        "data=files",
        f"data.domains.coin.train={folder / 'train.jsonl'}",
        f"verifiers.custom.coin={folder / 'reward.py'}:score",
        "verifiers.require_think=false",
    ]
