"""`evaluate_run` and `m2rl eval` on the built-in tiny model: generation, scoring, storage, reuse."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from typer.testing import CliRunner

from m2rl.config import compose_config
from m2rl.data.builtin import generate
from m2rl.data.load import builtin_difficulty
from m2rl.errors import UserError
from m2rl.evaluate import EvalSettings, evaluate_run, read_results, results_path
from m2rl.evaluate.generation import HFGenerator, render_prompts
from m2rl.evaluate.settings import GenerationSettings
from m2rl.ledger import Ledger, attempt
from m2rl.models.tiny import ensure_tiny_model
from m2rl.verifiers import VerifierConfig, score

SMALL = ["data.sizes.test=3", "eval.k=2", "eval.max_new_tokens=24", "verifiers.workers=0"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    builtin = OmegaConf.to_container(compose_config([]).model.builtin, resolve=True)
    return ensure_tiny_model(builtin, tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def generator(tiny_model) -> HFGenerator:
    return HFGenerator(tiny_model, batch_size=8, torch_threads=1)


def completed_run(ledger: Ledger, kind: str, model: Path, parents=(), with_tokenizer: bool = True, **fields):
    run = ledger.create(kind, f"{kind}-run", {"kind": kind}, parents=list(parents))
    with attempt(run):
        shutil.copytree(model, run.model_dir)
        if not with_tokenizer:
            for path in run.model_dir.glob("tokenizer*"):
                path.unlink()
            (run.model_dir / "chat_template.jinja").unlink(missing_ok=True)
        run.update(**fields)
    return run


def test_generation_samples_k_responses_per_prompt_within_budget_and_reproducibly(generator):
    prompts = [s["prompt"] for s in generate("math", "test", 3, seed=0)]
    settings = GenerationSettings(temperature=1.0, top_p=0.7, max_new_tokens=12)
    first = generator.generate(prompts, 3, settings, seed=11)
    assert [len(group) for group in first] == [3, 3, 3]
    for group in first:
        for completion in group:
            assert 1 <= completion.num_tokens <= 12
            assert "<|im_end|>" not in completion.text and "<|endoftext|>" not in completion.text
    assert generator.generate(prompts, 3, settings, seed=11) == first
    assert generator.generate(prompts, 3, settings, seed=12) != first


def test_prompts_end_with_the_open_assistant_turn(generator):
    sample = generate("if", "test", 1, seed=0)[0]
    (text,) = render_prompts(generator.tokenizer, [sample["prompt"]], GenerationSettings())
    assert text.endswith("<|im_start|>assistant\n")
    assert sample["prompt"][0]["content"] in text


def test_eval_stores_items_and_metrics_and_keeps_training_hours_apart(tmp_path, tiny_model):
    ledger = Ledger(tmp_path / "runs")
    run = completed_run(ledger, "sft", tiny_model)
    hours_before = run.device_hours
    cfg = compose_config(SMALL)
    metrics = evaluate_run(ledger, run, EvalSettings.from_cfg(cfg))

    assert list(metrics) == ["math", "code", "science", "if"]
    manifest = json.loads((run.path / "run.json").read_text())
    for bench, m in metrics.items():
        assert manifest["metrics"]["eval"][bench] == m
        assert m["n_items"] == 3 and m["k"] == 2 and m["domain"] == bench
        assert 0.0 <= m["avg_at_k"] <= m["pass_at_k"] <= 1.0
        assert m["ci95"][0] <= m["avg_at_k"] <= m["ci95"][1]
        items = read_results(results_path(run.path, bench))
        difficulty = builtin_difficulty(cfg.data, bench)
        samples = {s["id"]: s for s in generate(bench, "test", 3, seed=0, difficulty=difficulty)}
        assert [i.id for i in items] == list(samples)
        for item in items:
            assert len(item.rewards) == len(item.responses) == 2
            # every stored reward is the verifier's verdict on the stored response of that very item
            rescored = [score(samples[item.id], r, VerifierConfig()).reward for r in item.responses]
            assert item.rewards == rescored
    assert manifest["stage_seconds"]["eval"] > 0
    assert manifest["eval_device_hours"] > 0 and manifest["eval_device_hours_label"] == "CPU-hours"
    assert manifest["device_hours"] == hours_before


def test_same_config_reuses_results_and_a_changed_config_evaluates_again(tmp_path, tiny_model):
    ledger = Ledger(tmp_path / "runs")
    run = completed_run(ledger, "sft", tiny_model)
    cfg = compose_config(
        [*SMALL, "eval.benchmarks.code=null", "eval.benchmarks.if=null", "eval.benchmarks.science=null"]
    )
    first = evaluate_run(ledger, run, EvalSettings.from_cfg(cfg))
    path = results_path(run.path, "math")
    stamp, seconds = path.stat().st_mtime_ns, run.manifest["stage_seconds"]["eval"]

    again = evaluate_run(ledger, ledger.get(run.id), EvalSettings.from_cfg(cfg))
    assert again == first
    assert path.stat().st_mtime_ns == stamp
    assert json.loads((run.path / "run.json").read_text())["stage_seconds"]["eval"] == seconds

    path.unlink()  # a lost results file is re-evaluated, not trusted from the manifest
    evaluate_run(ledger, ledger.get(run.id), EvalSettings.from_cfg(cfg))
    assert path.is_file()

    other = compose_config(
        [
            *SMALL[:1],
            "eval.k=3",
            *SMALL[2:],
            "eval.benchmarks.code=null",
            "eval.benchmarks.if=null",
            "eval.benchmarks.science=null",
        ]
    )
    with pytest.raises(UserError, match=r"math: K 2 \(now 3\)"):  # never replaced unasked
        evaluate_run(ledger, ledger.get(run.id), EvalSettings.from_cfg(other))
    changed = evaluate_run(ledger, ledger.get(run.id), EvalSettings.from_cfg(other), replace=True)
    assert changed["math"]["k"] == 3 and changed["math"]["config_hash"] != first["math"]["config_hash"]
    assert all(len(i.rewards) == 3 for i in read_results(path))
    assert len(list((path.parent / "replaced").glob("math.*.jsonl"))) == 1  # the K=2 results, kept


def test_unfinished_runs_are_refused(tmp_path, tiny_model):
    ledger = Ledger(tmp_path / "runs")
    run = ledger.create("rl", "rl-math", {})
    with pytest.raises(UserError, match="not completed"):
        evaluate_run(ledger, run, EvalSettings.from_cfg(compose_config(SMALL)))


def test_a_merge_without_a_saved_tokenizer_uses_its_lineage(tmp_path, tiny_model):
    ledger = Ledger(tmp_path / "runs")
    sft = completed_run(ledger, "sft", tiny_model)
    merge = completed_run(ledger, "merge", tiny_model, parents=[sft.id], with_tokenizer=False)
    assert not (merge.model_dir / "tokenizer.json").exists()
    cfg = compose_config(
        [*SMALL, "eval.benchmarks.code=null", "eval.benchmarks.if=null", "eval.benchmarks.math=null"]
    )
    assert evaluate_run(ledger, merge, EvalSettings.from_cfg(cfg))["science"]["n_items"] == 3


def test_eval_arguments_split_into_runs_and_every_kind_of_override():
    from m2rl.commands.eval import split_arguments

    arguments = ["study-sft", "eval.k=2", "~eval.benchmarks.code", "+eval.extra=1", "runs/x"]
    assert split_arguments(arguments) == (
        ["study-sft", "runs/x"],
        ["eval.k=2", "~eval.benchmarks.code", "+eval.extra=1"],
    )


def test_cli_eval_dry_run_shows_the_plan_and_reuse(tmp_path, tiny_model, monkeypatch):
    from m2rl.cli import app

    ledger = Ledger(tmp_path / "runs")
    run = completed_run(ledger, "sft", tiny_model)
    drop = ["eval.benchmarks.code=null", "eval.benchmarks.if=null", "eval.benchmarks.science=null"]
    args = ["eval", run.id, *SMALL, *drop, "--runs-dir", str(ledger.root)]
    runner = CliRunner()
    planned = runner.invoke(app, [*args, "--dry-run"])
    assert planned.exit_code == 0, planned.output
    assert "evaluate" in planned.output and "reuse" not in planned.output
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    assert "Avg@K" in done.output
    replanned = runner.invoke(app, [*args, "--dry-run"])
    assert "reuse saved results" in replanned.output


def test_a_paper_benchmark_from_a_local_file_goes_through_its_loader(tmp_path, tiny_model):
    data = tmp_path / "aime24.jsonl"
    rows = [
        {"id": 1, "problem": "What is 2+3?", "answer": "5"},
        {"id": 2, "problem": "What is 4*4?", "answer": "16"},
    ]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    others = ["aime25", "lcb_v5", "lcb_v6", "hle", "gpqa_diamond", "ifeval", "ifbench", "mmlu_redux"]
    cfg = compose_config(
        [
            "preset=paper",
            "eval.backend=hf",
            "eval.max_new_tokens=16",
            "eval.torch_threads=1",
            f"eval.benchmarks.aime24.source={data}",
            "eval.benchmarks.aime24.k=2",
            "verifiers.workers=0",
            *[f"eval.benchmarks.{name}=null" for name in others],
        ]
    )
    ledger = Ledger(tmp_path / "runs")
    run = completed_run(ledger, "sft", tiny_model)
    metrics = evaluate_run(ledger, run, EvalSettings.from_cfg(cfg))
    assert list(metrics) == ["aime24"] and metrics["aime24"]["n_items"] == 2 and metrics["aime24"]["k"] == 2
    items = read_results(results_path(run.path, "aime24"))
    assert [i.id for i in items] == ["aime24-1", "aime24-2"]


@pytest.mark.parametrize("domain", ["math", "code", "science", "if"])
def test_a_generated_reference_solution_decodes_verbatim_and_scores_1(generator, domain):
    for sample in generate(domain, "test", 2, seed=0):
        solution = sample["metadata"]["solution"]
        tokens = generator.tokenizer(
            solution + "<|im_end|><|endoftext|><|endoftext|>", add_special_tokens=False
        )
        completion = generator.decode_completion(tokens["input_ids"])
        assert completion.stopped and completion.text == solution
        assert score(sample, completion.text, VerifierConfig(workers=0)).reward == 1.0
    unfinished = generator.decode_completion(
        generator.tokenizer("<think>", add_special_tokens=False)["input_ids"]
    )
    assert not unfinished.stopped and unfinished.text == "<think>"
