"""What `m2rl pipeline --dry-run` estimates and checks before any work: the tiny study's time on this
machine's cores, the paper-scale GPU-hours of every stage, and whether the model and data are here."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from m2rl.config import compose_config
from m2rl.study import study_inputs
from m2rl.study.plan import TINY_STUDY_S, paper_costs, plan, priorities, tiny_time

from cli_helpers import ONE_SEED

M2RL = Path(sys.executable).with_name("m2rl")


def m2rl(
    *args: str, runs_dir: Path, cores: set[int] | None = None, **env: str
) -> subprocess.CompletedProcess:
    """The real `m2rl` executable, optionally pinned to `cores` (what os.sched_getaffinity then reports)."""
    full_env = dict(os.environ, HF_HUB_OFFLINE="1", COLUMNS="250", **env)
    pin = (lambda: os.sched_setaffinity(0, cores)) if cores else None
    command = [str(M2RL), *args, "--runs-dir", str(runs_dir)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=full_env, preexec_fn=pin)


# ------------------------------------------------------------------------------------- tiny time
# The study the stage times were measured on: the tiny preset before RAM joined its merges.
MEASURED = [*ONE_SEED, "study.merge_methods=[paper_ties,paper_ta]"]


def test_tiny_time_replays_the_measured_study_and_scales_with_cores():
    cfg = compose_config(MEASURED)
    stages = plan(cfg, "study")
    on = {cores: tiny_time(cfg, stages, cores).seconds for cores in (1, 2, 3, 4, 8)}
    assert on[2] == pytest.approx(TINY_STUDY_S, abs=1)  # 7 min 36 s, as measured on 2 cores
    one_thread = compose_config([*MEASURED, "torch_threads=1"])
    assert tiny_time(one_thread, plan(one_thread, "study"), 2).seconds == pytest.approx(
        512, abs=1
    )  # 8 min 32 s
    assert on[1] > on[2] > on[3] >= on[4] >= on[8]
    best = tiny_time(cfg, stages, 2)
    assert best.best_seconds == pytest.approx(on[8]) and best.cores_for_best <= best.widest
    two_seeds = compose_config([*MEASURED, "study.seeds=2"])
    seconds = tiny_time(two_seeds, plan(two_seeds, "study"), 2).seconds
    assert 1.5 * on[2] < seconds < 2 * on[2]  # twice the stages; the two SFTs run side by side
    longer = compose_config([*MEASURED, "rl.steps=50", "rl.mixed_steps=100"])
    with_ram = compose_config(ONE_SEED)  # the preset's own merges: one merge and its eval more
    assert on[2] < tiny_time(with_ram, plan(with_ram, "study"), 2).seconds < on[2] + 60
    assert tiny_time(longer, plan(longer, "study"), 2).seconds > on[2] + 100


def test_ready_stages_start_by_the_longest_chain_of_work_they_unlock():
    """After SFT the experts start before the mixed run: the mixed run has twice an expert's steps, but
    every expert unlocks MT-OPD (more steps than the mixed run) and the merges; each eval last."""
    cfg = compose_config(["study.seeds=1", "study.distill=true"])
    stages = plan(cfg, "study")
    priority = priorities(stages)
    by_kind = {s.name: s for s in stages}
    experts = [s.name for s in stages if s.kind == "rl" and len(s.domains) == 1]
    (mixed,) = [s.name for s in stages if s.kind == "rl" and len(s.domains) > 1]
    (distill,) = [s.name for s in stages if s.kind == "distill"]
    assert by_kind[mixed].cost > by_kind[experts[0]].cost  # longest-first would start the mixed run
    assert min(priority[e] for e in experts) > priority[distill] > priority[mixed]
    assert priority[experts[0]] == by_kind[experts[0]].cost + priority[distill]
    assert all(priority[s.name] == s.cost for s in stages if s.kind == "eval")


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")
def test_tiny_dry_run_estimates_the_time_from_the_cores_it_may_use(tmp_path):
    one = m2rl("pipeline", "--dry-run", runs_dir=tmp_path, cores={min(os.sched_getaffinity(0))})
    assert one.returncode == 0, one.stderr
    line = next(line for line in one.stdout.splitlines() if line.startswith("estimated time:"))
    minutes = float(re.match(r"estimated time: about ([0-9.]+) min on 1 CPU core, idle", line).group(1))
    cfg = compose_config([])
    assert minutes == pytest.approx(tiny_time(cfg, plan(cfg, "study"), 1).seconds / 60, abs=0.05)
    assert (
        "stage times measured on a 2-core machine" in line and "up to 27 at once" in line
    )  # three seeds after the shared SFT
    paper = m2rl("pipeline", "preset=paper", "--dry-run", runs_dir=tmp_path)
    assert "estimated time:" not in paper.stdout  # measured on the tiny study only
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


# ----------------------------------------------------------------------------- paper-scale costs
def test_paper_estimate_costs_every_stage_on_a_stated_basis():
    cfg = compose_config(["preset=paper"])
    stages = plan(cfg, "paper")
    costs = paper_costs(cfg, stages)
    assert set(costs) == {s.name for s in stages} and all(c.hours is not None for c in costs.values())
    by_kind: dict[str, float] = {}
    for stage in stages:
        by_kind[stage.kind] = by_kind.get(stage.kind, 0.0) + costs[stage.name].hours
    assert by_kind["rl"] == pytest.approx(2172.8 + 3187.2 + 787.2 + 377.6 + 2166.4)  # Table 2
    assert by_kind["distill"] == pytest.approx(816.0) and by_kind["merge"] == 0.0
    # 8 x 4.0e9 parameters x (14,121,873 rows x 2 epochs x 4,096 tokens) / (989e12 FLOP/s x 0.4) in hours
    assert by_kind["sft"] == pytest.approx(8 * 4.0e9 * 14_121_873 * 2 * 4096 / (989e12 * 0.4) / 3600)
    assert "4,096 tokens per row, assumed" in costs["paper-s0-sft"].basis
    # the SFT model's eval: each benchmark's items x K x its domain's RL GPU-hours per sample (per step / 2,048)
    per_sample = {"math": 10.864, "code": 15.936, "science": 3.936, "if": 1.888, "general": 5.416}
    samples = {"math": 30 * 16 * 2, "code": 279 * 4 + 175 * 4, "science": 2500 + 198 * 4, "if": 541 + 300}
    samples["general"] = 5700
    expected = sum(samples[d] * per_sample[d] / 2048 for d in samples)
    assert costs["paper-s0-sft-eval"].hours == pytest.approx(expected)
    assert by_kind["eval"] == pytest.approx(14 * expected)  # claim_k is off on the paper preset
    assert 0 < by_kind["analyze"] < by_kind["eval"]
    assert "scoring not counted" in costs["paper-s0-analyze"].basis


def test_paper_estimate_follows_its_figures_and_names_what_it_cannot_count():
    base = paper_costs(compose_config(["preset=paper"]), plan(compose_config(["preset=paper"]), "p"))
    cfg = compose_config(
        [
            "preset=paper",
            "study.paper_estimate.sft_tokens_per_row=8192",
            "~study.paper_estimate.eval_items.lcb_v5",
            "+eval.benchmarks.hle.limit=100",
        ]
    )
    costs = paper_costs(cfg, plan(cfg, "p"))
    assert costs["p-s0-sft"].hours == pytest.approx(2 * base["p-s0-sft"].hours)
    assert "left out, items unknown: lcb_v5 (study.paper_estimate.eval_items)" in costs["p-s0-sft-eval"].basis
    lcb_v5 = 279 * 4 * 15.936 / 2048
    hle = (2500 - 100) * 3.936 / 2048
    assert costs["p-s0-sft-eval"].hours == pytest.approx(base["p-s0-sft-eval"].hours - lcb_v5 - hle)
    unknown_rows = compose_config(["preset=paper", "data.sft.subsets.chat.count=null"])
    sft = paper_costs(unknown_rows, plan(unknown_rows, "p"))["p-s0-sft"]
    assert sft.hours is None and sft.basis.startswith("rows unknown (chat: every row)")


def test_paper_dry_run_prints_every_stage_kind_and_the_total(tmp_path):
    result = m2rl("pipeline", "preset=paper", "--dry-run", runs_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    table = out[out.index("paper-scale estimate of every stage") : out.index("model and data: here")]
    rows = {
        cells[0]: cells[1:3]
        for line in table.splitlines()
        if len(cells := [c.strip() for c in line.split("│")[1:-1]]) == 4 and cells[0]
    }
    assert list(rows) == ["SFT", "RL", "MT-OPD", "merge", "eval", "analyze", "total"]
    assert (
        rows["RL"] == ["5", "8,691.2"] and rows["MT-OPD"] == ["1", "816.0"] and rows["merge"] == ["7", "0.0"]
    )
    total = sum(float(hours.replace(",", "")) for kind, (_, hours) in rows.items() if kind != "total")
    assert rows["total"][0] == "29" and float(rows["total"][1].replace(",", "")) == pytest.approx(
        total, abs=0.1
    )


# --------------------------------------------------------------------------------- model and data
def _hub_cache_entry(cache: Path, repo_type: str, repo_id: str) -> None:
    """A downloaded file in huggingface_hub's cache layout (blob, ref, snapshot link)."""
    repo = cache / f"{repo_type}s--{repo_id.replace('/', '--')}"
    revision = "0" * 40
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / "abc123").write_text('{"question": "1+1"}\n')
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    (repo / "snapshots" / revision).mkdir(parents=True)
    (repo / "snapshots" / revision / "test.jsonl").symlink_to(repo / "blobs" / "abc123")


def test_dry_run_says_whether_the_model_and_each_data_source_is_here(tmp_path):
    model = tmp_path / "qwen3-4b-base"
    model.mkdir()
    hub = tmp_path / "hub"
    _hub_cache_entry(hub, "dataset", "math-ai/aime24")
    prepared = tmp_path / "datasets" / "google___if_eval" / "default" / "0.0.0" / "abc"
    prepared.mkdir(parents=True)  # `datasets`' own cache of google/IFEval
    result = m2rl(
        "pipeline",
        "preset=paper",
        f"model.path={model}",
        "--dry-run",
        runs_dir=tmp_path / "runs",
        HF_HUB_CACHE=str(hub),
        HF_DATASETS_CACHE=str(tmp_path / "datasets"),
    )
    assert result.returncode == 0, result.stderr
    found = {
        cells[1]: cells[2:]
        for line in result.stdout[result.stdout.index("model and data: here") :].splitlines()
        if len(cells := [c.strip() for c in line.split("│")[1:-1]]) == 4
    }
    assert found[str(model)] == ["local", "directory"]
    assert (
        found["math-ai/aime24"][0] == "cached" and "in the hub cache (1 files" in found["math-ai/aime24"][1]
    )
    assert found["google/IFEval"][0] == "cached" and "prepared by `datasets`" in found["google/IFEval"][1]
    assert found["nvidia/Nemotron-3-Nano-RL-Training-Blend"] == [
        "not cached",
        "not cached, and HF_HUB_OFFLINE is set: the stages that read it will fail",
    ]
    assert "eval.benchmarks.{lcb_v5,lcb_v6}.source" in result.stdout


def test_tiny_inputs_are_built_in_and_local_files_are_found(tmp_path):
    assert [(i.keys[0], i.found) for i in study_inputs(compose_config([]))] == [
        ("model.path", "built in"),
        ("data=builtin", "built in"),
        ("eval.benchmarks.math.source", "built in"),
    ]
    test = tmp_path / "sql-test.jsonl"
    test.write_text("")
    cfg = compose_config(
        ["+data.files.math.test=" + str(test), "+eval.benchmarks.extra.source=no/where.jsonl"]
    )
    by_source = {i.source: i for i in study_inputs(cfg)}
    assert by_source[str(test)].found == "local" and by_source[str(test)].keys == ("data.files.math.test",)
    assert by_source["no/where.jsonl"].found == "missing"
