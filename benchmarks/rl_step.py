"""Seconds per GRPO step and tokens/s of m2rl's engine next to a bare TRL GRPOTrainer (tiny preset).

    .venv/bin/python benchmarks/rl_step.py [--domain math] [--steps 8] [--warmup 2] [--rounds 2]
                                           [--threads N] [--plain] [--keep DIR] [--override KEY=VALUE ...]

Both variants train the same model (the built-in tiny model, cached under `<runs-dir>/.cache`) on
the same prompts in the same order (`rl_samples(cfg.data, [domain])`, ordered and length-filtered as
m2rl does; dataset preparation is not timed), with the same reward rules (a plain function calling
`m2rl.verifiers.score_batch` with the same VerifierConfig) and the same `trl.GRPOConfig`
(`build_grpo_config`'s output, seed included):

- m2rl: `m2rl.engine.grpo.train_grpo` inside a ledger run and `attempt()`, everything on: the timed
  trainer subclass, the domain-routed reward with per-domain metrics, the ledger/stage/progress
  callbacks (the progress bar draws as in a terminal, FORCE_COLOR=1, unless `--plain`);
- bare: `trl.GRPOTrainer` with that reward function and no callbacks (TRL's log printer removed).

Each variant runs in its own subprocess with the same `torch.set_num_threads` (`--threads`, else
`cfg.torch_threads`, else torch's default); rounds alternate the order (bare first, then m2rl first)
because the machine may be shared. A step's wall time is the interval between consecutive
`on_step_end` events (so every step carries its optimizer update, logging and callbacks); the first
`--warmup` steps of each run are discarded. To see those events in m2rl the benchmark wraps
`m2rl.engine.grpo.timed_trainer_class` so the trainer gets one extra timing callback, the same one the
bare trainer gets. Tokens per step are the increments of TRL's logged `num_tokens` (prompt +
completion tokens). CPU s/step is the training process's own CPU time over the same intervals,
steadier than wall time when other processes share the cores. `--keep DIR` keeps each run's
per-step JSON and output log. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

for _key, _value in {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "TRANSFORMERS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}.items():
    os.environ.setdefault(_key, _value)

VARIANTS = ("bare", "m2rl")
TARGET_OVERHEAD = 0.10


def step_timer():
    """A TrainerCallback recording each step's end time and the logged TRL metrics."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.begin = (0.0, 0.0)
            self.ends: list[tuple[float, float]] = []  # (wall, this process's CPU seconds)
            self.logs: dict[int, dict[str, Any]] = {}

        def on_train_begin(self, args, state, control, **kwargs):
            self.begin = (time.perf_counter(), time.process_time())

        def on_step_end(self, args, state, control, **kwargs):
            self.ends.append((time.perf_counter(), time.process_time()))

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs:
                self.logs.setdefault(state.global_step, {}).update(logs)

    return StepTimer()


def _texts(completions: list) -> list[str]:
    return ["".join(m.get("content", "") for m in c) if isinstance(c, list) else str(c) for c in completions]


def _train_bare(cfg, model_path: str, samples: list[dict], steps: int, workdir: Path, timer) -> list[float]:
    """A plain trl.GRPOTrainer with a verifier reward function; returns reward seconds per call."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOTrainer

    from m2rl.engine.grpo import build_grpo_config, grpo_dataset
    from m2rl.jobs.build import rl_job
    from m2rl.verifiers import VerifierConfig, score_batch
    from m2rl.verifiers.config import verifier_settings

    use_cpu = not torch.cuda.is_available()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    dataset, _ = grpo_dataset(samples, tokenizer, int(cfg.rl.max_prompt_length), int(cfg.seed))
    dataset = dataset.select_columns(["prompt", "sample_id"])  # same prompts, same order
    by_id = {s["id"]: s for s in samples}
    config = VerifierConfig.of(verifier_settings(cfg))
    reward_seconds: list[float] = []

    def verifier(prompts, completions, sample_id, **kwargs) -> list[float]:
        start = time.perf_counter()
        verdicts = score_batch([by_id[i] for i in sample_id], _texts(completions), config)
        reward_seconds.append(time.perf_counter() - start)
        return [float(v.reward) for v in verdicts]

    dtype = torch.float32 if use_cpu else getattr(torch, str(cfg.model.dtype))
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype)
    recipe = rl_job(cfg, "bench-bare", [samples[0]["domain"]], None).rl
    args = build_grpo_config(recipe, workdir / "checkpoints", steps, 1, use_cpu, int(cfg.seed))
    trainer = GRPOTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=tokenizer, reward_funcs=[verifier]
    )
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(timer)
    trainer.train()
    return reward_seconds


def _train_m2rl(cfg, model_path: str, samples: list[dict], domain: str, steps: int, workdir: Path, timer):
    """m2rl's engine as `m2rl rl` runs it, in a ledger run, with one extra timing callback."""
    from m2rl.config import to_container
    from m2rl.engine import grpo
    from m2rl.jobs.build import rl_job
    from m2rl.ledger import Device, Ledger, attempt

    original = grpo.timed_trainer_class

    def with_timer():
        class BenchTrainer(original()):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self.add_callback(timer)

        return BenchTrainer

    grpo.timed_trainer_class = with_timer
    spec = rl_job(cfg, f"bench-rl-{domain}", [domain], None)
    spec = spec.model_copy(update={"steps": steps})
    run = Ledger(workdir / "runs").create(
        "rl", spec.name, to_container(cfg), device=Device.detect(1), world_size=1
    )
    run.update(domains=[domain], base_model=model_path, steps=steps)
    with attempt(run):
        grpo.train_grpo(spec, run, model_path, samples)


def worker(args: argparse.Namespace) -> None:
    """Train one variant in this process and write its per-step measurements as JSON."""
    import torch

    from m2rl.config import compose_config
    from m2rl.data.load import rl_samples

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = compose_config(args.override)
    samples = rl_samples(cfg.data, [args.domain])[args.domain]
    timer = step_timer()
    reward_seconds: list[float] | None = None
    with tempfile.TemporaryDirectory(prefix="m2rl-bench-") as tmp:
        if args.worker == "bare":
            reward_seconds = _train_bare(cfg, args.model, samples, args.steps, Path(tmp), timer)
        else:
            _train_m2rl(cfg, args.model, samples, args.domain, args.steps, Path(tmp), timer)
    ends = [timer.begin, *timer.ends]
    wall = [b[0] - a[0] for a, b in zip(ends, ends[1:], strict=False)]
    cpu = [b[1] - a[1] for a, b in zip(ends, ends[1:], strict=False)]
    logs = [timer.logs.get(step, {}) for step in range(1, len(timer.ends) + 1)]
    tokens = [float(log.get("num_tokens") or 0.0) for log in logs]
    result = {
        "variant": args.worker,
        "threads": torch.get_num_threads(),
        "wall": wall,
        "cpu": cpu,
        "tokens": [b - a for a, b in zip([0.0, *tokens], tokens, strict=False)],
        "in_training_step": [float(log.get("step_time") or 0.0) for log in logs],
        "reward": reward_seconds
        if reward_seconds is not None
        else [float(log.get("time/reward_s") or 0.0) for log in logs],
    }
    Path(args.json).write_text(json.dumps(result))


def run_variant(variant: str, model: str, args: argparse.Namespace, out: Path, log: Path) -> dict[str, Any]:
    """Run one variant in a fresh interpreter; its output goes to `log`."""
    command = [sys.executable, __file__, "--worker", variant, "--model", model, "--json", str(out)]
    command += ["--domain", args.domain, "--steps", str(args.steps)]
    command += ["--threads", str(args.threads or 0)] + [f"--override={o}" for o in args.override]
    env = dict(os.environ)
    env.pop("FORCE_COLOR", None)
    if not args.plain:
        env["FORCE_COLOR"] = "1"  # m2rl's progress bar draws (10 refreshes/s) as in a terminal
    with log.open("w") as sink:
        done = subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, env=env, check=False)
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise SystemExit(f"{variant} worker failed (exit {done.returncode}); last lines of {log}:\n{tail}")
    return json.loads(out.read_text())


def summarize(results: list[dict[str, Any]], warmup: int) -> dict[str, float]:
    """Pool the measured steps (after warm-up) of every round of one variant."""

    def pooled(key: str) -> list[float]:
        return [value for r in results for value in r[key][warmup:]]

    wall, tokens = pooled("wall"), pooled("tokens")
    seconds = statistics.fmean(wall)
    in_step = statistics.fmean(pooled("in_training_step"))
    return {
        "steps": len(wall),
        "s_per_step": seconds,
        "median": statistics.median(wall),
        "cpu": statistics.fmean(pooled("cpu")),
        "min": min(wall),
        "max": max(wall),
        "tokens_per_step": statistics.fmean(tokens),
        "tokens_per_s": statistics.fmean(tokens) / seconds,
        "in_training_step": in_step,
        "reward": statistics.fmean(pooled("reward")),
        "outside": seconds - in_step,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domain", default="math", help="one domain: math, code, science or if")
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per run (default 8)")
    parser.add_argument("--warmup", type=int, default=2, help="first steps of each run not measured")
    parser.add_argument("--rounds", type=int, default=2, help="runs per variant, order alternating")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: cfg.torch_threads)"
    )
    parser.add_argument("--override", action="append", default=[], help="config override, repeatable")
    parser.add_argument("--plain", action="store_true", help="workers' output not a terminal (no live bar)")
    parser.add_argument(
        "--runs-dir", default=os.environ.get("M2RL_RUNS_DIR", "runs"), help="model cache root"
    )
    parser.add_argument("--keep", help="directory to keep each run's per-step JSON and output log in")
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    from rich.console import Console
    from rich.table import Table

    from m2rl.config import compose_config
    from m2rl.data.load import check_domains
    from m2rl.errors import UserError
    from m2rl.models.resolve import resolve_base_model

    console = Console()
    if not console.is_terminal:
        console = Console(width=140)  # a pipe or file gets the whole table
    if args.steps <= args.warmup:
        raise SystemExit(f"--steps {args.steps} must exceed --warmup {args.warmup}")
    load_start = os.getloadavg()
    try:
        cfg = compose_config(args.override)
        check_domains([args.domain], cfg.data)
    except UserError as exc:
        raise SystemExit(f"error: {exc}") from None
    if int(cfg.rl.logging_steps) != 1:
        raise SystemExit("rl.logging_steps must be 1: tokens per step come from every step's log")
    args.threads = args.threads or (int(cfg.torch_threads) if cfg.get("torch_threads") else None)
    model = resolve_base_model(cfg.model, Path(args.runs_dir))
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="m2rl-bench-") as tmp:
        keep = Path(args.keep or tmp)
        keep.mkdir(parents=True, exist_ok=True)
        for round_index in range(args.rounds):
            order = VARIANTS if round_index % 2 == 0 else VARIANTS[::-1]
            for variant in order:
                begin = time.perf_counter()
                out = keep / f"{variant}-{round_index}.json"
                log = keep / f"{variant}-{round_index}.log"
                results[variant].append(run_variant(variant, model, args, out, log))
                console.print(
                    f"[dim]round {round_index + 1}/{args.rounds} {variant}: "
                    f"{time.perf_counter() - begin:.1f} s (process incl. start-up)[/dim]"
                )
    load_end = os.getloadavg()
    stats = {v: summarize(results[v], args.warmup) for v in VARIANTS}
    bare, ours = stats["bare"], stats["m2rl"]
    overhead = (ours["s_per_step"] - bare["s_per_step"]) / bare["s_per_step"]
    overhead_median = (ours["median"] - bare["median"]) / bare["median"]
    overhead_cpu = (ours["cpu"] - bare["cpu"]) / bare["cpu"]
    threads = results["m2rl"][0]["threads"]

    rl = cfg.rl
    table = Table(
        title=(
            f"GRPO step, tiny preset, {args.domain}: {rl.prompts_per_step} prompts x {rl.num_generations} "
            f"samples, <= {rl.max_completion_length} new tokens, torch threads {threads}"
        )
    )
    columns = (
        "variant", "s/step", "median", "min", "max", "CPU s/step", "tokens/step", "tokens/s",
        "in training_step", "reward", "outside training_step",
    )  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column == "variant" else "right")
    for variant in VARIANTS:
        s = stats[variant]
        table.add_row(
            variant if variant == "m2rl" else "bare TRL",
            f"{s['s_per_step']:.3f}",
            f"{s['median']:.3f}",
            f"{s['min']:.3f}",
            f"{s['max']:.3f}",
            f"{s['cpu']:.3f}",
            f"{s['tokens_per_step']:,.0f}",
            f"{s['tokens_per_s']:,.0f}",
            f"{s['in_training_step']:.3f}",
            f"{s['reward']:.3f}",
            f"{s['outside']:.3f}",
        )
    verdict = "[green]within[/green]" if overhead <= TARGET_OVERHEAD else "[red]over[/red]"
    same_work = "identical" if ours["tokens_per_step"] == bare["tokens_per_step"] else "DIFFERENT"
    table.caption = (
        "Seconds per step (mean over measured steps) split into TRL's training_step (generation, reward, "
        "loss and backward; reward also shown alone) and what lies outside it (optimizer step, logging, "
        "callbacks). CPU s/step: the training process's own CPU time (all its threads), which other "
        "processes on a shared machine disturb far less than wall time.\n"
        f"m2rl overhead {overhead:+.1%} of bare s/step ({verdict} the {TARGET_OVERHEAD:.0%} target; "
        f"{overhead_median:+.1%} on medians, {overhead_cpu:+.1%} on CPU seconds); "
        f"tokens/step {same_work}. Steps {args.warmup + 1}..{args.steps} of each run x {args.rounds} "
        f"rounds = {ours['steps']} steps per variant. Load average at start "
        f"{load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f} (1/5/15 min), at end "
        f"{load_end[0]:.2f}, on {os.cpu_count()} CPUs; total {time.perf_counter() - started:.0f} s."
    )
    console.print(table)


if __name__ == "__main__":
    main()
