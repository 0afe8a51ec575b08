"""Datasets from canonical files per domain (data=files, data.files beside a source): row-by-row
validation naming file and line, eval benchmarks following the configured domains, and the round
trip: what `m2rl data prepare` writes is accepted as RL, SFT and eval data unchanged."""

from __future__ import annotations

import json

import pytest

from m2rl.config import compose_config
from m2rl.data.builtin import generate
from m2rl.data.load import rl_samples, sft_conversations
from m2rl.data.sources import read_samples
from m2rl.errors import UserError
from m2rl.evaluate.benchmarks import load_items
from m2rl.evaluate.settings import BenchmarkSpec, EvalSettings

from cli_helpers import m2rl

REWARD = "def score_sort(sample, text):\n    return text.split() == sample['label'].split()\n"


def sort_rows(count: int, start: int = 0) -> list[dict]:
    rows = []
    for i in range(start, start + count):
        numbers = [(7 * i + 3 * k) % 10 for k in range(3)]
        answer = " ".join(map(str, sorted(numbers)))
        rows.append(
            {
                "id": f"sort-{i}",
                "domain": "sort",
                "prompt": [{"role": "user", "content": "Sort: " + " ".join(map(str, numbers))}],
                "label": answer,
                "metadata": {"solution": f"<think>\nsorted\n</think>\n\n{answer}"},
            }
        )
    return rows


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture
def sort_files(tmp_path):
    (tmp_path / "reward.py").write_text(REWARD)
    return {
        "train": write_jsonl(tmp_path / "train.jsonl", sort_rows(6)),
        "test": write_jsonl(tmp_path / "test.jsonl", sort_rows(3, start=100)),
        "plugin": f"verifiers.custom.sort={tmp_path / 'reward.py'}:score_sort",
    }


def test_files_domains_feed_rl_sft_and_eval(sort_files):
    cfg = compose_config(
        ["data=files", f"data.domains.sort.train={sort_files['train']}", f"data.domains.sort.test={sort_files['test']}",
         f"data.domains.sort.sft={sort_files['train']}", sort_files["plugin"]]
    )  # fmt: skip
    samples = rl_samples(cfg.data, ["sort"])["sort"]
    assert [s["id"] for s in samples] == [f"sort-{i}" for i in range(6)]
    assert {s["rm_type"] for s in samples} == {"sort"}
    assert len(sft_conversations(cfg.data)) == 6
    settings = EvalSettings.from_cfg(cfg)
    assert [(b.name, b.source) for b in settings.benchmarks] == [("sort", "files")]  # no built-in test sets
    assert [i["id"] for i in load_items(settings.benchmarks[0])] == ["sort-100", "sort-101", "sort-102"]


def test_builtin_domains_plus_a_files_domain(sort_files):
    cfg = compose_config(
        ["data.domains=[math,code,science,if,sort]", "data.sizes.rl=3", "data.sizes.sft=2",
         f"data.files.sort.train={sort_files['train']}", f"data.files.sort.test={sort_files['test']}",
         f"data.files.sort.sft={sort_files['train']}", sort_files["plugin"]]
    )  # fmt: skip
    per_domain = rl_samples(cfg.data, ["math", "sort"])
    assert {d: len(s) for d, s in per_domain.items()} == {"math": 3, "sort": 6}
    assert len(sft_conversations(cfg.data)) == 4 * 2 + 6
    names = [b.name for b in EvalSettings.from_cfg(cfg).benchmarks]
    assert names == ["math", "code", "science", "if", "sort"]


def test_a_bad_row_is_named_by_file_and_line(sort_files, tmp_path):
    rows = sort_rows(4)
    rows[2]["prompt"] = "not a list"
    bad = write_jsonl(tmp_path / "bad.jsonl", rows)
    cfg = compose_config(["data=files", f"data.domains.sort.train={bad}", sort_files["plugin"]])
    with pytest.raises(UserError, match=r"bad.jsonl line 3 \(id 'sort-2'\): 'prompt' must be"):
        rl_samples(cfg.data, ["sort"])
    rows[2] = sort_rows(1)[0] | {"domain": "math"}
    other = write_jsonl(tmp_path / "other.jsonl", rows)
    cfg = compose_config(["data=files", f"data.domains.sort.train={other}", sort_files["plugin"]])
    with pytest.raises(
        UserError, match=r"other.jsonl line 3: row of domain 'math' in the sort domain's train"
    ):
        rl_samples(cfg.data, ["sort"])


def test_a_domain_without_a_reward_type_is_one_line_and_exit_2(sort_files, tmp_path):
    done = m2rl(
        "data",
        "prepare",
        "data=files",
        f"data.domains.sort.train={sort_files['train']}",
        "--out",
        str(tmp_path / "p"),
    )
    assert done.returncode == 2
    assert "train.jsonl line 1 (id 'sort-0'): no rm_type and domain 'sort' has no default" in done.stderr
    assert done.stderr.strip().count("\n") == 0


def test_what_prepare_writes_is_accepted_as_rl_sft_and_eval_data_unchanged(sort_files, tmp_path):
    out = tmp_path / "prepared"
    done = m2rl(
        "data", "prepare", "data.domains=[math,code,science,if,sort]", "data.sizes.rl=4",
        f"data.files.sort.train={sort_files['train']}", sort_files["plugin"], "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    domains = ["math", "code", "science", "if", "sort"]
    assert sorted(p.stem for p in out.glob("*.parquet")) == sorted([*domains, "mixed"])
    written = {d: read_samples(out / f"{d}.parquet") for d in domains}
    assert written["math"] == [
        s | {"id": str(s["id"]), "label": None if s["label"] is None else str(s["label"])}
        for s in generate("math", "rl", 4, 0, 1)
    ]
    overrides = ["data=files", sort_files["plugin"]]
    for d in domains:
        path = out / f"{d}.parquet"
        overrides += [
            f"data.domains.{d}.train={path}",
            f"data.domains.{d}.test={path}",
            f"data.domains.{d}.sft={path}",
        ]
    cfg = compose_config(overrides)
    assert rl_samples(cfg.data, domains) == written  # RL
    assert len(sft_conversations(cfg.data)) == sum(map(len, written.values()))  # SFT
    for bench in EvalSettings.from_cfg(cfg).benchmarks:  # eval
        assert load_items(bench) == written[bench.domain]
    # and the mixed file, as one domain's data? No: it holds five domains; a domain's file is one domain.
    with pytest.raises(UserError, match="row of domain"):
        load_items(BenchmarkSpec("sort", "sort", "files", 1, {"path": str(out / "mixed.parquet")}))


def test_a_prepared_file_given_to_the_nemotron_reader_points_at_data_files(tmp_path):
    from m2rl.data.sources import write_samples

    path = write_samples(tmp_path / "math.parquet", generate("math", "rl", 2, 0, 1))
    cfg = compose_config(["preset=paper", f"data.rl.source={path}", "data.rl.files=null"])
    with pytest.raises(
        UserError, match=r"math.parquet row 1: 'dataset' .* is missing; .* use|read it with data=files"
    ):
        rl_samples(cfg.data, ["math"])


def test_a_files_only_study_plans_its_own_domains(sort_files):
    from m2rl.study.plan import plan

    cfg = compose_config(
        ["data=files", f"data.domains.sort.train={sort_files['train']}", f"data.domains.units.train={sort_files['train']}",
         sort_files["plugin"]]
    )  # fmt: skip
    assert list(cfg.study.domains) == ["sort", "units"]
    names = [stage.name for stage in plan(cfg, "f")]
    assert {"f-s0-rl-sort", "f-s0-rl-units", "f-s0-rl-mixed"} <= set(names)


def test_a_bad_row_in_any_local_file_stops_the_study_before_its_first_stage(sort_files, tmp_path):
    """The test file is read only by the eval stages, after SFT and RL: the pipeline reads every local
    file first, so the bad row costs one line and exit 2 (dry run or not), with no run created."""
    rows = sort_rows(3, start=100)
    rows[1]["prompt"] = "not a list"
    bad = write_jsonl(tmp_path / "bad_test.jsonl", rows)
    runs = tmp_path / "runs"
    args = ["data=files", f"data.domains.sort.train={sort_files['train']}", f"data.domains.sort.test={bad}",
            f"data.domains.sort.sft={sort_files['train']}", sort_files["plugin"]]  # fmt: skip
    for extra in (["--dry-run"], []):
        done = m2rl("pipeline", *extra, *args, runs_dir=runs)
        assert done.returncode == 2, done.stderr
        assert "bad_test.jsonl line 2 (id 'sort-101')" in done.stderr
        assert done.stderr.strip().count("\n") == 0
    assert not runs.exists() or not any(runs.iterdir())
