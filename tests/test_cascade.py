"""The cascade arm: its plan (order, chain, recipe, estimates), its bad orders, its specs' identity, and
compare's Cascade row, claims and forgetting table (from records here; end to end in the pipeline test)."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import numpy as np
import pytest

from m2rl.compare import write_outputs
from m2rl.compare.core import build_comparison
from m2rl.compare.records import BenchmarkResult, RunRecord
from m2rl.config import compose_config
from m2rl.errors import UserError
from m2rl.jobs.build import rl_job
from m2rl.ledger import Ledger
from m2rl.study.plan import TINY_MEASURED, paper_costs, plan, tiny_time

from cli_helpers import ONE_SEED, SMALL_STUDY, m2rl


# ------------------------------------------------------------------------------------- the plan
def test_the_default_order_trains_if_first_and_code_last_each_stage_from_the_one_before():
    """Stage 1 is the IF expert (what stage 1 would train), each later stage from the one before."""
    stages = {s.name: s for s in plan(compose_config([*ONE_SEED, "study.cascade=true"]), "s")}
    chain = ["s-s0-rl-if"] + [f"s-s0-cascade-{k}-{d}" for k, d in ((2, "science"), (3, "math"), (4, "code"))]
    assert [n for n in stages if "-cascade-" in n and not n.endswith("-eval")] == chain[1:]
    assert stages[chain[0]].deps == ("s-s0-sft",)
    for before, after in zip(chain, chain[1:], strict=False):
        assert stages[after].deps == (before,)
    assert all(stages[n].kind == "rl" and stages[n].steps == 25 for n in chain)  # the expert recipe
    assert all(stages[f"{n}-eval"].evaluates == n for n in chain)  # every stage's model is evaluated
    runs = {name: SimpleNamespace(id=f"id-{name}") for name in ("s-s0-sft", *chain)}
    second, third = stages[chain[1]].build(runs), stages[chain[2]].build(runs)
    assert (second.start_from, second.domains, second.cascade_stage) == ("id-s-s0-rl-if", ["science"], 2)
    assert (third.start_from, third.domains, third.cascade_stage) == (f"id-{chain[1]}", ["math"], 3)
    assert third.steps == 25
    plain = {s.name for s in plan(compose_config([]), "s")}
    assert not any("-cascade-" in n for n in plain)


def test_a_given_order_is_followed_and_the_analyze_stage_leaves_the_cascade_out():
    cfg = compose_config(
        [*ONE_SEED, "study.cascade=true", "study.cascade_order=[math,if]", "study.analyze=true"]
    )
    stages = {s.name: s for s in plan(cfg, "s")}
    assert stages["s-s0-cascade-2-if"].deps == ("s-s0-rl-math",)
    assert not any("cascade-3" in n or "cascade-1" in n for n in stages)
    assert not any("cascade" in d for d in stages["s-s0-analyze"].deps)


@pytest.mark.parametrize(
    "order, message",
    [
        ("[nope,math]", "study.cascade_order: unknown domain(s) nope"),
        ("[math,math]", "study.cascade_order: math named more than once"),
        ("[math]", "the cascade needs at least two domains (study.cascade_order: math)"),
    ],
)
def test_bad_orders_are_one_line_errors_before_any_run(tmp_path, order, message):
    result = m2rl(
        "pipeline", "study.cascade=true", f"study.cascade_order={order}", "--dry-run", runs_dir=tmp_path
    )
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_a_cascade_over_one_domain_and_a_bad_order_with_the_cascade_off_are_refused():
    with pytest.raises(UserError, match=r"at least two domains \(study.domains: math\)"):
        plan(compose_config(["study.cascade=true", "study.domains=[math]"]), "s")
    with pytest.raises(UserError, match="unknown domain"):  # a given order is checked with the cascade off
        plan(compose_config(["study.cascade_order=[math,nope]"]), "s")


def test_the_stage_label_leaves_the_spec_identity_as_an_experts():
    """Stage 1 trains exactly what the expert trains: the label is not part of the identity, so the
    specs of experts and the mixed run hash as they did before the cascade existed."""
    cfg = compose_config([])
    expert = rl_job(cfg, "s-s0-rl-math", ["math"], "sft-id", "s")
    stage = rl_job(cfg, "s-s0-cascade-1-math", ["math"], "sft-id", "s", cascade_stage=1)
    assert stage.identity() == expert.identity() and stage.cascade_stage == 1
    assert rl_job(cfg, "x", ["math"], "rl-id", "s", cascade_stage=2).identity() != expert.identity()
    assert '"cascade_stage": null' in expert.to_json()


def test_a_study_s_experts_are_never_its_cascade_stages(ledger_with_sft):
    """Merges (`--experts STUDY`) and MT-OPD (`--teachers STUDY`) take the study's experts: a cascade's
    first stage, also one domain from the SFT model and made after the expert, is not one."""
    from m2rl.jobs.distill import study_experts
    from m2rl.ledger import attempt
    from m2rl.merge.lineage import resolve_experts

    ledger, sft = ledger_with_sft
    made = {}
    for name, cascade in (("s-s0-rl-math", None), ("s-s0-cascade-1-math", {"stage": 1})):
        run = ledger.create("rl", name, {}, parents=[sft.id], study="s")
        with attempt(run):
            run.update(domains=["math"], **({"cascade": cascade} if cascade else {}))
        made[name] = run.id
    assert [r.id for r in study_experts(ledger, "s", sft)] == [made["s-s0-rl-math"]]
    assert [r.id for r in resolve_experts(ledger, ["s"])] == [made["s-s0-rl-math"]]
    assert [r.id for r in resolve_experts(ledger, ["s-s0-*"])] == [made["s-s0-rl-math"]]


def test_the_estimates_count_every_stage_as_an_expert_of_its_domain():
    paper = compose_config(["preset=paper", "study.cascade=true"])
    stages = plan(paper, "p")
    costs = paper_costs(paper, stages)
    later = sum(costs[s.name].hours for s in stages if "-cascade-" in s.name and s.kind == "rl")
    experts = sum(costs[f"p-s0-rl-{d}"].hours for d in ("math", "code", "science", "if"))
    assert later + costs["p-s0-rl-if"].hours == pytest.approx(experts)  # stage 1 is the IF expert
    assert experts == pytest.approx(2172.8 + 3187.2 + 787.2 + 377.6)
    tiny, plain = compose_config([*ONE_SEED, "study.cascade=true"]), compose_config(ONE_SEED)
    with_cascade, without = (
        tiny_time(tiny, plan(tiny, "t"), cores=2),
        tiny_time(plain, plan(plain, "t"), cores=2),
    )
    chain = 4 * TINY_MEASURED["expert"].seconds  # four expert-sized stages, one after another
    assert with_cascade.seconds > without.seconds + 3 / 4 * chain / 2  # three more, on two cores
    # with cores to spare the chain replaces the mixed run as the longest path after SFT
    assert with_cascade.best_seconds - without.best_seconds >= chain - TINY_MEASURED["mixed"].seconds


# ------------------------------------------------------------------------------------- compare
ITEMS = 40


def _results(rng: np.random.Generator, skill: dict[str, float]) -> dict[str, BenchmarkResult]:
    """Per-item mean rewards on a math and a science benchmark (the same items for every run)."""
    found = {}
    for domain, p in skill.items():
        items = {f"{domain}-{i}": float(rng.random() < p) for i in range(ITEMS)}
        found[domain] = BenchmarkResult(domain, float(np.mean(list(items.values()))), item_scores=items)
    return found


def _cascade_study(seeds=(0, 1)) -> list[RunRecord]:
    """SFT, two experts, the mixed run, a merge and a cascade science -> math per seed; the cascade
    loses science once it trains math (0.9 right after its science stage, 0.2 at the end)."""
    rng = np.random.default_rng(0)
    records = []
    for seed in seeds:
        sft = RunRecord(f"sft{seed}", "sft", seed=seed, study="t", cost_hours=1.0)
        sft.results = _results(rng, {"math": 0.3, "science": 0.3})
        common = {"seed": seed, "study": "t", "parents": (sft.id,)}
        records += [
            sft,
            RunRecord(f"m{seed}", "rl", domains=("math",), cost_hours=2.0, **common),
            RunRecord(f"s{seed}", "rl", domains=("science",), cost_hours=3.0, **common),
            RunRecord(f"x{seed}", "rl", domains=("math", "science"), cost_hours=4.0, **common),
        ]
        records.append(
            RunRecord(
                f"t{seed}",
                "merge",
                merge_method="paper_ties",
                merge_experts=(f"m{seed}", f"s{seed}"),
                **common,
            )
        )
        first = RunRecord(f"c1-{seed}", "rl", domains=("science",), cost_hours=3.5, cascade_stage=1, **common)
        second = RunRecord(
            f"c2-{seed}", "rl", domains=("math",), cost_hours=2.5, cascade_stage=2, seed=seed, study="t"
        )
        second.parents = (first.id,)
        records += [first, second]
        for record, skill in zip(
            records[-6:],
            [
                {"math": 0.6, "science": 0.3},  # math expert
                {"math": 0.3, "science": 0.6},  # science expert
                {"math": 0.6, "science": 0.6},  # mixed
                {"math": 0.5, "science": 0.5},  # merge
                {"math": 0.3, "science": 0.9},  # cascade after science
                {"math": 0.7, "science": 0.2},  # cascade at the end
            ],
            strict=True,
        ):
            record.results = _results(rng, skill)
    return records


def test_compare_has_a_cascade_row_its_claims_and_the_forgetting_table(tmp_path):
    comparison = build_comparison(_cascade_study(), bootstrap_samples=500)
    row = comparison.row("Cascade")
    assert row.role == "cascade" and [r.id for r in row.replicates] == ["c2-0", "c2-1"]
    assert row.record.trained_on == "science → math"
    assert row.own_hours.value == pytest.approx(3.5 + 2.5)  # the sum of its stages
    assert row.cumulative_hours.value == pytest.approx(3.5 + 2.5 + 1.0)  # and its SFT
    assert not any(r.label.startswith("RL-Science [") for r in comparison.rows)  # stage 1 is no expert
    (cascade,) = comparison.cascades
    assert cascade.stage_hours == pytest.approx([3.5, 2.5])
    kinds = {d.kind for d in comparison.headline}
    assert {"cascade_vs_mixed", "cascade_vs_best_merge"} <= kinds
    science, math = cascade.forgetting
    assert (science.domain, science.stage, math.domain, math.stage) == ("science", 1, "math", 2)
    assert science.change.estimate.n_seeds == 2 and science.change.estimate.n_items == ITEMS
    assert science.change.estimate.ci95[1] < 0 and science.change.short_verdict == "below"
    assert science.change.estimate.value == pytest.approx(science.end.value - science.after.value)
    assert science.after.ci95 is not None and math.change is None and math.after is math.end

    written = write_outputs(comparison, tmp_path / "out")
    markdown = written.markdown_path.read_text()
    assert "| Cascade | science → math |" in markdown and "## Cascade: forgetting" in markdown
    assert "the sum of its stages (1 Science 3.5 + 2 Math 2.5)" in markdown
    data = json.loads(written.json_path.read_text())
    (saved,) = data["cascades"]
    assert saved["order"] == ["science", "math"] and saved["stages"] == [["c1-0", "c1-1"], ["c2-0", "c2-1"]]
    assert saved["forgetting"][0]["change"]["estimate"]["ci95"][1] < 0
    with open(written.csv_path) as handle:
        (csv_row,) = [r for r in csv.DictReader(handle) if r["role"] == "cascade"]
    assert float(csv_row["own_hours"]) == pytest.approx(6.0)
    with open(written.differences_path) as handle:
        kinds = {r["kind"] for r in csv.DictReader(handle)}
    assert {"cascade_forgetting", "cascade_vs_mixed", "cascade_vs_best_merge"} <= kinds


def test_a_chain_that_starts_from_an_expert_takes_it_as_stage_1():
    """A study's cascade trains from its first domain's expert: the expert stays an expert row and is
    the chain's stage 1 (its cost in the cascade's, its scores the forgetting table's 'after')."""
    records = [r for r in _cascade_study() if not r.id.startswith("c1-")]
    for seed in (0, 1):
        next(r for r in records if r.id == f"c2-{seed}").parents = (f"s{seed}",)
    comparison = build_comparison(records, bootstrap_samples=200)
    assert comparison.row("Cascade").own_hours.value == pytest.approx(3.0 + 2.5)
    assert comparison.row("RL-Science").own_hours.value == pytest.approx(3.0)
    (cascade,) = comparison.cascades
    assert [[r.id for r in stage.replicates] for stage in cascade.stages] == [["s0", "s1"], ["c2-0", "c2-1"]]
    science = cascade.forgetting[0]
    assert science.after.value == pytest.approx(comparison.row("RL-Science").scores["science"].value)
    stray = [r for r in records if r.id != "s0"]  # a stage 2 whose parent is not known is left out
    assert any(
        "its stages before are missing" in n for n in build_comparison(stray, bootstrap_samples=100).notes
    )
    next(r for r in records if r.id == "c2-0").parents = ("s1",)  # another seed's expert is no stage 1
    crossed = build_comparison(records, bootstrap_samples=100)
    assert [r.id for r in crossed.row("Cascade").replicates] == ["c2-1"]
    assert any("c2-0" in n and "its stages before are missing" in n for n in crossed.notes)


def test_the_cascade_is_compared_with_mt_opd_where_the_study_has_it():
    records = _cascade_study()
    rng = np.random.default_rng(1)
    for seed in (0, 1):
        experts = (f"sft{seed}", f"m{seed}", f"s{seed}")
        student = RunRecord(f"d{seed}", "distill", parents=experts, seed=seed, study="t", cost_hours=1.5)
        student.results = _results(rng, {"math": 0.5, "science": 0.5})
        records.append(student)
    comparison = build_comparison(records, bootstrap_samples=200)
    (claim,) = [d for d in comparison.headline if d.kind == "cascade_vs_distill"]
    assert (claim.a, claim.b, claim.scope) == ("Cascade", "MT-OPD", "mean") and claim.estimate.n_seeds == 2


def test_a_lone_first_stage_is_left_out_with_a_note():
    records = [r for r in _cascade_study(seeds=(0,)) if r.id != "c2-0"]
    comparison = build_comparison(records, bootstrap_samples=200)
    assert not comparison.cascades and not any(r.role == "cascade" for r in comparison.rows)
    assert any("only its first stage was made" in n for n in comparison.notes)
    assert "RL-Science" in [r.label for r in comparison.rows]  # the expert, not the stage


# ------------------------------------------------------------------------------- end to end
CASCADE_STUDY = [
    *(o for o in SMALL_STUDY if not o.startswith(("study.domains=", "rl.save_steps="))),
    "rl.save_steps=0",
    "study.domains=[math,science]",
    "study.cascade=true",
    "study.cascade_order=[science,math]",
]


@pytest.mark.slow
def test_a_two_domain_cascade_study_chains_its_stages_and_compare_reports_it(tmp_path):
    result = m2rl("pipeline", "--name", "c", *CASCADE_STUDY, runs_dir=tmp_path, timeout=1200)
    assert result.returncode == 0, result.stderr
    runs = {r.name: r for r in Ledger(tmp_path).runs()}
    assert all(r.status == "completed" for r in runs.values())
    sft, first, second = runs["c-s0-sft"], runs["c-s0-rl-science"], runs["c-s0-cascade-2-math"]
    assert first.manifest["parents"] == [sft.id] and second.manifest["parents"] == [first.id]
    assert not any("cascade-1" in name for name in runs)  # stage 1 is the science expert
    assert second.manifest["base_model"] == str(first.model_dir)  # it trained from stage 1's model
    job = json.loads((second.path / "job.json").read_text())
    assert (job["start_from"], job["domains"], job["cascade_stage"]) == (first.id, ["math"], 2)
    assert second.manifest["cascade"] == {"stage": 2} and "cascade" not in first.manifest
    assert all(run.manifest["metrics"]["eval"] for run in (first, second))  # every stage evaluated

    out = tmp_path / "c-s0-compare"
    markdown = (out / "compare.md").read_text()
    assert "| Cascade | science → math |" in markdown and "## Cascade: forgetting" in markdown
    assert "Cascade − RL-Multi on the mean" in markdown and "Cascade − Merge (TIES) on the mean" in markdown
    with open(out / "compare.csv") as handle:
        rows = {r["label"]: r for r in csv.DictReader(handle)}
    assert rows["Cascade"]["run_id"] == second.id and rows["Cascade"]["role"] == "cascade"
    stages_hours = (first.manifest["cpu_seconds"] + second.manifest["cpu_seconds"]) / 3600
    assert float(rows["Cascade"]["own_hours"]) == pytest.approx(stages_hours, rel=1e-3)
    assert float(rows["RL-Science"]["own_hours"]) == pytest.approx(
        first.manifest["cpu_seconds"] / 3600, rel=1e-3
    )  # the expert's own row too
    (cascade,) = json.loads((out / "compare.json").read_text())["cascades"]
    assert cascade["stages"] == [[first.id], [second.id]] and cascade["order"] == ["science", "math"]
    science, math = cascade["forgetting"]
    assert (
        science["change"]["kind"] == "cascade_forgetting"
        and science["change"]["b"] == "Cascade after 1 (Science)"
    )
    assert science["change"]["estimate"]["ci95"] is not None and math["change"] is None
    assert cascade["hours"]["value"] == pytest.approx(stages_hours, rel=1e-3)
