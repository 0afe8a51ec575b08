"""Sequences/s of eval-style sampling: transformers `generate` (before) against `m2rl.sampling` (after).

    .venv/bin/python benchmarks/generation.py --model RUNS/<sft-run>/model [--items 64] [--k 4]
                                              [--batch 256] [--rounds 3] [--threads 1] [--top-p 0.7]

Both sample K responses to the same built-in held-out prompts (an equal share of each domain) from the
same model with the same settings (temperature 1.0, top-p, 96 new tokens, stop at <|im_end|>), in
batches of the same size, sorted by prompt length, in this process with `--threads` torch threads.
Rounds alternate which one goes first because the machine may be shared; the table gives each one's
median sequences/s, mean new tokens per sequence, and the ratio of medians. Use a trained model (an
SFT run): an untrained one never stops, which hides what dropping finished sequences saves.
Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

for _key, _value in {
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "TRANSFORMERS_VERBOSITY": "error",
}.items():
    os.environ.setdefault(_key, _value)


def prompts(items_per_domain: int) -> list:
    """Held-out built-in prompts, an equal share of each domain (the tiny preset's difficulties)."""
    from m2rl.config import compose_config
    from m2rl.data.builtin import generate
    from m2rl.data.load import builtin_difficulty

    data = compose_config([]).data
    return [
        sample["prompt"]
        for domain in data.domains
        for sample in generate(domain, "test", items_per_domain, 0, builtin_difficulty(data, domain))
    ]


def run_hf_generate(
    generator, texts: list[str], order: list[int], k: int, batch: int, settings, seed: int
) -> list[int]:
    """Lengths of new tokens from transformers `generate` (the before)."""
    import torch

    per_call, lengths = max(1, batch // k), []
    for index, start in enumerate(range(0, len(order), per_call)):
        chunk = order[start : start + per_call]
        enc = generator.tokenizer(
            [texts[i] for i in chunk], return_tensors="pt", padding=True, add_special_tokens=False
        )
        torch.manual_seed(seed + index)
        with torch.inference_mode():
            out = generator.model.generate(
                **enc,
                do_sample=True,
                temperature=settings.temperature,
                top_p=settings.top_p,
                top_k=0,
                max_new_tokens=settings.max_new_tokens,
                num_return_sequences=k,
                eos_token_id=generator.stop_ids,
                pad_token_id=generator.tokenizer.pad_token_id,
            )
        lengths += [
            generator.decode_completion(row).num_tokens
            for row in out[:, enc["input_ids"].shape[1] :].tolist()
        ]
    return lengths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", required=True, help="a model directory with its tokenizer (an SFT run's model)"
    )
    parser.add_argument("--items", type=int, default=64, help="held-out prompts per domain")
    parser.add_argument("--k", type=int, default=4, help="samples per prompt")
    parser.add_argument("--batch", type=int, default=256, help="sequences per batch")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--top-p", type=float, default=0.7)
    args = parser.parse_args()

    import torch

    from m2rl.evaluate.generation import HFGenerator, render_prompts
    from m2rl.evaluate.settings import GenerationSettings

    torch.set_num_threads(args.threads)
    settings = GenerationSettings(temperature=1.0, top_p=args.top_p, max_new_tokens=96)
    generator = HFGenerator(args.model, batch_size=args.batch, torch_threads=args.threads)
    chats = prompts(args.items)
    texts = render_prompts(generator.tokenizer, chats, settings)
    lengths = [len(ids) for ids in generator.tokenizer(texts, add_special_tokens=False)["input_ids"]]
    order = sorted(range(len(texts)), key=lambda i: lengths[i])
    sequences = len(texts) * args.k

    def before(seed: int) -> list[int]:
        return run_hf_generate(generator, texts, order, args.k, args.batch, settings, seed)

    def after(seed: int) -> list[int]:
        return [c.num_tokens for group in generator.generate(chats, args.k, settings, seed) for c in group]

    timings: dict[str, list[float]] = {"transformers generate": [], "m2rl.sampling": []}
    tokens: dict[str, list[float]] = {name: [] for name in timings}
    runners = {"transformers generate": before, "m2rl.sampling": after}
    for round_index in range(args.rounds):
        names = list(runners) if round_index % 2 == 0 else list(reversed(runners))
        for name in names:
            start = time.perf_counter()
            produced = runners[name](round_index)
            timings[name].append(sequences / (time.perf_counter() - start))
            tokens[name].append(sum(produced) / len(produced))
    base = statistics.median(timings["transformers generate"])
    print(
        f"{sequences} sequences per round ({len(texts)} prompts x K={args.k}), batch {args.batch}, "
        f"top-p {args.top_p}, {args.threads} thread(s), {args.rounds} rounds, load {os.getloadavg()[0]:.2f}"
    )
    print(f"{'sampler':<24}{'median seq/s':>14}{'min':>8}{'max':>8}{'new tokens/seq':>16}{'ratio':>8}")
    for name, values in timings.items():
        median = statistics.median(values)
        print(
            f"{name:<24}{median:>14.1f}{min(values):>8.1f}{max(values):>8.1f}"
            f"{statistics.fmean(tokens[name]):>16.1f}{median / base:>8.2f}"
        )


if __name__ == "__main__":
    main()
