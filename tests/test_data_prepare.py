"""`m2rl data prepare`: per-domain parquet files, the mixed file and a table of counts."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from m2rl.cli import app
from m2rl.data.sources import read_samples

FIXTURES = Path(__file__).parent / "fixtures"


def run(*args: str):
    return CliRunner().invoke(app, ["data", "prepare", *args], catch_exceptions=False)


def test_prepare_builtin_writes_domain_files_mixed_file_and_counts(tmp_path):
    out = tmp_path / "prepared"
    result = run("--domains", "math,if", "--out", str(out), "data.sizes.rl=12")
    assert result.exit_code == 0, result.output
    math, mixed = read_samples(out / "math.parquet"), read_samples(out / "mixed.parquet")
    assert len(math) == 12 and len(mixed) == 24
    assert {s["domain"] for s in mixed} == {"math", "if"}
    assert read_samples(out / "if.parquet")[0]["metadata"]["instruction_id_list"]
    assert "RL data: builtin" in result.output and "mixed" in result.output
    assert json.loads((out / "report.json").read_text())["counts"] == {"math": 12, "if": 12}
    assert f"files in {out.resolve()}/\n" in result.output or f"files in {out}/\n" in result.output  # whole


def test_prepare_names_its_folder_whole_at_80_columns(tmp_path):
    out = tmp_path / ("a-long-folder-name-" * 4) / "prepared"
    result = CliRunner(env={"COLUMNS": "80"}).invoke(
        app,
        ["data", "prepare", "--domains", "math", "--out", str(out), "data.sizes.rl=4"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "…" not in result.output and str(out) in result.output.replace("files in ", "")


def test_prepare_nemotron_from_local_files_reports_what_was_left_out(tmp_path):
    out = tmp_path / "nemotron"
    result = run(
        "--out", str(out), "data=nemotron",
        f"data.rl.source={FIXTURES / 'nemotron_rl' / 'train.jsonl'}",
        f"data.rl.placeholders.nano_v3_sft_profiled_dapo17k.source={FIXTURES / 'dapo'}",
        "data.rl.placeholders.nano_v3_sft_profiled_skywork_no_omni.source=null",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["counts"] == {"math": 2, "code": 1, "science": 2, "if": 1}
    assert report["report"]["unresolved"]["nano_v3_sft_profiled_skywork_no_omni"]["count"] == 1
    assert "unresolved 1 placeholder row(s)" in result.output
    assert "dropped 1 row(s) of category nano_v3_sft_profiled_structured_outputs" in result.output
    assert len(read_samples(out / "mixed.parquet")) == 6


def test_prepare_rejects_an_unknown_domain(tmp_path):
    from m2rl.errors import UserError

    try:
        run("--domains", "chemistry", "--out", str(tmp_path))
    except UserError as exc:
        assert "unknown domain" in str(exc)
    else:
        raise AssertionError("expected a UserError")
