"""SFT on the built-in model: assistant-only loss mask, a real short run, failure status on kill."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from m2rl.config import compose_config

from cli_helpers import m2rl

SMALL = ["data.sizes.sft=40", "sft.max_steps=3", "sft.logging_steps=1"]


def test_loss_mask_covers_only_assistant_tokens(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    from m2rl.data.load import sft_conversations
    from m2rl.engine.sft import build_sft_config

    cfg = compose_config(SMALL)
    dataset = sft_conversations(cfg.data).select(range(4))
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    from m2rl.jobs.build import section
    from m2rl.specs import SFTRecipe

    args = build_sft_config(SFTRecipe(**section(cfg, "sft")), tmp_path, world_size=1, use_cpu=True, seed=0)
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    for row, source in zip(trainer.train_dataset, dataset, strict=True):
        ids, mask = row["input_ids"], [label != -100 for label in row["labels"]]
        trained = tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if m])
        untrained = tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if not m])
        user, assistant = source["messages"][0]["content"], source["messages"][1]["content"]
        assert user in untrained and user not in trained
        assert trained.startswith("<think>") and trained.rstrip().endswith("<|im_end|>")
        assert assistant.split("</think>")[-1].strip() in trained
        assert "<|im_start|>assistant" in untrained


def test_sft_command_writes_a_completed_run_whose_model_generates(tmp_path):
    result = m2rl(
        "sft",
        "--name",
        "t-sft",
        "data.sizes.sft=60",
        "sft.max_steps=40",
        "sft.logging_steps=2",
        runs_dir=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    runs = json.loads(m2rl("runs", "--json", runs_dir=tmp_path).stdout)
    assert len(runs) == 1
    run = runs[0]
    assert run["kind"] == "sft" and run["status"] == "completed" and run["name"] == "t-sft"
    assert run["device_hours"] > 0 and run["stage_seconds"]["training"] > 0
    assert run["metrics"]["loss_end"] < 0.6 * run["metrics"]["loss_start"]
    losses = [json.loads(line) for line in (tmp_path / run["id"] / "metrics.jsonl").read_text().splitlines()]
    assert sum("loss" in r for r in losses) >= 10

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = tmp_path / run["id"] / "model"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 3 + 4?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]
    assert "t-sft" in m2rl("runs", runs_dir=tmp_path).stdout


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killing_sft_midway_leaves_status_failed(tmp_path, sig):
    command = [
        sys.executable,
        "-m",
        "m2rl.cli",
        "sft",
        "--runs-dir",
        str(tmp_path),
        "data.sizes.sft=200",
        "sft.max_steps=2000",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob("*/metrics.jsonl")):
        time.sleep(0.5)
    assert list(tmp_path.glob("*/metrics.jsonl")), "training never started"
    proc.send_signal(sig)
    proc.wait(timeout=60)
    runs = json.loads(m2rl("runs", "--json", runs_dir=tmp_path).stdout)
    assert [r["status"] for r in runs] == ["failed"]


def test_empty_think_blocks_carry_no_loss(tiny_model_dir):
    import torch
    from transformers import AutoTokenizer

    from m2rl.engine.sft import EmptyThinkMasker

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    pattern = tokenizer.encode("<think>\n\n</think>", add_special_tokens=False)
    empty = tokenizer.encode("x<think>\n\n</think>\n\nAnswer: 1", add_special_tokens=False)
    full = tokenizer.encode("x<think>\nwork\n</think>\n\nAnswer: 1", add_special_tokens=False)
    width = max(len(empty), len(full))
    ids = torch.tensor([empty + [0] * (width - len(empty)), full + [0] * (width - len(full))])

    def collator(examples):
        return {"input_ids": ids.clone(), "labels": ids.clone()}

    batch = EmptyThinkMasker(collator, pattern)([None, None])
    start = 1  # the pattern follows "x"
    assert (batch["labels"][0, start : start + len(pattern)] == -100).all()
    assert (batch["labels"][0, start + len(pattern) :] == ids[0, start + len(pattern) :]).all()
    assert torch.equal(batch["labels"][1], ids[1])  # a think block with content is trained on
