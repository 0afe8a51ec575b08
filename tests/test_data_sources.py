"""Reading sources (local files of every supported type, hub ids) and prepared sample files; bad data as
one line naming file, line and problem."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from m2rl.data.sources import is_local, iter_records, local_files, read_samples, write_samples
from m2rl.errors import UserError

FIXTURES = Path(__file__).parent / "fixtures"


def test_hub_ids_and_local_paths_are_told_apart(tmp_path):
    assert is_local(str(FIXTURES / "dapo"))
    assert not is_local("BytedTsinghua-SIA/DAPO-Math-17k")
    with pytest.raises(UserError, match="not an existing file"):
        is_local(str(tmp_path / "missing.jsonl"))
    with pytest.raises(UserError, match="not an existing file"):
        is_local("./no/such/dir")


def test_jsonl_rows_keep_their_exact_nested_structure():
    rows = [r.row for r in iter_records(str(FIXTURES / "nemotron_rl" / "train.jsonl"))]
    if_row = next(r for r in rows if r["dataset"].endswith("instruction_following"))
    # json parsing, not Arrow: no None-valued keys are invented for the other categories' fields
    assert if_row["kwargs"] == [None, {"num_bullets": 3}]
    assert "verifier_metadata" not in if_row


def test_records_name_their_file_and_line_as_an_editor_counts():
    records = list(iter_records(str(FIXTURES / "benchmarks" / "aime25.jsonl")))
    assert records[1].location.endswith("aime25.jsonl line 2")


def test_parquet_csv_and_json_files_are_read(tmp_path):
    pq.write_table(pa.table({"a": [1, 2]}), tmp_path / "x.parquet")
    (tmp_path / "y.json").write_text(json.dumps({"data": [{"a": 3}]}))
    rows = [r.row for r in iter_records(str(tmp_path))]
    assert rows == [{"a": 1}, {"a": 2}, {"a": 3}]
    csv_rows = [r.row for r in iter_records(str(FIXTURES / "benchmarks" / "gpqa_diamond.csv"))]
    assert csv_rows[0]["Record ID"] == "rec06pnAkLOr2t2mp"


def test_a_directory_with_splits_is_filtered_by_split(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"a": 1}\n')
    (tmp_path / "test.jsonl").write_text('{"a": 2}\n')
    assert [p.name for p in local_files(str(tmp_path), "test")] == ["test.jsonl"]
    assert len(local_files(str(tmp_path), None)) == 2


def test_invalid_json_line_is_a_user_error_naming_the_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(UserError, match=r"bad.jsonl line 2: invalid JSON"):
        list(iter_records(str(bad)))


def test_empty_directory_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no .* files"):
        local_files(str(tmp_path))


def test_prepared_samples_round_trip_with_heterogeneous_metadata(tmp_path):
    samples = [
        {
            "id": "a",
            "domain": "if",
            "rm_type": "ifevalg",
            "prompt": [{"role": "user", "content": "x"}],
            "label": None,
            "metadata": {"instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]},
        },
        {
            "id": "b",
            "domain": "code",
            "rm_type": "unit_test",
            "prompt": [{"role": "user", "content": "y"}],
            "label": None,
            "metadata": {"unit_tests": {"inputs": ["1\n"], "outputs": ["2\n"]}},
        },
    ]
    path = write_samples(tmp_path / "s.parquet", samples)
    assert read_samples(path) == samples
    with pytest.raises(UserError, match="does not exist"):
        read_samples(tmp_path / "missing.parquet")


# -- bad data: exit 2, one line naming the file, the line (from 1, as an editor counts) and the problem ----
BLEND_LINES = (FIXTURES / "nemotron_rl" / "train.jsonl").read_text().splitlines()
SCIENCE, IF_ROW = BLEND_LINES[1], json.loads(BLEND_LINES[3])


def _with(row: dict, **fields) -> str:
    return json.dumps({**row, **fields})


BAD_DATA = {
    "invalid UTF-8": (
        "bad.jsonl",
        SCIENCE.encode() + b'\n{"dataset": "\xff"}\n',
        2,
        "not valid UTF-8 (byte 0xff at column 14)",
    ),
    "a .json list of non-objects": ("bad.json", f"[\n  {SCIENCE},\n  3\n]\n".encode(), 3, "found a number"),
    "a JSON parse error": ("bad.jsonl", f'{SCIENCE}\n{{"dataset": \n'.encode(), 2, "invalid JSON"),
    "a validation error after a blank line": (
        "bad.jsonl",
        f"\n{_with(json.loads(SCIENCE), responses_create_params={'input': 5})}\n".encode(),
        2,
        "responses_create_params.input must be a non-empty list",
    ),
    "a wrong row type": ("bad.jsonl", f"{SCIENCE}\n{_with(IF_ROW, dataset=7)}\n".encode(), 2, "is int"),
    "a wrong value deep in a row": (
        "bad.jsonl",
        f"{SCIENCE}\n{_with(IF_ROW, kwargs=['{not json'])}\n".encode(),
        2,
        "a field holds text that is not valid JSON (Expecting property name",
    ),
    "invalid UTF-8 in a CSV file": ("bad.csv", b"dataset,x\nstem,1\nstem,\xfe\n", 3, "not valid UTF-8"),
}


@pytest.mark.parametrize("case", BAD_DATA, ids=list(BAD_DATA))
def test_bad_data_is_one_line_naming_file_line_and_problem_with_exit_2(tmp_path, monkeypatch, capsys, case):
    from m2rl.cli import main

    name, content, line, problem = BAD_DATA[case]
    path = tmp_path / name
    path.write_bytes(content)
    argv = ["m2rl", "data", "prepare", "--domains", "science,if", "--out", str(tmp_path / "out")]
    monkeypatch.setattr(sys, "argv", [*argv, "data=nemotron", f"data.rl.source={path}"])
    with pytest.raises(SystemExit) as exited:
        main()
    err = capsys.readouterr().err
    assert exited.value.code == 2, err
    assert err.count("\n") == 1 and err.startswith(f"m2rl: error: {path} line {line}") and problem in err, err
