"""The built-in ~1M-parameter Qwen3-architecture model and its locally trained tokenizer.

Built deterministically from a seed with no network: a byte-level BPE (digits split individually,
Qwen3's special tokens) trained on text from the built-in data generators, the Qwen3 chat template
(TRL's copy of it), and a randomly initialised `Qwen3ForCausalLM`. The result is an ordinary Hugging
Face model directory, cached under `<runs-dir>/.cache/` keyed by the build config, so it is built once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from m2rl.data.builtin import GENERATORS, generate

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# As in Qwen3, the think markers are single added tokens but not "special": decoding with
# skip_special_tokens=True keeps them, so the verifiers' `</think>` gate sees them.
THINK_TOKENS = ["<think>", "</think>"]
PAD_TOKEN, EOS_TOKEN = "<|endoftext|>", "<|im_end|>"


# The tokenizer learns from the hardest level of every generator, so its merges cover every
# operator, fact and instruction any `data.difficulty` can produce.
CORPUS_DIFFICULTY = {"math": 3, "code": 4, "science": 3, "if": 3}


def _corpus(samples_per_domain: int, seed: int) -> list[str]:
    """Chat-formatted text of built-in SFT samples, the tokenizer's training corpus."""
    texts = []
    for domain in GENERATORS:
        for sample in generate(
            domain, "sft", samples_per_domain, seed=seed, difficulty=CORPUS_DIFFICULTY[domain]
        ):
            prompt = sample["prompt"][0]["content"]
            texts.append(f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n")
            texts.append(
                sample["metadata"]["solution"]
                .replace("<think>", "<think>\n")
                .replace("</think>", "\n</think>\n\n")
            )
    return texts


def build_tokenizer(vocab_size: int, corpus: list[str]):
    """A byte-level BPE fast tokenizer with the Qwen3 chat template, trained on `corpus`."""
    # lazy: tokenizers, transformers, TRL and torch, only where the built-in model is built
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    from trl.chat_template_utils import qwen3_chat_template

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        chat_template=qwen3_chat_template,
        padding_side="left",
        model_max_length=4096,
    )


def build_model(builtin: dict[str, Any], tokenizer):
    """A randomly initialised Qwen3ForCausalLM sized by `builtin`, seeded."""
    # lazy: tokenizers, transformers, TRL and torch, only where the built-in model is built
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    vocab_size = -(-len(tokenizer) // 64) * 64  # round up: embedding rows >= tokenizer size
    config = Qwen3Config(
        vocab_size=vocab_size,
        hidden_size=builtin["hidden_size"],
        num_hidden_layers=builtin["num_hidden_layers"],
        num_attention_heads=builtin["num_attention_heads"],
        num_key_value_heads=builtin["num_key_value_heads"],
        head_dim=builtin["head_dim"],
        intermediate_size=builtin["intermediate_size"],
        max_position_embeddings=builtin["max_position_embeddings"],
        rope_theta=builtin["rope_theta"],
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids(EOS_TOKEN),
        pad_token_id=tokenizer.convert_tokens_to_ids(PAD_TOKEN),
        dtype="float32",
    )
    torch.manual_seed(builtin["seed"])
    model = Qwen3ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=[config.eos_token_id, config.pad_token_id],
        pad_token_id=config.pad_token_id,
    )
    return model


def build_key(builtin: dict[str, Any], corpus: list[str]) -> str:
    """Cache key: a hash of everything the build depends on, the tokenizer corpus's text included
    (so a change to the built-in generators rebuilds the model instead of reusing a stale one)."""
    payload = json.dumps({"build": builtin, "corpus": corpus}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def ensure_tiny_model(builtin: dict[str, Any], cache_root: Path) -> Path:
    """The built-in model directory for this build config, building it once under `cache_root`."""
    builtin = dict(builtin)
    corpus = _corpus(builtin["tokenizer_corpus_samples"], builtin["seed"])
    target = Path(cache_root) / f"tiny-model-{build_key(builtin, corpus)}"
    if (target / "config.json").is_file() and (target / "tokenizer.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tiny-build-", dir=target.parent))
    try:
        tokenizer = build_tokenizer(builtin["tokenizer_vocab_size"], corpus)
        model = build_model(builtin, tokenizer)
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "m2rl-build.json").write_text(json.dumps(builtin, indent=2))
        try:
            os.replace(staging, target)  # atomic; another process may have won the race
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
