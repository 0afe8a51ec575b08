"""Built-in generators: deterministic, disjoint splits, canonical schema, labels in the real formats."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from m2rl.data.builtin import GENERATORS, SPLITS, generate

DOMAINS = list(GENERATORS)


@pytest.mark.parametrize("domain", DOMAINS)
def test_generation_is_deterministic(domain):
    assert generate(domain, "rl", 20, seed=3) == generate(domain, "rl", 20, seed=3)
    assert generate(domain, "rl", 20, seed=3) != generate(domain, "rl", 20, seed=4)


@pytest.mark.parametrize("domain", DOMAINS)
def test_splits_are_disjoint(domain):
    keys = {split: {s["metadata"]["key"] for s in generate(domain, split, 60)} for split in SPLITS}
    prompts = {split: {s["prompt"][0]["content"] for s in generate(domain, split, 60)} for split in SPLITS}
    assert not keys["sft"] & keys["rl"] and not keys["sft"] & keys["test"] and not keys["rl"] & keys["test"]
    assert not prompts["rl"] & prompts["test"] and not prompts["sft"] & prompts["test"]


@pytest.mark.parametrize("domain", DOMAINS)
def test_samples_follow_the_canonical_schema(domain):
    for sample in generate(domain, "test", 10):
        assert set(sample) == {"id", "domain", "rm_type", "prompt", "label", "metadata"}
        assert sample["domain"] == domain
        assert sample["prompt"][0]["role"] == "user"
        solution = sample["metadata"]["solution"]
        assert solution.startswith("<think>") and "</think>" in solution


def test_label_formats_match_the_real_data():
    math = generate("math", "test", 5)
    assert all(s["rm_type"] == "deepscaler" and s["label"].lstrip("-").isdigit() for s in math)
    assert all(f"\\boxed{{{s['label']}}}" in s["metadata"]["solution"] for s in math)
    science = generate("science", "test", 5)
    assert all(s["rm_type"] == "gpqa" and s["label"] in "ABCD" for s in science)
    code = generate("code", "test", 5)
    for s in code:
        tests = s["metadata"]["unit_tests"]
        assert s["rm_type"] == "unit_test" and 3 <= len(tests["inputs"]) == len(tests["outputs"]) <= 5
    ifs = generate("if", "test", 5)
    for s in ifs:
        assert s["rm_type"] == "ifevalg"
        assert len(s["metadata"]["instruction_id_list"]) == len(s["metadata"]["kwargs"]) >= 1
        assert s["metadata"]["prompt_text"] == s["prompt"][0]["content"]


def test_if_keyword_family_only_at_difficulty_3():
    def ids(difficulty):
        samples = generate("if", "test", 100, difficulty=difficulty)
        return {i for s in samples for i in s["metadata"]["instruction_id_list"]}

    assert "keywords:existence" not in ids(1) | ids(2)
    assert "keywords:existence" in ids(3) and len(ids(2)) == 6


def family(sample) -> str:
    return sample["metadata"]["key"].split(":")[1]


def test_code_difficulty_3_is_branches_and_offsets_and_4_adds_filter():
    assert not {"filter", "branch"} & {family(s) for s in generate("code", "rl", 100, difficulty=2)}
    default = generate("code", "test", 256, difficulty=3)
    assert {family(s) for s in default} == {"branch", "sum2", "max3"}
    assert sum(family(s) == "branch" for s in default) > 0.4 * len(default)
    offsets = [int(s["metadata"]["key"].split(":")[2]) for s in default if family(s) in ("sum2", "max3")]
    assert max(offsets) > 99  # three-digit offsets at 3 (two at 2)
    assert {family(s) for s in generate("code", "test", 256, difficulty=4)} == {
        "filter",
        "branch",
        "sum2",
        "max3",
    }


@pytest.mark.parametrize("difficulty", [2, 3, 4])
def test_code_reference_programs_pass_their_tests(difficulty):
    import subprocess
    import sys

    samples = generate("code", "test", 64, difficulty=difficulty)
    # at 3 and 4 the first few of each family the level adds: offsets at 3, filter at 4, and the branch
    firsts = {3: {"sum2": 2, "max3": 2, "branch": 4}, 4: {"filter": 4, "branch": 4}}.get(difficulty)
    if firsts:
        picked = []
        for name, count in firsts.items():
            picked += [s for s in samples if family(s) == name][:count]
        assert len(picked) == 8
        samples = picked
    for sample in samples[:8]:
        program = sample["metadata"]["solution"].split("```python\n")[1].split("```")[0]
        tests = sample["metadata"]["unit_tests"]
        for stdin, expected in zip(tests["inputs"], tests["outputs"], strict=True):
            out = subprocess.run(
                [sys.executable, "-c", program], input=stdin, capture_output=True, text=True, timeout=20
            )
            assert out.stdout.strip() == expected.strip()


@pytest.mark.parametrize("difficulty", [2, 3])
def test_science_difficulty_sets_the_fact_base(difficulty):
    from m2rl.data.builtin import ELEMENTS, FACT_BASE_SIZES, PHASES, UNITS

    element_count, unit_count = FACT_BASE_SIZES[difficulty]
    known = {str(x) for row in ELEMENTS[:element_count] for x in row} | {u for _, u in UNITS[:unit_count]}
    facts = [
        s
        for s in generate("science", "rl", 120, difficulty=difficulty)
        if "melts" not in s["prompt"][0]["content"] and "Four samples" not in s["prompt"][0]["content"]
    ]
    assert facts and all(set(s["metadata"]["options"]) <= known for s in facts)
    assert all(set(s["metadata"]["options"]) != set(PHASES) for s in facts)


def test_science_difficulty_1_is_the_phase_from_two_comparisons():
    answers = Counter()
    for sample in generate("science", "test", 256, difficulty=1):
        text, solution = sample["prompt"][0]["content"], sample["metadata"]["solution"]
        correct = sample["metadata"]["options"]["ABCD".index(sample["label"])]
        melt, boil, temperature = (int(w) for w in re.findall(r"(\d+) K", text))
        assert temperature not in (melt, boil)  # so "above"/"below" in the reasoning are true
        phase = "solid" if temperature < melt else "liquid" if temperature < boil else "gas"
        assert correct == phase and f"so it is {phase}." in solution
        answers[phase] += 1
    # the state is drawn uniformly: no answer is a prior worth learning (uniform temperatures gave 107/84/65)
    assert set(answers) == {"solid", "liquid", "gas"} and max(answers.values()) < 256 * 0.4


def test_science_difficulty_2_adds_the_greatest_or_least_measurement():
    extremes = [
        s
        for s in generate("science", "test", 120, difficulty=2)
        if "Four samples" in s["prompt"][0]["content"]
    ]
    assert extremes
    for sample in extremes:
        text, solution = sample["prompt"][0]["content"], sample["metadata"]["solution"]
        correct = sample["metadata"]["options"]["ABCD".index(sample["label"])]
        values = [int(o.split()[0]) for o in sample["metadata"]["options"]]
        best = max(values) if "greatest" in text else min(values)
        assert int(correct.split()[0]) == best and f"is {best}." in solution


def test_science_reasoning_reads_the_options_up_to_the_answer():
    for sample in generate("science", "test", 20):
        options, letter = sample["metadata"]["options"], sample["label"]
        last = "ABCD".index(letter)
        shown = [o.split()[0] if o[0].isdigit() else o for o in options]
        scan = ", ".join(f"{'ABCD'[i]}) {shown[i]}" for i in range(last + 1))
        assert f"{scan}. That is option {letter}." in sample["metadata"]["solution"]


def test_builtin_sizes_may_be_set_per_domain():
    from omegaconf import OmegaConf

    from m2rl.data.load import rl_samples, sft_conversations

    data = OmegaConf.create(
        {
            "name": "builtin",
            "domains": ["math", "code"],
            "seed": 0,
            "difficulty": 1,
            "sizes": {"sft": {"math": 7, "code": 3}, "rl": 5},
        }
    )
    assert len(sft_conversations(data)) == 10
    assert {d: len(rows) for d, rows in rl_samples(data, ["math", "code"]).items()} == {"math": 5, "code": 5}
