"""The study pipeline: its plan, the paper-scale estimates, and a reduced end-to-end run on CPU."""

from __future__ import annotations

import csv
import json

import pytest

from m2rl.config import compose_config, training_config_hash
from m2rl.ledger import Ledger
from m2rl.pipeline import estimated_gpu_hours, plan

from cli_helpers import m2rl


def test_tiny_plan_runs_sft_experts_mixed_merges_eval_compare():
    stages = plan(compose_config([]), "s")
    assert [s.kind for s in stages] == [
        "sft",
        "rl",
        "rl",
        "rl",
        "rl",
        "rl",
        "merge",
        "merge",
        "merge",
        "eval",
        "compare",
    ]
    assert stages[5].domains == ["math", "code", "science", "if"] and stages[5].name == "s-rl-mixed"


def test_a_stage_is_identified_by_the_config_sections_that_decide_its_training():
    def digests(*overrides: str) -> tuple[str, str]:
        cfg = compose_config(list(overrides))
        return training_config_hash(cfg, "sft"), training_config_hash(cfg, "rl", ["math"], ["sft-id"])

    sft, rl = digests()
    assert digests("eval.k=8", "study.merge_methods=[ties]", "torch_threads=1") == (sft, rl)
    assert digests("rl.steps=7")[0] == sft and digests("rl.steps=7")[1] != rl  # SFT reused, RL not
    assert digests("sft.epochs=1")[0] != sft
    new_sft, new_rl = digests("data.difficulty.code=1")  # the data decides both
    assert new_sft != sft and new_rl != rl
    assert training_config_hash(compose_config([]), "rl", ["code"], ["sft-id"]) != rl


def test_paper_plan_estimates_the_papers_gpu_hours():
    cfg = compose_config(["preset=paper"])
    stages = plan(cfg, "paper")
    hours = {s.name: estimated_gpu_hours(cfg, s) for s in stages if s.kind == "rl"}
    assert hours["paper-rl-math"] == pytest.approx(2172.8)
    assert hours["paper-rl-mixed"] == pytest.approx(2166.4)
    experts = sum(v for k, v in hours.items() if k != "paper-rl-mixed")
    assert hours["paper-rl-mixed"] / experts == pytest.approx(0.332, abs=1e-3)
    assert [s.method for s in stages if s.kind == "merge"] == [
        "paper_average",
        "paper_ta",
        "paper_ties",
        "paper_dare_ta",
        "paper_dare_ties",
        "paper_sce",
    ]


def test_paper_pipeline_dry_run_prints_the_plan(tmp_path):
    result = m2rl("pipeline", "preset=paper", "--dry-run", runs_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "study plan" in result.stdout and "2172.8" in result.stdout
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


REDUCED = [
    "data.sizes.sft=48",
    "sft.max_steps=10",
    "data.sizes.rl=16",
    "rl.steps=2",
    "rl.mixed_steps=2",
    "rl.prompts_per_step=4",
    "rl.num_generations=4",
    "rl.per_device_batch_size=16",
    "rl.max_completion_length=16",
    "rl.save_steps=0",
    "data.sizes.test=6",
    "eval.k=2",
    "eval.max_new_tokens=24",
    "study.merge_methods=[paper_ties,ties]",
]


@pytest.mark.slow
def test_reduced_pipeline_end_to_end_is_consistent_and_idempotent(tmp_path):
    result = m2rl("pipeline", "--name", "mini", *REDUCED, runs_dir=tmp_path, timeout=1800)
    assert result.returncode == 0, result.stderr
    runs = Ledger(tmp_path).runs()
    assert sorted(r.name for r in runs) == sorted(
        [
            "mini-sft",
            "mini-rl-math",
            "mini-rl-code",
            "mini-rl-science",
            "mini-rl-if",
            "mini-rl-mixed",
            "mini-merge-paper_ties",
            "mini-merge-ties",
        ]
    )
    assert all(r.status == "completed" for r in runs)
    out = tmp_path / "mini-compare"
    for name in ("compare.md", "compare.csv", "score_vs_hours.png", "transfer_heatmap.png"):
        assert (out / name).is_file(), name
    by_id = {r.id: r for r in runs}
    with open(out / "compare.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(runs)
    for row in rows:
        run = by_id[row["run_id"]]
        assert float(row["own_hours"]) == pytest.approx(run.device_hours, rel=1e-3, abs=1e-6)
        for bench, metrics in run.manifest["metrics"]["eval"].items():
            assert float(row[bench]) == pytest.approx(metrics["avg_at_k"], abs=1e-6)
    mixed = next(r for r in runs if r.name == "mini-rl-mixed")
    sft = next(r for r in runs if r.name == "mini-sft")
    assert mixed.manifest["parents"] == [sft.id]
    merge = next(r for r in runs if r.name == "mini-merge-paper_ties")
    assert set(merge.manifest["parents"]) >= {
        r.id for r in runs if r.name.startswith("mini-rl-") and r.name != "mini-rl-mixed"
    }

    again = m2rl("pipeline", "--name", "mini", *REDUCED, runs_dir=tmp_path, timeout=1800)
    assert again.returncode == 0, again.stderr
    assert len(Ledger(tmp_path).runs()) == len(runs)  # every stage reused, nothing retrained
    assert again.stdout.count("reusing completed run") == len(runs)
    assert (
        json.loads((tmp_path / mixed.id / "run.json").read_text())["attempts"] == mixed.manifest["attempts"]
    )
