"""`m2rl verify`: scores a JSONL file, prints a per-rm_type summary, exits 2 on a malformed line."""

from __future__ import annotations

import json

from m2rl.data.builtin import generate
from m2rl.data.schema import make_sample

from cli_helpers import m2rl


def write_records(path, domains=("math", "science", "code")) -> list[dict]:
    records = []
    for domain in domains:
        for i, sample in enumerate(generate(domain, "test", 4, seed=21)):
            response = sample["metadata"]["solution"] if i % 2 == 0 else "<think>t</think>no answer"
            records.append({"sample": sample, "response": response})
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return records


def test_verify_writes_each_record_with_reward_and_reason_and_prints_a_summary(tmp_path):
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    records = write_records(source)
    done = m2rl("verify", str(source), "-o", str(target), "verifiers.code.time_limit_s=2")
    assert done.returncode == 0, done.stderr
    scored = [json.loads(line) for line in target.read_text().splitlines()]
    assert [r["sample"]["id"] for r in scored] == [r["sample"]["id"] for r in records]
    assert [r["reward"] for r in scored] == [1.0, 0.0] * 6
    assert all(isinstance(r["reason"], str) and r["response"] for r in scored)
    for rm_type in ("deepscaler", "gpqa", "unit_test"):
        assert rm_type in done.stdout
    assert "0.500" in done.stdout and "items/s" in done.stdout


def test_verify_exits_2_naming_the_malformed_line_and_writes_nothing(tmp_path):
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_records(source, domains=("math",))
    lines = source.read_text().splitlines()
    lines.insert(2, '{"sample": {"id": "x"}, "response": 3')
    source.write_text("\n".join(lines) + "\n")
    done = m2rl("verify", str(source), "-o", str(target), "verifiers.workers=0")
    assert done.returncode == 2
    assert "line 3: not valid JSON" in done.stderr and done.stderr.strip().count("\n") == 0
    assert not target.exists() and not (tmp_path / "out.jsonl.partial").exists()


def test_verify_rejects_a_sample_with_an_unknown_reward_type(tmp_path):
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    sample = generate("math", "test", 1, seed=1)[0] | {"rm_type": "vibes"}
    source.write_text(json.dumps({"sample": sample, "response": "x"}) + "\n")
    done = m2rl("verify", str(source), "-o", str(target), "verifiers.workers=0")
    assert done.returncode == 2 and "line 1" in done.stderr and "unknown rm_type 'vibes'" in done.stderr


def test_verify_scores_a_ten_option_item_answered_j(tmp_path):
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    options = [f"option {n}" for n in range(10)]
    ten = make_sample(
        "mmlu-pro-1", "science", "Pick one of ten.", "J", metadata={"valid_letters": "ABCDEFGHIJ"}
    )
    by_options = make_sample("mmlu-pro-2", "science", "Pick one of ten.", "J", metadata={"options": options})
    records = [{"sample": sample, "response": "<think>t</think>Answer: J"} for sample in (ten, by_options)]
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    done = m2rl("verify", str(source), "-o", str(target), "verifiers.workers=0")
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["reward"] for line in target.read_text().splitlines()] == [1.0, 1.0]
