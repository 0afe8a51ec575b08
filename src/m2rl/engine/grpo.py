"""GRPO on TRL's GRPOTrainer, built from `cfg.rl`: one code path for experts and the mixed run.

The paper's recipe maps onto TRL options through `GRPO_MAPPING`, the one table from which the
GRPOConfig, the dry-run table and the docs' table (docs/grpo.md) are made. Rollouts without vLLM go through
`m2rl.sampling` (the same sampling as transformers' generate, without finished rows in the batch).
Three more additions live here: a trainer subclass that times generation apart from training (so the ledger
splits step time into generation, reward and training seconds) and computes the loss on the samples
whose advantage is not zero (`informative_rows`: the same loss and gradient, a quarter less forward
and backward work in the tiny study), and the dataset builder that filters prompts over
`max_prompt_length` tokens, as the paper does.
"""

from __future__ import annotations

import json
import math
import random
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback

from m2rl.config import compose_config
from m2rl.engine.callbacks import LedgerMetricsCallback, LedgerProgressCallback, RichProgressBar
from m2rl.engine.rewards import DomainRoutedReward, StepClock
from m2rl.errors import UserError
from m2rl.ledger import Run
from m2rl.sampling import SamplingSettings
from m2rl.sampling import sample as sample_tokens
from m2rl.specs import LOSS_TYPES, DistillJob, OnPolicyRecipe, RLJob, RLRecipe
from m2rl.verifiers import VerifierConfig
from m2rl.vllm_cpu import prepare_cpu_engine, rollout_engine_dtype, use_cpu_weight_sync

# TRL's generation options that m2rl.sampling reproduces; any other (min_p, repetition penalty, a
# suppressed token) sends rollouts through transformers' generate instead.
PLAIN_GENERATION_OPTIONS = frozenset(
    {
        "max_new_tokens",
        "do_sample",
        "pad_token_id",
        "bos_token_id",
        "eos_token_id",
        "temperature",
        "top_p",
        "top_k",
    }
    | {"min_p", "repetition_penalty", "cache_implementation"}
)


@dataclass(frozen=True)
class GrpoOption:
    """One item of the paper's GRPO recipe: the m2rl keys that carry it and the TRL options they set."""

    paper: str  # the paper's recipe item, as paper-brief.md states it
    keys: tuple[str, ...]  # `rl.*` keys (empty: fixed by m2rl)
    options: Callable[[RLRecipe, int, int, bool], dict[str, Any]]  # (recipe, steps, world, cpu) -> TRL
    note: str = ""  # how, where the mapping is not one to one


def _batch(rl: RLRecipe, steps: int, world_size: int, use_cpu: bool) -> dict[str, Any]:  # noqa: ARG001
    _, accumulation = rl.rollout_batch(world_size)
    return {
        "num_generations": rl.num_generations,
        "per_device_train_batch_size": rl.per_device_batch_size,
        "gradient_accumulation_steps": accumulation,
    }


# The option functions below take any recipe with the same fields (RLRecipe, DistillRecipe): the
# distillation mapping (engine/distill.py) reuses them.
def vllm_engine_options(rl: RLRecipe, steps: int, world_size: int, use_cpu: bool) -> dict[str, Any]:  # noqa: ARG001
    return {
        "use_vllm": rl.rollout == "vllm",
        "vllm_mode": rl.vllm.mode,
        "vllm_gpu_memory_utilization": rl.vllm.gpu_memory_utilization,
        "vllm_tensor_parallel_size": rl.vllm.tensor_parallel_size,
        "vllm_server_host": rl.vllm.server_host,
        "vllm_server_port": rl.vllm.server_port,
    }


def importance_sampling_options(rl: RLRecipe, steps: int, world_size: int, use_cpu: bool) -> dict[str, Any]:  # noqa: ARG001
    return {
        "vllm_importance_sampling_correction": rl.rollout == "vllm",
        "vllm_importance_sampling_mode": "token_truncate",
        "vllm_importance_sampling_clip_min": 0.0,
        "vllm_importance_sampling_clip_max": rl.vllm.importance_sampling_cap,
    }


OPTIMIZER_KEYS = (
    "learning_rate",
    "lr_scheduler",
    "warmup_ratio",
    "adam_beta1",
    "adam_beta2",
    "weight_decay",
    "max_grad_norm",
)


def optimizer_options(rl: RLRecipe, steps: int, world_size: int, use_cpu: bool) -> dict[str, Any]:  # noqa: ARG001
    return {
        "learning_rate": rl.learning_rate,
        "lr_scheduler_type": rl.lr_scheduler,
        "warmup_steps": rl.warmup_ratio,  # a float < 1 is a ratio of total steps
        "adam_beta1": rl.adam_beta1,
        "adam_beta2": rl.adam_beta2,
        "weight_decay": rl.weight_decay,
        "max_grad_norm": rl.max_grad_norm,
    }


PRECISION = GrpoOption(
    "bf16, gradient checkpointing",
    ("bf16", "gradient_checkpointing"),
    lambda rl, s, w, cpu: {
        "bf16": rl.bf16 and not cpu,
        "use_cpu": cpu,
        "gradient_checkpointing": rl.gradient_checkpointing,
    },
    "bf16 is off on CPU",
)
CHECKPOINTS = GrpoOption(
    "checkpoints and logging",
    ("save_steps", "save_total_limit", "logging_steps", "report_to"),
    lambda rl, s, w, c: {
        "save_strategy": "steps" if rl.save_steps > 0 else "no",
        "save_steps": max(rl.save_steps, 1),
        "save_total_limit": rl.save_total_limit,
        "logging_steps": rl.logging_steps,
        "report_to": list(rl.report_to),
    },
)


# The whole rl -> trl.GRPOConfig mapping, in one place: `build_grpo_config` applies it, the dry-run
# table of `m2rl rl` and the recipe table of docs/grpo.md are rendered from it (a test keeps them equal).
GRPO_MAPPING: tuple[GrpoOption, ...] = (
    GrpoOption(
        "128 prompts x 16 samples per step",
        ("prompts_per_step", "num_generations", "per_device_batch_size"),
        _batch,
        "per_device_train_batch_size x gradient_accumulation_steps x processes = prompts x samples",
    ),
    GrpoOption(
        "one optimizer step per rollout batch",
        (),
        lambda rl, steps, world, cpu: {
            "steps_per_generation": rl.rollout_batch(world)[1],
            "num_iterations": 1,
        },
    ),
    GrpoOption(
        "200 steps per expert, 400 mixed",
        ("steps", "mixed_steps"),
        lambda rl, steps, w, c: {"max_steps": steps},
    ),
    GrpoOption(
        "temperature 1.0, top-p 1.0",
        ("temperature", "top_p"),
        lambda rl, s, w, c: {"temperature": rl.temperature, "top_p": rl.top_p},
    ),
    GrpoOption(
        "max response 32k, prompts > 2048 tokens filtered",
        ("max_completion_length", "max_prompt_length"),
        lambda rl, s, w, c: {"max_completion_length": rl.max_completion_length},
        "the prompt filter is m2rl's (`grpo_dataset`)",
    ),
    GrpoOption(
        "advantage (r - mean) / (std + eps), unbiased std",
        ("scale_rewards",),
        lambda rl, s, w, c: {"scale_rewards": rl.scale_rewards},
        "TRL: Bessel-corrected std, eps 1e-4 (paper 1e-6): for binary rewards in groups of 16 a non-zero "
        "std is >= 0.25, so advantages differ by < 4e-4 relative; zero-variance groups get 0 either way",
    ),
    GrpoOption(
        "PPO clip 0.2 low / 0.28 high",
        ("clip_low", "clip_high"),
        lambda rl, s, w, c: {"epsilon": rl.clip_low, "epsilon_high": rl.clip_high},
    ),
    GrpoOption(
        "truncated IS weight clamp(pi_old / pi_rollout, 0, 2) for vLLM rollouts",
        ("vllm.importance_sampling_cap",),
        importance_sampling_options,
    ),
    GrpoOption(
        "KL 0, entropy 0",
        ("kl_coef", "entropy_coef"),
        lambda rl, s, w, c: {"beta": rl.kl_coef, "entropy_coef": rl.entropy_coef},
    ),
    GrpoOption(
        "loss = mean over samples of each sample's token-mean",
        ("loss_aggregation",),
        lambda rl, s, w, c: {"loss_type": LOSS_TYPES[rl.loss_aggregation]},
    ),
    GrpoOption(
        "AdamW lr 2e-6 constant, betas (0.9, 0.98), wd 0.1, grad clip 1.0",
        OPTIMIZER_KEYS,
        optimizer_options,
    ),
    GrpoOption(
        "no dynamic sampling, zero-variance groups stay",
        ("mask_truncated_completions",),
        lambda rl, s, w, c: {"mask_truncated_completions": rl.mask_truncated_completions},
        "TRL keeps every group; the loss is computed on the non-zero-advantage samples only, scaled to "
        "the same loss and gradient (`informative_rows`)",
    ),
    GrpoOption("rollouts on vLLM (colocated)", ("rollout", "vllm.*"), vllm_engine_options),
    PRECISION,
    CHECKPOINTS,
)


def mapping_options(
    mapping: tuple[GrpoOption, ...], recipe: Any, steps: int, world_size: int, use_cpu: bool
) -> dict[str, Any]:
    """Every GRPOConfig option a recipe sets, from its mapping (GRPO_MAPPING or distill's)."""
    options: dict[str, Any] = {}
    for item in mapping:
        options.update(item.options(recipe, steps, world_size, use_cpu))
    return options


def grpo_options(rl: RLRecipe, steps: int, world_size: int, use_cpu: bool) -> dict[str, Any]:
    """Every GRPOConfig option the recipe sets, from GRPO_MAPPING."""
    return mapping_options(GRPO_MAPPING, rl, steps, world_size, use_cpu)


def build_grpo_config(rl: RLRecipe, output_dir: Path, steps: int, world_size: int, use_cpu: bool, seed: int):
    """The trl.GRPOConfig for this recipe: one optimizer step per rollout batch of P prompts x G samples."""
    # lazy: TRL (heavy), only when a trainer is built; the dry run's recipe table imports this module
    from trl import GRPOConfig

    return GRPOConfig(
        output_dir=str(output_dir),
        seed=seed,
        disable_tqdm=True,
        shuffle_dataset=False,  # grpo_dataset already ordered the prompts (seeded, domains interleaved)
        log_completions=False,
        **grpo_options(rl, steps, world_size, use_cpu),
    )


def mapping_markdown() -> str:
    """GRPO_MAPPING as the docs' table (docs/grpo.md: paper item | m2rl keys | TRL options | note)."""
    paper = compose_config(["preset=paper"])
    rl = RLRecipe(**_plain(paper.rl))
    lines = ["| paper recipe | m2rl key | TRL option | note |", "|---|---|---|---|"]
    for item in GRPO_MAPPING:
        keys = ", ".join(f"`rl.{k}`" for k in item.keys) or "(fixed)"
        options = ", ".join(f"`{k}`" for k in item.options(rl, 200, 8, False))
        lines.append(f"| {item.paper} | {keys} | {options} | {item.note} |")
    return "\n".join(lines)


def _plain(node) -> dict[str, Any]:
    return OmegaConf.to_container(node, resolve=True)  # type: ignore[return-value]


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
    # lazy: datasets (heavy), only when the trainer's dataset is built
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


# The loss inputs GRPOTrainer gives one row per sample (text-only models), and the ones that hold one
# value for the whole batch. With any other key (images, tile counts) rows are not selected: the loss
# is computed on the whole batch.
BATCH_INPUTS = frozenset({"num_items_in_batch"})
PER_SAMPLE_INPUTS = frozenset(
    {
        "prompt_ids",
        "prompt_mask",
        "completion_ids",
        "completion_mask",
        "advantages",
        "old_per_token_logps",
        "sampling_per_token_logps",
        "ref_per_token_logps",
        "importance_sampling_ratio",
        "tool_mask",
    }
)
# How each loss type scales with the rows it is computed on: a mean over samples ("grpo") or a sum over
# samples x a fixed length ("dr_grpo") scales by rows kept / rows; a sum over tokens divided by the whole
# generation batch's token count ("dapo", `num_items_in_batch`) does not change.
ROW_SCALED_LOSSES = frozenset({"grpo", "dr_grpo"})
BATCH_NORMALISED_LOSSES = frozenset({"dapo"})


def informative_rows(
    inputs: dict[str, Any], loss_type: str, agree: Callable[[int], int] = lambda kept: kept
) -> tuple[dict[str, Any], float] | None:
    """The loss inputs restricted to the samples whose advantage is not zero, and the factor that makes
    the loss on them equal to the loss on the whole batch; None where every row counts or the selection
    would not be exact.

    With no KL and no entropy term, a sample's loss is its advantage times a function of its own
    log-probs: a sample with advantage 0 at every token (every member of its group scored the same,
    about a quarter of the tiny study's samples) adds exactly 0 to the loss and to the gradient, yet
    costs its share of the forward and backward pass.

    Across processes every rank must compute the loss on the same number of rows: TRL gathers per-row
    statistics (clip ratios) inside the loss, and a collective with different sizes on different ranks
    fails (gloo) or hangs (NCCL). `agree` maps this rank's count to the count all ranks use (their
    maximum; a collective, so every rank calls it at every loss): a rank with fewer informative rows
    makes up the count with zero-advantage rows, which add exactly 0 as well. At least one row is kept,
    so every process runs the forward and backward pass (collectives under DeepSpeed ZeRO-3).
    """
    if loss_type not in ROW_SCALED_LOSSES | BATCH_NORMALISED_LOSSES:
        return None
    if set(inputs) - PER_SAMPLE_INPUTS - BATCH_INPUTS:
        return None
    advantages = inputs["advantages"]
    rows = advantages.shape[0]
    nonzero = (advantages.reshape(rows, -1) != 0).any(dim=-1)
    kept = agree(max(int(nonzero.sum()), 1))
    if kept >= rows:
        return None
    # the informative rows first, then zero-advantage rows up to the agreed count; in batch order
    informative_first = torch.argsort((~nonzero).to(torch.int8), stable=True)
    index = informative_first[:kept].sort().values
    subset = {key: value[index] if key in PER_SAMPLE_INPUTS else value for key, value in inputs.items()}
    scale = kept / rows if loss_type in ROW_SCALED_LOSSES else 1.0
    return subset, scale


def timed_trainer_class():
    # lazy: TRL (heavy), only when a trainer is built; the dry run's recipe table imports this module
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

        def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, **kwargs):
            """Transformers rollouts through m2rl.sampling (finished rows leave the batch), where it applies."""
            options = getattr(self, "generation_kwargs", None) or {}
            if (
                self.use_vllm
                or self.use_transformers_continuous_batching
                or self.is_fsdp_enabled
                or images
                or multimodal_fields
                or set(options) - PLAIN_GENERATION_OPTIONS
                or options.get("min_p") not in (None, 0.0)
                or options.get("repetition_penalty") not in (None, 1.0)
            ):
                return super()._generate_single_turn(
                    prompt_ids, images, multimodal_fields, num_generations, **kwargs
                )
            # lazy: TRL (heavy), only when a trainer is built; the dry run's recipe table imports this module
            from trl.models import unwrap_model_for_generation

            settings = SamplingSettings(
                temperature=float(options["temperature"]),
                top_p=float(options.get("top_p") or 1.0),
                top_k=int(options.get("top_k") or 0),
                max_new_tokens=int(options["max_new_tokens"]),
            )
            seed = int(torch.randint(0, 2**31 - 1, (1,)))  # from the RNG the trainer seeded
            generator = torch.Generator(device=self.accelerator.device).manual_seed(seed)
            with unwrap_model_for_generation(
                self.model_wrapped,
                self.accelerator,
                gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                generation_kwargs=self.generation_kwargs,
                gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs,
            ) as model:
                eos = self.eos_token_ids
                completions = sample_tokens(
                    model, prompt_ids, settings, eos, self._tokenizer.pad_token_id, generator
                )
            return completions, None

        def _compute_loss(self, model, inputs):
            """The loss on the samples with a non-zero advantage only, scaled to equal the whole batch's
            (`informative_rows`); TRL's own loss wherever that is not exact. The logged entropy and clip
            ratios then describe those samples."""
            exact = (
                self.beta == 0.0
                and not self._entropy_bonus_enabled
                and self.top_entropy_quantile == 1.0
                and not self.aux_loss_enabled
            )
            selected = informative_rows(inputs, self.loss_type, self._rows_on_every_rank) if exact else None
            if selected is None:
                return super()._compute_loss(model, inputs)
            subset, scale = selected
            return super()._compute_loss(model, subset) * scale

        def _rows_on_every_rank(self, kept: int) -> int:
            """The largest of the ranks' informative row counts (`kept` alone in a single process)."""
            if self.accelerator.num_processes == 1:
                return kept
            counts = self.accelerator.gather(torch.tensor([kept], device=self.accelerator.device))
            return int(counts.max())

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


def domain_summary(domains: list[str], metric: str, label: str, digits: int) -> Callable[[dict], str]:
    """A step's `<domain>/<metric>` of every domain in one line for the live bar, e.g. `reward math 0.42`."""

    def summarize(logs: dict) -> str:
        parts = [
            f"{d} {logs[f'{d}/{metric}']:.{digits}f}"
            for d in domains
            if logs.get(f"{d}/{metric}") is not None
        ]
        return f"{label} " + " ".join(parts) if parts else ""

    return summarize


def train_grpo(
    spec: RLJob,
    run: Run,
    model_path: str,
    samples: list[dict[str, Any]],
    resume_from: str | None = None,
) -> dict[str, Any]:
    """Run GRPO from `model_path` on `samples`; save the policy into the run; return summary metrics."""
    trainer, tokenizer, dropped = on_policy_trainer(
        timed_trainer_class(), build_grpo_config, spec, spec.rl, model_path, samples, run.path / "checkpoints"
    )
    run.set_metrics(prompts=len(trainer.train_dataset), prompts_dropped_too_long=dropped)
    summarize = domain_summary(spec.domains, "reward", "reward", 2)
    train_in_run(trainer, tokenizer, run, "rl", "grpo " + ",".join(spec.domains), summarize, resume_from)
    return reward_summary(run.read_metrics(), spec.domains)


def on_policy_trainer(
    trainer_class,
    build_config: Callable[..., Any],
    spec: RLJob | DistillJob,
    recipe: OnPolicyRecipe,
    model_path: str,
    samples: list[dict[str, Any]],
    output_dir: Path,
):
    """(trainer, tokenizer, prompts dropped as too long) for a GRPOTrainer subclass: the policy from
    `model_path` (float32 on CPU), the prompts, the config `build_config` makes, the routed verifiers."""
    # lazy: transformers' model classes, only when a model is loaded
    from transformers import AutoModelForCausalLM, AutoTokenizer

    use_cpu = not torch.cuda.is_available()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    dataset, dropped = grpo_dataset(samples, tokenizer, recipe.max_prompt_length, spec.seed)
    dtype = torch.float32 if use_cpu else getattr(torch, spec.model.dtype)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype)
    args = build_config(recipe, output_dir, spec.steps, spec.launcher.world_size, use_cpu, spec.seed)
    cpu_engine = use_cpu and recipe.rollout == "vllm"  # a colocated engine on vLLM's CPU build
    if cpu_engine:
        prepare_cpu_engine()
    clock = StepClock()
    reward = DomainRoutedReward(
        VerifierConfig.of(spec.verifiers), spec.domains, recipe.max_completion_length, clock
    )
    with rollout_engine_dtype(dtype) if cpu_engine else nullcontext():
        trainer = trainer_class(
            model=model, args=args, train_dataset=dataset, processing_class=tokenizer, reward_funcs=[reward]
        )
    trainer.clock = clock
    if use_cpu and trainer.use_vllm:
        use_cpu_weight_sync(trainer.vllm_generation)
    return trainer, tokenizer, dropped


def train_in_run(
    trainer,
    tokenizer,
    run: Run,
    kind: str,
    label: str,
    summarize: Callable[[dict], str],
    resume_from: str | None,
    stages: tuple[str, ...] = ("generation", "reward", "training"),
) -> None:
    """Train a GRPO-based trainer with the run's metrics, stage seconds, progress and live bar; save the model."""

    class StageSeconds(TrainerCallback):
        """Adds each logged step's seconds per stage (generation, reward, ...) to the run's stage totals."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                run.add_stage_seconds(
                    {
                        stage: logs[f"time/{stage}_s"] * args.logging_steps
                        for stage in stages
                        if logs.get(f"time/{stage}_s") is not None
                    }
                )

    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(LedgerMetricsCallback(run))
    trainer.add_callback(StageSeconds())
    trainer.add_callback(LedgerProgressCallback(run, kind, summarize))
    bar = RichProgressBar(label, summarize)
    trainer.add_callback(bar)
    try:
        trainer.train(resume_from_checkpoint=resume_from)
    finally:
        bar.stop()
    with run.stage("save"):
        trainer.save_model(str(run.model_dir))  # collective under ZeRO-3: every rank takes part
        if trainer.accelerator.is_main_process:
            tokenizer.save_pretrained(str(run.model_dir))


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
