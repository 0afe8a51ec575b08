"""The Nemotron RL blend and SFT blend adapters, on fixtures written in the real datasets' schemas."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf

from m2rl.data.nemotron import (
    MATH_PREFIX,
    SFT_SUBSETS,
    first_answer,
    load_sft_conversations,
    read_rl_blend,
    restore_question,
    sample_indices,
)
from m2rl.errors import UserError

FIXTURES = Path(__file__).parent / "fixtures"
BLEND = FIXTURES / "nemotron_rl" / "train.jsonl"
DAPO = "nano_v3_sft_profiled_dapo17k"
SKYWORK = "nano_v3_sft_profiled_skywork_no_omni"


def rl_cfg(**rl):
    placeholders = {
        DAPO: {"source": str(FIXTURES / "dapo"), "split": "train"},
        SKYWORK: {"source": str(FIXTURES / "skywork"), "split": "math"},
    }
    base = {
        "source": str(BLEND),
        "files": None,
        "split": None,
        "max_per_domain": None,
        "placeholders": placeholders,
    }
    base.update(rl)
    return OmegaConf.create(
        {"name": "nemotron", "domains": ["math", "code", "science", "if"], "seed": 0, "rl": base}
    )


@pytest.fixture(scope="module")
def blend():
    return read_rl_blend(rl_cfg(), ["math", "code", "science", "if"])


def test_categories_route_to_domains_and_reward_types(blend):
    counts = {d: len(v) for d, v in blend.samples.items()}
    assert counts == {"math": 3, "code": 1, "science": 2, "if": 1}
    for domain, rm_type in {
        "math": "deepscaler",
        "code": "unit_test",
        "science": "gpqa",
        "if": "ifevalg",
    }.items():
        assert {s["rm_type"] for s in blend.samples[domain]} == {rm_type}
    assert blend.report.dropped == {"nano_v3_sft_profiled_structured_outputs": 1}
    assert blend.report.not_requested == {"agent": 1}


def test_dapo_and_skywork_placeholders_are_restored_with_the_math_prefix(blend):
    by_answer = {s["label"]: s["prompt"][0]["content"] for s in blend.samples["math"]}
    assert (
        by_answer["144"]
        == MATH_PREFIX + "Solve the problem.\n\nLet $f(x) = x^2$. Find $f(12)$.\n\nGive an integer."
    )
    assert by_answer["7"] == MATH_PREFIX + "What is $3 + 4$?\n\nThink carefully."
    # Skywork stores a JSON list of answers; its template wraps the question
    skywork = next(s for s in blend.samples["math"] if s["metadata"]["category"] == SKYWORK)
    assert skywork["label"] == "7"
    assert skywork["prompt"][0]["content"].endswith(
        "Find $x$ such that $2x + 6 = 20$.\n\nPut the final answer in \\boxed{}."
    )


def test_science_prompt_is_edited_to_step_by_step_and_label_is_the_letter(blend):
    edited, unchanged = blend.samples["science"]
    assert edited["prompt"][0]["content"].startswith(
        "Answer the following multiple choice question step by step. The last line"
    )
    assert edited["label"] == "C" and edited["metadata"]["valid_letters"] == ["A", "B", "C", "D"]
    # a prompt without the expected sentence is left as is (the reference would cut its first 47 characters)
    assert unchanged["prompt"][0]["content"].startswith("Which gas do plants absorb")
    assert sum(blend.report.notes.values()) == 1


def test_code_tests_come_from_verifier_metadata(blend):
    (code,) = blend.samples["code"]
    assert code["metadata"]["unit_tests"] == {
        "inputs": ["3\n", "10\n", "-4\n"],
        "outputs": ["6\n", "20\n", "-8\n"],
    }
    assert code["label"] is None and code["prompt"][0]["content"].startswith(
        "You are an expert competitive programmer"
    )


def test_instruction_following_keeps_ids_kwargs_and_prompt_text(blend):
    (row,) = blend.samples["if"]
    assert row["metadata"]["instruction_id_list"] == [
        "punctuation:no_comma",
        "detectable_format:number_bullet_lists",
    ]
    assert row["metadata"]["kwargs"] == [{}, {"num_bullets": 3}]  # null kwargs -> {}
    assert row["metadata"]["prompt_text"] == row["prompt"][0]["content"]


def test_parquet_placeholder_source_resolves_like_jsonl(tmp_path):
    rows = [json.loads(line) for line in (FIXTURES / "skywork" / "math.jsonl").read_text().splitlines()]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "math-00000-of-00001.parquet")
    cfg = rl_cfg()
    cfg.rl.placeholders[SKYWORK].source = str(tmp_path)
    result = read_rl_blend(cfg, ["math"])
    assert "7" in [s["label"] for s in result.samples["math"] if s["metadata"]["category"] == SKYWORK]


def test_unavailable_placeholder_sources_are_reported_not_dropped_silently(tmp_path):
    cfg = rl_cfg()
    cfg.rl.placeholders[DAPO].source = None
    result = read_rl_blend(cfg, ["math"])
    assert len(result.samples["math"]) == 1  # only the Skywork row
    assert result.report.unresolved[DAPO]["count"] == 2
    assert "no source configured" in result.report.unresolved[DAPO]["reason"]
    assert any(
        "unresolved 2 placeholder row(s) of nano_v3_sft_profiled_dapo17k" in line
        for line in result.report.lines()
    )


def test_a_bad_row_raises_a_user_error_naming_file_line_and_problem(tmp_path):
    rows = [json.loads(line) for line in BLEND.read_text().splitlines()]
    rows[2]["verifier_metadata"]["unit_tests"]["outputs"].pop()
    bad = tmp_path / "train.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(
        UserError,
        match=r"train.jsonl line 3 \(nano_v3_sft_profiled_comp_coding_50tests\): unit_tests has 3 inputs and 2 outputs",
    ):
        read_rl_blend(rl_cfg(source=str(bad)), ["code"])


def test_placeholder_row_outside_the_source_is_a_user_error(tmp_path):
    shutil.copy(FIXTURES / "dapo" / "dapo-math-17k.jsonl", tmp_path / "train.jsonl")
    (tmp_path / "train.jsonl").write_text((tmp_path / "train.jsonl").read_text().splitlines()[0] + "\n")
    cfg = rl_cfg()
    cfg.rl.placeholders[DAPO].source = str(tmp_path)
    with pytest.raises(UserError, match="placeholder row 1 is outside"):
        read_rl_blend(cfg, ["math"])


def test_agent_rows_convert_but_have_no_verifier_to_validate_them():
    from m2rl.data.nemotron import BlendReport, blend_row_to_sample
    from m2rl.data.sources import iter_records

    record = next(r for r in iter_records(str(BLEND)) if r.row["dataset"] == "nano_v3_sft_profiled_workbench")
    agent = blend_row_to_sample(record, "nano_v3_sft_profiled_workbench", "a-1", BlendReport())
    assert agent["domain"] == "agent" and agent["rm_type"] == "workbench"
    assert agent["metadata"]["ground_truth_tool_calls"][0]["name"] == "email_send_email"
    assert [m["role"] for m in agent["prompt"]] == ["system", "user"]
    with pytest.raises(UserError, match=r"train.jsonl line 7 .*unknown rm_type 'workbench'"):
        read_rl_blend(rl_cfg(), ["agent"])


def test_unknown_domain_and_per_domain_cap():
    with pytest.raises(UserError, match="no domain"):
        read_rl_blend(rl_cfg(), ["chemistry"])
    capped = read_rl_blend(rl_cfg(max_per_domain=1), ["math", "science"])
    assert {d: len(v) for d, v in capped.samples.items()} == {"math": 1, "science": 1}


def test_answers_and_templates_follow_the_restoration_rules():
    assert (
        first_answer('["4", "four"]') == "4" and first_answer("1.50") == "1.50" and first_answer(["x"]) == "x"
    )
    assert restore_question(SKYWORK, "Q?", {"template": "Solve: {question}"}) == "Solve: Q?"
    assert restore_question(DAPO, "no wrapper", None) == "no wrapper"


# ------------------------------------------------------------------------------------------------- SFT


def sft_cfg(tmp_path, counts=None, reasoning="fold"):
    subsets = {
        name: {
            "source": str(FIXTURES / "nemotron_sft" / f"{name}.jsonl"),
            "split": None,
            "count": (counts or {}).get(name),
        }
        for name in SFT_SUBSETS
    }
    return OmegaConf.create(
        {
            "name": "nemotron",
            "seed": 0,
            "sft": {
                "subsets": subsets,
                "reasoning": reasoning,
                "seed": 1,
                "cache_dir": str(tmp_path / "cache"),
            },
        }
    )


def test_sft_blend_folds_reasoning_into_think_blocks(tmp_path):
    ds = load_sft_conversations(sft_cfg(tmp_path))
    # 7 usable conversations: the '-' placeholder prompt and the empty assistant reply are skipped
    assert len(ds) == 7
    contents = [m["content"] for row in ds["messages"] for m in row if m["role"] == "assistant"]
    assert "<think>\n12 * 12 = 144.\n</think>\n\nThe product is \\boxed{144}." in contents
    assert (
        "\\boxed{15}" in contents
    )  # empty reasoning adds no think block (the template renders an empty one)
    assert "bonjour" in contents
    assert not any(m["content"] == "-" for row in ds["messages"] for m in row)


def test_sft_rows_render_with_the_qwen3_chat_template(tmp_path):
    from jinja2 import Environment
    from trl.chat_template_utils import qwen3_training_chat_template

    ds = load_sft_conversations(sft_cfg(tmp_path))
    agent = next(row for row in ds if row["tools"])
    template = Environment().from_string(
        qwen3_training_chat_template.replace("{%- generation %}", "").replace("{%- endgeneration %}", "")
    )
    text = template.render(messages=agent["messages"], tools=json.loads(agent["tools"]))
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' in text
    assert "<think>\nI should call the weather tool.\n</think>" in text
    assert '"name": "get_weather"' in text.split("\n</tools>")[0]


def test_sft_reasoning_can_stay_a_field(tmp_path):
    ds = load_sft_conversations(sft_cfg(tmp_path, reasoning="field"))
    math = next(row for row in ds["messages"] if row[-1]["content"] == "The product is \\boxed{144}.")
    assert math[-1]["reasoning_content"] == "12 * 12 = 144."


def test_sft_subsets_are_sampled_to_their_counts(tmp_path):
    counts = {"math_proofs": 3, "math": 1, "science": 0, "code": 1, "chat": 1, "agent": 2}
    ds = load_sft_conversations(sft_cfg(tmp_path, counts))
    assert len(ds) == 8
    assert sample_indices(2, 5, seed=0)[:2] == [0, 1] and len(sample_indices(10, 3, seed=0)) == 3


def test_paper_sft_counts_and_config_compose():
    from m2rl.config import compose_config

    cfg = compose_config(["data=nemotron"])
    counts = {name: spec["count"] for name, spec in cfg.data.sft.subsets.items()}
    assert counts == {name: spec["count"] for name, spec in SFT_SUBSETS.items()}
    assert sum(counts.values()) == 14_121_873
    assert cfg.data.rl.source == "nvidia/Nemotron-3-Nano-RL-Training-Blend"


@pytest.mark.slow
def test_sft_blend_trains_with_trl_on_the_tiny_model(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from m2rl.config import compose_config
    from m2rl.models.tiny import ensure_tiny_model

    path = ensure_tiny_model(OmegaConf.to_container(compose_config([]).model.builtin), tmp_path / "models")
    dataset = load_sft_conversations(sft_cfg(tmp_path, dict.fromkeys(SFT_SUBSETS, 4)))
    args = SFTConfig(output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=4, assistant_only_loss=True,
                     use_cpu=True, bf16=False, report_to=[], max_length=256, save_strategy="no", disable_tqdm=True)  # fmt: skip
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(path), args=args, train_dataset=dataset,
                         processing_class=AutoTokenizer.from_pretrained(path))  # fmt: skip
    assert trainer.train().training_loss > 0


def test_a_bad_sft_row_is_a_user_error_naming_file_and_line_not_a_datasets_wrapper(tmp_path):
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps({"messages": [{"role": 5, "content": "x"}]}) + "\n")
    cfg = OmegaConf.create(
        {"name": "nemotron", "sft": {"subsets": {"chat": {"source": str(path)}}, "cache_dir": str(tmp_path)}}
    )
    with pytest.raises(UserError, match=rf"^{path} line 2 \(chat\): message 0 needs a role$"):
        load_sft_conversations(cfg)
