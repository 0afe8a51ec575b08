"""`m2rl analyze` on a small study built in the test: models with hand-set task vectors, per-item eval
results on the built-in test items; the report, its publication for the study, reuse, and the link
from `m2rl compare`."""

from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from m2rl import jobs
from m2rl.config import compose_config
from m2rl.errors import UserError
from m2rl.evaluate.benchmarks import load_items
from m2rl.evaluate.results import ItemResult, results_path, write_results
from m2rl.evaluate.runner import eval_plan, settings_summary
from m2rl.evaluate.settings import EvalSettings
from m2rl.jobs.analyze import check_analysable
from m2rl.jobs.build import analyze_job
from m2rl.ledger import Ledger, Run, attempt

from cli_helpers import m2rl

DOMAINS = ("math", "code", "science", "if")
# Small everything: 8 test items, K=2, a few prompts and trajectories of a few tokens.
OVERRIDES = [
    "data.sizes.test=8",
    "torch_threads=1",  # two threads spin on a shared 2-core machine
    "eval.torch_threads=1",
    "eval.k=2",
    "analyze.bootstrap_samples=200",
    "analyze.neighbourhoods.prompts=2",
    "analyze.neighbourhoods.samples=2",
    "analyze.neighbourhoods.max_new_tokens=6",
    "analyze.self_verification.trajectories=2",
    "analyze.self_verification.max_new_tokens=4",
]
# Which tensors each expert's RL moves (the mixed run moves all of them, by half each expert's step).
MOVED = {"math": "layers.0.", "code": "layers.1.", "science": "layers.2.", "if": "layers.3."}
# Per-domain solve rate of each role above SFT's (math: the expert and the mixed run gain).
SKILL = {"sft": 0.0, "math": 0.5, "mixed": 0.4, "merge": 0.3}


def _model(sft_dir: Path, out: Path, deltas: dict[str, torch.Tensor]) -> None:
    shutil.copytree(sft_dir, out)
    tensors = load_file(str(out / "model.safetensors"))
    for name, delta in deltas.items():
        tensors[name] = (tensors[name] + delta).contiguous()
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})


def _evaluate(run: Run, role: str, cfg, seed: int) -> None:
    """Per-item results and manifest metrics as `m2rl eval` writes them, on the real test items."""
    settings = EvalSettings.from_cfg(cfg)
    rng = np.random.default_rng([seed, zlib.crc32(role.encode())])
    evals = {}
    for bench in settings.benchmarks:
        items = load_items(bench)
        rate = 0.3 + (SKILL.get(role, 0.0) if bench.domain == "math" else 0.0)
        results = []
        for item in items:
            rewards = [float(rng.random() < rate) for _ in range(bench.k)]
            responses = ["<think>so</think>Answer: \\boxed{1}" for _ in rewards]
            results.append(
                ItemResult(
                    item["id"],
                    bench.domain,
                    rewards,
                    [""] * bench.k,
                    responses,
                    [9] * bench.k,
                    [True] * bench.k,
                )
            )
        write_results(results_path(run.path, bench.name), results)
        score = float(np.mean([r.mean_reward for r in results]))
        evals[bench.name] = {"domain": bench.domain, "k": bench.k, "avg_at_k": score, "pass_at_k": score,
                             "ci95": [score, score], "n_items": len(results), "config_hash": "x"}  # fmt: skip
    for bench, digest, _saved in eval_plan(run, settings):  # recorded as made with this eval config
        evals[bench.name]["config_hash"] = digest
        evals[bench.name]["settings"] = settings_summary(bench, settings)
    run.set_metrics(eval=evals)


def _run(ledger: Ledger, kind: str, name: str, model: Path, parents: list[str], seed: int, **fields) -> Run:
    run = ledger.create(kind, name, {}, parents=parents, seed=seed, study="small")
    with attempt(run):
        shutil.copytree(model, run.path / "model")
        run.update(**fields)
    return run


def _lineage(ledger: Ledger, models: Path, seed: int) -> dict[str, Run]:
    """One seed's SFT, experts, mixed run and merge from the model folders, evaluated."""
    prefix = f"small-s{seed}"
    runs = {"sft": _run(ledger, "sft", f"{prefix}-sft", models / "sft", [], seed)}
    parents = [runs["sft"].id]
    for d in DOMAINS:
        runs[d] = _run(ledger, "rl", f"{prefix}-rl-{d}", models / d, parents, seed, domains=[d])
    runs["mixed"] = _run(
        ledger, "rl", f"{prefix}-rl-mixed", models / "mixed", parents, seed, domains=list(DOMAINS)
    )
    experts = [runs[d].id for d in DOMAINS]
    merge = {"method": "paper_average", "backend": "paper", "experts": experts, "base": runs["sft"].id}
    runs["merge"] = _run(ledger, "merge", f"{prefix}-merge-paper_average", models / "merge", [*experts, *parents],
                         seed, merge=merge, domains=list(DOMAINS))  # fmt: skip
    cfg = compose_config([*OVERRIDES, f"seed={seed}"])  # as the study evaluates each seed's models
    for role, run in runs.items():
        _evaluate(run, role, cfg, seed)
    return runs


@pytest.fixture(scope="module")
def small_study(tmp_path_factory, tiny_model_dir) -> tuple[Path, dict[str, Run]]:
    """SFT (the built-in model), four experts moving one layer each, the mixed run, one merge."""
    root = tmp_path_factory.mktemp("analyze-study")
    models = root / "models"
    base = load_file(str(Path(tiny_model_dir) / "model.safetensors"))
    generator = torch.Generator().manual_seed(0)
    deltas = {
        d: {n: 0.05 * torch.randn(t.shape, generator=generator) for n, t in base.items() if MOVED[d] in n}
        for d in DOMAINS
    }
    _model(tiny_model_dir, models / "sft", {})
    for d in DOMAINS:
        _model(tiny_model_dir, models / d, deltas[d])
    _model(tiny_model_dir, models / "mixed", {n: 0.5 * t for d in DOMAINS for n, t in deltas[d].items()})
    _model(tiny_model_dir, models / "merge", {n: 0.25 * t for d in DOMAINS for n, t in deltas[d].items()})
    return root / "runs", _lineage(Ledger(root / "runs"), models, seed=0)


def test_analyze_job_measures_the_hand_set_geometry_and_writes_the_report(small_study):
    runs_dir, runs = small_study
    ledger = Ledger(runs_dir)
    spec = analyze_job(
        compose_config(OVERRIDES), [r.id for k, r in runs.items() if k != "sft"], "job", "small"
    )
    run = jobs.start(spec, ledger)
    assert run.status == "completed" and run.kind == "analyze"
    assert set(run.manifest["parents"]) == {r.id for r in runs.values()}  # the SFT base added by resolve
    report = json.loads((run.path / "analysis.json").read_text())
    geometry = report["lineages"][0]["geometry"]
    assert geometry["models"] == ["RL-Math", "RL-Code", "RL-Science", "RL-IF", "RL-Multi"]
    jaccard, cosine = np.array(geometry["jaccard"]), np.array(geometry["cosine"])
    assert np.all(jaccard[:4, :4][~np.eye(4, dtype=bool)] == 0)  # disjoint layers: no shared change
    np.testing.assert_allclose(cosine[:4, :4], np.eye(4), atol=1e-12)  # disjoint: orthogonal
    np.testing.assert_allclose(cosine[4, :4], 0.5, atol=0.05)  # the mixed run: half of each
    assert 0.1 < geometry["fraction_changed"][0] < 0.25  # one of four layers
    layers = geometry["layers"]
    math_layers = np.array(geometry["layer_fraction_changed"][0])
    assert math_layers[layers.index("layer 0")] > 0.9 and math_layers[layers.index("layer 1")] == 0
    consistency = {(r["model"], r["domain"]): r for r in report["skill_consistency"]}
    assert consistency["RL-Multi", "math"]["value"] > 0.3 and consistency["RL-Multi", "math"]["ci95"]
    kl = report["lineages"][0]["neighbourhoods"]
    assert kl["domains"] == list(DOMAINS) and len(kl["kl"][0]) == 4
    assert all(cell["per_token"] is not None for row in kl["kl"] for cell in row)
    judged = report["lineages"][0]["self_verification"]
    assert {(r["model"], r["mode"]) for r in judged} >= {("RL-Math", "outcome"), ("RL-Multi", "process")}
    assert {r["domain"] for r in judged if r["model"] == "RL-Math"} == {"math"}
    markdown = (run.path / "analysis.md").read_text()
    for heading in (
        "Weight-update geometry",
        "Skill consistency",
        "Policy neighbourhoods",
        "Self-verification",
    ):
        assert heading in markdown
    assert "mechanics, not insight" in markdown  # said of a 1M-parameter model
    for figure in ("jaccard", "cosine", "kl", "consistency", "judge"):
        assert (run.path / "figures" / f"{figure}.png").stat().st_size > 1000
    assert run.manifest["metrics"]["jaccard_mean"] < run.manifest["metrics"]["cosine_mean"]


@pytest.mark.slow
def test_analyze_study_publishes_the_report_reuses_it_and_compare_links_it(small_study):
    runs_dir, runs = small_study
    result = m2rl("analyze", "small", *OVERRIDES, runs_dir=runs_dir)
    assert result.returncode == 0, result.stderr
    for table in (
        "task vectors",
        "pairs of task vectors",
        "skill consistency",
        "KL(expert",
        "self-verification",
    ):
        assert table in result.stdout
    assert "Merge (Average)" in result.stdout
    published = runs_dir / "small-analysis"
    assert (published / "analysis.md").is_file() and (published / "figures" / "kl.png").is_file()
    run_id = (published / "RUN").read_text().strip()
    assert Ledger(runs_dir).get(run_id).name == "small-s0-analyze"

    again = m2rl("analyze", "small", *OVERRIDES, runs_dir=runs_dir)
    assert again.returncode == 0 and run_id in again.stdout  # the same run, reused
    assert sum(r.kind == "analyze" and r.name == "small-s0-analyze" for r in Ledger(runs_dir).runs()) == 1

    compared = m2rl("compare", "--study", "small", runs_dir=runs_dir)
    assert compared.returncode == 0, compared.stderr
    markdown = (runs_dir / "small-compare" / "compare.md").read_text()
    assert "(../small-analysis/analysis.md)" in markdown
    assert (runs_dir / "small-compare" / "../small-analysis/analysis.md").resolve().is_file()

    named = m2rl("analyze", runs["math"].id, runs["mixed"].id, *OVERRIDES, runs_dir=runs_dir)
    assert named.returncode == 0, named.stderr
    assert "RL-Math / RL-Multi" in named.stdout and "report also in" not in named.stdout


def test_analyses_take_eval_results_with_any_k_but_not_other_settings(small_study):
    """A study evaluates some models with more samples per item (study.claim_k); the analyses read each
    item's first sample, so results of the same settings at another K count, and other settings do not."""
    runs_dir, runs = small_study
    check_analysable(runs["sft"], EvalSettings.from_cfg(compose_config([*OVERRIDES, "eval.k=4"])))
    with pytest.raises(UserError, match="has no eval results"):
        check_analysable(runs["sft"], EvalSettings.from_cfg(compose_config([*OVERRIDES, "eval.top_p=0.5"])))


def test_analyze_refuses_runs_without_eval_results(small_study, tmp_path):
    runs_dir, runs = small_study
    result = m2rl("analyze", runs["sft"].id, "eval.k=8", *OVERRIDES[2:], runs_dir=runs_dir)
    assert result.returncode == 2
    assert "has no eval results" in result.stderr and "m2rl eval" in result.stderr


def test_samples_on_the_vllm_backend_keep_the_sampled_token_ids(tiny_model_dir, monkeypatch):
    """The vLLM branch (no GPU here): prompts go in as the token ids scoring will use, at temperature 1
    with no top-p, and the sampled ids come back as they are."""
    import sys
    import types

    from m2rl.analysis.neighbourhoods import sample_token_ids
    from m2rl.evaluate.generation import load_tokenizer

    calls = []

    class FakeLLM:
        def generate(self, prompts, params, use_tqdm):
            calls.append((prompts, params))
            choice = types.SimpleNamespace(token_ids=(7, 8, 2))
            return [types.SimpleNamespace(outputs=[choice] * p["n"]) for p in params]

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(SamplingParams=lambda **kwargs: kwargs))
    generator = types.SimpleNamespace(llm=FakeLLM(), tokenizer=load_tokenizer(tiny_model_dir), stop_ids=[2])
    prompts = [[{"role": "user", "content": "What is 2+2?"}], [{"role": "user", "content": "Hi"}]]
    prompt_ids, completions = sample_token_ids(generator, prompts, 3, 16, True, seed=5)
    ((sent, params),) = calls
    assert [p["prompt_token_ids"] for p in sent] == prompt_ids and len(prompt_ids[0]) > len(prompt_ids[1])
    assert [(p["temperature"], p["top_p"], p["top_k"], p["n"]) for p in params] == [(1.0, 1.0, 0, 3)] * 2
    assert params[0]["seed"] != params[1]["seed"]  # each prompt its own random numbers
    assert completions == [[[7, 8, 2]] * 3] * 2


def test_dry_run_lists_the_lineage_and_writes_nothing(small_study):
    runs_dir, runs = small_study
    before = sorted(p.name for p in runs_dir.iterdir())
    result = m2rl("analyze", "small", "--dry-run", *OVERRIDES, runs_dir=runs_dir)
    assert result.returncode == 0, result.stderr
    assert "models to analyse" in result.stdout and runs["mixed"].id in result.stdout
    assert sorted(p.name for p in runs_dir.iterdir()) == before


def test_two_seeds_are_two_lineages_and_consistency_pools_them(small_study):
    runs_dir, runs = small_study
    ledger = Ledger(runs_dir.parent / "two-seeds")
    lineages = [_lineage(ledger, runs_dir.parent / "models", seed) for seed in (0, 1)]
    quick = ["analyze.neighbourhoods.enabled=false", "analyze.self_verification.enabled=false"]
    ids = [r.id for lineage in lineages for r in lineage.values()]
    run = jobs.start(analyze_job(compose_config([*OVERRIDES, *quick]), ids, "both", "small"), ledger)
    report = json.loads((run.path / "analysis.json").read_text())
    assert [lineage["seed"] for lineage in report["lineages"]] == [0, 1] and run.manifest["seed"] is None
    assert all(lineage["neighbourhoods"] is None for lineage in report["lineages"])
    first, second = (np.array(lineage["geometry"]["cosine"]) for lineage in report["lineages"])
    np.testing.assert_allclose(first, second)  # the same models registered twice
    pooled = {(r["model"], r["domain"]): r for r in report["skill_consistency"]}["RL-Multi", "all"]
    assert pooled["n_seeds"] == 2 and pooled["value"] == pytest.approx(np.mean(pooled["per_seed"]))
    for name in ("jaccard_s0.png", "cosine_s1.png", "consistency.png"):
        assert (run.path / "figures" / name).is_file()
    assert "## Weight-update geometry (seed 1)" in (run.path / "analysis.md").read_text()
    # through the command, as the README says: each seed's models were evaluated with that seed
    by_study = m2rl("analyze", "small", "--name", "by-study", *OVERRIDES, *quick, runs_dir=ledger.root)
    assert by_study.returncode == 0, by_study.stderr


def test_an_eval_with_other_settings_never_replaces_saved_results_unasked(small_study, tmp_path):
    """`m2rl eval` of a seed-1 study model with the default seed is refused with the setting that
    differs; nothing is written. With --replace the old results are kept under eval/replaced/."""
    runs_dir, runs = small_study
    ledger = Ledger(tmp_path / "runs")
    seed1 = _lineage(ledger, runs_dir.parent / "models", seed=1)["sft"]
    before = {p.name: p.read_bytes() for p in (seed1.path / "eval").glob("*.jsonl")}
    manifest = (seed1.path / "run.json").read_text()
    refused = m2rl("eval", seed1.id, *OVERRIDES[:4], runs_dir=ledger.root)
    assert refused.returncode == 2, refused.stderr
    assert "seed 1 (now 0)" in refused.stderr and "--replace" in refused.stderr
    assert {p.name: p.read_bytes() for p in (seed1.path / "eval").glob("*.jsonl")} == before
    assert (seed1.path / "run.json").read_text() == manifest
    same = m2rl("eval", seed1.id, *OVERRIDES[:4], "seed=1", runs_dir=ledger.root)  # its own settings: reused
    assert same.returncode == 0 and "reusing saved results" in same.stdout, same.stderr
    replaced = m2rl("eval", seed1.id, *OVERRIDES[:4], "--replace", runs_dir=ledger.root)
    assert replaced.returncode == 0, replaced.stderr
    kept = sorted((seed1.path / "eval" / "replaced").glob("*.jsonl"))
    assert [p.name.split(".")[0] for p in kept] == sorted(name.split(".")[0] for name in before)
    assert {p.read_bytes() for p in kept} == set(before.values())
    saved = Run.load(seed1.path).manifest["metrics"]
    assert saved["eval"]["math"]["settings"]["seed"] == 0 and len(saved["eval_replaced"]) == len(before)
