"""The reward rules of each domain on hand-made cases, routing, validation and the built-in data."""

from __future__ import annotations

import pytest

from m2rl.data.builtin import generate
from m2rl.data.schema import make_sample
from m2rl.errors import UserError
from m2rl.verifiers import RM_TYPES, Verdict, VerifierConfig, check_sample, score
from m2rl.verifiers.gate import scored_text
from m2rl.verifiers.math_answer import extract_answer, is_equivalent, last_boxed
from m2rl.verifiers.multiple_choice import extract_letter, valid_letters
from m2rl.verifiers.unit_tests import extract_program, sample_tests

FAST = VerifierConfig(workers=0, code_time_limit_s=2)


def math_sample(label: str = "42") -> dict:
    return make_sample("m1", "math", "What is 6*7?", label)


def science_sample(label: str = "C", **metadata) -> dict:
    return make_sample("s1", "science", "Pick one.", label, metadata=metadata)


def code_sample(inputs: list[str], outputs: list[str], sample_id: str = "c1") -> dict:
    return make_sample(
        sample_id, "code", "Echo.", None, metadata={"unit_tests": {"inputs": inputs, "outputs": outputs}}
    )


# ---------------------------------------------------------------------------------------------
# think gate
def test_gate_requires_think_end_and_scores_only_text_after_the_last_one():
    assert scored_text("no think here") is None
    assert scored_text("<think>a</think>b</think> final <|im_end|>") == " final"
    assert scored_text("plain <|im_end|>", require_think=False) == "plain"


def test_response_without_think_end_scores_zero_unless_gate_is_off():
    sample = math_sample()
    assert score(sample, "Answer: \\boxed{42}", FAST) == Verdict(0.0, "no </think>")
    assert score(sample, "Answer: \\boxed{42}", VerifierConfig(require_think=False)).reward == 1.0


def test_only_text_after_last_think_end_is_scored():
    sample = math_sample()
    assert score(sample, "<think>\\boxed{42}</think> Answer: \\boxed{41}", FAST).reward == 0.0
    assert score(sample, "<think>\\boxed{41}</think> Answer: \\boxed{42}<|im_end|>", FAST).reward == 1.0


# ---------------------------------------------------------------------------------------------
# math
def test_last_boxed_handles_nested_braces_and_takes_the_last_box():
    assert last_boxed("\\boxed{1} then \\boxed{\\frac{1}{\\sqrt{2}}}") == "\\frac{1}{\\sqrt{2}}"
    assert last_boxed("\\boxed{unclosed {") is None
    assert last_boxed("no box") is None


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("\\boxed {5}", "5"), ("\\boxed\t{\\frac{1}{2}}", "\\frac{1}{2}"), ("\\fbox {7}", "7"),
        ("\\boxed 5$", "5"), ("$\\boxed{\\boxed{6}}$", "6"), ("\\boxed {", None),
    ],
)  # fmt: skip
def test_math_box_formats(text, answer):
    assert last_boxed(text) == answer


def test_math_answer_is_taken_after_the_last_answer_marker():
    assert extract_answer("\\boxed{1}\nAnswer: \\boxed{2}") == "2"
    assert extract_answer("\\boxed{3}\nAnswer: 3") is None  # a box before "Answer:" does not count


@pytest.mark.parametrize(
    ("gold", "pred"),
    [
        ("\\frac{1}{2}", "0.5"), ("3", "x = 3"), ("1000", "1,000"), ("50", "50\\%"), ("10", "10\\text{ cm}"),
        ("(1,2)", "(1, 2)"), ("[1,2)", "[1, 2)"), ("\\frac12", "1/2"), ("\\dfrac{3}{4}", "0.75"),
        ("5", "5.0"), ("\\sqrt{2}", "2^{1/2}"), ("90", "90^\\circ"), ("x^2+1", "1+x^2"),
    ],
)  # fmt: skip
def test_math_equivalent_forms_score_one(gold, pred):
    assert is_equivalent(gold, pred)


@pytest.mark.parametrize(
    ("gold", "pred"), [("2", "3"), ("[1,2)", "(1,2)"), ("(1,234)", "(1234)"), ("0.5", "0.6")]
)
def test_math_different_answers_score_zero(gold, pred):
    assert not is_equivalent(gold, pred)


def test_math_without_box_scores_zero_even_with_right_answer():
    verdict = score(math_sample(), "<think>t</think>Answer: 42", FAST)
    assert verdict.reward == 0.0 and "boxed" in verdict.reason


def test_math_timeout_scores_zero(monkeypatch):
    import time

    from m2rl.verifiers import math_answer

    monkeypatch.setattr(math_answer, "_math_verify_equal", lambda gold, pred: time.sleep(5) or True)
    config = VerifierConfig(workers=0, math_timeout_s=0.2)
    start = time.monotonic()
    verdict = score(math_sample("\\sqrt{2}"), "<think>t</think>\\boxed{2^{1/2}}", config)
    assert verdict.reward == 0.0 and "timeout" in verdict.reason
    assert time.monotonic() - start < 2


# ---------------------------------------------------------------------------------------------
# science
@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("Answer: C", "C"), ("Answer: (C)", "C"), ("\\boxed{C}", "C"), ("the correct option is C", "C"),
        ("answer: c", "C"), ("The answer is A. On reflection the answer is B.", "B"), ("**Answer:** **D**", "D"),
        ("Option B is correct.", "B"), ("(d)", "D"), ("The final answer is $\\boxed{\\text{A}}$", "A"),
    ],
)  # fmt: skip
def test_science_letter_extraction_accepts_explicit_statements(text, letter):
    assert extract_letter(text) == letter


@pytest.mark.parametrize(
    "text", ["The answer depends on the pressure.", "The answer is a cat.", "Answer: Because", "no idea"]
)
def test_science_letter_extraction_respects_word_boundaries(text):
    assert extract_letter(text) is None


def test_science_valid_letters_come_from_metadata_then_options_then_default():
    assert valid_letters(science_sample(valid_letters=["A", "B"])) == "AB"
    assert valid_letters(science_sample(valid_letters="ABCDEFGHIJ")) == "ABCDEFGHIJ"
    assert valid_letters(science_sample(options=["x", "y", "z"])) == "ABC"
    assert valid_letters(science_sample(options=list("0123456789"))) == "ABCDEFGHIJ"  # MMLU-Pro
    assert valid_letters(science_sample()) == "ABCDEFGH"


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("Answer: J", "J"), ("answer: j", "J"), ("The answer is (J).", "J"), ("\\boxed{\\textbf{J}}", "J"),
        ("the correct option is I", "I"), ("Answer: (I) because of X", "I"), ("**I**", "I"),
        ("Answer: I think the answer is B", "B"), ("Answer: I think it is B.", None),
        ("the answer is i think", None), ("Answer: E", "E"),
    ],
)  # fmt: skip
def test_science_letters_beyond_h_are_read_when_the_item_has_them(text, letter):
    assert extract_letter(text, "ABCDEFGHIJ") == letter


def test_science_ten_option_items_score_every_letter():
    ten = science_sample("J", valid_letters="ABCDEFGHIJ")
    assert score(ten, "<think>t</think>Answer: J", FAST).reward == 1.0
    assert score(ten, "<think>t</think>Answer: I", FAST).reward == 0.0
    by_options = science_sample("I", options=[f"option {n}" for n in range(10)])
    assert score(by_options, "<think>t</think>The correct option is I.", FAST).reward == 1.0
    assert extract_letter("Answer: J") is None  # an A-H item does not read J as a letter


def test_science_letter_outside_valid_letters_scores_zero():
    sample = science_sample("A", valid_letters=["A", "B", "C", "D"])
    assert score(sample, "<think>t</think>Answer: E", FAST).reward == 0.0
    assert score(sample, "<think>t</think>Answer: B\nWait. Answer: A", FAST).reward == 1.0


# ---------------------------------------------------------------------------------------------
# code
def test_code_takes_the_last_complete_python_block():
    text = "```python\nprint(1)\n```\nthen\n```python\nprint(2)\n```\n```python\nprint(3)"
    assert extract_program(text) == "print(2)\n"
    assert extract_program("```\nprint(1)\n```") is None


def test_code_with_two_blocks_is_not_spanned_greedily():
    sample = code_sample(["5\n"], ["10\n"])
    text = "<think>t</think>```python\nprint('draft')\n```\nfinal:\n```python\nprint(int(input()) * 2)\n```"
    assert score(sample, text, FAST).reward == 1.0


def test_code_passes_only_if_every_test_passes_and_exit_status_is_zero():
    sample = code_sample(["1\n", "2\n"], ["2\n", "4\n"])
    program = lambda body: f"<think>t</think>```python\n{body}\n```"  # noqa: E731
    assert score(sample, program("print(int(input()) * 2)"), FAST).reward == 1.0
    assert score(sample, program("print(2)"), FAST).reward == 0.0
    assert score(sample, program("import sys\nprint(int(input()) * 2)\nsys.exit(0)"), FAST).reward == 1.0
    assert score(sample, program("import sys\nprint(int(input()) * 2)\nsys.exit(1)"), FAST).reward == 0.0
    assert (
        score(
            sample, program("import sys\nprint('noise', file=sys.stderr)\nprint(int(input())*2)"), FAST
        ).reward
        == 1.0
    )
    assert score(sample, program("print(int(input()) * 2)\nraise ValueError"), FAST).reward == 0.0
    assert score(sample, "<think>t</think>print(2)", FAST).reward == 0.0


def test_code_test_sampling_is_seeded_and_capped():
    inputs, outputs = [str(i) for i in range(50)], [str(i) for i in range(50)]
    first = sample_tests(inputs, outputs, 20, seed=0, sample_id="x")
    assert len(first) == 20 and first == sample_tests(inputs, outputs, 20, seed=0, sample_id="x")
    assert first != sample_tests(inputs, outputs, 20, seed=1, sample_id="x")
    assert len(sample_tests(inputs[:3], outputs[:3], 20, 0, "x")) == 3


# ---------------------------------------------------------------------------------------------
# routing and validation
def test_registry_has_every_reward_type_and_domain_alias():
    for name in ("deepscaler", "gpqa", "unit_test", "ifevalg", "ifbench"):
        assert RM_TYPES[name].name == name
    assert {RM_TYPES[a].name for a in ("math", "science", "code", "if")} == {
        "deepscaler",
        "gpqa",
        "unit_test",
        "ifevalg",
    }


def test_domain_selects_default_type_when_rm_type_is_absent():
    sample = math_sample()
    del sample["rm_type"]
    assert score(sample, "<think>t</think>\\boxed{42}", FAST).reward == 1.0


@pytest.mark.parametrize(
    ("sample", "message"),
    [
        ({**math_sample(), "rm_type": "llm_judge"}, "unknown rm_type 'llm_judge'"),
        ({**math_sample(), "label": None}, "label"),
        (science_sample("Z"), "one letter"),
        (code_sample(["1"], ["1", "2"]), "1 inputs and 2 outputs"),
        ({**code_sample(["1"], ["1"]), "metadata": {}}, "unit_tests"),
        (make_sample("i1", "if", "Write.", None, metadata={"kwargs": [{}]}), "instruction_id_list"),
    ],
)
def test_check_sample_names_where_id_and_problem(sample, message):
    with pytest.raises(UserError) as info:
        check_sample(sample, "train.jsonl row 7")
    text = str(info.value)
    assert "train.jsonl row 7" in text and repr(sample["id"]) in text and message in text and "\n" not in text


def test_unknown_rm_type_is_an_error_when_scoring_never_a_silent_zero():
    with pytest.raises(UserError):
        score({**math_sample(), "rm_type": "nope"}, "<think>t</think>\\boxed{42}")


def test_unsupported_instruction_ids_fail_validation_with_the_ids_listed():
    pytest.importorskip("m2rl.verifiers.instruction_following")
    sample = make_sample(
        "i2", "if", "Write.", None,
        metadata={"instruction_id_list": ["made:up_one", "punctuation:no_comma"], "kwargs": [{}, {}], "prompt_text": "Write."},
    )  # fmt: skip
    with pytest.raises(UserError, match="made:up_one"):
        check_sample(sample, "row 3")


def test_if_types_route_to_the_instruction_checkers_with_normalised_kwargs():
    pytest.importorskip("m2rl.verifiers.instruction_following")
    for rm_type in ("ifevalg", "ifbench"):
        metadata = {
            "instruction_id_list": ["punctuation:no_comma", "change_case:english_lowercase"],
            "kwargs": [None, {"unused": None}],
            "prompt_text": "Write.",
        }
        sample = make_sample("i3", "if", "Write.", None, rm_type=rm_type, metadata=metadata)
        check_sample(sample, "row")
        assert score(sample, "<think>t</think>all lower and no commas", FAST).reward == 1.0
        assert score(sample, "<think>t</think>all lower, with a comma", FAST).reward == 0.0
        assert score(sample, "<think>t</think>No Commas But Capitals", FAST).reward == 0.0


def test_code_unit_tests_may_be_json_text():
    sample = make_sample(
        "c2", "code", "Echo.", None, metadata={"unit_tests": '{"inputs": ["7"], "outputs": ["7"]}'}
    )
    check_sample(sample, "row")
    assert score(sample, "<think>t</think>```python\nprint(input())\n```", FAST).reward == 1.0


# ---------------------------------------------------------------------------------------------
# the built-in data: reference solutions score 1, corrupted ones 0
def _corrupt(domain: str, solution: str) -> str:
    head, _, answer = solution.partition("</think>")
    if domain == "math":
        return head + "</think>\nAnswer: \\boxed{-99999}"
    if domain == "science":
        letter = answer.strip()[-1]
        return head + f"</think>\nAnswer: {'B' if letter == 'A' else 'A'}"
    if domain == "code":
        return head + "</think>\n```python\nprint('nope')\n```"
    return (
        head + "</think>\n" + "Bad, WRONG, response, " * 3
    )  # breaks case, comma, end, format and keyword rules


@pytest.mark.parametrize("domain", ["math", "science", "code", "if"])
def test_builtin_reference_solutions_score_one_and_corrupted_ones_zero(domain):
    if domain == "if":
        pytest.importorskip("m2rl.verifiers.instruction_following")
    samples = generate(domain, "test", 6 if domain == "code" else 30, seed=5)
    for sample in samples:
        check_sample(sample, "builtin")
        good = score(sample, sample["metadata"]["solution"], FAST)
        assert good.reward == 1.0, (sample["id"], good.reason)
        bad = score(sample, _corrupt(domain, sample["metadata"]["solution"]), FAST)
        assert bad.reward == 0.0, (sample["id"], bad.reason)


def test_verifier_config_is_built_from_the_config_group():
    from m2rl.config import compose_config
    from m2rl.verifiers.config import verifier_settings

    cfg = compose_config(
        ["verifiers.require_think=false", "verifiers.code.max_tests=5", "verifiers.math.timeout_s=3"]
    )
    config = VerifierConfig.of(verifier_settings(cfg))
    assert (config.require_think, config.code_max_tests, config.math_timeout_s) == (False, 5, 3.0)
    assert config.code_memory_limit_mb == 1024 and config.sandbox_url is None
    with pytest.raises(UserError, match="code.max_tests"):
        VerifierConfig(code_max_tests=0)
