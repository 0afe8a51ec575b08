"""Supervised fine-tuning on TRL's SFTTrainer, built from the SFT job spec, loss on assistant tokens only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from transformers.trainer_callback import PrinterCallback

from m2rl.data.load import sft_conversations
from m2rl.engine.callbacks import LedgerMetricsCallback, LedgerProgressCallback, RichProgressBar
from m2rl.errors import UserError
from m2rl.ledger import Run
from m2rl.specs import SFTJob, SFTRecipe


def gradient_accumulation(global_batch: int, per_device: int, world_size: int) -> int:
    """Accumulation steps so that per_device x steps x world_size equals the global batch."""
    per_step = per_device * world_size
    if global_batch % per_step:
        raise UserError(
            f"sft.global_batch_size={global_batch} is not a multiple of per_device_batch_size x processes = {per_step}"
        )
    return global_batch // per_step


def build_sft_config(sft: SFTRecipe, output_dir: Path, world_size: int, use_cpu: bool, seed: int):
    """The trl.SFTConfig for this recipe (the mapping from m2rl keys to TRL options lives here)."""
    # lazy: TRL (heavy), only when a trainer is built; the dry run's recipe table imports this module
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(output_dir),
        learning_rate=sft.learning_rate,
        lr_scheduler_type="cosine_with_min_lr",
        # the floor as a ratio: `min_lr` makes transformers read optimizer.defaults["lr"], which
        # DeepSpeed's ZeRO optimizer lacks (AttributeError under launcher=accelerate_zero*)
        lr_scheduler_kwargs={"min_lr_rate": sft.min_learning_rate / sft.learning_rate},
        warmup_steps=sft.warmup_ratio,  # a float < 1 is a ratio of total steps
        adam_beta1=sft.adam_beta1,
        adam_beta2=sft.adam_beta2,
        weight_decay=sft.weight_decay,
        per_device_train_batch_size=sft.per_device_batch_size,
        gradient_accumulation_steps=gradient_accumulation(
            sft.global_batch_size, sft.per_device_batch_size, world_size
        ),
        num_train_epochs=sft.epochs,
        max_steps=sft.max_steps,
        max_length=sft.max_length,
        assistant_only_loss=sft.assistant_only_loss,
        bf16=sft.bf16 and not use_cpu,
        use_cpu=use_cpu,
        gradient_checkpointing=sft.gradient_checkpointing,
        logging_steps=sft.logging_steps,
        save_strategy="steps" if sft.save_steps > 0 else "no",
        save_steps=max(sft.save_steps, 1),
        save_total_limit=sft.save_total_limit,
        report_to=list(sft.report_to),
        seed=seed,
        disable_tqdm=True,
        dataset_num_proc=None,
    )


class EmptyThinkMasker:
    """Wraps the SFT collator: an empty think block (`<think>\n\n</think>`) is not trained on.

    The paper masks empty think blocks in SFT (non-reasoning turns render them through the Qwen3
    template); TRL's assistant mask would otherwise teach the model to emit them.
    """

    def __init__(self, collator, pattern: list[int]):
        self.collator = collator
        self.pattern = pattern

    def __call__(self, examples):
        batch = self.collator(examples)
        labels, width = batch["labels"], len(self.pattern)
        pattern = torch.tensor(self.pattern, device=labels.device)
        if labels.shape[1] >= width:
            windows = batch["input_ids"].unfold(1, width, 1)  # (batch, positions, width)
            rows, starts = torch.nonzero((windows == pattern).all(-1), as_tuple=True)
            for row, start in zip(rows.tolist(), starts.tolist(), strict=True):
                labels[row, start : start + width] = -100
        return batch


def train_sft(spec: SFTJob, run: Run, model_path: str, resume_from: str | None = None) -> dict[str, Any]:
    """Fine-tune `model_path` on the spec's SFT data; save the model into the run; return metrics."""
    # lazy: TRL (heavy), only when a trainer is built; the dry run's recipe table imports this module
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    use_cpu = not torch.cuda.is_available()
    with run.stage("data"):
        dataset = sft_conversations(OmegaConf.create(spec.data))
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    dtype = getattr(torch, spec.model.dtype) if not use_cpu else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype)
    world_size = spec.launcher.world_size
    args = build_sft_config(spec.sft, run.path / "checkpoints", world_size, use_cpu, spec.seed)
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    if spec.sft.mask_empty_think:
        # the paper masks exactly these tokens (Qwen3 ids 151667, 271, 151668)
        pattern = tokenizer.encode("<think>\n\n</think>", add_special_tokens=False)
        trainer.data_collator = EmptyThinkMasker(trainer.data_collator, pattern)
    trainer.remove_callback(PrinterCallback)  # added by disable_tqdm; the rich bar replaces it
    summarize = lambda logs: f"loss {logs['loss']:.3f}" if "loss" in logs else ""  # noqa: E731
    trainer.add_callback(LedgerMetricsCallback(run))
    trainer.add_callback(LedgerProgressCallback(run, "sft", summarize))
    bar = RichProgressBar("sft", summarize)
    trainer.add_callback(bar)
    with run.stage("training"):
        try:
            result = trainer.train(resume_from_checkpoint=resume_from)
        finally:
            bar.stop()
    with run.stage("save"):
        trainer.save_model(str(run.model_dir))  # collective under ZeRO-3: every rank takes part
        if trainer.accelerator.is_main_process:
            tokenizer.save_pretrained(str(run.model_dir))
    losses = [r["loss"] for r in run.read_metrics() if r.get("loss") is not None]
    head = losses[: max(1, len(losses) // 10)]
    tail = losses[-max(1, len(losses) // 10) :]
    return {
        "train_loss": float(result.training_loss),
        "loss_start": sum(head) / len(head) if head else None,
        "loss_end": sum(tail) / len(tail) if tail else None,
        "steps": int(result.global_step),
        "examples": len(dataset),
    }
