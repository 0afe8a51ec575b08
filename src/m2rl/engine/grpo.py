"""GRPO on TRL's GRPOTrainer, built from `cfg.rl`: one code path for experts and the mixed run.

The paper's recipe maps onto TRL options in `build_grpo_config` (the README has the table). Two
additions live here: a trainer subclass that times generation apart from training (so the ledger
splits step time into generation, reward and training seconds), and the dataset builder that
filters prompts over `max_prompt_length` tokens, as the paper does.
"""

from __future__ import annotations

import json
import math
import random
import statistics
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from m2rl.engine.callbacks import LedgerMetricsCallback, RichProgressBar
from m2rl.engine.rewards import DomainRoutedReward, StepClock
from m2rl.errors import UserError
from m2rl.ledger import Run

LOSS_TYPES = {"sample_token_mean": "grpo", "token_mean": "dapo", "constant_normaliser": "dr_grpo"}


def rollout_batch(rl: DictConfig, world_size: int) -> tuple[int, int]:
    """(completions per optimizer step, gradient-accumulation steps) for this recipe and world size."""
    completions = int(rl.prompts_per_step) * int(rl.num_generations)
    per_step = int(rl.per_device_batch_size) * world_size
    if completions % per_step:
        raise UserError(
            f"rl.prompts_per_step x rl.num_generations = {completions} completions per step is not a multiple of "
            f"rl.per_device_batch_size x processes = {per_step}"
        )
    return completions, completions // per_step


def build_grpo_config(
    rl: DictConfig, output_dir: Path, steps: int, world_size: int, use_cpu: bool, seed: int
):
    """The trl.GRPOConfig for this recipe: one optimizer step per rollout batch of P prompts x G samples."""
    from trl import GRPOConfig

    if rl.loss_aggregation not in LOSS_TYPES:
        raise UserError(f"rl.loss_aggregation={rl.loss_aggregation!r}: choose from {', '.join(LOSS_TYPES)}")
    if rl.rollout not in ("hf", "vllm"):
        raise UserError(f"rl.rollout={rl.rollout!r}: choose hf or vllm")
    _, accumulation = rollout_batch(rl, world_size)
    use_vllm = rl.rollout == "vllm"
    vllm = rl.vllm
    return GRPOConfig(
        output_dir=str(output_dir),
        max_steps=int(steps),
        per_device_train_batch_size=int(rl.per_device_batch_size),
        gradient_accumulation_steps=accumulation,
        steps_per_generation=accumulation,  # one generation batch = one optimizer step
        num_iterations=1,
        num_generations=int(rl.num_generations),
        max_completion_length=int(rl.max_completion_length),
        temperature=float(rl.temperature),
        top_p=float(rl.top_p),
        learning_rate=float(rl.learning_rate),
        lr_scheduler_type=str(rl.lr_scheduler),
        warmup_steps=float(rl.warmup_ratio),
        adam_beta1=float(rl.adam_beta1),
        adam_beta2=float(rl.adam_beta2),
        weight_decay=float(rl.weight_decay),
        max_grad_norm=float(rl.max_grad_norm),
        epsilon=float(rl.clip_low),
        epsilon_high=float(rl.clip_high),
        beta=float(rl.kl_coef),
        entropy_coef=float(rl.entropy_coef),
        loss_type=LOSS_TYPES[str(rl.loss_aggregation)],
        scale_rewards=str(rl.scale_rewards),
        mask_truncated_completions=bool(rl.mask_truncated_completions),
        use_vllm=use_vllm,
        vllm_mode=str(vllm.mode),
        vllm_gpu_memory_utilization=float(vllm.gpu_memory_utilization),
        vllm_tensor_parallel_size=int(vllm.tensor_parallel_size),
        vllm_server_host=str(vllm.server_host),
        vllm_server_port=int(vllm.server_port),
        vllm_importance_sampling_correction=use_vllm,
        vllm_importance_sampling_mode="token_truncate",
        vllm_importance_sampling_clip_min=0.0,
        vllm_importance_sampling_clip_max=float(vllm.importance_sampling_cap),
        save_strategy="steps" if int(rl.save_steps) > 0 else "no",
        save_steps=max(int(rl.save_steps), 1),
        save_total_limit=int(rl.save_total_limit),
        logging_steps=int(rl.logging_steps),
        report_to=list(rl.report_to),
        bf16=bool(rl.bf16) and not use_cpu,
        use_cpu=use_cpu,
        gradient_checkpointing=bool(rl.gradient_checkpointing),
        seed=seed,
        disable_tqdm=True,
        shuffle_dataset=False,  # grpo_dataset already ordered the prompts (seeded, domains interleaved)
        log_completions=False,
    )


def interleave_domains(samples: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """Order samples so every stretch of the list holds each domain in its overall proportion.

    The mixture keeps its natural proportions, but a rollout batch of a few prompts then still sees
    every domain, so per-domain metrics exist at every step. Within a domain the order is seeded.
    """
    rng = random.Random(seed)
    by_domain: dict[str, list[dict[str, Any]]] = {}
    for sample in samples:
        by_domain.setdefault(sample["domain"], []).append(sample)
    keyed = []
    for domain_samples in by_domain.values():
        rng.shuffle(domain_samples)
        count = len(domain_samples)
        keyed += [((i + rng.random()) / count, sample) for i, sample in enumerate(domain_samples)]
    return [sample for _, sample in sorted(keyed, key=lambda pair: pair[0])]


def grpo_dataset(samples: list[dict[str, Any]], tokenizer, max_prompt_length: int, seed: int):
    """A `datasets.Dataset` of conversational prompts plus routing columns, domains interleaved in
    order (the trainer does not reshuffle); prompts over `max_prompt_length` tokens dropped."""
    from datasets import Dataset

    rows, dropped = [], 0
    for sample in interleave_domains(samples, seed):
        text = tokenizer.apply_chat_template(sample["prompt"], tokenize=False, add_generation_prompt=True)
        if len(tokenizer(text, add_special_tokens=False)["input_ids"]) > max_prompt_length:
            dropped += 1
            continue
        rows.append(
            {
                "prompt": sample["prompt"],
                "sample_id": sample["id"],
                "domain": sample["domain"],
                "rm_type": sample["rm_type"],
                "label": "" if sample.get("label") is None else str(sample["label"]),
                "metadata_json": json.dumps(sample.get("metadata") or {}),
            }
        )
    if not rows:
        raise UserError(f"every prompt is longer than rl.max_prompt_length={max_prompt_length} tokens")
    return Dataset.from_list(rows), dropped


def _trainer_class():
    from trl import GRPOTrainer

    class TimedGRPOTrainer(GRPOTrainer):
        """GRPOTrainer that records generation, reward and training seconds of every step."""

        clock: StepClock
        _current_step_total = 0.0  # seconds of earlier micro-steps of this optimizer step

        def _generate(self, prompts):
            start = time.perf_counter()
            try:
                return super()._generate(prompts)
            finally:
                self.clock.generation += time.perf_counter() - start

        def training_step(self, model, inputs, num_items_in_batch):
            start = time.perf_counter()
            output = super().training_step(model, inputs, num_items_in_batch)
            if self._step % self.current_gradient_accumulation_steps == 0:
                generation, reward = self.clock.take()
                total = self._current_step_total + time.perf_counter() - start
                self._current_step_total = 0.0
                self._metrics["train"]["time/generation_s"].append(generation)
                self._metrics["train"]["time/reward_s"].append(reward)
                self._metrics["train"]["time/training_s"].append(max(total - generation - reward, 0.0))
            else:
                self._current_step_total += time.perf_counter() - start
            return output

    return TimedGRPOTrainer


def _summary(domains: list[str]):
    def summarize(logs: dict) -> str:
        parts = [f"{d} {logs[f'{d}/reward']:.2f}" for d in domains if logs.get(f"{d}/reward") is not None]
        return "reward " + " ".join(parts) if parts else ""

    return summarize


def train_grpo(
    cfg: DictConfig,
    run: Run,
    model_path: str,
    samples: list[dict[str, Any]],
    domains: list[str],
    steps: int,
    world_size: int = 1,
    resume_from: str | None = None,
) -> dict[str, Any]:
    """Run GRPO from `model_path` on `samples`; save the policy into the run; return summary metrics."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from transformers.trainer_callback import PrinterCallback

    from m2rl.verifiers import VerifierConfig

    use_cpu = not torch.cuda.is_available()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    dataset, dropped = grpo_dataset(samples, tokenizer, int(cfg.rl.max_prompt_length), int(cfg.seed))
    run.set_metrics(prompts=len(dataset), prompts_dropped_too_long=dropped)
    dtype = torch.float32 if use_cpu else getattr(torch, str(cfg.model.dtype))
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype)
    args = build_grpo_config(cfg.rl, run.path / "checkpoints", steps, world_size, use_cpu, int(cfg.seed))
    clock = StepClock()
    reward = DomainRoutedReward(
        VerifierConfig.from_cfg(cfg.verifiers), domains, int(cfg.rl.max_completion_length), clock
    )
    trainer = _trainer_class()(
        model=model, args=args, train_dataset=dataset, processing_class=tokenizer, reward_funcs=[reward]
    )
    trainer.clock = clock

    class StageSeconds(TrainerCallback):
        """Adds each logged step's generation/reward/training seconds to the run's stage totals."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                run.add_stage_seconds(
                    {
                        stage: logs[f"time/{stage}_s"] * args.logging_steps
                        for stage in ("generation", "reward", "training")
                        if logs.get(f"time/{stage}_s") is not None
                    }
                )

    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(LedgerMetricsCallback(run))
    trainer.add_callback(StageSeconds())
    trainer.add_callback(RichProgressBar("grpo " + ",".join(domains), _summary(domains)))
    trainer.train(resume_from_checkpoint=resume_from)
    with run.stage("save"):
        trainer.save_model(str(run.model_dir))  # collective under ZeRO-3: every rank takes part
        if trainer.accelerator.is_main_process:
            tokenizer.save_pretrained(str(run.model_dir))
    return reward_summary(run.read_metrics(), domains)


def reward_summary(records: list[dict[str, Any]], domains: list[str], window: int = 10) -> dict[str, Any]:
    """Per-domain mean reward over the first and last `window` logged steps, and how clear the change is.

    `reward_rise_t` is Welch's t statistic of last-window minus first-window step rewards: a step's
    reward depends on which prompts it drew, so a rise of a few points can be noise; t >= 2 is a rise
    well outside the step-to-step spread.
    """
    summary: dict[str, Any] = {"steps": max((r.get("step", 0) for r in records), default=0)}
    for domain in domains:
        values = [r[f"{domain}/reward"] for r in records if r.get(f"{domain}/reward") is not None]
        if not values:
            continue
        first, last = values[:window], values[-window:]
        first_mean, last_mean = statistics.fmean(first), statistics.fmean(last)
        summary[f"{domain}/reward_first{window}"] = first_mean
        summary[f"{domain}/reward_last{window}"] = last_mean
        if len(values) < 2 * window:  # the windows overlap: no t statistic
            continue
        spread = statistics.variance(first) / window + statistics.variance(last) / window
        if spread > 0:  # undefined for constant rewards
            summary[f"{domain}/reward_rise_t"] = (last_mean - first_mean) / math.sqrt(spread)
    return summary
