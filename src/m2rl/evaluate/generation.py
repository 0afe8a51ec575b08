"""Sampling K responses per prompt: transformers `generate` (CPU or GPU) or vLLM (GPU).

Both backends render prompts with the model's own chat template (`add_generation_prompt=True`),
sample with the configured temperature and top-p (no top-k), stop at `<|im_end|>` or EOS, and
return the response text up to (not including) the stop token, so scores do not depend on the backend.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from m2rl.engines import require
from m2rl.errors import UserError
from m2rl.evaluate.settings import GenerationSettings, VllmSettings
from m2rl.vllm_cpu import CPU_ENGINE_OPTIONS, prepare_cpu_engine

STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")
Messages = list[dict[str, str]]
ProgressFn = Callable[[int], None]


@dataclass(frozen=True)
class Completion:
    """One sampled response: its text, length in tokens, and whether it ended at a stop token."""

    text: str
    num_tokens: int
    stopped: bool


class Generator(Protocol):
    """Samples `k` completions for each chat prompt, in order."""

    device_type: str
    device_count: int

    def generate(
        self,
        prompts: Sequence[Messages],
        k: int,
        settings: GenerationSettings,
        seed: int,
        on_progress: ProgressFn | None = None,
    ) -> list[list[Completion]]: ...


def derived_seed(*parts: object) -> int:
    """A 31-bit seed derived from several parts (e.g. the run seed and a benchmark name)."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()
    return int(digest[:8], 16) & 0x7FFFFFFF


def tokenizer_dir(model_dir: Path, fallbacks: Sequence[Path] = ()) -> Path:
    """The model directory if a tokenizer was saved with it, else the first fallback holding one."""
    for directory in (Path(model_dir), *map(Path, fallbacks)):
        if (directory / "tokenizer_config.json").is_file() or (directory / "tokenizer.json").is_file():
            return directory
    raise UserError(f"{model_dir}: no tokenizer saved with the model or its lineage")


def load_tokenizer(model_dir: Path, fallbacks: Sequence[Path] = ()):
    """The model's tokenizer (see `tokenizer_dir`), left-padding, with a pad token."""
    # lazy: transformers, only where a model is loaded (a dry run loads none)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir(model_dir, fallbacks)))
    if tokenizer.chat_template is None:
        raise UserError(f"{model_dir}: the tokenizer has no chat template")
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def render_prompts(tokenizer, prompts: Sequence[Messages], settings: GenerationSettings) -> list[str]:
    """Chat-template each prompt with the generation prompt (the open assistant turn) appended."""
    return [
        tokenizer.apply_chat_template(
            list(messages),
            tokenize=False,
            add_generation_prompt=True,
            enable_thinking=settings.enable_thinking,
        )
        for messages in prompts
    ]


def stop_token_ids(tokenizer) -> list[int]:
    """Token ids that end a response: `<|im_end|>`, `<|endoftext|>` and the tokenizer's EOS."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    vocab = tokenizer.get_vocab()
    ids.update(vocab[token] for token in STOP_TOKENS if token in vocab)
    return sorted(ids)


def strip_stop_text(text: str) -> str:
    """Remove trailing stop-token strings that a backend left in the text."""
    while True:
        trimmed = text.rstrip()
        token = next((t for t in STOP_TOKENS if trimmed.endswith(t)), None)
        if token is None:
            return text
        text = trimmed[: -len(token)]


@contextlib.contextmanager
def cpu_threads(count: int | None) -> Iterator[None]:
    """Run a block with `count` torch CPU threads, restoring the previous count afterwards.

    A ~1M-parameter model's matmuls are too small to share between threads: on 2 busy cores, one
    thread generated ~10x faster than two (measured; see the eval report).
    """
    # lazy: torch, only where a model generates (a dry run loads none)
    import torch

    if count is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class HFGenerator:
    """Batched sampling of a transformers model with `m2rl.sampling` (finished rows leave the batch),
    on CUDA when available."""

    device_count = 1

    def __init__(
        self,
        model_dir: Path,
        tokenizer_fallbacks: Sequence[Path] = (),
        batch_size: int = 64,
        device: str | None = None,
        torch_threads: int | None = None,
    ):
        # lazy: torch and transformers, only where a model generates (a dry run loads none)
        import torch
        from transformers import AutoModelForCausalLM

        self.device_type = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = load_tokenizer(model_dir, tokenizer_fallbacks)
        dtype = torch.bfloat16 if self.device_type == "cuda" else torch.float32
        self.model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype).to(self.device_type)
        self.model.eval()
        self.batch_size = batch_size
        self.torch_threads = torch_threads
        self.stop_ids = stop_token_ids(self.tokenizer)

    def generate(
        self,
        prompts: Sequence[Messages],
        k: int,
        settings: GenerationSettings,
        seed: int,
        on_progress: ProgressFn | None = None,
    ) -> list[list[Completion]]:
        """K completions per prompt; prompts are batched by length, `batch_size` sequences per batch."""
        texts = render_prompts(self.tokenizer, prompts, settings)
        lengths = [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]
        order = sorted(range(len(texts)), key=lambda i: lengths[i])
        results: list[list[Completion]] = [[] for _ in texts]
        with cpu_threads(self.torch_threads if self.device_type == "cpu" else None):
            self._generate_batches(texts, order, k, settings, seed, results, on_progress)
        return results

    def _generate_batches(
        self,
        texts: list[str],
        order: list[int],
        k: int,
        settings: GenerationSettings,
        seed: int,
        results: list[list[Completion]],
        on_progress: ProgressFn | None,
    ) -> None:
        # lazy: torch and m2rl.sampling (torch), only where a model generates
        import torch

        from m2rl.sampling import SamplingSettings, sample

        sampling = SamplingSettings(settings.temperature, settings.top_p, 0, settings.max_new_tokens)
        per_call = max(1, self.batch_size // k)
        prompt_ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        for batch_index, start in enumerate(range(0, len(order), per_call)):
            chunk = order[start : start + per_call]
            generator = torch.Generator(device=self.device_type).manual_seed(derived_seed(seed, batch_index))
            tokens = sample(
                self.model,
                [prompt_ids[i] for i in chunk for _ in range(k)],
                sampling,
                self.stop_ids,
                self.tokenizer.pad_token_id,
                generator,
                on_finished=on_progress,
            )
            for row, sequence in enumerate(tokens):
                results[chunk[row // k]].append(self.decode_completion(sequence))

    def decode_completion(self, tokens: list[int]) -> Completion:
        """The response text of generated token ids: cut at the first stop token, special tokens kept."""
        stop_at = next((i for i, t in enumerate(tokens) if t in self.stop_ids), None)
        kept = tokens if stop_at is None else tokens[:stop_at]
        text = self.tokenizer.decode(kept, skip_special_tokens=False)
        return Completion(
            text=text, num_tokens=len(kept) + (stop_at is not None), stopped=stop_at is not None
        )


def vllm_engine_kwargs(
    model_dir: Path, tokenizer_path: Path, settings: VllmSettings, seed: int
) -> dict[str, Any]:
    """Keyword arguments for `vllm.LLM(...)`."""
    kwargs = dict(settings)  # every field, the defaults included
    if kwargs["max_model_len"] is None:
        del kwargs["max_model_len"]
    return {"model": str(model_dir), "tokenizer": str(tokenizer_path), "seed": seed, **kwargs}


def vllm_sampling_kwargs(
    settings: GenerationSettings, k: int, seed: int, stop_ids: Sequence[int]
) -> dict[str, Any]:
    """Keyword arguments for `vllm.SamplingParams(...)`, matching the HF backend's sampling."""
    return {
        "n": k,
        "temperature": settings.temperature,
        "top_p": settings.top_p,
        "top_k": 0,
        "max_tokens": settings.max_new_tokens,
        "seed": seed,
        "stop_token_ids": list(stop_ids),
        "skip_special_tokens": False,
    }


def vllm_request_params(
    sampling_params_class,
    settings: GenerationSettings,
    k: int,
    seed: int,
    stop_ids: Sequence[int],
    prompts: int,
) -> list[Any]:
    """One `vllm.SamplingParams` per prompt, each with its own seed derived from `seed` and its index.

    vLLM seeds a seeded request's own generator with the request's seed, so one seed for every prompt
    would give every prompt the same random numbers at each step: their samples would not be
    independent draws, which the bootstrap over items assumes.
    """
    return [
        sampling_params_class(**vllm_sampling_kwargs(settings, k, derived_seed(seed, index), stop_ids))
        for index in range(prompts)
    ]


class VllmGenerator:
    """Offline vLLM engine (GPU, or vLLM's CPU build); prompts go in rendered by the same chat template
    as the HF path."""

    def __init__(
        self, model_dir: Path, tokenizer_fallbacks: Sequence[Path], settings: VllmSettings, seed: int
    ):
        # lazy: torch, only where a model generates
        import torch

        require("vllm", "eval.backend=vllm")
        # lazy: vllm, only with eval.backend=vllm
        from vllm import LLM

        self.device_type = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer = load_tokenizer(model_dir, tokenizer_fallbacks)
        self.stop_ids = stop_token_ids(self.tokenizer)
        self.device_count = settings.tensor_parallel_size
        engine = vllm_engine_kwargs(model_dir, tokenizer_dir(model_dir, tokenizer_fallbacks), settings, seed)
        if self.device_type == "cpu":
            prepare_cpu_engine()
            engine |= CPU_ENGINE_OPTIONS
        self.llm = LLM(**engine)

    def generate(
        self,
        prompts: Sequence[Messages],
        k: int,
        settings: GenerationSettings,
        seed: int,
        on_progress: ProgressFn | None = None,
    ) -> list[list[Completion]]:
        """K completions per prompt in one engine call (vLLM schedules its own batches)."""
        # lazy: vllm, only with eval.backend=vllm
        from vllm import SamplingParams

        texts = render_prompts(self.tokenizer, prompts, settings)
        params = vllm_request_params(SamplingParams, settings, k, seed, self.stop_ids, len(texts))
        outputs = self.llm.generate(texts, params, use_tqdm=False)
        results = []
        for output in outputs:
            results.append(
                [
                    Completion(
                        text=strip_stop_text(choice.text),
                        num_tokens=len(choice.token_ids),
                        stopped=choice.finish_reason == "stop",
                    )
                    for choice in output.outputs
                ]
            )
        if on_progress is not None:
            on_progress(len(texts) * k)
        return results
