"""Eval benchmark loaders on fixtures in each dataset's schema."""

from __future__ import annotations

import base64
import json
import pickle
import zlib
from pathlib import Path

import pytest

from m2rl.data.benchmarks import (
    LOADERS,
    PAPER_BENCHMARKS,
    LeftOut,
    benchmark_format,
    decode_lcb_tests,
    fill,
    load_benchmark,
    read_benchmark,
)
from m2rl.data.sources import iter_records
from m2rl.errors import UserError

BENCH = Path(__file__).parent / "fixtures" / "benchmarks"


def spec(name, path, **extra):
    return {"name": name, "source": str(BENCH / path), "split": None, **extra}


def test_aime_items_use_the_boxed_answer_template_and_gold_answers():
    aime24 = load_benchmark(spec("aime24", "aime24.jsonl"))
    aime25 = load_benchmark(spec("aime25", "aime25.jsonl"))
    assert [s["label"] for s in aime24] == ["204", "25"] and [s["label"] for s in aime25] == ["70", "588"]
    prompt = aime24[0]["prompt"][0]["content"]
    assert (
        prompt.startswith("Solve the following math problem step by step.")
        and "Answer: \\boxed{$Answer}" in prompt
    )
    assert prompt.endswith("Find $s^2$ where $\\{s\\}$ is odd.")  # LaTeX braces survive templating
    assert {s["rm_type"] for s in aime24 + aime25} == {"deepscaler"} and aime24[0]["id"] == "aime24-60"


def test_gpqa_options_are_shuffled_with_a_seed_and_the_gold_letter_follows():
    items = load_benchmark(spec("gpqa_diamond", "gpqa_diamond.csv", seed=0))
    assert items == load_benchmark(spec("gpqa_diamond", "gpqa_diamond.csv", seed=0))
    for item in items:
        gold_text = item["metadata"]["choices"]["ABCD".index(item["label"])]
        assert gold_text in ("azimuthal quantum number", "pyruvate")
        assert f"{item['label']}) {gold_text}" in item["prompt"][0]["content"]
        assert item["rm_type"] == "gpqa" and item["metadata"]["valid_letters"] == ["A", "B", "C", "D"]
    reseeded = [
        s["label"]
        for seed in range(8)
        for s in load_benchmark(spec("gpqa_diamond", "gpqa_diamond.csv", seed=seed))
    ]
    assert len(set(reseeded)) > 1


def test_ifeval_and_ifbench_carry_instruction_ids_kwargs_and_prompt_text():
    ifeval = load_benchmark(spec("ifeval", "ifeval.jsonl"))
    assert ifeval[0]["rm_type"] == "ifevalg"
    # the hub's Arrow-unified kwargs (every key, mostly None) come back as each instruction's own kwargs
    assert ifeval[0]["metadata"]["kwargs"] == [
        {},
        {"num_highlights": 3},
        {"relation": "at least", "num_words": 300},
    ]
    assert ifeval[0]["metadata"]["prompt_text"] == ifeval[0]["prompt"][0]["content"]


def test_ifbench_rows_convert_and_rows_with_unknown_instruction_ids_are_left_out(tmp_path, capsys):
    records = iter_records(str(BENCH / "ifbench.jsonl"))
    first = next(LOADERS["ifbench"](spec("ifbench", "ifbench.jsonl"), records))
    assert first["rm_type"] == "ifbench" and first["metadata"]["instruction_id_list"] == [
        "count:word_count_range"
    ]
    assert first["metadata"]["kwargs"] == [{"min_words": 40, "max_words": 60}]
    bad = tmp_path / "ifbench.jsonl"
    rows = (BENCH / "ifbench.jsonl").read_text().splitlines()
    unknown = {"key": "x", "prompt": "p", "instruction_id_list": ["no_such:rule"], "kwargs": [{}]}
    bad.write_text("\n".join([rows[0], json.dumps(unknown), rows[1]]) + "\n")
    items = load_benchmark({"name": "ifbench", "source": str(bad), "split": None})
    assert [s["id"] for s in items] == ["ifbench-ifbench-0", "ifbench-ifbench-1"]
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        f"benchmark ifbench: left out 1 of 3 rows of {bad} it cannot express: "
        "unsupported instruction id(s): no_such:rule: line 2 (id ifbench-x)"
    )
    read = read_benchmark({"name": "ifbench", "source": str(bad), "split": None})
    assert read.rows == 3 and read.left_out == [
        LeftOut(str(bad), "line 2", "ifbench-x", "unsupported instruction id(s): no_such:rule")
    ]


def test_livecodebench_windows_decode_private_tests_and_skip_call_based_problems():
    v5 = load_benchmark(spec("lcb_v5", "livecodebench.jsonl", start_date="2024-08-01", end_date="2025-02-01"))
    v6 = load_benchmark(spec("lcb_v6", "livecodebench.jsonl", start_date="2025-02-01", end_date="2025-05-01"))
    assert [s["id"] for s in v5] == ["lcb_v5-abc370_a"] and [s["id"] for s in v6] == ["lcb_v6-abc392_b"]
    tests = v5[0]["metadata"]["unit_tests"]
    assert tests == {"inputs": ["3\n1 2 3\n", "2\n5 5\n", "1\n-7\n"], "outputs": ["6\n", "10\n", "-7\n"]}
    assert "Read the inputs from stdin" in v5[0]["prompt"][0]["content"] and v5[0]["rm_type"] == "unit_test"


def test_livecodebench_refuses_pickles_that_build_objects():
    class Boom:
        def __reduce__(self):
            return (print, ("pwned",))

    payload = base64.b64encode(zlib.compress(pickle.dumps(Boom()))).decode()
    with pytest.raises(UserError, match="could not decode"):
        decode_lcb_tests(payload, "row 0")
    assert decode_lcb_tests(json.dumps([{"input": "1", "output": "1"}]), "row 0") == [
        {"input": "1", "output": "1"}
    ]


def test_mmlu_redux_keeps_only_items_marked_ok_by_default():
    items = load_benchmark(spec("mmlu_redux", "mmlu_redux"))
    assert [s["label"] for s in items] == ["B", "D"]
    assert items[0]["metadata"]["subject"] == "anatomy" and items[0]["domain"] == "general"
    assert len(load_benchmark(spec("mmlu_redux", "mmlu_redux", keep_error_types=None))) == 3


def test_hle_uses_text_items_with_a_reward_type_per_answer_kind():
    items = load_benchmark(spec("hle", "hle.jsonl"))
    assert [(s["rm_type"], s["label"]) for s in items] == [("gpqa", "C"), ("deepscaler", "32")]
    assert items[0]["metadata"]["valid_letters"] == list("ABCDE")


def test_limit_unknown_format_and_empty_benchmarks():
    assert len(load_benchmark(spec("aime25", "aime25.jsonl", limit=1))) == 1
    with pytest.raises(UserError, match="unknown format"):
        load_benchmark(spec("mystery", "aime25.jsonl"))
    with pytest.raises(UserError, match="no usable items"):
        load_benchmark(spec("lcb", "livecodebench.jsonl", start_date="2030-01-01"))


def test_paper_benchmark_specs_are_complete():
    names = [s["name"] for s in PAPER_BENCHMARKS]
    assert names == [
        "aime24",
        "aime25",
        "lcb_v5",
        "lcb_v6",
        "hle",
        "gpqa_diamond",
        "ifeval",
        "ifbench",
        "mmlu_redux",
    ]
    for s in PAPER_BENCHMARKS:
        assert {"name", "domain", "source", "split", "k", "rm_type"} <= set(s) and benchmark_format(
            s
        ) in LOADERS
    k = {s["name"]: s["k"] for s in PAPER_BENCHMARKS}
    assert (k["aime24"], k["gpqa_diamond"], k["ifeval"], k["ifbench"]) == (16, 4, 1, 1)
    assert fill("{a} {b} {a}", a="x") == "x {b} x"


def test_a_row_with_a_wrong_value_type_is_left_out_naming_its_file_and_line(tmp_path, capsys):
    good = {
        "question_id": "a",
        "question_content": "q",
        "contest_date": "2024-09-01",
        "public_test_cases": json.dumps([{"input": "1", "output": "1", "testtype": "stdin"}]),
    }
    bad = {**good, "question_id": "b", "public_test_cases": "[1]"}  # a test case that is not an object
    path = tmp_path / "lcb.jsonl"
    path.write_text(json.dumps(good) + "\n\n" + json.dumps(bad) + "\n")
    items = load_benchmark({"name": "lcb_v5", "source": str(path), "split": None})
    assert [s["id"] for s in items] == ["lcb_v5-a"]
    err = capsys.readouterr().err
    assert err.startswith(
        f"benchmark lcb_v5: left out 1 of 2 rows of {path} it cannot express: "
        "a field has the wrong type or shape (AttributeError"
    )
    assert err.rstrip().endswith(": line 3") and len(err.splitlines()) == 1


def test_a_benchmark_none_of_whose_rows_loads_is_an_error_naming_the_first_problem(tmp_path):
    path = tmp_path / "aime.jsonl"
    path.write_text(json.dumps({"question_text": "no problem field"}) + "\n")
    with pytest.raises(UserError, match=rf"has no usable items: {path} line 1: missing field 'problem'"):
        load_benchmark({"name": "aime24", "source": str(path), "split": None})


def test_many_rows_left_out_are_counted_and_the_line_is_capped(tmp_path, capsys):
    rows = [{"problem": f"p{i}", "answer": str(i)} for i in range(3)] + [{"answer": "1"}] * 20
    path = tmp_path / "aime.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert len(load_benchmark({"name": "aime24", "source": str(path), "split": None})) == 3
    (line,) = capsys.readouterr().err.splitlines()
    assert "left out 20 of 23 rows" in line and "line 4, line 5," in line
    assert line.endswith("line 15 and 8 more")
    assert len(load_benchmark({"name": "aime24", "source": str(path), "split": None, "limit": 2})) == 2
