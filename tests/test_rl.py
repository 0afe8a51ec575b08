"""GRPO engine: recipe mapping, domain-routed reward, real short runs, resume after SIGKILL, bad input."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from m2rl.config import compose_config
from m2rl.data.builtin import generate
from m2rl.engine.grpo import build_grpo_config, interleave_domains, reward_summary
from m2rl.engine.rewards import DomainRoutedReward, StepClock
from m2rl.jobs.build import section
from m2rl.ledger import Ledger
from m2rl.specs import RLRecipe
from m2rl.verifiers import VerifierConfig

from cli_helpers import FAST_RL, m2rl


def test_paper_recipe_maps_onto_grpo_config(tmp_path):
    cfg = compose_config(["preset=paper", "launcher.num_processes=8"])
    args = build_grpo_config(
        RLRecipe(**section(cfg, "rl")), tmp_path, 400, world_size=8, use_cpu=True, seed=0
    )
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps * 8 == 128 * 16
    assert args.steps_per_generation == args.gradient_accumulation_steps and args.num_iterations == 1
    assert (args.epsilon, args.epsilon_high, args.beta, args.entropy_coef) == (0.2, 0.28, 0.0, 0.0)
    assert args.loss_type == "grpo" and args.scale_rewards == "group"
    assert args.learning_rate == 2e-6 and args.lr_scheduler_type == "constant"
    assert (args.adam_beta1, args.adam_beta2, args.weight_decay, args.max_grad_norm) == (0.9, 0.98, 0.1, 1.0)
    assert args.use_vllm and args.vllm_importance_sampling_mode == "token_truncate"
    assert (args.vllm_importance_sampling_clip_min, args.vllm_importance_sampling_clip_max) == (0.0, 2.0)
    assert args.max_completion_length == 32768 and args.temperature == 1.0 and args.top_p == 1.0


def test_inconsistent_batch_is_a_user_error(tmp_path):
    from m2rl.errors import UserError

    cfg = compose_config(["rl.prompts_per_step=3", "rl.num_generations=5", "rl.per_device_batch_size=4"])
    with pytest.raises(UserError, match="not a multiple"):
        build_grpo_config(RLRecipe(**section(cfg, "rl")), tmp_path, 10, world_size=1, use_cpu=True, seed=0)


def test_interleaving_keeps_proportions_in_every_window():
    samples = generate("math", "rl", 60) + generate("code", "rl", 20)
    ordered = interleave_domains(samples, seed=0)
    assert sorted(s["id"] for s in ordered) == sorted(s["id"] for s in samples)
    for start in range(0, 80, 8):
        window = [s["domain"] for s in ordered[start : start + 8]]
        assert 4 <= window.count("math") <= 8 and window.count("code") >= 1


def test_reward_summary_tells_a_clear_rise_from_step_noise():
    noisy = [0.2, 0.3] * 10  # first and last ten steps both average 0.25
    rising = [0.2, 0.3] * 5 + [0.4, 0.5] * 5
    records = [
        {"step": i + 1, "math/reward": a, "code/reward": b}
        for i, (a, b) in enumerate(zip(noisy, rising, strict=True))
    ]
    summary = reward_summary(records, ["math", "code"])
    assert summary["steps"] == 20
    assert summary["math/reward_first10"] == pytest.approx(0.25) == summary["math/reward_last10"]
    assert summary["math/reward_rise_t"] == pytest.approx(0.0)
    assert summary["code/reward_last10"] - summary["code/reward_first10"] == pytest.approx(0.2)
    # per-window std 0.0527 -> standard error of the difference 0.0236 -> t = 8.5
    assert summary["code/reward_rise_t"] == pytest.approx(8.485, rel=1e-3)
    short = reward_summary(records[:15], ["math"])
    assert "math/reward_rise_t" not in short and "math/reward_last10" in short


def test_reward_routes_each_sample_to_its_verifier_and_logs_per_domain():
    math, science = generate("math", "rl", 1)[0], generate("science", "rl", 1)[0]
    pairs = [
        (math, math["metadata"]["solution"]),
        (math, "<think>x</think> Answer: \\boxed{-1}"),
        (science, science["metadata"]["solution"]),
        (science, science["metadata"]["solution"]),
    ]
    logged: dict[str, list[float]] = {}
    reward = DomainRoutedReward(VerifierConfig(workers=0), ["math", "science"], 16, StepClock())
    rewards = reward(
        prompts=[s["prompt"] for s, _ in pairs],
        completions=[[{"role": "assistant", "content": text}] for _, text in pairs],
        completion_ids=[[1] * 5, [1] * 16, [1] * 5, [1] * 5],
        sample_id=[s["id"] for s, _ in pairs],
        domain=[s["domain"] for s, _ in pairs],
        rm_type=[s["rm_type"] for s, _ in pairs],
        label=[s["label"] for s, _ in pairs],
        metadata_json=[json.dumps(s["metadata"]) for s, _ in pairs],
        log_metric=lambda name, value: logged.setdefault(name, []).append(value),
    )
    assert rewards == [1.0, 0.0, 1.0, 1.0]
    assert logged["math/reward"] == [1.0, 0.0] and logged["science/reward"] == [1.0, 1.0]
    assert logged["math/truncated"] == [0.0, 1.0]
    assert logged["math/zero_variance_groups"] == [0.0] and logged["science/zero_variance_groups"] == [1.0]
    assert sum(logged["science/batch_share"]) == 2.0


@pytest.fixture()
def sft_run(ledger_with_sft):
    """A completed SFT run in a fresh ledger whose model is the untrained tiny model."""
    return ledger_with_sft[1]


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_mixed_run_logs_every_domain_every_step(sft_run, tmp_path):
    runs = tmp_path / "runs"
    result = m2rl(
        "rl",
        "--domains",
        "math,code,science,if",
        "--from",
        "sft",
        *FAST_RL,
        "rl.mixed_steps=2",
        "rl.save_steps=0",
        runs_dir=runs,
    )
    assert result.returncode == 0, result.stderr
    run = [r for r in json.loads(m2rl("runs", "--json", runs_dir=runs).stdout) if r["kind"] == "rl"][0]
    assert run["status"] == "completed" and run["parents"] == [sft_run.id]
    assert run["domains"] == ["math", "code", "science", "if"]
    steps = [r for r in _metrics(runs / run["id"]) if "time/generation_s" in r]
    assert len(steps) == 2
    for record in steps:
        for domain in ("math", "code", "science", "if"):
            assert f"{domain}/reward" in record and f"{domain}/truncated" in record
    assert all(run["stage_seconds"][s] > 0 for s in ("generation", "reward", "training"))
    assert run["device_hours"] > 0
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(runs / run["id"] / "model")


def test_resume_after_sigkill_continues_from_the_checkpoint(sft_run, tmp_path):
    runs = tmp_path / "runs"
    command = [
        sys.executable,
        "-m",
        "m2rl.cli",
        "rl",
        "--domains",
        "math",
        "--from",
        "sft",
        "--runs-dir",
        str(runs),
        *FAST_RL,
        "rl.steps=6",
        "rl.save_steps=2",
        "rl.save_total_limit=3",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not list(runs.glob("*/checkpoints/checkpoint-2/trainer_state.json")):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    run_dir = next(p.parent.parent.parent for p in runs.glob("*/checkpoints/checkpoint-2/trainer_state.json"))
    killed = Ledger(runs).get(run_dir.name)
    assert killed.status == "failed"

    result = m2rl("rl", "--resume", killed.id, runs_dir=runs)
    assert result.returncode == 0, result.stderr
    resumed = Ledger(runs).get(killed.id)
    assert resumed.status == "completed"
    assert len(resumed.manifest["attempts"]) == 2
    assert resumed.device_hours == pytest.approx(sum(a["device_hours"] for a in resumed.manifest["attempts"]))
    assert "resuming" in result.stdout and "checkpoint-" in result.stdout
    assert resumed.manifest["resumed_from"].split("-")[-1].isdigit()
    steps_after = [r["step"] for r in _metrics(run_dir) if "time/generation_s" in r]
    assert steps_after == [1, 2, 3, 4, 5, 6]  # each step once: what followed the checkpoint was logged again
    state = json.loads((run_dir / "checkpoints" / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6


def test_bad_inputs_are_one_line_errors_and_leave_no_completed_run(sft_run, tmp_path):
    runs = tmp_path / "runs"
    cases = [
        (["--domains", "chemistry", "--from", "sft"], "unknown domain"),
        (["--domains", "math"], "--from"),
        (["--domains", "math", "--from", sft_run.id, "data.sizes.rl=0"], "no rows"),
    ]
    for args, message in cases:
        result = m2rl("rl", *FAST_RL, *args, runs_dir=runs)  # later overrides win
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    rl_run = Ledger(runs).create("rl", "not-sft", {})
    result = m2rl("rl", "--domains", "math", "--from", rl_run.id, *FAST_RL, runs_dir=runs)
    assert result.returncode == 2 and "not a completed SFT or RL run" in result.stderr
    assert [r.kind for r in Ledger(runs).runs()] == ["sft", "rl"]


@pytest.mark.parametrize("loss_aggregation", ["sample_token_mean", "token_mean", "constant_normaliser"])
def test_zero_advantage_samples_leave_loss_and_gradient_unchanged(tiny_model_dir, tmp_path, loss_aggregation):
    """The loss on the samples with a non-zero advantage, scaled, equals TRL's loss on the whole batch,
    and so do the gradients; the selection is skipped where every sample counts."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOTrainer

    from m2rl.engine.grpo import informative_rows, timed_trainer_class

    recipe = RLRecipe(**section(compose_config([f"rl.loss_aggregation={loss_aggregation}"]), "rl"))
    args = build_grpo_config(recipe, tmp_path / "out", 1, 1, True, 0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    trainer = timed_trainer_class()(
        model=AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32),
        args=args,
        train_dataset=Dataset.from_list([{"prompt": "1+1="}] * 16),
        processing_class=tokenizer,
        reward_funcs=[lambda completions, **kwargs: [0.0] * len(completions)],
    )
    generator = torch.Generator().manual_seed(0)
    rows, prompt, completion = 16, 12, 20
    completion_mask = torch.ones(rows, completion, dtype=torch.long)
    for row in range(rows):  # completions of different lengths
        completion_mask[row, 5 + row :] = 0
    advantages = torch.randn(rows, generator=generator)
    advantages[[0, 1, 2, 3, 8, 9, 10, 11]] = 0.0  # two groups of four whose members all scored the same
    inputs = {
        "prompt_ids": torch.randint(5, 1000, (rows, prompt), generator=generator),
        "prompt_mask": torch.ones(rows, prompt, dtype=torch.long),
        "completion_ids": torch.randint(5, 1000, (rows, completion), generator=generator),
        "completion_mask": completion_mask,
        "advantages": advantages,
        "num_items_in_batch": completion_mask.sum(),
        # an older policy, so that the PPO ratio and its clip are not trivially 1
        "old_per_token_logps": -5.0 + torch.randn(rows, completion, generator=generator),
    }
    subset, scale = informative_rows(inputs, trainer.loss_type)
    assert subset["completion_ids"].shape[0] == 8
    assert scale == (0.5 if trainer.loss_type != "dapo" else 1.0)

    def loss_and_gradient(compute):
        trainer.model.zero_grad()
        loss = compute(trainer.model, inputs)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in trainer.model.parameters() if p.grad is not None]

    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop
    selected_loss, selected_grads = loss_and_gradient(trainer._compute_loss)
    full_loss, full_grads = loss_and_gradient(
        lambda model, batch: GRPOTrainer._compute_loss(trainer, model, batch)
    )
    assert full_loss != 0
    torch.testing.assert_close(selected_loss, full_loss, rtol=1e-5, atol=1e-7)
    assert len(selected_grads) == len(full_grads)
    for selected, full in zip(selected_grads, full_grads, strict=True):
        torch.testing.assert_close(selected, full, rtol=1e-4, atol=1e-7)
    # another rank kept 12 rows: this one makes up its 8 with zero-advantage rows, in batch order, and
    # the loss and gradient are still the whole batch's
    padded, padded_scale = informative_rows(inputs, trainer.loss_type, lambda kept: max(kept, 12))
    assert padded["completion_ids"].shape[0] == 12
    assert padded["advantages"].count_nonzero() == 8
    assert torch.equal(
        padded["completion_ids"][-4:], inputs["completion_ids"][12:]
    )  # informative 12..15 last
    padded_loss, padded_grads = loss_and_gradient(
        lambda model, batch: GRPOTrainer._compute_loss(trainer, model, padded) * padded_scale
    )
    torch.testing.assert_close(padded_loss, full_loss, rtol=1e-5, atol=1e-7)
    for selected, full in zip(padded_grads, full_grads, strict=True):
        torch.testing.assert_close(selected, full, rtol=1e-4, atol=1e-7)
    assert informative_rows(inputs, trainer.loss_type, lambda kept: rows) is None  # a rank kept them all
    # every sample informative: nothing to select; none informative: one row, loss 0
    assert informative_rows({**inputs, "advantages": torch.ones(rows)}, trainer.loss_type) is None
    none_kept, _ = informative_rows({**inputs, "advantages": torch.zeros(rows)}, trainer.loss_type)
    assert none_kept["prompt_ids"].shape[0] == 1
    assert informative_rows({**inputs, "pixel_values": torch.zeros(1)}, trainer.loss_type) is None
