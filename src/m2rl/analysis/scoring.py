"""Batched log-probabilities of given completions under a causal LM (teacher forcing).

Sequences (prompt + completion) are sorted by length and packed into right-padded batches of at most
`max_tokens` padded tokens; the decoder runs once per batch, and the output head and log-softmax run
only on the positions that predict a completion token, `HEAD_ROWS` at a time, so a long response over a
150k vocabulary never materialises its full logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

HEAD_ROWS = 2048  # positions through the output head at once


def load_scorer(model_dir: Path, dtype: str, device: str | None = None):
    """A causal LM for scoring, in `dtype`, on CUDA when available."""
    # lazy: transformers, only where a scorer model is loaded
    from transformers import AutoModelForCausalLM

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=getattr(torch, dtype))
    return model.to(device).eval()


def _batches(lengths: list[int], max_tokens: int) -> list[list[int]]:
    """Indices grouped so that rows x the longest row stay within `max_tokens` (a long row goes alone)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        if current and (len(current) + 1) * lengths[index] > max_tokens:
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


@torch.inference_mode()
def completion_logprobs(
    model,
    prompts: Sequence[Sequence[int]],
    completions: Sequence[Sequence[int]],
    max_tokens: int,
    pad_id: int = 0,
) -> list[np.ndarray]:
    """log p(completion token | prompt, earlier tokens) for every token of every completion (float64)."""
    device = next(model.parameters()).device
    decoder, head = model.get_decoder(), model.get_output_embeddings()
    lengths = [len(p) + len(c) for p, c in zip(prompts, completions, strict=True)]
    out: list[np.ndarray] = [np.zeros(0) for _ in prompts]
    for batch in _batches(lengths, max_tokens):
        width = max(lengths[i] for i in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        rows, positions, targets = [], [], []
        for row, index in enumerate(batch):
            prompt, completion = list(prompts[index]), list(completions[index])
            ids[row, : lengths[index]] = torch.tensor(prompt + completion)
            mask[row, : lengths[index]] = 1
            rows += [row] * len(completion)
            positions += range(len(prompt) - 1, len(prompt) - 1 + len(completion))
            targets += completion
        hidden = decoder(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
        picked = hidden[torch.tensor(rows, device=device), torch.tensor(positions, device=device)]
        wanted = torch.tensor(targets, device=device)
        scores = (
            torch.cat(
                [
                    torch.log_softmax(head(picked[s : s + HEAD_ROWS]).float(), dim=-1).gather(
                        -1, wanted[s : s + HEAD_ROWS, None]
                    )[:, 0]
                    for s in range(0, len(targets), HEAD_ROWS)
                ]
            )
            if targets
            else torch.zeros(0)
        )
        values = scores.double().cpu().numpy()
        cursor = 0
        for index in batch:
            size = len(completions[index])
            out[index] = values[cursor : cursor + size]
            cursor += size
    return out
