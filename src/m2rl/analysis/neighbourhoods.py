"""Policy neighbourhoods: KL(pi_B || pi_multi) of an expert B and the mixed run on a domain A's prompts.

Responses are sampled from B at temperature 1 with no top-p or top-k, so they are draws from pi_B
itself and the Monte Carlo estimate is unbiased: for a response y of T tokens,
S(y) = sum_t log pi_B(y_t | x, y_<t) - log pi_multi(y_t | x, y_<t), and E_{y ~ pi_B}[S] is the KL
between the two policies' response distributions on x (responses cut at `max_new_tokens`). Two
numbers per cell: the per-sequence KL, mean S, and the per-token KL, sum S / sum T (by Wald's identity
this is the per-step KL averaged over the tokens pi_B emits; a mean of per-sequence S / T would
over-weight the stop token of short responses). Samples of one prompt are correlated, so standard
errors are over prompts: the spread of the prompts' mean S, and for the ratio the delta method.

Sampling uses the eval backend's own generator (m2rl.sampling on the HF backend, vLLM on GPU), kept as
token ids so that scoring sees exactly the sampled tokens; scoring is batched teacher forcing
(m2rl.analysis.scoring).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from m2rl.evaluate.generation import Messages, cpu_threads, derived_seed, render_prompts, vllm_request_params
from m2rl.evaluate.settings import GenerationSettings


@dataclass(frozen=True)
class KLEstimate:
    """KL(pi_B || pi_multi) per sequence and per token, with standard errors over prompts."""

    per_sequence: float
    per_sequence_se: float
    per_token: float
    per_token_se: float
    n_prompts: int
    n_samples: int
    mean_tokens: float

    def to_json(self) -> dict[str, float | int]:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in self.__dict__.items()}


def kl_estimate(
    sampler_logprobs: Sequence[np.ndarray], reference_logprobs: Sequence[np.ndarray], prompt_of: Sequence[int]
) -> KLEstimate:
    """The KL estimate from each sampled response's token log-probs under the sampler and the reference."""
    sums = np.array([float(np.sum(a - b)) for a, b in zip(sampler_logprobs, reference_logprobs, strict=True)])
    tokens = np.array([len(a) for a in sampler_logprobs], dtype=float)
    prompts = np.asarray(prompt_of)
    groups = np.unique(prompts)
    per_prompt = np.array([sums[prompts == p].mean() for p in groups])
    per_prompt_tokens = np.array([tokens[prompts == p].mean() for p in groups])
    n = len(groups)
    per_sequence = float(per_prompt.mean())
    per_token = float(per_prompt.sum() / per_prompt_tokens.sum()) if per_prompt_tokens.sum() else math.nan
    if n > 1:
        sequence_se = float(per_prompt.std(ddof=1) / math.sqrt(n))
        residuals = per_prompt - per_token * per_prompt_tokens
        token_se = float(math.sqrt(float(residuals @ residuals) / (n * (n - 1))) / per_prompt_tokens.mean())
    else:
        sequence_se = token_se = math.nan
    return KLEstimate(per_sequence, sequence_se, per_token, token_se, n, len(sums), float(tokens.mean()))


def sample_token_ids(
    generator,
    prompts: Sequence[Messages],
    samples: int,
    max_new_tokens: int,
    enable_thinking: bool,
    seed: int,
) -> tuple[list[list[int]], list[list[list[int]]]]:
    """(prompt token ids, `samples` sampled completions per prompt as token ids, the stop token included)
    from an HFGenerator or VllmGenerator, at temperature 1 with no top-p."""
    settings = GenerationSettings(
        temperature=1.0, top_p=1.0, max_new_tokens=max_new_tokens, enable_thinking=enable_thinking
    )
    tokenizer = generator.tokenizer
    texts = render_prompts(tokenizer, prompts, settings)
    prompt_ids = [list(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    if hasattr(generator, "llm"):
        return prompt_ids, _vllm_samples(generator, prompt_ids, samples, settings, seed)
    return prompt_ids, _hf_samples(generator, prompt_ids, samples, settings, seed)


def _hf_samples(generator, prompt_ids, samples, settings, seed) -> list[list[list[int]]]:
    # lazy: torch and m2rl.sampling (torch), only where the hf backend samples
    import torch

    from m2rl.sampling import SamplingSettings, sample

    sampling = SamplingSettings(settings.temperature, settings.top_p, 0, settings.max_new_tokens)
    per_call = max(1, generator.batch_size // samples)
    out: list[list[list[int]]] = []
    threads = generator.torch_threads if generator.device_type == "cpu" else None
    with cpu_threads(threads):
        for batch, start in enumerate(range(0, len(prompt_ids), per_call)):
            chunk = prompt_ids[start : start + per_call]
            rng = torch.Generator(device=generator.device_type).manual_seed(derived_seed(seed, batch))
            tokens = sample(
                generator.model,
                [ids for ids in chunk for _ in range(samples)],
                sampling,
                generator.stop_ids,
                generator.tokenizer.pad_token_id,
                rng,
            )
            out += [tokens[i * samples : (i + 1) * samples] for i in range(len(chunk))]
    return out


def _vllm_samples(generator, prompt_ids, samples, settings, seed) -> list[list[list[int]]]:
    # lazy: vllm, only with the vllm backend
    from vllm import SamplingParams

    params = vllm_request_params(SamplingParams, settings, samples, seed, generator.stop_ids, len(prompt_ids))
    outputs = generator.llm.generate(
        [{"prompt_token_ids": ids} for ids in prompt_ids], params, use_tqdm=False
    )
    return [[list(choice.token_ids) for choice in output.outputs] for output in outputs]


@dataclass
class KLMatrix:
    """Prompt domains A (rows) x experts B (columns): KL(pi_B || pi_reference) on A's prompts, and the
    reference's (the mixed run's) score minus B's on A, in points."""

    reference: str
    domains: list[str]
    experts: list[str]
    cells: list[list[KLEstimate | None]]
    score_change: list[list[float | None]]

    def to_json(self) -> dict:
        return {
            "reference": self.reference,
            "domains": self.domains,
            "experts": self.experts,
            "kl": [[None if c is None else c.to_json() for c in row] for row in self.cells],
            "score_change_points": self.score_change,
        }
