"""Batched sampling from a transformers causal LM that drops finished sequences from the batch.

Written here because transformers' `generate` keeps a finished sequence in the batch until the
longest one ends, prefills a prompt once per sample, and sorts the whole vocabulary for top-p at every
step. On the built-in model that is most of eval and half of every GRPO step (`benchmarks/generation.py`
measures both side by side). The model's own forward and KV cache (transformers' DynamicCache) do the
work; this module only prefills each distinct prompt once, chooses which rows go on, and samples the
next token with temperature, top-k and top-p (nucleus) as `generate` does: the same distribution,
not the same random stream.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

# Top-p first looks among this many most likely tokens (exact whenever they hold the nucleus, else a
# full sort): a sort over the whole vocabulary at every step costs more than the model at 1M params.
NUCLEUS_CANDIDATES = 64
# Finished rows are dropped from the batch once they are this share of it (each drop copies the cache).
COMPACT_SHARE = 0.25


@dataclass(frozen=True)
class SamplingSettings:
    """How the next token is drawn."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0: no top-k
    max_new_tokens: int = 64


def next_tokens(logits: torch.Tensor, settings: SamplingSettings, generator: torch.Generator) -> torch.Tensor:
    """One token per row of `logits` (rows x vocabulary), drawn with temperature, top-k and top-p;
    temperature 0 takes the most likely token (greedy)."""
    if settings.temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / settings.temperature, dim=-1)
    index = None
    if settings.top_k and settings.top_k < probs.shape[-1]:
        probs, index = probs.topk(settings.top_k, dim=-1)  # sorted, most likely first
        probs = probs / probs.sum(-1, keepdim=True)
    if settings.top_p < 1.0:
        if index is None:
            candidates, index = probs.topk(min(NUCLEUS_CANDIDATES, probs.shape[-1]), dim=-1)
            if bool((candidates.sum(-1) >= settings.top_p).all()):
                probs = candidates
            else:  # some nucleus is wider than the candidates: sort everything
                probs, index = probs.sort(dim=-1, descending=True)
        # keep the most likely tokens until their mass reaches top_p (the first is always kept)
        probs = probs * ((probs.cumsum(-1) - probs) < settings.top_p)
    # argmax(p / E) with E ~ Exponential(1) draws index i with probability p_i / sum(p) (Gumbel-max);
    # E = -log U costs a third of torch's exponential_ on CPU.
    noise = torch.empty_like(probs).uniform_(generator=generator).log_().neg_()
    choice = (probs / noise).argmax(-1)
    return choice if index is None else index.gather(-1, choice[:, None])[:, 0]


def _cache_keyword(model) -> str:
    """The forward argument that takes the KV cache (transformers renamed `past_key_values` to `cache`)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _preallocated_layer(capacity: int):
    """A transformers DynamicLayer whose keys and values live in buffers sized for the whole generation.

    DynamicLayer concatenates every new token onto its keys and values: a third of decoding time on the
    built-in model went to those copies (cProfile of `benchmarks/generation.py`).
    """
    # lazy: transformers, only once a model samples (this module needs only torch to import)
    from transformers.cache_utils import DynamicLayer

    class PreallocatedLayer(DynamicLayer):
        def __init__(self) -> None:
            super().__init__()
            self.length = 0

        def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
            batch, heads, _, width = key_states.shape
            self.device = key_states.device
            self.key_buffer = key_states.new_empty(batch, heads, capacity, width)
            self.value_buffer = value_states.new_empty(batch, heads, capacity, value_states.shape[-1])
            self.is_initialized = True

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            end = self.length + key_states.shape[-2]
            self.key_buffer[:, :, self.length : end] = key_states
            self.value_buffer[:, :, self.length : end] = value_states
            self.length = end
            self.keys, self.values = self.key_buffer[:, :, :end], self.value_buffer[:, :, :end]
            return self.keys, self.values

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            self.key_buffer = self.key_buffer.index_select(0, indices)
            self.value_buffer = self.value_buffer.index_select(0, indices)
            self.keys = self.key_buffer[:, :, : self.length]
            self.values = self.value_buffer[:, :, : self.length]

    return PreallocatedLayer()


def _new_cache(model, capacity: int):
    """A KV cache for `capacity` positions: preallocated where every layer is full attention."""
    # lazy: transformers, only once a model samples (this module needs only torch to import)
    from transformers import DynamicCache

    cache = DynamicCache()
    config = model.config.get_text_config(decoder=True)
    types = getattr(config, "layer_types", None) or ["full_attention"] * config.num_hidden_layers
    if all(kind == "full_attention" for kind in types):
        cache.layers = [_preallocated_layer(capacity) for _ in types]
    return cache


def _select_rows(cache, rows: torch.Tensor) -> None:
    for layer in cache.layers:
        layer.batch_select_indices(rows)


@torch.inference_mode()
def sample(
    model,
    prompts: Sequence[Sequence[int]],
    settings: SamplingSettings,
    stop_ids: Sequence[int],
    pad_id: int,
    generator: torch.Generator,
    on_finished: Callable[[int], None] | None = None,
) -> list[list[int]]:
    """Sampled continuations of every prompt (token ids, up to and including the first stop token).

    Identical prompts are prefilled once. All prompts go in one batch: split larger sets outside.
    """
    device = next(model.parameters()).device
    distinct: dict[tuple[int, ...], int] = {}
    row_of_prompt = [distinct.setdefault(tuple(p), len(distinct)) for p in prompts]
    width = max(len(p) for p in distinct)
    ids = torch.full((len(distinct), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(distinct), width), dtype=torch.long)
    for prompt, row in distinct.items():
        ids[row, width - len(prompt) :] = torch.tensor(prompt)
        mask[row, width - len(prompt) :] = 1
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = _new_cache(model, width + settings.max_new_tokens)
    keyword = _cache_keyword(model)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, **{keyword: cache}).logits[
        :, -1
    ]

    expand = torch.tensor(row_of_prompt, device=device)  # one row per requested sequence
    _select_rows(cache, expand)
    logits, mask, next_position = logits[expand], mask[expand], positions[expand, -1] + 1
    active = torch.arange(len(prompts), device=device)  # which sequence each batch row is
    done = torch.zeros(len(prompts), dtype=torch.bool, device=device)  # per batch row
    stops = torch.tensor(sorted(set(stop_ids)), device=device)
    out = torch.full((len(prompts), settings.max_new_tokens), -1, dtype=torch.long)
    for step in range(settings.max_new_tokens):
        token = next_tokens(logits, settings, generator)
        live = ~done
        out[active[live].cpu(), step] = token[live].cpu()
        finished = live & torch.isin(token, stops)
        done |= finished
        last = bool(done.all()) or step == settings.max_new_tokens - 1
        if on_finished is not None:
            on_finished(int((~done).sum() + finished.sum()) if last else int(finished.sum()))
        if last:
            break
        if int(done.sum()) >= COMPACT_SHARE * len(done):
            keep = (~done).nonzero()[:, 0]
            _select_rows(cache, keep)
            active, token, mask, next_position = active[keep], token[keep], mask[keep], next_position[keep]
            done = done[keep]
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        logits = model(
            input_ids=token[:, None],
            attention_mask=mask,
            position_ids=next_position[:, None],
            **{keyword: cache},
        ).logits[:, -1]
        next_position = next_position + 1
    return [[t for t in row if t >= 0] for row in out.tolist()]
