"""Tuned merges (m2rl.merge.search): validation items only, the search's cost in compare, resume,
determinism, and bad input refused before any run exists."""

from __future__ import annotations

import json

import pytest

from m2rl import jobs
from m2rl.errors import UserError
from m2rl.ledger import Ledger
from m2rl.merge.search import SEARCH_SUFFIX, VALIDATION_FILE, read_trials
from test_merge import _finished, _write_expert

from cli_helpers import ONE_SEED

DOMAINS = ["math", "science"]
# a small eval: 8 test items of the two domains, K=1, 16 new tokens
EVAL = [
    "eval.k=1",
    "eval.max_new_tokens=16",
    "data.sizes.test=8",
    "eval.benchmarks.code=null",
    "eval.benchmarks.if=null",
]
SEARCH = {"trials": 3, "items_per_domain": 4}


@pytest.fixture(scope="module")
def experts(tmp_path_factory, tiny_model_dir):
    """A ledger with the tiny model as SFT run and a math and a science expert (perturbed copies)."""
    root = tmp_path_factory.mktemp("search")
    ledger = Ledger(root / "runs")
    sft = _finished(ledger, "sft", "sft", tiny_model_dir)
    runs = []
    for index, domain in enumerate(DOMAINS):
        _write_expert(tiny_model_dir, root / domain, seed=30 + index, quantized=False)
        runs.append(_finished(ledger, "rl", f"rl-{domain}", root / domain, [sft.id], domains=[domain]))
    return ledger, runs


def _config(*overrides: str):
    from m2rl.config import compose_config

    return compose_config([*EVAL, *overrides])


def _spec(runs, name: str, search: dict | None = SEARCH, method: str = "paper_ties"):
    from m2rl.jobs.build import merge_job

    return merge_job(_config(), method, [r.id for r in runs], name=name, search=search)


@pytest.fixture(scope="module")
def tuned(experts):
    from m2rl.jobs.merge import start_tuned

    ledger, runs = experts
    return start_tuned(_spec(runs, "tuned"), ledger)


def _test_items(cfg) -> tuple[set[str], set[str]]:
    """Ids and prompts of the test sets, drawn from the generator directly."""
    from m2rl.data.builtin import generate

    ids, prompts = set(), set()
    for domain in DOMAINS:
        bench = cfg.eval.benchmarks[domain]
        for item in generate(domain, "test", int(bench.count), int(bench.seed), int(bench.difficulty)):
            ids.add(item["id"])
            prompts.add(json.dumps(item["prompt"]))
    return ids, prompts


def test_the_objective_scores_validation_items_never_test_or_training_items(tuned):
    """What each trial's objective scored is recorded by the eval's results; none is a test item, and
    none is one of the prompts the experts trained on."""
    from m2rl.data.builtin import generate

    cfg = _config()
    test_ids, test_prompts = _test_items(cfg)
    validation = [json.loads(line) for line in (tuned.path / VALIDATION_FILE).read_text().splitlines()]
    validation_ids = {row["id"] for row in validation}
    assert len(validation) == len(DOMAINS) * SEARCH["items_per_domain"]
    assert not {json.dumps(row["prompt"]) for row in validation} & test_prompts
    data = cfg.data
    training = {
        item["id"]
        for d in DOMAINS
        for item in generate(d, "rl", int(data.sizes.rl), int(data.seed), int(data.difficulty[d]))
    }
    trials = read_trials(tuned.path)
    assert [t["number"] for t in trials] == list(range(SEARCH["trials"]))
    for trial in trials:
        scored = {item for ids in trial["items"].values() for item in ids}
        assert scored == validation_ids
        assert not scored & test_ids and not scored & training
        assert trial["value"] == pytest.approx(sum(trial["domains"].values()) / len(DOMAINS))


def test_the_tuned_merge_takes_the_best_trial_and_starts_from_the_defaults(tuned):
    trials = read_trials(tuned.path)
    merge = tuned.manifest["merge"]
    assert tuned.status == "completed" and (tuned.model_dir / "config.json").is_file()
    assert merge["method"] == "paper_ties" + SEARCH_SUFFIX
    assert trials[0]["params"] == {"density": 0.2, "lambda": 1.0}  # trial 0: the method's own parameters
    best = max(trials, key=lambda t: (t["value"], -t["number"]))
    assert merge["params"] == best["params"] and merge["search"]["best_trial"] == best["number"]
    assert len({json.dumps(t["params"]) for t in trials}) == len(trials)
    assert not list((tuned.path / "search").glob("trial-*"))  # scratch merges are removed


def test_compare_shows_tuned_and_default_merges_and_the_tuned_cost_holds_the_search(experts, tuned):
    """Compare's cost of the tuned merge is its trials' time plus its own merge: the search is counted
    (a plain merge's CPU time moves by seconds with the machine's load, so the two merges are related
    through what the tuned run recorded of itself)."""
    from m2rl.compare.core import build_comparison
    from m2rl.compare.manifests import records_from_runs
    from m2rl.evaluate.runner import evaluate_run
    from m2rl.evaluate.settings import EvalSettings

    ledger, runs = experts
    plain = jobs.start(_spec(runs, "plain", search=None), ledger, reuse=True)
    for run in (tuned, plain):
        evaluate_run(ledger, run, EvalSettings.from_cfg(_config()))
    records, lineage = records_from_runs([ledger.get(tuned.id), ledger.get(plain.id)])
    comparison = build_comparison(records, lineage, bootstrap_samples=200, seed=0)
    rows = {row.label: row for row in comparison.rows}
    assert {"Merge (TIES)", "Merge (TIES tuned)"} <= set(rows)
    for label in ("Merge (TIES)", "Merge (TIES tuned)"):
        assert rows[label].mean.ci95 is not None
    trials_hours = sum(t["device_hours"] for t in read_trials(tuned.path))
    tuned_hours = rows["Merge (TIES tuned)"].own_hours.value
    final_merge_hours = tuned.manifest["metrics"]["merge_cpu_hours"]
    assert trials_hours > 0
    assert tuned_hours >= trials_hours + final_merge_hours
    assert tuned_hours > rows["Merge (TIES)"].own_hours.value
    assert tuned.manifest["merge"]["search"]["device_hours"] == pytest.approx(trials_hours)


def test_a_killed_search_resumes_from_its_finished_trials_and_repeats_the_same_trials(
    experts, tuned, monkeypatch
):
    """The search is killed in its third trial; started again it runs only that trial, and all three
    are the uninterrupted search's (same seed: same parameters, same scores)."""
    from m2rl.jobs.merge import start_tuned
    from m2rl.merge import search

    ledger, runs = experts
    real, calls = search._trial, []

    def killed_in_third(*args, **kwargs):
        calls.append(args[3])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(search, "_trial", killed_in_third)
    with pytest.raises(BaseException):  # noqa: B017 (KeyboardInterrupt, or Interrupted made of it)
        start_tuned(_spec(runs, "resumed"), ledger)
    failed = ledger.get("resumed")
    assert failed.status == "failed" and len(read_trials(failed.path)) == 2
    calls.clear()
    resumed = start_tuned(_spec(runs, "resumed"), ledger)
    assert resumed.id == failed.id and calls == [2]
    assert len(resumed.manifest["attempts"]) == 2
    keep = ("number", "params", "value", "domains", "items")
    assert [{k: t[k] for k in keep} for t in read_trials(resumed.path)] == [
        {k: t[k] for k in keep} for t in read_trials(tuned.path)
    ]
    assert resumed.manifest["merge"]["params"] == tuned.manifest["merge"]["params"]


def test_a_plain_merge_hashes_as_before_searches_existed():
    """The identity of a merge without a search, as computed before MergeJob had a `search` field."""
    from m2rl.config import compose_config
    from m2rl.jobs.build import merge_job

    spec = merge_job(compose_config([]), "paper_ties", ["a1", "b2"], "base0", "n", "st")
    assert spec.identity() == "5e8557907c41ad5d"
    tuned = merge_job(compose_config([]), "paper_ties", ["a1", "b2"], "base0", "n", "st", search=SEARCH)
    assert tuned.identity() != spec.identity()


@pytest.fixture()
def cli(experts, monkeypatch):
    import typer
    from typer.testing import CliRunner

    from m2rl.commands import merge as merge_command

    app = typer.Typer()
    app.command()(merge_command.command)
    ledger, _ = experts
    return lambda *args: CliRunner().invoke(app, [*args, *EVAL, "--runs-dir", str(ledger.root)])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "bogus", "--search", "2"], "unknown merge method"),
        (["--method", "paper_ties", "--search", "0"], "search.trials=0"),
        (["--method", "paper_ties", "--search", "2", "--search-items", "0"], "search.items_per_domain=0"),
        (["--method", "paper_ties", "--search", "2", "--search-params", "gamma"], "cannot search gamma"),
        (["--method", "paper_sce", "--search", "2"], "has no parameter to search"),
        (["--method", "paper_ties", "--search-items", "4"], "give --search TRIALS"),
        # the math test set drawn from the rl split, past the RL prompts: it holds the validation items
        (
            [
                "--search",
                "2",
                "--search-items",
                "4",
                "data.sizes.rl=16",
                "+eval.benchmarks.math.split=rl",
                "eval.benchmarks.math.count=24",
            ],
            "validation items of math are test items",
        ),
    ],
)
def test_bad_search_input_is_refused_before_any_run(cli, experts, args, message):
    ledger, _ = experts
    before = len(ledger.runs())
    result = cli("--experts", "rl-math,rl-science", "--name", "bad", *args)
    assert isinstance(result.exception, UserError), result.output
    assert message in str(result.exception) and "\n" not in str(result.exception)
    assert len(ledger.runs()) == before


def test_the_cli_search_exits_2_with_one_line():
    from cli_helpers import m2rl

    result = m2rl("merge", "--method", "paper_ties", "--search", "0", "--dry-run")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "search.trials=0" in result.stderr


def test_a_study_adds_one_tuned_merge_per_listed_method_after_the_experts():
    from m2rl.config import compose_config
    from m2rl.study.plan import plan

    cfg = compose_config(
        [*ONE_SEED, "study.merge_search.methods=[paper_ties,paper_dare_ties]", "study.merge_search.trials=5"]
    )
    stages = {s.name: s for s in plan(cfg, "st")}
    tuned = [s for s in stages.values() if s.name.endswith("-tuned")]
    assert [s.name for s in tuned] == ["st-s0-merge-paper_ties-tuned", "st-s0-merge-paper_dare_ties-tuned"]
    for stage in tuned:
        assert stage.kind == "merge" and stage.steps == 5
        assert set(stage.deps) == {"st-s0-sft", *(f"st-s0-rl-{d}" for d in cfg.study.domains)}
        assert f"{stage.name}-eval" in stages
    plain = plan(compose_config([]), "st")
    assert not [s for s in plain if s.name.endswith("-tuned")]


def test_a_tuned_merge_asks_slurm_for_the_gpus_its_trials_sample_on():
    from m2rl.config import compose_config
    from m2rl.jobs.build import merge_job
    from m2rl.specs import SlurmSettings
    from m2rl.study.backends import spec_request

    cfg = compose_config([])
    plain = merge_job(cfg, "paper_ties", ["e1", "e2"], "sft-id", "a-merge")
    tuned = merge_job(cfg, "paper_ties", ["e1", "e2"], "sft-id", "a-tuned", search=SEARCH)
    assert spec_request(SlurmSettings(), plain).gpus == 0
    assert spec_request(SlurmSettings(), tuned).gpus == 1


def _math_rows(path, numbers) -> None:
    rows = [
        {
            "id": f"file-math-{n}",
            "domain": "math",
            "prompt": [{"role": "user", "content": f"What is {n} + 1?"}],
            "label": str(n + 1),
        }
        for n in numbers
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_file_data_validates_on_a_seeded_slice_of_its_rl_rows_kept_off_its_test_file(tmp_path):
    """A file-backed domain has no unused rows: the items are a seeded selection of its RL rows, and a
    row that is also in its test file is refused."""
    from m2rl.jobs.build import merge_job
    from m2rl.merge.search import validation_items

    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    _math_rows(train, range(20))
    _math_rows(test, range(100, 110))
    files = [f"+data.files.math.train={train}", f"+data.files.math.test={test}"]
    search = {**SEARCH, "domains": ["math"]}
    spec = merge_job(_config(*files), "paper_ties", ["e1"], search=search)
    items = validation_items(spec.search)["math"]
    assert len(items) == SEARCH["items_per_domain"]
    assert {row["id"] for row in items} < {f"file-math-{n}" for n in range(20)}
    assert items == validation_items(spec.search)["math"]  # seeded
    _math_rows(test, [3, *range(100, 110)])  # one RL row is a test item: the selection may hold it
    _math_rows(train, [3])
    spec = merge_job(_config(*files), "paper_ties", ["e1"], search={**search, "items_per_domain": 1})
    with pytest.raises(UserError, match="validation items of math are test items"):
        validation_items(spec.search)
