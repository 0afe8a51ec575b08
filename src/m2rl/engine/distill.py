"""Multi-teacher on-policy distillation (MT-OPD) on TRL's GRPOTrainer, built from `cfg.distill`.

The student samples on the mixed prompts; each sample's tokens are scored by the RL expert of that
sample's own domain (routed per sample: a batch mixes domains); the per-token advantage is
log p_teacher(y_t) - log p_student(y_t), the sampled-token reverse KL, and the loss is the policy
gradient with that advantage (no KL term, no entropy term).

Why GRPOTrainer and not one of TRL's distillation trainers: `trl.experimental.gkd`/`gold`/
`distillation` take one teacher for the whole batch and train on a divergence over the full
vocabulary (generalised JSD, or a top-k/ULD loss) with its own loss path; `iw_opd` and
`server_distillation` are single-teacher too. The paper's recipe is a policy gradient whose
advantage is a per-token log-ratio, which is exactly what GRPOTrainer's `_compute_loss` takes from a
subclass (advantages of shape (B, T), TRL grpo_trainer.py), with the student's rollouts, the
per-sample domain columns, the verifier rewards (logged, not trained on), checkpoints, resume and the
m2rl timing and metrics (engine/grpo.py) already in place. So this subclass only replaces the
advantage: after GRPO has sampled and scored the batch, `_generate_and_score_completions` adds the
teachers' log-probs of the student's tokens and sets advantages = teacher - student per token. With
one optimizer step per rollout batch (num_iterations 1), the PPO ratio is 1 and the clip inactive,
so the loss is -A * log p_student exactly as the paper's script has it.

Teachers are frozen copies (`requires_grad` off, eval mode, scored under `torch.inference_mode`) on
the student's device; their scoring runs in the training process, so
the run's device-hours (process CPU time on a CPU, GPU wall time on GPUs) include it. A domain named
in `distill.teachers_served` is scored instead by a `trl vllm-serve` server of its teacher
(`ServedTeacher`, through TRL's `VLLMClient.get_sequence_logprobs`): the server's own GPU time is
not in the run's device-hours, only the wait for it (in `time/teacher_s`).
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from transformers.integrations import is_deepspeed_zero3_enabled

from m2rl.engine.grpo import (
    CHECKPOINTS,
    OPTIMIZER_KEYS,
    PRECISION,
    GrpoOption,
    domain_summary,
    importance_sampling_options,
    mapping_options,
    on_policy_trainer,
    optimizer_options,
    reward_summary,
    timed_trainer_class,
    train_in_run,
    vllm_engine_options,
)
from m2rl.errors import UserError
from m2rl.ledger import Run
from m2rl.specs import DistillJob, DistillRecipe

STAGES = ("generation", "reward", "teacher", "training")


def _batch(d: DistillRecipe, steps: int, world_size: int, use_cpu: bool) -> dict[str, Any]:  # noqa: ARG001
    _, accumulation = d.rollout_batch(world_size)
    return {
        "num_generations": d.num_generations,
        "per_device_train_batch_size": d.per_device_batch_size,
        "gradient_accumulation_steps": accumulation,
        "steps_per_generation": accumulation,
        "num_iterations": 1,
    }


# The whole distill -> trl.GRPOConfig mapping (the dry-run of `m2rl distill` prints it, made for real).
DISTILL_MAPPING: tuple[GrpoOption, ...] = (
    GrpoOption(
        "256 prompts x 4 samples per step, one optimizer step per rollout batch",
        ("prompts_per_step", "num_generations", "per_device_batch_size"),
        _batch,
        "per_device_train_batch_size x gradient_accumulation_steps x processes = prompts x samples",
    ),
    GrpoOption(
        "200 steps (the paper's table; its script says 400)",
        ("steps",),
        lambda d, steps, w, c: {"max_steps": steps},
    ),
    GrpoOption(
        "temperature 1.0 for sampling and for both log-probs",
        ("temperature", "top_p"),
        lambda d, s, w, c: {"temperature": d.temperature, "top_p": d.top_p},
        "TRL divides the logits by `temperature` when scoring; teachers are scored by the same function",
    ),
    GrpoOption(
        "max response 16k, max prompt 2048",
        ("max_completion_length", "max_prompt_length"),
        lambda d, s, w, c: {"max_completion_length": d.max_completion_length},
        "the prompt filter is m2rl's (`grpo_dataset`)",
    ),
    GrpoOption(
        "advantage log p_teacher(y_t) - log p_student(y_t), teacher routed per sample",
        (),
        lambda d, s, w, c: {
            "scale_rewards": "none",
            "loss_type": "grpo",
            "epsilon": 0.2,
            "epsilon_high": 0.2,
        },
        "m2rl's DistillTrainer replaces GRPO's advantage with the (B, T) log-ratio; one step per batch "
        "keeps the PPO ratio at 1 (the clip never acts); loss = mean over samples of each one's token-mean",
    ),
    GrpoOption(
        "no KL term, no entropy term",
        (),
        lambda d, s, w, c: {"beta": 0.0, "entropy_coef": 0.0},
    ),
    GrpoOption(
        "AdamW lr 1e-6 constant, betas (0.9, 0.98), wd 0.1",
        OPTIMIZER_KEYS,
        optimizer_options,
        "grad clip 1.0 is the GRPO recipe's (the script's OPD settings do not name one)",
    ),
    GrpoOption(
        "student rollouts on vLLM",
        ("rollout", "vllm.*"),
        lambda d, s, w, c: vllm_engine_options(d, s, w, c) | importance_sampling_options(d, s, w, c),
    ),
    PRECISION,
    CHECKPOINTS,
)


def distill_options(recipe: DistillRecipe, steps: int, world_size: int, use_cpu: bool) -> dict[str, Any]:
    """Every GRPOConfig option the distill recipe sets, from DISTILL_MAPPING."""
    return mapping_options(DISTILL_MAPPING, recipe, steps, world_size, use_cpu)


def build_distill_config(
    recipe: DistillRecipe, output_dir: Path, steps: int, world_size: int, use_cpu: bool, seed: int
):
    """The trl.GRPOConfig the distillation trainer runs under."""
    # lazy: TRL (heavy), only when a trainer is built; the dry run's recipe table imports this module
    from trl import GRPOConfig

    return GRPOConfig(
        output_dir=str(output_dir),
        seed=seed,
        disable_tqdm=True,
        shuffle_dataset=False,  # grpo_dataset already ordered the prompts (seeded, domains interleaved)
        log_completions=False,
        **distill_options(recipe, steps, world_size, use_cpu),
    )


def reverse_kl_advantages(teacher_logps, student_logps, mask):
    """Per-token advantage log p_teacher(y_t) - log p_student(y_t), zero on padding (shape (B, T))."""
    return (teacher_logps - student_logps) * mask


def domain_rows(domains: list[str]) -> dict[str, list[int]]:
    """Row indices of each domain in a batch, in first-seen order."""
    rows: dict[str, list[int]] = defaultdict(list)
    for index, domain in enumerate(domains):
        rows[domain].append(index)
    return dict(rows)


def served_request(prompt_ids, prompt_mask, completion_ids, completion_mask):
    """(sequences, prompt lengths, completion lengths) for a teacher server: each row's prompt without its
    (left) padding, then its completion up to its last unmasked token (none when the row is all masked)."""
    sequences, prompt_lengths, lengths = [], [], []
    for ids, keep, completion, mask in zip(
        prompt_ids, prompt_mask, completion_ids, completion_mask, strict=True
    ):
        prompt = ids[keep.bool()].tolist()
        unmasked = mask.nonzero()
        length = int(unmasked[-1]) + 1 if len(unmasked) else 0
        sequences.append(prompt + completion[:length].tolist())
        prompt_lengths.append(len(prompt))
        lengths.append(length)
    return sequences, prompt_lengths, lengths


def served_logps(actual_logprobs: list, lengths: list[int], completion_mask, where: str):
    """TRL's `actual_logprobs` (rows x tokens x 1) as a (rows, T) tensor aligned with `completion_mask`,
    0 on padding; a masked position without a finite log-prob is a UserError naming `where`."""
    scored = torch.zeros(completion_mask.shape, dtype=torch.float32)
    for row, (values, length) in enumerate(zip(actual_logprobs, lengths, strict=True)):
        if len(values) != length:
            raise UserError(f"{where} returned {len(values)} log-probs for a {length}-token completion")
        if length:
            scored[row, :length] = torch.tensor([value[0] for value in values], dtype=torch.float32)
    mask = completion_mask.detach().to("cpu").bool()
    bad = mask & ~torch.isfinite(scored)
    if bad.any():
        row, position = (int(i) for i in bad.nonzero()[0])
        raise UserError(
            f"{where} gave no finite log-prob for the sampled token at row {row}, position {position} "
            f"({int(bad.sum())} such tokens); serve the teacher with `trl vllm-serve` (vLLM's prompt log-probs "
            "always include the actual token)"
        )
    return torch.where(mask, scored, torch.zeros_like(scored))


class ServedTeacher:
    """A frozen teacher behind `trl vllm-serve --model <its model dir>`: per-token log p(y_t) of given
    sequences, by TRL's `VLLMClient.get_sequence_logprobs` (vLLM prompt log-probs, no generation).

    `top_logprobs=1` is enough: vLLM's prompt log-probs hold the actual token at any rank besides the
    top k, and TRL's client reads the actual token's entry from the whole mapping (`actual_logprobs`).
    vLLM does not scale prompt log-probs by temperature, so these are at temperature 1.0, and
    `DistillJob.served_teachers` refuses a served teacher at any other temperature.
    """

    def __init__(self, domain: str, address: str, temperature: float, connection_timeout: float = 60.0):
        from trl.generation import vllm_client  # looked up here, so that tests can stand a fake in

        self.domain, self.address, self.temperature = domain, address, temperature
        self.where = f"the {domain} teacher server ({address}, distill.teachers_served.{domain})"
        try:
            self.client = vllm_client.VLLMClient(
                base_url=f"http://{address}", connection_timeout=connection_timeout
            )
        except ImportError as exc:  # the client needs vllm and requests installed
            raise UserError(f"distill.teachers_served.{domain}: {exc}") from exc
        except OSError as exc:  # requests' ConnectionError, raised after connection_timeout
            raise UserError(
                f"{self.where} did not answer within {connection_timeout:.0f} s; start it with "
                "`trl vllm-serve --model <the expert run>/model --port PORT` (docs/distill.md)"
            ) from exc

    def logps(self, prompt_ids, prompt_mask, completion_ids, completion_mask):
        """log p_teacher of each completion token, (rows, T) on the completion's device, 0 on padding."""
        sequences, prompt_lengths, lengths = served_request(
            prompt_ids, prompt_mask, completion_ids, completion_mask
        )
        result = self.client.get_sequence_logprobs(
            sequences, prompt_lengths, top_logprobs=1, temperature=self.temperature
        )
        scored = served_logps(result["actual_logprobs"], lengths, completion_mask, self.where)
        return scored.to(completion_mask.device)


def distill_trainer_class():
    """TimedGRPOTrainer with the advantage replaced by the routed teachers' per-token log-ratio."""
    base = timed_trainer_class()

    class DistillTrainer(base):
        """GRPO's rollouts and loss; advantage = log p_teacher(own domain) - log p_student, per token."""

        teachers: dict[str, Any]  # domain -> frozen teacher model on the student's device, or a ServedTeacher
        distill_domains: list[str]  # every domain of the run (the same metric keys on every rank)
        teacher_seconds = 0.0  # this optimizer step's teacher scoring

        def set_teachers(self, teachers: dict[str, Any]) -> None:
            """Route each domain to its frozen teacher, scored by TRL's fused LM head at the student's temperature."""
            # lazy: TRL (heavy), only when a trainer is built; the dry run's recipe table imports this module
            from trl.trainer.utils import add_fused_lm_head

            for teacher in teachers.values():  # as GRPOTrainer patches its reference model
                if isinstance(teacher, ServedTeacher):
                    continue
                add_fused_lm_head(
                    teacher, temperature=self.temperature, cast_lm_head_to_fp32=self.args.cast_lm_head_to_fp32
                )
            if self.sharded:
                # lazy: TRL (heavy), only when a trainer is built; the dry run's recipe table imports this module
                from trl.models import prepare_deepspeed

                # a teacher loaded under ZeRO-3 is partitioned (zero.Init): an engine gathers it per forward,
                # as GRPOTrainer does for its reference model
                teachers = {
                    domain: t if isinstance(t, ServedTeacher) else prepare_deepspeed(t, self.accelerator)
                    for domain, t in teachers.items()
                }
            self.teachers = teachers

        @property
        def sharded(self) -> bool:
            """Whether the student and the in-process teachers are partitioned across the ranks (ZeRO-3)."""
            return self.is_deepspeed_enabled and self.accelerator.state.deepspeed_plugin.zero_stage == 3

        def _score_all_rows(self, input_ids, attention_mask, logits_to_keep):
            """(the student's log-probs, domain -> its in-process teacher's) of every row, in the same chunks."""
            with torch.no_grad():
                student = self._logps(self.model, input_ids, attention_mask, logits_to_keep)
            scored = {}
            for domain, model in self.teachers.items():
                if not isinstance(model, ServedTeacher):
                    with torch.inference_mode():
                        scored[domain] = self._logps(model, input_ids, attention_mask, logits_to_keep)
            return student, scored

        def _logps(self, model, input_ids, attention_mask, logits_to_keep):
            logps, _, _ = self._get_per_token_logps_and_entropies(
                model,
                input_ids,
                attention_mask,
                logits_to_keep,
                batch_size=self.args.per_device_train_batch_size,
            )
            return logps

        def _generate_and_score_completions(self, inputs):
            output = super()._generate_and_score_completions(inputs)
            domains = [row["domain"] for row in inputs]
            input_ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
            attention_mask = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
            logits_to_keep = output["completion_ids"].size(1)
            mask = output["completion_mask"].float()
            teacher = torch.zeros_like(mask)
            student = torch.zeros_like(mask)
            start = time.perf_counter()
            # ZeRO-3: each forward gathers the weights across the ranks (a collective), so every rank scores
            # all its rows with the student and every in-process teacher, in one order, whatever its domains
            everything = (
                self._score_all_rows(input_ids, attention_mask, logits_to_keep) if self.sharded else None
            )
            for domain, rows in domain_rows(domains).items():
                if domain not in self.teachers:
                    raise UserError(
                        f"a {domain} sample has no teacher (teachers: {', '.join(self.teachers)})"
                    )
                index = torch.tensor(rows, device=input_ids.device)
                ids, attention = input_ids[index], attention_mask[index]
                model = self.teachers[domain]
                if isinstance(model, ServedTeacher):
                    scored = model.logps(
                        output["prompt_ids"][index],
                        output["prompt_mask"][index],
                        output["completion_ids"][index],
                        output["completion_mask"][index],
                    )
                elif everything is not None:
                    scored = everything[1][domain][index]
                else:
                    with torch.inference_mode():
                        scored = self._logps(model, ids, attention, logits_to_keep)
                teacher[index] = scored.clone().to(teacher.dtype)
                if everything is not None:
                    student[index] = everything[0][index].to(student.dtype)
                    continue
                # the student scored on the same rows in the same chunks, so equal weights give equal numbers
                with torch.no_grad():
                    student[index] = self._logps(self.model, ids, attention, logits_to_keep).to(student.dtype)
            self.teacher_seconds += time.perf_counter() - start
            output["advantages"] = reverse_kl_advantages(teacher, student, mask)
            self._log_reverse_kl(domains, student - teacher, mask)
            return output

        def _log_reverse_kl(self, domains, log_ratio, mask) -> None:
            """Per domain: mean over samples of each sample's token-mean log p_student - log p_teacher."""
            per_sample = (log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)
            keys = ["all", *self.distill_domains]
            sums = torch.zeros(2 * len(keys), device=per_sample.device)
            for i, domain in enumerate(domains):
                for key in ("all", domain):
                    if key in keys:
                        sums[2 * keys.index(key)] += per_sample[i].float()
                        sums[2 * keys.index(key) + 1] += 1
            totals = self.accelerator.gather(sums.unsqueeze(0)).sum(dim=0).tolist()
            for j, key in enumerate(keys):
                if totals[2 * j + 1] > 0:
                    name = "reverse_kl" if key == "all" else f"{key}/reverse_kl"
                    self._metrics["train"][name].append(totals[2 * j] / totals[2 * j + 1])

        def training_step(self, model, inputs, num_items_in_batch):
            start = time.perf_counter()
            output = super(base, self).training_step(model, inputs, num_items_in_batch)
            if self._step % self.current_gradient_accumulation_steps == 0:
                generation, reward = self.clock.take()
                total = self._current_step_total + time.perf_counter() - start
                teacher, self.teacher_seconds = self.teacher_seconds, 0.0
                self._current_step_total = 0.0
                self._metrics["train"]["time/generation_s"].append(generation)
                self._metrics["train"]["time/reward_s"].append(reward)
                self._metrics["train"]["time/teacher_s"].append(teacher)
                self._metrics["train"]["time/training_s"].append(
                    max(total - generation - reward - teacher, 0.0)
                )
            else:
                self._current_step_total += time.perf_counter() - start
            return output

    return DistillTrainer


def load_teacher(path: str, dtype, device):
    """A frozen teacher: eval mode, no gradients, on the student's device."""
    # lazy: transformers' model classes, only when a model is loaded
    from transformers import AutoModelForCausalLM

    if is_deepspeed_zero3_enabled():
        # lazy: DeepSpeed, only under ZeRO-3
        import deepspeed

        # from_pretrained partitions the weights (zero.Init), which reads the world size from DeepSpeed's
        # comm; accelerate starts it on GPU, on CPU only the trainer's deepspeed.initialize would (later)
        deepspeed.init_distributed()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device)
    model.eval()
    model.requires_grad_(False)
    return model


def build_trainer(
    spec: DistillJob,
    output_dir: Path,
    student_path: str,
    teacher_paths: dict[str, str],
    samples: list[dict[str, Any]],
):
    """(the DistillTrainer with its routed teachers, tokenizer, prompts dropped as too long)."""
    recipe = spec.distill
    trainer, tokenizer, dropped = on_policy_trainer(
        distill_trainer_class(), build_distill_config, spec, recipe, student_path, samples, output_dir
    )
    dtype, device = trainer.model.dtype, trainer.accelerator.device
    served = spec.served_teachers()
    trainer.set_teachers(
        {
            domain: ServedTeacher(domain, served[domain], recipe.temperature)
            if domain in served
            else load_teacher(path, dtype, device)
            for domain, path in teacher_paths.items()
        }
    )
    trainer.distill_domains = list(spec.domains)
    return trainer, tokenizer, dropped


def train_distill(
    spec: DistillJob,
    run: Run,
    student_path: str,
    teacher_paths: dict[str, str],
    samples: list[dict[str, Any]],
    resume_from: str | None = None,
) -> dict[str, Any]:
    """Distil the routed teachers into the student from `student_path`; save it into the run; return metrics."""
    domains = spec.domains
    trainer, tokenizer, dropped = build_trainer(
        spec, run.path / "checkpoints", student_path, teacher_paths, samples
    )
    run.set_metrics(prompts=len(trainer.train_dataset), prompts_dropped_too_long=dropped)
    label = "distill " + ",".join(domains)
    train_in_run(
        trainer,
        tokenizer,
        run,
        "distill",
        label,
        domain_summary(domains, "reverse_kl", "reverse KL", 3),
        resume_from,
        STAGES,
    )
    return distill_summary(run.read_metrics(), domains)


def distill_summary(records: list[dict[str, Any]], domains: list[str], window: int = 10) -> dict[str, Any]:
    """reward_summary's per-domain verifier rewards, plus each domain's reverse KL over the first and last window."""
    summary = reward_summary(records, domains, window)
    for key in ("reverse_kl", *(f"{d}/reverse_kl" for d in domains)):
        values = [r[key] for r in records if r.get(key) is not None]
        if values:
            summary[f"{key}_first{window}"] = sum(values[:window]) / len(values[:window])
            summary[f"{key}_last{window}"] = sum(values[-window:]) / len(values[-window:])
    return summary
