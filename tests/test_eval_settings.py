"""Eval settings from the tiny and paper presets, their validation, and the vLLM backend's arguments."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from m2rl.config import compose_config
from m2rl.errors import UserError
from m2rl.evaluate.generation import VllmGenerator, vllm_engine_kwargs, vllm_sampling_kwargs
from m2rl.evaluate.settings import EvalSettings


def test_tiny_preset_evaluates_the_four_builtin_test_sets():
    settings = EvalSettings.from_cfg(compose_config(["seed=7", "data.sizes.test=10"]))
    assert [(b.name, b.domain, b.source, b.k) for b in settings.benchmarks] == [
        ("math", "math", "builtin", 2),
        ("code", "code", "builtin", 2),
        ("science", "science", "builtin", 2),
        ("if", "if", "builtin", 2),
    ]
    assert all(b.spec["count"] == 10 for b in settings.benchmarks)  # follows data.sizes.test
    assert settings.seed == 7 and settings.backend == "hf"
    assert (settings.generation.temperature, settings.generation.top_p) == (1.0, 1.0)  # as the rollouts


def test_paper_preset_uses_the_papers_sampling_and_k_and_matches_the_loaders_specs():
    from m2rl.data.benchmarks import PAPER_BENCHMARKS

    settings = EvalSettings.from_cfg(compose_config(["preset=paper"]))
    k = {b.name: b.k for b in settings.benchmarks}
    assert k["aime24"] == 16 and k["gpqa_diamond"] == 4 and k["ifbench"] == 1
    assert len(settings.benchmarks) == 9
    gen = settings.generation
    assert (gen.temperature, gen.top_p, gen.max_new_tokens) == (1.0, 0.7, 32768)
    assert settings.backend == "vllm"
    by_name = {b.name: {**b.spec, "k": b.k} for b in settings.benchmarks}
    for spec in PAPER_BENCHMARKS:
        assert by_name[spec["name"]] == spec


def test_a_benchmark_can_be_dropped_with_null_and_bad_values_name_the_key():
    settings = EvalSettings.from_cfg(compose_config(["preset=paper", "eval.benchmarks.hle=null"]))
    assert "hle" not in [b.name for b in settings.benchmarks]
    with pytest.raises(UserError, match=r"eval\.top_p=1\.5"):
        EvalSettings.from_cfg(compose_config(["eval.top_p=1.5"]))
    with pytest.raises(UserError, match=r"eval\.benchmarks\.math\.k=0"):
        EvalSettings.from_cfg(compose_config(["+eval.benchmarks.math.k=0"]))
    with pytest.raises(UserError, match=r"eval\.backend='sglang'"):
        EvalSettings.from_cfg(compose_config(["eval.backend=sglang"]))
    with pytest.raises(UserError, match=r"eval\.temperature=-1\.0: must be >= 0"):
        EvalSettings.from_cfg(compose_config(["eval.temperature=-1"]))


def test_temperature_zero_is_greedy_decoding():
    import torch

    from m2rl.sampling import SamplingSettings, next_tokens

    logits = torch.randn(64, 50, generator=torch.Generator().manual_seed(0))
    greedy = SamplingSettings(temperature=0.0, top_p=0.7)
    for seed in range(3):  # no randomness left
        drawn = next_tokens(logits, greedy, torch.Generator().manual_seed(seed))
        assert torch.equal(drawn, logits.argmax(-1))
    assert EvalSettings.from_cfg(compose_config(["eval.temperature=0"])).generation.temperature == 0


def test_vllm_arguments_follow_the_paper_config_without_importing_vllm():
    settings = EvalSettings.from_cfg(compose_config(["preset=paper"]))
    aime = next(b for b in settings.benchmarks if b.name == "aime24")
    sampling = vllm_sampling_kwargs(settings.generation, aime.k, seed=5, stop_ids=[151645, 151643])
    assert sampling == {
        "n": 16,
        "temperature": 1.0,
        "top_p": 0.7,
        "top_k": 0,
        "max_tokens": 32768,
        "seed": 5,
        "stop_token_ids": [151645, 151643],
        "skip_special_tokens": False,
    }
    engine = vllm_engine_kwargs(Path("/m"), Path("/t"), settings.vllm, seed=0)
    assert engine == {
        "model": "/m",
        "tokenizer": "/t",
        "seed": 0,
        "gpu_memory_utilization": 0.85,
        "tensor_parallel_size": 1,
        "max_model_len": 34816,
        "dtype": "bfloat16",
        "enforce_eager": False,
    }
    assert "vllm" not in sys.modules


@pytest.mark.skipif(
    "vllm" in sys.modules or __import__("importlib").util.find_spec("vllm") is not None,
    reason="vLLM installed",
)
def test_vllm_backend_without_vllm_says_how_to_install_it(tmp_path):
    settings = EvalSettings.from_cfg(compose_config(["preset=paper"]))
    with pytest.raises(UserError, match=r"m2rl\[gpu\]"):
        VllmGenerator(tmp_path, [], settings.vllm, seed=0)


def test_vllm_eval_gives_each_prompt_its_own_seed_the_same_for_every_model(tiny_model_dir, monkeypatch):
    """vLLM seeds a request's generator with the request's seed: one seed for all prompts would give them
    the same random numbers. Each prompt gets its own, derived from the eval seed and its index only."""
    import types

    from m2rl.evaluate.generation import load_tokenizer

    sent = []

    class FakeLLM:
        def generate(self, texts, params, use_tqdm):
            sent.append(params)
            choice = types.SimpleNamespace(text="4<|im_end|>", token_ids=(7, 2), finish_reason="stop")
            return [types.SimpleNamespace(outputs=[choice] * p["n"]) for p in params]

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(SamplingParams=lambda **kwargs: kwargs))
    generator = VllmGenerator.__new__(VllmGenerator)
    generator.tokenizer, generator.stop_ids, generator.llm = load_tokenizer(tiny_model_dir), [2], FakeLLM()
    settings = EvalSettings.from_cfg(compose_config(["preset=paper"])).generation
    prompts = [[{"role": "user", "content": text}] for text in ("2+2?", "3+3?", "2+2?")]
    completions = generator.generate(prompts, 4, settings, seed=11)
    generator.generate(prompts[:2], 4, settings, seed=11)
    generator.generate(prompts, 4, settings, seed=12)
    seeds = [[p["seed"] for p in params] for params in sent]
    assert len(set(seeds[0])) == 3 and seeds[1] == seeds[0][:2] and set(seeds[2]).isdisjoint(seeds[0])
    assert all(p["n"] == 4 for p in sent[0]) and completions[0][0].text == "4"


def test_a_job_keeps_its_eval_and_verifier_sections_as_the_config_wrote_them():
    """job.json and the identity hold the sections as the config gave them (10 stays 10, no default
    filled in), so typing them changed no job's identity; an unknown key is refused, naming the near one."""
    import json

    from omegaconf import OmegaConf

    from m2rl.jobs.build import eval_job
    from m2rl.specs import load_spec

    cfg = compose_config(["eval.temperature=1", "verifiers.code.time_limit_s=5"])
    job = eval_job(cfg, "run-id")
    saved = json.loads(job.to_json())
    assert saved["eval"] == OmegaConf.to_container(cfg.eval, resolve=True)
    assert saved["verifiers"] == OmegaConf.to_container(cfg.verifiers, resolve=True)
    assert (
        type(saved["eval"]["temperature"]) is int and type(saved["verifiers"]["code"]["time_limit_s"]) is int
    )
    older = json.loads(job.to_json())  # a job.json written before verifiers.code.host_memory_share existed
    del older["verifiers"]["code"]["host_memory_share"]
    loaded = load_spec(json.dumps(older))
    assert loaded.verifiers.code.host_memory_share == 0.5
    assert json.loads(loaded.to_json()) == older and loaded.identity() != job.identity()
    with pytest.raises(UserError, match=r"eval\.tmperature: unknown key; did you mean eval\.temperature\?"):
        eval_job(compose_config(["+eval.tmperature=1"]), "run-id")
