"""Multi-teacher on-policy distillation: the advantage, per-sample routing, a fixed point, resume, bad input."""

from __future__ import annotations

import json
import math
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from m2rl.config import compose_config
from m2rl.engine.distill import build_trainer, reverse_kl_advantages
from m2rl.jobs.build import distill_job
from m2rl.jobs.distill import resolve
from m2rl.ledger import Ledger, attempt

from cli_helpers import ONE_SEED, m2rl

# A distill run of seconds: 2 prompts x 4 samples per step, 16 new tokens.
FAST_DISTILL = [
    "distill.prompts_per_step=2",
    "distill.num_generations=4",
    "distill.per_device_batch_size=8",
    "distill.max_completion_length=16",
    "data.sizes.rl=16",
]


def _perturbed(model_dir: Path, out: Path, seed: int) -> Path:
    """A copy of the model with its output layer shifted by seeded noise (a teacher that disagrees)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        head = model.get_output_embeddings().weight
        head.add_(torch.randn(head.shape, generator=generator) * 0.5)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(out)
    return out


def _expert(ledger: Ledger, name: str, domain: str, parent, source: Path | None, seed: int | None):
    """A completed single-domain RL run of `parent`: a copy of `source`, or a perturbed copy of it."""
    run = ledger.create("rl", name, {}, parents=[parent.id])
    with attempt(run):
        if seed is None:
            shutil.copytree(source, run.model_dir)
        else:
            _perturbed(source, run.model_dir, seed)
        run.update(domains=[domain])
    return run


def test_advantage_is_teacher_minus_student_log_prob_on_a_hand_checked_case():
    # teacher p(y_t) = 1/2, 1/4; student p(y_t) = 1/4, 1/4; the third token is padding
    teacher = torch.log(torch.tensor([[0.5, 0.25, 0.9]]))
    student = torch.log(torch.tensor([[0.25, 0.25, 0.1]]))
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    advantages = reverse_kl_advantages(teacher, student, mask)
    assert advantages.tolist()[0] == pytest.approx([math.log(2), 0.0, 0.0])


def _completion_logps(model, input_ids, attention_mask, completion_length, temperature):
    """log p(y_t) of the completion tokens, by a plain forward pass (no TRL)."""
    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1] / temperature
    logps = torch.log_softmax(logits.float(), dim=-1).gather(-1, input_ids[:, 1:, None])[..., 0]
    return logps[:, -completion_length:]


def test_mixed_batch_routes_each_sample_to_its_own_teacher(ledger_with_sft, tmp_path):
    from transformers import AutoModelForCausalLM

    from m2rl.jobs.rl import training_samples

    ledger, sft = ledger_with_sft
    teachers = {
        "math": _expert(ledger, "rl-math", "math", sft, sft.model_dir, seed=1),
        "code": _expert(ledger, "rl-code", "code", sft, sft.model_dir, seed=2),
    }
    cfg = compose_config([*FAST_DISTILL, "distill.temperature=0.7"])
    spec = distill_job(cfg, "distill", [t.id for t in teachers.values()], sft.id, ["math", "code"])
    spec = resolve(spec, ledger)
    paths = {d: str(t.model_dir) for d, t in teachers.items()}
    trainer, _, _ = build_trainer(spec, tmp_path / "out", str(sft.model_dir), paths, training_samples(spec))
    trainer.model.train()
    rows = list(trainer.train_dataset)
    math_rows = [r for r in rows if r["domain"] == "math"][:1]
    code_rows = [r for r in rows if r["domain"] == "code"][:1]
    inputs = [r for r in (code_rows[0], math_rows[0]) for _ in range(4)]  # one batch, two domains
    output = trainer._generate_and_score_completions(inputs)

    input_ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
    attention = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
    length, mask = output["completion_ids"].size(1), output["completion_mask"].float()
    plain = {d: AutoModelForCausalLM.from_pretrained(p) for d, p in paths.items()}
    student = _completion_logps(
        AutoModelForCausalLM.from_pretrained(sft.model_dir), input_ids, attention, length, 0.7
    )
    expected = {
        d: (_completion_logps(m, input_ids, attention, length, 0.7) - student) * mask
        for d, m in plain.items()
    }
    advantages = output["advantages"]
    assert advantages.shape == mask.shape  # per token
    for i, row in enumerate(inputs):
        own, other = row["domain"], "code" if row["domain"] == "math" else "math"
        torch.testing.assert_close(advantages[i], expected[own][i], atol=1e-4, rtol=1e-4)
        assert (advantages[i] - expected[other][i]).abs().max() > 1e-2  # a mis-route would show
    logged = trainer._metrics["train"]
    assert logged["math/reverse_kl"] and logged["code/reverse_kl"]


def _real_vllm_client():
    from trl.generation.vllm_client import VLLMClient

    return VLLMClient


REAL_VLLM_CLIENT = _real_vllm_client()  # before any test stands the fake in


class FakeVLLMClient:
    """TRL's VLLMClient for tests: `get_sequence_logprobs` computes vLLM's prompt log-probs with an HF
    model in this process (top-k by rank, plus the actual token when outside them, as vLLM returns them)
    and formats them with TRL's own `_format_sequence_logprobs`; no server, no network."""

    models: dict[str, str] = {}  # "http://host:port" -> the model directory "served" there
    calls: list[tuple[str, list[list[int]], list[int]]] = []

    def __init__(self, base_url: str, connection_timeout: float = 0.0):
        from transformers import AutoModelForCausalLM

        if base_url not in self.models:
            raise ConnectionError(f"The vLLM server can't be reached at {base_url}")
        self.base_url = base_url
        self.model = AutoModelForCausalLM.from_pretrained(self.models[base_url])

    def get_sequence_logprobs(self, sequences, prompt_lengths, top_logprobs=100, temperature=1.0, **_):
        self.calls.append((self.base_url, sequences, prompt_lengths))
        results = []
        for sequence, prompt_length in zip(sequences, prompt_lengths, strict=True):
            with torch.no_grad():
                logits = self.model(input_ids=torch.tensor([sequence])).logits[0, :-1].float() / temperature
            logps = torch.log_softmax(logits, dim=-1)
            ranks = logps.argsort(dim=-1, descending=True).argsort(dim=-1) + 1
            prompt_logprobs = [None]  # vLLM scores no first token
            for position, token in enumerate(sequence[1:]):
                keep = set(logps[position].topk(top_logprobs).indices.tolist()) | {token}
                prompt_logprobs.append(
                    {
                        str(t): {"logprob": float(logps[position, t]), "rank": int(ranks[position, t])}
                        for t in keep
                    }
                )
            choice = {"prompt_logprobs": prompt_logprobs}
            results.append(
                REAL_VLLM_CLIENT._format_sequence_logprobs(choice, sequence, prompt_length, top_logprobs)
            )
        return {key: [result[key] for result in results] for key in results[0]}


def test_served_teacher_routes_its_domain_to_the_server_and_matches_in_process(
    ledger_with_sft, tmp_path, monkeypatch
):
    from transformers import AutoModelForCausalLM
    from trl.generation import vllm_client

    from m2rl.engine.distill import ServedTeacher
    from m2rl.jobs.rl import training_samples

    ledger, sft = ledger_with_sft
    teachers = {
        "math": _expert(ledger, "rl-math", "math", sft, sft.model_dir, seed=1),
        "code": _expert(ledger, "rl-code", "code", sft, sft.model_dir, seed=2),
    }
    paths = {d: str(t.model_dir) for d, t in teachers.items()}
    monkeypatch.setattr(vllm_client, "VLLMClient", FakeVLLMClient)
    monkeypatch.setattr(FakeVLLMClient, "models", {"http://localhost:8001": paths["math"]})
    monkeypatch.setattr(FakeVLLMClient, "calls", [])
    cfg = compose_config([*FAST_DISTILL, "+distill.teachers_served.math=localhost:8001"])
    spec = resolve(distill_job(cfg, "d", [t.id for t in teachers.values()], sft.id, ["math", "code"]), ledger)
    trainer, _, _ = build_trainer(spec, tmp_path / "out", str(sft.model_dir), paths, training_samples(spec))
    assert isinstance(trainer.teachers["math"], ServedTeacher)
    assert not isinstance(trainer.teachers["code"], ServedTeacher)  # in-process, as before
    trainer.model.train()
    rows = list(trainer.train_dataset)
    inputs = [r for d in ("code", "math") for r in [next(x for x in rows if x["domain"] == d)] * 4]
    output = trainer._generate_and_score_completions(inputs)

    (call,) = FakeVLLMClient.calls  # one request, for the math rows only
    mask = output["completion_mask"].float()
    math_rows = [i for i, r in enumerate(inputs) if r["domain"] == "math"]
    for sequence, prompt_length, i in zip(call[1], call[2], math_rows, strict=True):
        prompt = output["prompt_ids"][i][output["prompt_mask"][i].bool()].tolist()
        length = int(mask[i].sum())
        assert prompt_length == len(prompt)
        assert sequence == prompt + output["completion_ids"][i][:length].tolist()

    input_ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
    attention = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
    length = output["completion_ids"].size(1)
    student = _completion_logps(
        AutoModelForCausalLM.from_pretrained(sft.model_dir), input_ids, attention, length, 1.0
    )
    expected = {
        d: (
            _completion_logps(AutoModelForCausalLM.from_pretrained(p), input_ids, attention, length, 1.0)
            - student
        )
        * mask
        for d, p in paths.items()
    }
    for i, row in enumerate(inputs):
        own, other = row["domain"], "code" if row["domain"] == "math" else "math"
        torch.testing.assert_close(output["advantages"][i], expected[own][i], atol=1e-4, rtol=1e-4)
        assert (output["advantages"][i] - expected[other][i]).abs().max() > 1e-2  # a mis-route would show
    assert trainer._metrics["train"]["math/reverse_kl"] and trainer._metrics["train"]["code/reverse_kl"]


def test_a_teacher_server_that_does_not_answer_is_one_user_error(monkeypatch):
    from trl.generation import vllm_client

    from m2rl.engine.distill import ServedTeacher
    from m2rl.errors import UserError

    monkeypatch.setattr(vllm_client, "VLLMClient", FakeVLLMClient)
    monkeypatch.setattr(FakeVLLMClient, "models", {})
    with pytest.raises(UserError, match=r"the math teacher server \(localhost:8009.*did not answer"):
        ServedTeacher("math", "localhost:8009", 1.0, connection_timeout=0.0)


def test_served_log_probs_align_with_the_completion_mask_and_refuse_a_missing_token():
    from m2rl.engine.distill import served_logps, served_request
    from m2rl.errors import UserError

    prompt_ids = torch.tensor([[0, 5, 6], [7, 8, 9]])
    prompt_mask = torch.tensor([[0, 1, 1], [1, 1, 1]])  # left padding
    completion_ids = torch.tensor([[1, 2, 3], [4, 0, 0]])
    completion_mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    sequences, prompt_lengths, lengths = served_request(
        prompt_ids, prompt_mask, completion_ids, completion_mask
    )
    assert sequences == [[5, 6, 1, 2, 3], [7, 8, 9, 4]]
    assert (prompt_lengths, lengths) == ([2, 3], [3, 1])
    scored = served_logps([[[-1.0], [-2.0], [-3.0]], [[-4.0]]], lengths, completion_mask, "server")
    assert scored.tolist() == [[-1.0, -2.0, -3.0], [-4.0, 0.0, 0.0]]
    with pytest.raises(UserError, match="no finite log-prob for the sampled token at row 1, position 0"):
        served_logps([[[-1.0], [-2.0], [-3.0]], [[-math.inf]]], lengths, completion_mask, "server")
    with pytest.raises(UserError, match="returned 2 log-probs for a 3-token completion"):
        served_logps([[[-1.0], [-2.0]], [[-4.0]]], lengths, completion_mask, "server")


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def test_student_equal_to_its_teachers_has_zero_advantage_and_does_not_move(ledger_with_sft):
    ledger, sft = ledger_with_sft
    for domain in ("math", "code"):
        _expert(ledger, f"rl-{domain}", domain, sft, sft.model_dir, seed=None)  # the SFT model itself
    result = m2rl(
        "distill",
        "--teachers",
        "rl-math,rl-code",
        "--from",
        "sft",
        "--domains",
        "math,code",
        *FAST_DISTILL,
        "distill.steps=2",
        "distill.save_steps=0",
        "distill.weight_decay=0",  # AdamW's decay would move the weights without any gradient
        runs_dir=ledger.root,
    )
    assert result.returncode == 0, result.stderr
    run = next(r for r in Ledger(ledger.root).runs() if r.kind == "distill")
    assert run.status == "completed" and run.manifest["parents"][0] == sft.id
    assert set(run.manifest["parents"][1:]) == {r.id for r in ledger.runs() if r.kind == "rl"}
    steps = [r for r in run.read_metrics() if "reverse_kl" in r]
    assert len(steps) == 2
    for record in steps:
        assert record["math/reverse_kl"] == 0.0 and record["code/reverse_kl"] == 0.0
        assert "math/reward" in record and "code/completion_length" in record and record["time/teacher_s"] > 0
    assert run.manifest["stage_seconds"]["teacher"] > 0 and run.manifest["cpu_seconds"] > 0
    before, after = _weights(sft.model_dir), _weights(run.model_dir)
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), key


def test_two_processes_with_uneven_informative_rows_distill(ledger_with_sft, tmp_path):
    """One prompt per rank and step: a math prompt's teacher is the student itself (advantage 0 on
    every row), a code prompt's disagrees. A rank holding math has no informative row while the other
    has all of them; both must still pass the same number of rows to TRL's gathers in the loss."""
    ledger, sft = ledger_with_sft
    _expert(ledger, "rl-math", "math", sft, sft.model_dir, seed=None)
    _expert(ledger, "rl-code", "code", sft, sft.model_dir, seed=3)
    result = m2rl(
        "distill",
        *("--teachers", "rl-math,rl-code", "--from", "sft", "--domains", "math,code"),
        "launcher=accelerate_ddp",
        *FAST_DISTILL,
        "distill.per_device_batch_size=4",  # 2 prompts x 4 samples over 2 ranks: one group each
        "distill.steps=2",
        "distill.save_steps=0",
        runs_dir=ledger.root,
    )
    logs = "".join(log.read_text()[-3000:] for log in ledger.root.glob("*/launch.log"))
    assert result.returncode == 0, result.stderr + logs
    run = next(r for r in Ledger(ledger.root).runs() if r.kind == "distill")
    assert run.status == "completed" and run.manifest["metrics"]["processes"] == 2
    first = next(r for r in run.read_metrics() if "reverse_kl" in r)
    assert first["math/reverse_kl"] == 0.0 and first["code/reverse_kl"] != 0.0  # a rank of each kind


def _one_line_error(result) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("m2rl: error: "), result.stderr
    return lines[0]


def test_bad_inputs_are_one_line_errors_before_any_run(ledger_with_sft, tmp_path):
    ledger, sft = ledger_with_sft
    _expert(ledger, "rl-math", "math", sft, sft.model_dir, seed=None)
    _expert(ledger, "rl-code", "code", sft, sft.model_dir, seed=None)
    other_sft = ledger.create("sft", "other-sft", {})
    with attempt(other_sft):
        shutil.copytree(sft.model_dir, other_sft.model_dir)
    _expert(ledger, "rl-science-other", "science", other_sft, sft.model_dir, seed=None)
    unfinished = ledger.create("rl", "rl-if", {}, parents=[sft.id])  # still "running"
    unfinished.update(domains=["if"])

    def distill(*args):
        return m2rl("distill", *args, *FAST_DISTILL, runs_dir=ledger.root)

    line = _one_line_error(distill("--teachers", "rl-math", "--from", "sft", "--domains", "math,code"))
    assert "no teacher for domain(s) code" in line
    line = _one_line_error(
        distill("--teachers", "rl-math,rl-science-other", "--from", "sft", "--domains", "math,science")
    )
    assert "not trained from the SFT run" in line
    line = _one_line_error(distill("--teachers", "rl-math,rl-if", "--from", "sft", "--domains", "math,if"))
    assert "not completed" in line
    line = _one_line_error(distill("--teachers", "rl-math", "--from", "rl-code", "--domains", "math"))
    assert "not a completed SFT run" in line
    line = _one_line_error(distill("--teachers", "rl-math", "--from", "sft", "distill.steps=-1"))
    assert "distill.steps" in line  # a bad recipe value is one line too
    line = _one_line_error(
        distill(
            "--teachers", "rl-math", "--from", "sft", "--domains", "math", "+distill.teachers_served.code=h:1"
        )
    )
    assert "distill.teachers_served.code: code is not one of this run's domains (math)" in line
    line = _one_line_error(
        distill(
            "--teachers", "rl-math", "--from", "sft", "--domains", "math", "+distill.teachers_served.math=h"
        )
    )
    assert "distill.teachers_served.math=h: expected host:port" in line
    line = _one_line_error(
        distill(
            *("--teachers", "rl-math", "--from", "sft", "--domains", "math", "--dry-run"),
            *("+distill.teachers_served.math=h:1", "distill.temperature=0.7"),
        )
    )
    assert "needs distill.temperature=1.0" in line
    assert not [r for r in Ledger(ledger.root).runs() if r.kind == "distill"]


def test_teachers_from_a_study_are_its_experts_of_that_sft(ledger_with_sft):
    ledger, sft = ledger_with_sft
    experts = {}
    for domain in ("math", "code"):
        run = ledger.create("rl", f"s-rl-{domain}", {}, parents=[sft.id], study="s")
        with attempt(run):
            shutil.copytree(sft.model_dir, run.model_dir)
            run.update(domains=[domain])
        experts[domain] = run.id
    mixed = ledger.create("rl", "s-rl-mixed", {}, parents=[sft.id], study="s")
    with attempt(mixed):
        mixed.update(domains=["math", "code"])
    cfg = compose_config(FAST_DISTILL)
    spec = resolve(distill_job(cfg, "d", ["s"], "sft", ["code", "math"]), ledger)
    assert spec.start_from == sft.id
    assert spec.teachers == [experts["code"], experts["math"]]  # in domain order, the mixed run left out


def test_paper_preset_maps_the_recipe():
    from m2rl.engine.distill import distill_options
    from m2rl.specs import DistillRecipe

    cfg = compose_config(["preset=paper"])
    assert cfg.study.distill is True and compose_config([]).study.distill is True  # both presets
    recipe = DistillRecipe(
        **{k: v for k, v in dict(cfg.distill).items() if k != "vllm"}, vllm=dict(cfg.distill.vllm)
    )
    options = distill_options(recipe, recipe.steps, world_size=8, use_cpu=False)
    assert recipe.prompts_per_step * recipe.num_generations == 256 * 4
    assert options["max_steps"] == 200 and options["temperature"] == 1.0
    assert options["learning_rate"] == 1e-6 and options["lr_scheduler_type"] == "constant"
    assert (options["adam_beta1"], options["adam_beta2"], options["weight_decay"]) == (0.9, 0.98, 0.1)
    assert options["beta"] == 0.0 and options["entropy_coef"] == 0.0
    assert options["max_completion_length"] == 16384 and recipe.max_prompt_length == 2048
    assert options["num_iterations"] == 1  # one optimizer step per rollout batch: the PPO ratio stays 1


def test_pipeline_runs_distill_after_the_experts_and_evaluates_it():
    from m2rl.study.plan import plan

    cfg = compose_config([*ONE_SEED, "study.distill=true", "study.domains=[math,code]"])
    stages = {s.name: s for s in plan(cfg, "st")}
    distill = stages["st-s0-distill"]
    assert distill.kind == "distill"
    assert set(distill.deps) == {"st-s0-sft", "st-s0-rl-math", "st-s0-rl-code"}
    assert "st-s0-distill-eval" in stages
    assert not [
        s for s in plan(compose_config([*ONE_SEED, "study.domains=[math,code]"]), "st") if s.kind == "distill"
    ]


@pytest.mark.slow
def test_resume_after_sigkill_continues_from_the_checkpoint(ledger_with_sft):
    ledger, sft = ledger_with_sft
    for domain, seed in (("math", 1), ("code", 2)):
        _expert(ledger, f"rl-{domain}", domain, sft, sft.model_dir, seed=seed)
    runs = ledger.root
    command = [sys.executable, "-m", "m2rl.cli", "distill", "--teachers", "rl-math,rl-code", "--from", "sft"]
    command += ["--domains", "math,code", "--runs-dir", str(runs), *FAST_DISTILL]
    command += ["distill.steps=6", "distill.save_steps=2", "distill.save_total_limit=3"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not list(runs.glob("*/checkpoints/checkpoint-2/trainer_state.json")):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    run_dir = next(p.parent.parent.parent for p in runs.glob("*/checkpoints/checkpoint-2/trainer_state.json"))
    killed = Ledger(runs).get(run_dir.name)
    assert killed.status == "failed" and killed.kind == "distill"

    result = m2rl("distill", "--resume", killed.id, runs_dir=runs)
    assert result.returncode == 0, result.stderr
    resumed = Ledger(runs).get(killed.id)
    assert resumed.status == "completed" and len(resumed.manifest["attempts"]) == 2
    assert resumed.device_hours == pytest.approx(sum(a["device_hours"] for a in resumed.manifest["attempts"]))
    assert "resuming" in result.stdout
    steps = [r["step"] for r in resumed.read_metrics() if "reverse_kl" in r]
    assert steps == [1, 2, 3, 4, 5, 6]
    state = json.loads((run_dir / "checkpoints" / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6


def test_compare_shows_mt_opd_as_its_own_row_and_its_cost_both_ways():
    from m2rl.compare.core import build_comparison
    from m2rl.compare.records import BenchmarkResult, RunRecord
    from test_compare_paper import BENCHMARKS, paper_records

    records = paper_records()
    experts = tuple(r.id for r in records if r.kind == "rl" and len(r.domains) == 1)
    # the paper's MT-OPD: 816.0 GPU-hours, a 9-benchmark mean of 59.26 (one value per benchmark here)
    results = {b: BenchmarkResult(d, 0.5926) for b, d in BENCHMARKS.items()}
    records.append(
        RunRecord("mt-opd", "distill", parents=("sft", *experts), cost_hours=816.0, results=results)
    )
    comparison = build_comparison(records)
    row = comparison.row("MT-OPD")
    assert row.role == "distill" and comparison.distill is row
    assert row.mean.value == pytest.approx(0.5926)
    assert "MT-OPD" in comparison.transfer.rows
    assert comparison.cost_ratio.describe() == "33.2% (2166.4 / 6524.8 GPU-hours; 1 seed: no spread)"
    with_distill = comparison.cost_ratio_with_distill
    assert with_distill.merge_side_hours == pytest.approx(6524.8 + 816.0)
    assert with_distill.ratio.value == pytest.approx(2166.4 / 7340.8)
    kinds = {d.kind for d in comparison.headline}
    assert {"distill_vs_sft", "mixed_vs_distill"} <= kinds

    from m2rl.compare.formatting import summary_lines
    from m2rl.compare.markdown import to_markdown

    assert any("MT-OPD counted" in line and "29.5%" in line for line in summary_lines(comparison))
    assert "| MT-OPD |" in to_markdown(comparison)


def test_analyze_groups_the_distill_run_into_its_lineage(ledger_with_sft):
    from m2rl.analysis.lineage import group

    ledger, sft = ledger_with_sft
    expert = _expert(ledger, "rl-math", "math", sft, sft.model_dir, seed=None)
    student = ledger.create("distill", "distill", {}, parents=[sft.id, expert.id])
    with attempt(student):
        student.update(domains=["math"])
    (lineage,) = group(ledger, [sft, expert, Ledger(ledger.root).get(student.id)])
    assert [run.id for run in lineage.distills] == [student.id]
    assert [label for label, _ in lineage.models()] == ["SFT", "RL-Math", "MT-OPD"]


def test_serving_a_teacher_keeps_the_run_identity():
    served = compose_config([*FAST_DISTILL, "+distill.teachers_served.math=localhost:8001"])
    spec = distill_job(served, "d", ["a", "b"], "sft", ["math", "code"])
    assert spec.served_teachers() == {"math": "localhost:8001"}
    plain = distill_job(compose_config(FAST_DISTILL), "d", ["a", "b"], "sft", ["math", "code"])
    assert spec.identity() == plain.identity()  # in-process or served: the same run, reused as such
    assert (
        spec.identity() != distill_job(compose_config(), "d", ["a", "b"], "sft", ["math", "code"]).identity()
    )
